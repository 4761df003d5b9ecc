"""Every record dataclass agrees with its hand-written Arrow schema (names, order, types)."""

from __future__ import annotations

import typing
from dataclasses import fields

import pyarrow as pa
import pytest

from schemas import records as r
from schemas.arrow import schema_for, to_table
from schemas.modality import Modality
from schemas.reasons import ReasonCode

_SCALAR = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}


def _arrow_type(hint) -> pa.DataType:
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        return pa.list_(_arrow_type(args[0]))
    if isinstance(hint, type) and issubclass(hint, ReasonCode | Modality):
        return pa.string()
    return _SCALAR[hint]


CLASSES = [
    r.ImageRecord,
    r.VolumeRecord,
    r.EcgRecord,
    r.ReportRecord,
    r.SeriesSlice,
    r.QuarantineRecord,
    r.SampleRecord,
    r.ShardRecord,
]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_dataclass_matches_arrow_schema(cls):
    hints = typing.get_type_hints(cls)
    expected = [(f.name, _arrow_type(hints[f.name])) for f in fields(cls) if f.metadata.get("arrow", True)]
    schema = schema_for(cls)
    assert [(f.name, f.type) for f in schema] == expected


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_records_are_frozen(cls):
    assert cls.__dataclass_params__.frozen


def test_to_table_roundtrip_quarantine():
    q = r.QuarantineRecord(
        "f1", "src", Modality.ECG, "decode", ReasonCode.ECG_SIGNAL_MISSING, "no signal file"
    )
    t = to_table([q], r.QuarantineRecord)
    assert t.to_pylist() == [
        {
            "source_id": "f1",
            "source_name": "src",
            "modality": "ecg",
            "stage": "decode",
            "reason": "ecg_signal_missing",
            "message": "no signal file",
        }
    ]
