"""DICOM 12-lead ECG waveform decoding against pydicom's own waveform_array on the real sample."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.sequence import Sequence
from pydicom.waveforms.numpy_handler import multiplex_array
from scipy.signal import resample_poly

from schemas.contract import ECG_LEADS
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import EcgRecord, InputItem, InputKind
from workers.dicom.identity import dicom_identity
from workers.ecg.dicom import choose_rhythm_group, decode_dicom_ecg
from workers.ids import normalise_id


@pytest.fixture(scope="module")
def ecg_path(request) -> Path:
    shared = request.getfixturevalue("shared_data")
    return shared / "ecg" / "dicom_waveform" / "waveform_ecg.dcm"


@pytest.fixture()
def ds(ecg_path) -> pydicom.Dataset:
    return pydicom.dcmread(ecg_path)


def item_for(path: Path, pseudo) -> InputItem:
    return InputItem(
        source_id=pseudo.source_id(path.name),
        path=str(path),
        kind=InputKind.DICOM,
        source_name="test",
        licence="MIT",
        size_bytes=path.stat().st_size,
    )


def decode(ds, path, ctx) -> EcgRecord:
    (rec,) = decode_dicom_ecg(ds, item_for(path, ctx.pseudo), ctx)
    assert isinstance(rec, EcgRecord)
    return rec


def array_of(rec: EcgRecord) -> np.ndarray:
    return np.load(io.BytesIO(dict(rec.payload)["npy"]), allow_pickle=False)


def lead_of_meaning(meaning: str) -> str:
    """The test's own reading of the SCP-ECG CodeMeanings in this file ('Lead I (Einthoven)')."""
    return meaning.replace("Lead ", "").split(" (")[0]


def test_rhythm_group_leads_match_pydicom_waveform_array(ds, ecg_path, ctx):
    labels = [str(g.MultiplexGroupLabel) for g in ds.WaveformSequence]
    rhythm = labels.index("RHYTHM")
    wave = ds.waveform_array(rhythm)  # (10000, 12) in µV
    rec = decode(ds, ecg_path, ctx)
    arr = array_of(rec).astype(np.float64)
    assert arr.shape == (12, 5000) and rec.original_rate_hz == float(
        ds.WaveformSequence[rhythm].SamplingFrequency
    )
    units = {
        str(c.ChannelSensitivityUnitsSequence[0].CodeValue)
        for c in ds.WaveformSequence[rhythm].ChannelDefinitionSequence
    }
    assert units == {"uV"}
    for j, ch in enumerate(ds.WaveformSequence[rhythm].ChannelDefinitionSequence):
        lead = lead_of_meaning(str(ch.ChannelSourceSequence[0].CodeMeaning))
        ref = resample_poly(wave[:, j] / 1000.0, 1, 2, padtype="edge")[:5000]
        np.testing.assert_allclose(arr[ECG_LEADS.index(lead)], ref, rtol=1e-3, atol=1e-3)
    meta = json.loads(rec.meta_json)
    assert meta["source"]["group_label"] == "RHYTHM" and meta["source"]["group_index"] == rhythm
    assert rec.qc_flags == () and rec.leads == ECG_LEADS


def test_group_choice_is_not_the_median_beat_whatever_the_order(ds, ecg_path, ctx):
    reference = array_of(decode(copy.deepcopy(ds), ecg_path, ctx))
    swapped = copy.deepcopy(ds)
    swapped.WaveformSequence = Sequence(list(reversed(list(swapped.WaveformSequence))))
    assert str(swapped.WaveformSequence[0].MultiplexGroupLabel) != "RHYTHM"
    assert choose_rhythm_group(swapped) == 1
    np.testing.assert_array_equal(array_of(decode(swapped, ecg_path, ctx)), reference)
    unlabelled = copy.deepcopy(swapped)
    for g in unlabelled.WaveformSequence:
        del g.MultiplexGroupLabel
    assert choose_rhythm_group(unlabelled) == 1  # the longest group wins without labels
    only_beat = copy.deepcopy(ds)
    only_beat.WaveformSequence = Sequence(
        [g for g in only_beat.WaveformSequence if "BEAT" in str(g.MultiplexGroupLabel)]
    )
    with pytest.raises(QuarantineError) as exc:
        decode_dicom_ecg(only_beat, item_for(ecg_path, ctx.pseudo), ctx)
    assert exc.value.reason == ReasonCode.ECG_SIGNAL_MISSING


def test_channels_permuted_in_the_dataset_come_back_in_canonical_order(ds, ecg_path, ctx):
    reference = decode(copy.deepcopy(ds), ecg_path, ctx)
    g = ds.WaveformSequence[0]
    raw = multiplex_array(ds, 0, as_raw=True)
    perm = [11, 4, 0, 7, 2, 9, 5, 1, 10, 3, 8, 6]
    g.WaveformData = np.ascontiguousarray(raw[:, perm]).astype("<i2").tobytes()
    g.ChannelDefinitionSequence = Sequence([g.ChannelDefinitionSequence[k] for k in perm])
    permuted = decode(ds, ecg_path, ctx)
    np.testing.assert_array_equal(array_of(permuted), array_of(reference))
    assert permuted.content_sha256 == reference.content_sha256


