"""The scale benchmark's input generator (bench/scale_inputs.py): real libraries read what it
writes, identities are new, every ECG has one report row, and a seed gives the same bytes."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import wfdb

REPO = Path(__file__).resolve().parents[2]
N_ECG = 30


def _load_module():
    spec = importlib.util.spec_from_file_location("scale_inputs", REPO / "bench" / "scale_inputs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["scale_inputs"] = mod  # its functions are pickled by name for jobs > 1
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def gen(tmp_path_factory, shared_data):
    mod = _load_module()
    root = tmp_path_factory.mktemp("scale")
    # X-rays and a CT series at this small N: one per 10 and per 30 ECGs
    a = mod.generate(root / "a", N_ECG, seed=7, cxr_per=10, ct_per=30, shared=shared_data)
    # second run: other processes (forked) and templates already used once: same bytes expected
    b = mod.generate(root / "b", N_ECG, seed=7, cxr_per=10, ct_per=30, shared=shared_data, jobs=2)
    return mod, root / "a", root / "b", a, b


def _digest_tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "inputs.json"  # the summary holds timings
    }


def _report_rows(out: Path) -> list[dict]:
    with open(out / "reports" / "ecg_reports.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_wfdb_reads_every_record_with_new_names(gen, shared_data):
    mod, out, _, summary, _ = gen
    heads = sorted((out / "ecg").rglob("*.hea"))
    assert len(heads) == N_ECG == summary["counts"]["ecg"]
    sources = {
        s: wfdb.rdrecord(str(shared_data / mod.ECG_DIR / s), physical=False).d_signal for s in mod.ECG_SOURCES
    }
    for hea in heads:
        rec = wfdb.rdrecord(str(hea.with_suffix("")))
        assert rec.p_signal.shape == (5000, 12) and rec.fs == 500
        assert list(rec.sig_name) == list(mod.PTBXL_LEADS)
        assert rec.record_name == hea.stem and re.fullmatch(r"4\d{7}", rec.record_name)
        # MIMIC-IV-ECG layout: files/p{4 digits}/p{subject}/s{study}/{study}
        parts = hea.relative_to(out / "ecg").parts
        assert parts[0] == "files" and parts[3] == f"s{hea.stem}" and parts[2].startswith(f"p{parts[1][1:]}")
        assert np.isfinite(rec.p_signal).all() and 0.01 < np.abs(rec.p_signal).max() < 30  # mV
        digital = wfdb.rdrecord(str(hea.with_suffix("")), physical=False)
        assert list(digital.checksum) == [int(v) for v in ((digital.d_signal.sum(0) + 32768) % 65536 - 32768)]
        assert not any(np.array_equal(digital.d_signal, s) for s in sources.values())  # perturbed


def test_report_table_has_one_row_per_ecg(gen):
    _, out, _, _, _ = gen
    rows = _report_rows(out)
    names = {h.stem for h in (out / "ecg").rglob("*.hea")}
    assert len(rows) == N_ECG and {r["ecg_id"] for r in rows} == names
    for r in rows:
        assert r["report"].strip()
        pid = r["patient_id"].removesuffix(".0")
        assert r["filename_hr"].endswith(f"/p{pid}/s{r['ecg_id']}/{r['ecg_id']}")
    # several studies per patient
    assert len({r["patient_id"] for r in rows}) < N_ECG


def test_pydicom_reads_dicoms_with_new_identities(gen, shared_data):
    mod, out, _, summary, _ = gen
    patients = {r["patient_id"].removesuffix(".0") for r in _report_rows(out)}
    cxr = sorted((out / "cxr").rglob("*.dcm"))
    ct = sorted((out / "ct").rglob("CT.*"))
    assert len(cxr) == summary["counts"]["cxr"] == 3
    assert summary["counts"]["ct_series"] == 1 and len(ct) == summary["counts"]["ct_slices"] >= 6
    src_cxr = pydicom.dcmread(shared_data / mod.CXR_SOURCE, stop_before_pixels=True)
    src_ct = {
        str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID)
        for p in (shared_data / mod.CT_SERIES).iterdir()
    }
    seen_uids: set[str] = set()
    for path in cxr + ct:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
        assert arr.shape == (ds.Rows, ds.Columns) and arr.max() > 0
        assert str(ds.PatientID) in patients and str(ds.PatientName) == f"SYNTH^P{ds.PatientID}"
        assert "OtherPatientIDs" not in ds and "SourceImageSequence" not in ds
        uids = {str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)}
        assert str(ds.file_meta.MediaStorageSOPInstanceUID) == str(ds.SOPInstanceUID)
        assert not uids & src_ct
        assert not uids & {
            str(src_cxr.SOPInstanceUID),
            str(src_cxr.StudyInstanceUID),
            str(src_cxr.SeriesInstanceUID),
        }
        seen_uids.add(str(ds.SOPInstanceUID))
    assert len(seen_uids) == len(cxr) + len(ct)
    # one CT series: one study/series, positions along z, in-plane crop moved the origin
    series = [pydicom.dcmread(p, stop_before_pixels=True) for p in ct]
    assert len({str(d.SeriesInstanceUID) for d in series}) == 1
    assert len({float(d.ImagePositionPatient[2]) for d in series}) == len(series)


def test_no_source_identifiers_remain(gen, shared_data):
    mod, out, _, _, _ = gen
    blob = b"".join(p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file())
    src = pydicom.dcmread(shared_data / mod.CXR_SOURCE, stop_before_pixels=True)
    for token in (
        str(src.PatientID),  # 9RG1
        str(src.PatientName),  # CompressedSamples^RG1
        str(src.StudyInstanceUID),
        str(src.SOPInstanceUID),
        str(src.SeriesInstanceUID),
        *mod.ECG_SOURCES,  # HR06000..HR06004
        "1.3.12.2.1107.5.1.4.60064.300000221208",  # the CT series' Siemens UIDs
    ):
        assert token.encode() not in blob, token
    for ds in (pydicom.dcmread(p, stop_before_pixels=True) for p in (out / "cxr").rglob("*.dcm")):
        assert str(ds.get("PatientBirthDate")) != str(src.PatientBirthDate)
        assert str(ds.AccessionNumber) != str(src.AccessionNumber)
    _, body = mod._read_ptbxl(shared_data)
    src_patients = {r[1] for r in body}
    src_ecg_ids = {r[0] for r in body}
    rows = _report_rows(out)
    assert not {r["patient_id"] for r in rows} & src_patients
    assert not {r["ecg_id"] for r in rows} & src_ecg_ids


def test_configs_load_and_name_existing_folders(gen):
    from pipelines.config import load_config

    mod, out, _, _, _ = gen
    for name, n_sources in ((mod.CONFIG, 4), (mod.CONFIG_ECG_ONLY, 1)):
        cfg = load_config(out / name)
        assert len(cfg.sources) == n_sources
        for s in cfg.sources:
            assert (out / s.path).is_dir(), s.path
    assert load_config(out / mod.CONFIG).dedup.enabled
    assert not load_config(out / mod.CONFIG_ECG_ONLY).dedup.enabled


def test_same_seed_same_bytes(gen):
    _, a, b, sa, sb = gen
    da, db = _digest_tree(a), _digest_tree(b)
    assert da == db
    assert sa["counts"] == sb["counts"] and sa["bytes"] == sb["bytes"]


def test_other_seed_other_identities(gen, shared_data):
    mod = gen[0]
    plan_a = mod.make_plan(N_ECG, 7, 10, 30, shared_data)
    plan_b = mod.make_plan(N_ECG, 8, 10, 30, shared_data)
    assert not set(plan_a["ecg_study"].tolist()) & set(plan_b["ecg_study"].tolist())


def test_flat_layout(tmp_path, shared_data):
    mod = _load_module()
    s = mod.generate(tmp_path / "flat", 5, seed=1, cxr_per=0, ct_per=0, layout="flat", shared=shared_data)
    heads = sorted((tmp_path / "flat" / "ecg").glob("*.hea"))
    assert len(heads) == 5 == s["counts"]["ecg"]
    assert all(wfdb.rdrecord(str(h.with_suffix(""))).p_signal.shape == (5000, 12) for h in heads)
    assert not any((tmp_path / "flat" / "cxr").iterdir())
