"""WFDB decoding against wfdb/scipy on the real sample records (and modified copies in tmp_path)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy.signal import resample_poly

from schemas.contract import ECG_LEADS
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import EcgRecord, InputItem, InputKind
from workers.config import EcgConfig
from workers.context import WorkerContext
from workers.ecg.wfdb import decode_wfdb, parse_header_comments, segment_headers, study_link_id
from workers.ids import normalise_id

REAL = [
    "mitdb_100/100",
    "ptbdb_s0010_re/s0010_re",
    "ptbxl_100hz/00001_lr",
    *[f"ptbxl_500hz_cinc2021/HR0600{i}" for i in range(5)],
]


# --- helpers -------------------------------------------------------------------------------------


def item_for(hea: Path, pseudo) -> InputItem:
    companions = tuple(sorted(str(p) for p in hea.parent.iterdir() if p.stem == hea.stem and p != hea))
    return InputItem(
        source_id=pseudo.source_id(hea.name),
        path=str(hea),
        kind=InputKind.WFDB,
        source_name="test",
        licence="ODC-By-1.0",
        size_bytes=hea.stat().st_size,
        companions=companions,
    )


def decode(hea: Path, ctx) -> EcgRecord:
    records = decode_wfdb(item_for(hea, ctx.pseudo), ctx)
    assert len(records) == 1 and isinstance(records[0], EcgRecord)
    return records[0]


def array_of(rec: EcgRecord) -> np.ndarray:
    (suffix, data), *_ = rec.payload
    assert suffix == "npy"
    return np.load(io.BytesIO(data), allow_pickle=False)


def reference_500(p: np.ndarray, fs: float) -> np.ndarray:
    """What the convention promises: resample_poly to 500 Hz (edge padding), first 10 s."""
    ratio = Fraction(500) / Fraction(fs).limit_denominator(1000)
    y = resample_poly(p, ratio.numerator, ratio.denominator, padtype="edge") if ratio != 1 else p
    return y[:5000]


def expected_lead(name: str) -> str | None:
    """The test's own reading of the lead names used by the real sample headers."""
    name = {"MLII": "II"}.get(name.strip(), name.strip())
    return next((lead for lead in ECG_LEADS if lead.lower() == name.lower()), None)