def test_lead_found_by_meaning_or_label_when_codes_are_missing(ds, ecg_path, ctx):
    reference = array_of(decode(copy.deepcopy(ds), ecg_path, ctx))
    for k, ch in enumerate(ds.WaveformSequence[0].ChannelDefinitionSequence):
        src = ch.ChannelSourceSequence[0]
        src.CodeValue = "0"
        src.CodingSchemeDesignator = "99LOCAL"
        if k % 2:  # half by CodeMeaning only, half by ChannelLabel only
            ch.ChannelLabel = str(src.CodeMeaning).upper()
            src.CodeMeaning = "unknown"
    np.testing.assert_array_equal(array_of(decode(ds, ecg_path, ctx)), reference)


def test_sensitivity_in_mv_gives_the_same_millivolts(ds, ecg_path, ctx):
    reference = array_of(decode(copy.deepcopy(ds), ecg_path, ctx))
    for ch in ds.WaveformSequence[0].ChannelDefinitionSequence:
        ch.ChannelSensitivity = float(ch.ChannelSensitivity) / 1000.0
        ch.ChannelSensitivityUnitsSequence[0].CodeValue = "mV"
    np.testing.assert_allclose(
        array_of(decode(ds, ecg_path, ctx)).astype(float), reference.astype(float), atol=1e-3
    )


def test_padding_value_samples_become_nan(ds, ecg_path, ctx):
    g = ds.WaveformSequence[0]
    raw = multiplex_array(ds, 0, as_raw=True).copy()
    raw[2000:2200, 3] = -32768
    g.WaveformData = raw.astype("<i2").tobytes()
    g.WaveformPaddingValue = np.array([-32768], dtype="<i2").tobytes()
    rec = decode(ds, ecg_path, ctx)
    lead = lead_of_meaning(str(g.ChannelDefinitionSequence[3].ChannelSourceSequence[0].CodeMeaning))
    row = array_of(rec)[ECG_LEADS.index(lead)].astype(np.float64)
    nan = np.flatnonzero(np.isnan(row))
    assert nan.min() == 1000 and nan.max() == 1099
    assert f"nan:{lead}" in rec.qc_flags and f"clipped:{lead}" not in rec.qc_flags


def test_truncated_waveform_data_is_quarantined(ds, ecg_path, ctx):
    g = ds.WaveformSequence[0]
    g.WaveformData = bytes(g.WaveformData)[:5000]
    with pytest.raises(QuarantineError) as exc:
        decode_dicom_ecg(ds, item_for(ecg_path, ctx.pseudo), ctx)
    assert exc.value.reason == ReasonCode.ECG_SIGNAL_CORRUPT


def test_identity_from_dicom_identity_and_no_phi_in_meta(ds, ecg_path, ctx):
    rec = decode(copy.deepcopy(ds), ecg_path, ctx)
    patient, study, acquired_at = dicom_identity(ds, ctx.pseudo)
    assert (rec.patient, rec.study, rec.acquired_at) == (patient, study, acquired_at)
    assert rec.patient == ctx.pseudo.patient(normalise_id(ds.PatientID)) and rec.patient
    for kw in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "OtherPatientIDs",
        "InstitutionName",
        "AccessionNumber",
    ):
        value = str(ds.get(kw, "") or "").strip()
        if len(value) >= 4:
            assert value not in rec.meta_json, kw
    meta = json.loads(rec.meta_json)
    assert "PatientName" in meta["deid"]["not_carried_over"]
    assert meta["header"]["sex"] == {"F": "female", "M": "male"}[str(ds.PatientSex)]
    assert meta["header"]["age"] == str(int(str(ds.PatientAge).rstrip("Y")))


def test_a_longer_rhythm_strip_with_fewer_leads_does_not_win(ds, ecg_path, ctx):
    reference = array_of(decode(copy.deepcopy(ds), ecg_path, ctx))
    strip = copy.deepcopy(ds.WaveformSequence[0])
    raw = multiplex_array(ds, 0, as_raw=True)[:, :3]
    strip.WaveformData = np.ascontiguousarray(np.tile(raw, (2, 1))).astype("<i2").tobytes()  # 20 s, 3 leads
    strip.NumberOfWaveformSamples = raw.shape[0] * 2
    strip.NumberOfWaveformChannels = 3
    strip.ChannelDefinitionSequence = Sequence(list(strip.ChannelDefinitionSequence)[:3])
    ds.WaveformSequence = Sequence([strip, *ds.WaveformSequence])
    assert choose_rhythm_group(ds) == 1
    np.testing.assert_array_equal(array_of(decode(ds, ecg_path, ctx)), reference)
