"""The sample/shard contract: keys without dots, member names, shard names."""

from __future__ import annotations

import jsonschema
import pytest

from schemas.contract import is_valid_key, member_name, parse_member, shard_name
from schemas.modality import SAMPLE_MODALITIES, Modality, modality_mask
from schemas.report_schema import REPORT_JSON_SCHEMA


def test_keys_reject_dots_and_uppercase():
    assert is_valid_key("a1b2-c3_d4")
    assert not is_valid_key("1.2.840.10008")  # a DICOM UID would break WebDataset grouping
    assert not is_valid_key("ABC")
    assert not is_valid_key("")


def test_member_names_roundtrip():
    assert member_name(Modality.ECG, 1, "npy") == "ecg_1.npy"
    assert parse_member("image_0.raw.npy") == ("image", 0, "raw.npy")
    assert parse_member("meta.json") == ("meta", 0, "json")
    assert parse_member("../etc/passwd") is None
    with pytest.raises(ValueError):
        member_name(Modality.UNKNOWN, 0, "npy")


def test_shard_names():
    assert shard_name("train", 3) == "train/train-000003.tar"
    with pytest.raises(ValueError):
        shard_name("holdout", 0)


def test_modality_mask_order():
    assert modality_mask({Modality.ECG, Modality.REPORT}) == (False, False, True, True)
    assert len(SAMPLE_MODALITIES) == 4


def test_report_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(REPORT_JSON_SCHEMA)
    ok = {
        "schema_version": "1.0",
        "report_type": "cardiology",
        "language": "de",
        "sections": {"findings": "sinusrhythmus"},
        "findings": [{"label": "sinus_rhythm", "assertion": "present"}],
        "normal": True,
    }
    jsonschema.validate(ok, REPORT_JSON_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            ok | {"findings": [{"label": "made_up", "assertion": "present"}]}, REPORT_JSON_SCHEMA
        )