def copy_record(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    for p in src.parent.iterdir():
        if p.stem == src.stem:
            shutil.copy(p, dst_dir / p.name)
    return dst_dir / f"{src.stem}.hea"


def write_digital(dst: Path, rec: wfdb.Record, d: np.ndarray, names: list[str], **kw) -> Path:
    """Write a record with the digital samples ``d`` and the gains of ``rec`` (fmt 16)."""
    n = d.shape[1]
    wfdb.wrsamp(
        dst.name,
        fs=kw.get("fs", rec.fs),
        units=kw.get("units", [rec.units[0]] * n),
        sig_name=names,
        d_signal=d.astype(np.int64),
        fmt=kw.get("fmt", ["16"] * n),
        adc_gain=kw.get("adc_gain", [rec.adc_gain[0]] * n),
        baseline=kw.get("baseline", [rec.baseline[0]] * n),
        comments=kw.get("comments"),
        base_date=kw.get("base_date"),
        base_time=kw.get("base_time"),
        write_dir=str(dst.parent),
    )
    return dst.parent / f"{dst.name}.hea"


@pytest.fixture()
def wfdb_dir(shared_data: Path) -> Path:
    return shared_data / "ecg" / "wfdb"


# --- the real records ----------------------------------------------------------------------------


@pytest.mark.parametrize("rel", REAL)
def test_real_record_leads_by_name_and_amplitudes_match_resampled_p_signal(rel, wfdb_dir, ctx):
    hea = wfdb_dir / f"{rel}.hea"
    rec = decode(hea, ctx)
    arr = array_of(rec)
    full = wfdb.rdrecord(str(hea.with_suffix("")))  # the whole record, read by wfdb alone

    assert arr.shape == (12, 5000) and arr.dtype == np.float16
    assert rec.leads == ECG_LEADS and rec.n_samples == 5000
    assert rec.sampling_rate_hz == 500.0 and rec.original_rate_hz == float(full.fs) and rec.units == "mV"
    meta = json.loads(rec.meta_json)
    seen = set()
    for j, name in enumerate(full.sig_name):
        lead = expected_lead(name)
        if lead is None:
            continue
        seen.add(lead)
        row = ECG_LEADS.index(lead)
        assert meta["lead_map"][lead]["source"] == name
        ref = reference_500(full.p_signal[:, j], full.fs)
        np.testing.assert_allclose(arr[row].astype(np.float64), ref, rtol=1e-3, atol=1e-3)
    for lead in set(ECG_LEADS) - seen:
        assert np.isnan(arr[ECG_LEADS.index(lead)].astype(np.float64)).all()
        assert f"missing:{lead}" in rec.qc_flags
    assert seen, "every real record has at least one standard lead"


def test_mitdb_100_360hz_format_212_two_leads(wfdb_dir, ctx):
    rec = decode(wfdb_dir / "mitdb_100" / "100.hea", ctx)
    meta = json.loads(rec.meta_json)
    assert rec.original_rate_hz == 360.0
    assert meta["source"]["signal_formats"] == ["212"]
    assert meta["convention"]["resampling"]["by_source_rate_hz"]["360"] == {
        "up": 25,
        "down": 18,
        "exact": True,
        "rate_error_rel": 0.0,
    }
    assert meta["lead_map"]["II"]["source"] == "MLII" and meta["lead_map"]["II"]["modified"] is True
    assert meta["lead_map"]["V5"]["source"] == "V5"
    assert {"partial_leads", "modified_leads", "missing:I", "missing:V1"} <= set(rec.qc_flags)
    assert meta["source_duration_s"] == pytest.approx(650000 / 360)
    assert meta["convention"]["window"] == {"policy": "first", "start_s": 0.0, "pad": "nan", "padded_s": 0.0}
    # 30 min record: only the first 10 s (+ a filter margin) is read; the output is its first 10 s
    assert array_of(rec).shape == (12, 5000)


def test_ptb_s0010_1000hz_two_signal_files_frank_leads_unused(wfdb_dir, ctx):
    rec = decode(wfdb_dir / "ptbdb_s0010_re" / "s0010_re.hea", ctx)
    meta = json.loads(rec.meta_json)
    assert rec.original_rate_hz == 1000.0
    assert meta["source"]["n_signal_files"] == 2 and meta["source"]["n_channels"] == 15
    assert meta["convention"]["resampling"]["by_source_rate_hz"]["1000"]["up"] == 1
    assert meta["convention"]["resampling"]["by_source_rate_hz"]["1000"]["down"] == 2
    assert meta["unused_channels"]["not_a_lead"] == ["vx", "vy", "vz"]
    assert "partial_leads" not in rec.qc_flags
    # header comments: age/sex kept, dates dropped, clinical fields kept
    assert meta["header"]["age"] == "81" and meta["header"]["sex"] == "female"
    assert meta["header"]["fields"]["reason_for_admission"] == "Myocardial infarction"
    assert "ecg_date" in meta["deid"]["removed"]
    assert "01/10/1990" not in rec.meta_json and "29-Sep-90" not in rec.meta_json


def _ptbxl_rows(shared_data: Path) -> dict[str, dict]:
    path = shared_data / "reports" / "ptbxl_ecg" / "ptbxl_database_subset_partA.csv"
    with open(path, newline="", encoding="utf-8") as f:
        return {normalise_id(r["ecg_id"]): r for r in csv.DictReader(f)}


@pytest.mark.parametrize("name", ["HR06000", "HR06001", "HR06002", "HR06003", "HR06004", "00001_lr"])
def test_ptbxl_records_link_to_their_report_row(name, wfdb_dir, shared_data, ctx):
    hea = next(wfdb_dir.glob(f"*/{name}.hea"))
    rec = decode(hea, ctx)
    rows = _ptbxl_rows(shared_data)
    link = study_link_id(name, ctx.ecg.study_id_pattern)
    assert link in rows, "the record's study id is an ecg_id of the PTB-XL table"
    assert rec.study == ctx.pseudo.study(normalise_id(rows[link]["ecg_id"]))
    assert rec.patient == ""  # WFDB carries no patient id
    meta = json.loads(rec.meta_json)
    if name.startswith("HR"):  # CinC headers carry age/sex, which PTB-XL's row confirms
        assert meta["header"]["age"] == str(int(float(rows[link]["age"])))
        assert meta["header"]["sex"] == {"0": "male", "1": "female"}[rows[link]["sex"]]
        dx = next(c for c in wfdb.rdheader(str(hea.with_suffix(""))).comments if c.startswith("Dx:"))
        assert meta["header"]["dx"] == dx.split(":", 1)[1].strip().split(",")


def test_study_id_pattern_examples():
    assert study_link_id("HR06000", r"(\d+)") == "6000"
    assert study_link_id("00001_lr", r"(\d+)") == "1"
    assert study_link_id("s0010_re", r"(\d+)") == "10"
    assert study_link_id("abc", r"(\d+)") == ""


# --- lead order by name --------------------------------------------------------------------------

ALIASES = {
    "I": "Lead I",
    "II": "DII",
    "III": "d3",
    "aVR": "-aVR",  # inverted (Cabrera); the test negates the data to match
    "aVL": "avl",
    "aVF": "AVF",
    "V1": "C1",
    "V2": "v2",
    "V3": "lead_V3",
    "V4": "V4",
    "V5": "c5",
    "V6": "v6",
}
PERM = [7, 3, 11, 0, 5, 9, 1, 10, 4, 2, 8, 6]


def test_permuted_and_renamed_leads_come_back_in_canonical_order(wfdb_dir, tmp_path, ctx):
    src = wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06002.hea"
    original = decode(src, ctx)
    rec = wfdb.rdrecord(str(src.with_suffix("")), physical=False)
    assert list(rec.sig_name) == list(ECG_LEADS)  # this record's header lists the canonical order
    d = rec.d_signal[:, PERM].copy()
    names = [ALIASES[ECG_LEADS[j]] for j in PERM]
    d[:, names.index("-aVR")] *= -1
    hea = write_digital(tmp_path / "HR06002", rec, d, names)
    assert wfdb.rdheader(str(hea.with_suffix(""))).sig_name == names

    permuted = decode(hea, ctx)
    np.testing.assert_array_equal(array_of(permuted), array_of(original))
    assert permuted.content_sha256 == original.content_sha256
    meta = json.loads(permuted.meta_json)
    assert [meta["lead_map"][lead]["source"] for lead in ECG_LEADS] == [ALIASES[lead] for lead in ECG_LEADS]
    assert meta["lead_map"]["aVR"]["sign"] == -1


def test_renaming_only_the_header_moves_the_data_with_the_name(wfdb_dir, tmp_path, ctx):
    src = wfdb_dir / "ptbxl_100hz" / "00001_lr.hea"
    hea = copy_record(src, tmp_path)
    lines = hea.read_text().splitlines()
    new_names = [ALIASES[ECG_LEADS[j]].lstrip("-") for j in PERM]  # no inversion here
    for k in range(12):
        parts = lines[1 + k].split()
        lines[1 + k] = " ".join(parts[:8] + [new_names[k]])
    hea.write_text("\n".join(lines) + "\n")
    arr = array_of(decode(hea, ctx))
    full = wfdb.rdrecord(str(src.with_suffix("")))
    for k in range(12):
        row = PERM[k]  # channel k is now *named* as canonical lead PERM[k]
        np.testing.assert_allclose(
            arr[row].astype(float), reference_500(full.p_signal[:, k], 100), atol=1e-3, rtol=1e-3
        )


# --- formats -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["16", "212", "80", "24", "32", "516", "61", "160"])
def test_signal_formats_decode_like_wfdb_reads_them(fmt, wfdb_dir, tmp_path, ctx):
    src = wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06001"
    r = wfdb.rdrecord(str(src))
    write_fmt = {"61": "16", "160": "16"}.get(fmt, fmt)
    wfdb.wrsamp(
        "rec",
        fs=r.fs,
        units=r.units,
        sig_name=r.sig_name,
        p_signal=r.p_signal,
        fmt=[write_fmt] * 12,
        write_dir=str(tmp_path),
    )
    hea = tmp_path / "rec.hea"
    if fmt in ("61", "160"):  # big-endian 16 bit / offset-binary 16 bit: rewrite the data by hand
        d = np.fromfile(tmp_path / "rec.dat", dtype="<i2")
        data = d.astype(">i2") if fmt == "61" else (d.astype(np.int32) + 32768).astype("<u2")
        data.tofile(tmp_path / "rec.dat")
        hea.write_text(hea.read_text().replace("rec.dat 16 ", f"rec.dat {fmt} "))
    written = wfdb.rdrecord(str(tmp_path / "rec"))
    assert written.fmt == [fmt] * 12
    rec = decode(hea, ctx)
    arr = array_of(rec).astype(np.float64)
    for j in range(12):
        np.testing.assert_allclose(arr[j], written.p_signal[:, j][:5000], rtol=1e-3, atol=1e-3)
    # and the written copy is the real record within the format's quantisation
    step = {"80": 0.02, "212": 2e-3}.get(fmt, 1e-3)
    np.testing.assert_allclose(arr, r.p_signal.T, atol=step + 2e-3)
    assert json.loads(rec.meta_json)["source"]["signal_formats"] == [fmt]


def test_microvolt_units_are_converted_to_millivolts(wfdb_dir, tmp_path, ctx):
    src = wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06002"
    r = wfdb.rdrecord(str(src), physical=False)
    # same digital samples, gain expressed per µV (1000 × 1/mV gain / 1000): values become µV
    hea = write_digital(
        tmp_path / "uv",
        r,
        r.d_signal,
        list(r.sig_name),
        units=["uV"] * 12,
        adc_gain=[r.adc_gain[0] / 1000] * 12,
    )
    assert wfdb.rdrecord(str(tmp_path / "uv")).units == ["uV"] * 12
    np.testing.assert_array_equal(array_of(decode(hea, ctx)), array_of(decode(src.with_suffix(".hea"), ctx)))


def test_multi_frequency_record_resamples_each_lead_from_its_own_rate(wfdb_dir, tmp_path, ctx):
    r = wfdb.rdrecord(str(wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06003"))
    e = [r.p_signal[:, i] for i in range(12)]
    e[1] = resample_poly(r.p_signal[:, 1], 2, 1)  # lead II at 1000 Hz (2 samples per frame)
    wfdb.wrsamp(
        "mf",
        fs=r.fs,
        units=r.units,
        sig_name=r.sig_name,
        e_p_signal=e,
        samps_per_frame=[1, 2] + [1] * 10,
        fmt=["16"] * 12,
        write_dir=str(tmp_path),
    )
    rec = decode(tmp_path / "mf.hea", ctx)
    written = wfdb.rdrecord(str(tmp_path / "mf"), smooth_frames=False)
    arr = array_of(rec).astype(np.float64)
    meta = json.loads(rec.meta_json)
    assert meta["lead_map"]["II"]["rate_hz"] == 1000.0 and meta["lead_map"]["I"]["rate_hz"] == 500.0
    np.testing.assert_allclose(arr[1], reference_500(written.e_p_signal[1], 1000), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(arr[0], written.e_p_signal[0][:5000], rtol=1e-3, atol=1e-3)
    assert rec.original_rate_hz == 1000.0


# --- multi-segment -------------------------------------------------------------------------------


def _write_segments(r: wfdb.Record, tmp_path: Path, gap: bool = False) -> Path:
    """Split a real record into two segments; with ``gap`` the second is a ``~`` null segment
    of a variable-layout record (layout header + segments), as in PhysioNet's MIMIC waveforms."""
    half = r.sig_len // 2
    for k, part in enumerate([r.d_signal[:half], r.d_signal[half:]], start=1):
        if gap and k == 2:
            continue
        write_digital(tmp_path / f"seg_{k}", r, part, list(r.sig_name))
    if not gap:
        text = f"msrec/2 12 {r.fs:g} {r.sig_len}\nseg_1 {half}\nseg_2 {r.sig_len - half}\n"
    else:
        layout = [f"layout 12 {r.fs:g} 0"]
        layout += [f"~ 16 {r.adc_gain[0]:g}({r.baseline[0]})/mV 16 0 0 0 0 {n}" for n in r.sig_name]
        (tmp_path / "layout.hea").write_text("\n".join(layout) + "\n")
        text = f"msrec/3 12 {r.fs:g} {r.sig_len}\nlayout 0\nseg_1 {half}\n~ {r.sig_len - half}\n"
    (tmp_path / "msrec.hea").write_text(text)
    return tmp_path / "msrec.hea"


def test_multi_segment_record_equals_the_single_record(wfdb_dir, tmp_path, ctx):
    src = wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06000"
    r = wfdb.rdrecord(str(src), physical=False)
    hea = _write_segments(r, tmp_path)
    assert segment_headers(str(hea)) == [str(tmp_path / "seg_1.hea"), str(tmp_path / "seg_2.hea")]
    multi = decode(hea, ctx)
    single = decode(src.with_suffix(".hea"), ctx)
    np.testing.assert_array_equal(array_of(multi), array_of(single))
    assert json.loads(multi.meta_json)["source"]["record_kind"] == "multi_segment"


@pytest.mark.parametrize("missing", ["seg_2.dat", "seg_2.hea"])
def test_multi_segment_record_with_a_missing_segment_is_quarantined(missing, wfdb_dir, tmp_path, ctx):
    r = wfdb.rdrecord(str(wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06000"), physical=False)
    hea = _write_segments(r, tmp_path)
    (tmp_path / missing).unlink()
    with pytest.raises(QuarantineError) as exc:
        decode_wfdb(item_for(hea, ctx.pseudo), ctx)
    assert exc.value.reason == ReasonCode.ECG_SIGNAL_MISSING
    assert "1 of 2 segments missing" in exc.value.message


def test_multi_segment_gap_segment_becomes_nan_and_flagged(wfdb_dir, tmp_path, ctx):
    r = wfdb.rdrecord(str(wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06000"), physical=False)
    rec = decode(_write_segments(r, tmp_path, gap=True), ctx)
    # the layout header on its own holds no samples: a specific quarantine, not a crash
    with pytest.raises(QuarantineError) as exc:
        decode_wfdb(item_for(tmp_path / "layout.hea", ctx.pseudo), ctx)
    assert exc.value.reason == ReasonCode.ECG_SIGNAL_MISSING
    arr = array_of(rec).astype(np.float64)
    assert not np.isnan(arr[:, :2490]).any()
    assert np.isnan(arr[:, 2510:]).all()
    assert {f"nan:{lead}" for lead in ECG_LEADS} <= set(rec.qc_flags)


def test_fixed_layout_null_segment_is_a_specific_quarantine(wfdb_dir, tmp_path, ctx):
    r = wfdb.rdrecord(str(wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06000"), physical=False)
    write_digital(tmp_path / "seg_1", r, r.d_signal[:2500], list(r.sig_name))
    (tmp_path / "fixed.hea").write_text("fixed/2 12 500 5000\nseg_1 2500\n~ 2500\n")
    with pytest.raises(QuarantineError) as exc:
        decode_wfdb(item_for(tmp_path / "fixed.hea", ctx.pseudo), ctx)
    assert exc.value.reason == ReasonCode.ECG_SIGNAL_CORRUPT


# --- QC ------------------------------------------------------------------------------------------


def _qc_copy(wfdb_dir: Path, tmp_path: Path, edit) -> EcgRecord:
    r = wfdb.rdrecord(str(wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06004"), physical=False)
    d = r.d_signal.astype(np.int64)
    kw = edit(d) or {}
    return write_digital(tmp_path / "qc", r, d, list(r.sig_name), **kw)


def test_qc_flags_nan_flat_and_clipping(wfdb_dir, tmp_path, ctx):
    def edit(d):
        d[1000:1100, 1] = -32768  # WFDB invalid samples in lead II
        d[:, 7] = d[0, 7]  # V2 flat
        lim = np.percentile(np.abs(d[:, 8]), 90)
        d[:, 8] = np.clip(d[:, 8], -lim, lim)  # V3 saturated at +-lim
        return None

    rec = decode(_qc_copy(wfdb_dir, tmp_path, edit), ctx)
    flags = set(rec.qc_flags)
    assert {"nan:II", "flat:V2", "clipped:V3"} <= flags
    assert not any(f.endswith(":I") or f.endswith(":V6") for f in flags)
    arr = array_of(rec).astype(np.float64)
    nan_cols = np.flatnonzero(np.isnan(arr[1]))
    assert nan_cols.min() == 1000 and nan_cols.max() == 1099  # NaN stays where it was, no smearing


def test_qc_clipping_at_the_adc_limits_of_format_212(wfdb_dir, tmp_path, ctx):
    def edit(d):
        d[:, 4] = np.clip(d[:, 4] * 40, -2047, 2047)  # aVL driven into the 12-bit converter's rails
        return {"fmt": ["212"] * 12}

    flags = set(decode(_qc_copy(wfdb_dir, tmp_path, edit), ctx).qc_flags)
    assert "clipped:aVL" in flags


def test_clean_real_records_have_no_signal_qc_flags(wfdb_dir, ctx):
    for rel in REAL:
        flags = decode(wfdb_dir / f"{rel}.hea", ctx).qc_flags
        assert not [f for f in flags if f.split(":")[0] in ("nan", "flat", "clipped")], rel


def test_every_lead_flat_is_quarantined(wfdb_dir, tmp_path, ctx):
    def edit(d):
        d[:] = 5

    with pytest.raises(QuarantineError) as exc:
        decode_wfdb(item_for(_qc_copy(wfdb_dir, tmp_path, edit), ctx.pseudo), ctx)
    assert exc.value.reason == ReasonCode.ECG_QC_FAILED


def test_short_record_is_padded_with_nan(wfdb_dir, tmp_path, ctx):
    r = wfdb.rdrecord(str(wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06001"), physical=False)
    hea = write_digital(tmp_path / "short", r, r.d_signal[:1500], list(r.sig_name))
    rec = decode(hea, ctx)
    arr = array_of(rec).astype(np.float64)
    assert "padded" in rec.qc_flags
    assert not np.isnan(arr[:, :1500]).any() and np.isnan(arr[:, 1500:]).all()
    assert json.loads(rec.meta_json)["convention"]["window"]["padded_s"] == 7.0


def test_partial_leads_policy_quarantine(wfdb_dir, pseudo):
    ctx = WorkerContext(pseudo=pseudo, ecg=EcgConfig(partial_leads="quarantine"))
    with pytest.raises(QuarantineError) as exc:
        decode_wfdb(item_for(wfdb_dir / "mitdb_100" / "100.hea", pseudo), ctx)
    assert exc.value.reason == ReasonCode.ECG_LEADS_MISSING
    assert decode(wfdb_dir / "ptbxl_100hz" / "00001_lr.hea", ctx).qc_flags == ()


def test_no_standard_lead_is_quarantined(wfdb_dir, tmp_path, ctx):
    r = wfdb.rdrecord(str(wfdb_dir / "ptbdb_s0010_re" / "s0010_re"), physical=False, channels=[12, 13, 14])
    hea = write_digital(tmp_path / "frank", r, r.d_signal, ["vx", "vy", "vz"])
    with pytest.raises(QuarantineError) as exc:
        decode_wfdb(item_for(hea, ctx.pseudo), ctx)
    assert exc.value.reason == ReasonCode.ECG_LEADS_MISSING


# --- broken inputs -------------------------------------------------------------------------------


def test_missing_signal_file(wfdb_dir, tmp_path, ctx):
    hea = copy_record(wfdb_dir / "ptbdb_s0010_re" / "s0010_re.hea", tmp_path)
    (tmp_path / "s0010_re.xyz").unlink()
    with pytest.raises(QuarantineError) as exc:
        decode_wfdb(item_for(hea, ctx.pseudo), ctx)
    assert exc.value.reason == ReasonCode.ECG_SIGNAL_MISSING
    assert "1 of 2 signal files" in exc.value.message


def test_truncated_signal_file(wfdb_dir, tmp_path, ctx):
    hea = copy_record(wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06000.hea", tmp_path)
    mat = tmp_path / "HR06000.mat"
    mat.write_bytes(mat.read_bytes()[:30000])
    with pytest.raises(QuarantineError) as exc:
        decode_wfdb(item_for(hea, ctx.pseudo), ctx)
    assert exc.value.reason == ReasonCode.ECG_SIGNAL_CORRUPT


@pytest.mark.parametrize(
    "text",
    [
        "HR06000 12 five hundred 5000\n",
        "HR06000 12 0 5000\nHR06000.mat 16x1+24 1000.0(0)/mv 16 0 10 23323 0 I\n",
    ],
)
def test_invalid_header(text, wfdb_dir, tmp_path, ctx):
    hea = copy_record(wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06000.hea", tmp_path)
    hea.write_text(text)
    with pytest.raises(QuarantineError) as exc:
        decode_wfdb(item_for(hea, ctx.pseudo), ctx)
    assert exc.value.reason == ReasonCode.ECG_HEADER_INVALID


# --- de-identification of header comments --------------------------------------------------------

CANARY_COMMENTS = [
    "Age: 93",
    "Sex: M",
    "Patient name: Zyxwvut Canaryson",
    "Patient ID: 0012345",
    "ECG date: 12/03/2001",
    "Referring physician: Dr Qqcanary",
    "Additional medication: aspirin, ordered by Dr Qqcanary",
    "Reason for admission: chest pain",
    "Hometown: Canaryville",
    "Recorded at Canary General on 2001-03-12",
]


def test_header_comment_phi_is_removed_and_audited_by_name(wfdb_dir, tmp_path, ctx):
    r = wfdb.rdrecord(str(wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06000"), physical=False)
    when = datetime(2001, 3, 12, 10, 11, 12)
    hea = write_digital(
        tmp_path / "HR06000",
        r,
        r.d_signal,
        list(r.sig_name),
        comments=CANARY_COMMENTS,
        base_date=when.date(),
        base_time=when.time(),
    )
    rec = decode(hea, ctx)
    out = rec.meta_json + rec.patient + rec.study + rec.acquired_at
    for canary in ("Canary", "canary", "0012345", "12345", "12/03/2001", "2001-03-12", "Zyxwvut"):
        assert canary not in out
    meta = json.loads(rec.meta_json)
    assert meta["header"]["age"] == "90+" and meta["deid"]["age_over_89_capped"] is True
    assert meta["header"]["sex"] == "male"
    assert meta["header"]["fields"] == {"reason_for_admission": "chest pain"}
    assert meta["deid"]["removed"] == {
        "additional_medication": "name_in_value",
        "ecg_date": "temporal_field",
        "patient_id": "pseudonymised",
        "patient_name": "identifying_field",
        "referring_physician": "identifying_field",
    }
    assert meta["deid"]["unlisted_fields_dropped"] == 1 and meta["deid"]["free_text_lines_dropped"] == 1
    # the header's patient id links this ECG to the patient; its date is shifted by that patient
    assert rec.patient == ctx.pseudo.patient("12345")
    assert rec.acquired_at == ctx.pseudo.shift_datetime(when, rec.patient).isoformat()
    assert meta["deid"]["base_datetime"] == "shifted"


def test_base_datetime_dropped_without_patient(wfdb_dir, tmp_path, ctx):
    r = wfdb.rdrecord(str(wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06000"), physical=False)
    when = datetime(2001, 3, 12, 10, 11, 12)
    hea = write_digital(
        tmp_path / "HR06000", r, r.d_signal, list(r.sig_name), base_date=when.date(), base_time=when.time()
    )
    rec = decode(hea, ctx)
    assert rec.acquired_at == "" and rec.patient == ""
    assert json.loads(rec.meta_json)["deid"]["base_datetime"] == "dropped_no_patient"


def test_mitdb_free_text_comment_gives_age_and_sex_only():
    header, audit, patient = parse_header_comments(
        ["unnecessary comment", "69 M 1085 1629 x1", "Aldomet, Inderal"]
    )
    assert header == {"age": "69", "sex": "male"} and patient == ""
    assert audit["free_text_lines_dropped"] == 3 and audit["age_sex_from_free_text"] is True


# --- contract ------------------------------------------------------------------------------------


def test_record_contract_and_determinism(wfdb_dir, ctx):
    hea = wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06003.hea"
    a, b = decode(hea, ctx), decode(hea, ctx)
    assert a == b and a.payload == b.payload and a.meta_json == b.meta_json
    item = item_for(hea, ctx.pseudo)
    assert a.record_id == ctx.pseudo.token("record", item.source_id) and a.source_ids == (item.source_id,)
    arr = array_of(a)
    h = hashlib.sha256()
    h.update(arr.dtype.str.encode())
    h.update(repr(arr.shape).encode())
    h.update(arr.tobytes())
    assert a.content_sha256 == h.hexdigest()
    assert a.content_sha256 != decode(wfdb_dir / "ptbxl_500hz_cinc2021" / "HR06004.hea", ctx).content_sha256
    assert json.loads(a.meta_json) and a.meta_json == json.dumps(
        json.loads(a.meta_json), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
