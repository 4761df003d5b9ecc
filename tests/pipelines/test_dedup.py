"""Dedup tiers on a test set made from real sample files, against brute-force ground truth.

Variants of real DICOM images (re-encoded, re-windowed, resized, noisy, new UIDs/headers),
real PTB-XL ECGs (gain change, noise, re-sampled copy under a new record name) and real PTB-XL
reports (whitespace/case/placeholder changes) are decoded by the real workers, embedded, and
searched with the LSH tier; precision/recall are measured against brute-force all-pairs
cosine at the same threshold.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
import wfdb
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pipelines.config import DedupConfig
from pipelines.dedup import run_dedup
from pipelines.link import SampleGroup
from pipelines.runners.local import LocalFlow
from schemas.modality import Modality
from schemas.records import ImageRecord, InputItem, InputKind, ReportRecord
from workers.embed.embedders import TextEmbedder, ThumbnailEmbedder
from workers.embed.lsh import LshConfig, brute_force_pairs, near_duplicate_pairs


def _item(path: Path, pseudo, kind=InputKind.DICOM, companions=()) -> InputItem:
    return InputItem(
        pseudo.source_id(path.name), str(path), kind, "test", "MIT", path.stat().st_size, tuple(companions)
    )


def _as_2d(ds: pydicom.Dataset) -> pydicom.Dataset:
    for kw in ("ImagePositionPatient", "ImageOrientationPatient"):
        if kw in ds:
            delattr(ds, kw)
    return ds


def _dicom_variants(src: Path, out: Path, tag: str) -> list[Path]:
    """Original + re-encoded/re-windowed/resized/noisy/new-UID copies of one real image."""
    ds = _as_2d(pydicom.dcmread(src))
    arr = ds.pixel_array
    ds.PixelData = arr.tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PhotometricInterpretation = ds.PhotometricInterpretation
    paths = []

    def save(d, name):
        p = out / f"{tag}_{name}.dcm"
        d.save_as(p, enforce_file_format=True)
        paths.append(p)

    save(ds, "orig")
    d = pydicom.dcmread(paths[0])
    d.WindowCenter, d.WindowWidth = 40, 400
    d.SOPInstanceUID, d.SeriesInstanceUID = generate_uid(), generate_uid()
    save(d, "rewindowed_newuids")
    d = pydicom.dcmread(paths[0])
    small = arr[::2, ::2].copy()
    d.Rows, d.Columns, d.PixelData = small.shape[0], small.shape[1], small.tobytes()
    save(d, "resized")
    d = pydicom.dcmread(paths[0])
    rng = np.random.default_rng(1)
    noisy = arr.astype(np.float64) + rng.normal(0, 0.01 * arr.std(), arr.shape)
    d.PixelData = np.clip(noisy, np.iinfo(arr.dtype).min, np.iinfo(arr.dtype).max).astype(arr.dtype).tobytes()
    save(d, "noisy")
    return paths


@pytest.fixture(scope="module")
def image_records(shared_data, tmp_path_factory):
    from workers.context import WorkerContext
    from workers.deid.pseudonym import Pseudonymizer
    from workers.dicom.decode import decode_dicom

    ctx = WorkerContext(pseudo=Pseudonymizer("dedup-test-secret-0123"))
    out = tmp_path_factory.mktemp("dicom_variants")
    sources = {
        "ct": shared_data / "dicom/ct/CT_small.dcm",
        "mr": shared_data / "dicom/mr/MR_small.dcm",
        "s1": sorted((shared_data / "dicom/ct/totalsegmentator_siemens_ct_series").iterdir())[3],
        "s2": sorted((shared_data / "dicom/ct/totalsegmentator_siemens_ct_series").iterdir())[16],
    }
    records, origin = [], []
    for tag, src in sources.items():
        for p in _dicom_variants(src, out, tag):
            recs = [r for r in decode_dicom(_item(p, ctx.pseudo), ctx) if isinstance(r, ImageRecord)]
            assert len(recs) == 1, p.name
            records.append(recs[0])
            origin.append(tag)
    return records, origin


def _pr(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    f, t = set(map(tuple, found.tolist())), set(map(tuple, truth.tolist()))
    tp = len(f & t)
    return (tp / len(f) if f else 1.0), (tp / len(t) if t else 1.0)


def test_image_near_duplicates_real_variants(image_records):
    records, origin = image_records
    emb = ThumbnailEmbedder(Modality.IMAGE)(records)
    thr = DedupConfig().image_threshold
    lsh, _ = near_duplicate_pairs(emb, LshConfig(threshold=thr))
    truth = brute_force_pairs(emb, thr)
    precision, recall = _pr(lsh, truth)
    assert precision >= 0.99 and recall >= 0.99
    # the intended duplicates are found, the different images are not confused
    same = {(i, j) for i in range(len(origin)) for j in range(i + 1, len(origin)) if origin[i] == origin[j]}
    found = set(map(tuple, lsh.tolist()))
    assert len(found & same) / len(same) >= 0.9
    assert not any(origin[i] != origin[j] for i, j in found)


def test_ecg_near_duplicates_real_variants(shared_data, tmp_path, ctx):
    from workers.ecg.wfdb import decode_wfdb

    src = shared_data / "ecg/wfdb/ptbxl_500hz_cinc2021"
    records, origin = [], []
    for n in range(6000, 6005):
        base = f"HR0{n}"
        shutil.copy(src / f"{base}.hea", tmp_path)
        shutil.copy(src / f"{base}.mat", tmp_path)
        rec = wfdb.rdrecord(str(tmp_path / base))
        rng = np.random.default_rng(n)
        variants = {
            "orig": rec.p_signal,
            "gain": rec.p_signal * 1.1,
            "noise": rec.p_signal + rng.normal(0, 0.01, rec.p_signal.shape),
        }
        for vname, sig in variants.items():
            name = f"R{n}{vname}"
            wfdb.wrsamp(
                name,
                fs=rec.fs,
                units=rec.units,
                sig_name=rec.sig_name,
                p_signal=sig,
                fmt=["16"] * 12,
                adc_gain=[1000.0] * 12,
                baseline=[0] * 12,
                write_dir=str(tmp_path),
            )
            hea = tmp_path / f"{name}.hea"
            outs = decode_wfdb(_item(hea, ctx.pseudo, InputKind.WFDB, [str(tmp_path / f"{name}.dat")]), ctx)
            records.append(outs[0])
            origin.append(n)
    emb = ThumbnailEmbedder(Modality.ECG)(records)
    thr = DedupConfig().ecg_threshold
    lsh, _ = near_duplicate_pairs(emb, LshConfig(threshold=thr))
    precision, recall = _pr(lsh, brute_force_pairs(emb, thr))
    assert precision >= 0.99 and recall >= 0.99
    found = set(map(tuple, lsh.tolist()))
    same = {(i, j) for i in range(len(origin)) for j in range(i + 1, len(origin)) if origin[i] == origin[j]}
    assert found & same == same
    assert not any(origin[i] != origin[j] for i, j in found)


def _report(text: str, rid: str, patient: str) -> ReportRecord:
    import hashlib

    return ReportRecord(
        rid,
        Modality.REPORT,
        (f"src-{rid}",),
        "t",
        "CC-BY-4.0",
        patient,
        "",
        "",
        hashlib.sha256(text.encode()).hexdigest(),
        "{}",
        text,
        "de",
        "cardiology",
        "{}",
    )


@pytest.fixture(scope="module")
def ptbxl_texts(shared_data):
    import csv

    with open(shared_data / "reports/ptbxl_ecg/ptbxl_database_subset_partA.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    texts = []
    for r in rows:
        t = r["report"].strip()
        if len(t) > 40 and t not in texts:
            texts.append(t)
        if len(texts) == 60:
            break
    return texts


def test_report_variants_exact_and_near(ptbxl_texts):
    recs, origin = [], []
    for i, t in enumerate(ptbxl_texts):
        for j, v in enumerate((t, "  " + t.upper() + "\n", t.replace(" ", "  "))):
            recs.append(_report(v, f"r{i:03d}v{j}", f"p{i}"))
            origin.append(i)
    emb = TextEmbedder()(recs)
    thr = DedupConfig().report_threshold
    lsh, _ = near_duplicate_pairs(emb, LshConfig(threshold=thr))
    precision, recall = _pr(lsh, brute_force_pairs(emb, thr))
    assert precision >= 0.99 and recall >= 0.99
    found = set(map(tuple, lsh.tolist()))
    same = {(i, j) for i in range(len(origin)) for j in range(i + 1, len(origin)) if origin[i] == origin[j]}
    assert found >= same  # case/whitespace variants normalise to the same text


def _group(rec, patient):
    return SampleGroup(group_key=f"g-{rec.record_id}", patient=patient, study="", records=(rec,))


def test_policy_same_patient_duplicate_cross_patient_conflict(image_records, tmp_path):
    records, origin = image_records
    ct = [r for r, o in zip(records, origin, strict=True) if o == "ct"]
    mr = [r for r, o in zip(records, origin, strict=True) if o == "mr"]
    groups = [_group(r, "pA") for r in ct] + [_group(mr[0], "pB"), _group(mr[1], "pC")]
    res = run_dedup(groups, DedupConfig(), LocalFlow(1, quiet=True), str(tmp_path / "blobs"))
    verdicts = {row["record_id"]: row["verdict"] for row in res.table.to_pylist()}
    # one CT representative kept, its three variants removed as duplicates (same patient)
    assert sorted(verdicts[r.record_id] for r in ct) == ["duplicate"] * 3 + ["representative"]
    assert len(res.deduplicated_ids) == 3
    # the same MR image under two patients: a probable data error, both quarantined
    assert verdicts[mr[0].record_id] == verdicts[mr[1].record_id] == "conflict"
    assert {q.reason.value for q in res.quarantined} == {"conflicting_patient"}
    kept = {r.record_id for g in res.groups for r in g.records}
    assert kept == {r.record_id for r in ct if verdicts[r.record_id] == "representative"}


def test_template_reports_across_patients_are_kept(ptbxl_texts, tmp_path):
    tpl = "sinusrhythmus normales ekg"
    recs = [_report(tpl, f"t{i}", f"p{i}") for i in range(4)] + [_report(tpl.upper(), "t9", "p0")]
    res = run_dedup(
        [_group(r, r.patient) for r in recs], DedupConfig(), LocalFlow(1, quiet=True), str(tmp_path / "blobs")
    )
    v = {row["record_id"]: row["verdict"] for row in res.table.to_pylist()}
    assert [v[f"t{i}"] for i in range(4)] == ["template"] * 4
    assert v["t9"] == "duplicate"  # same patient p0, same normalised text
    assert sum(len(g.records) for g in res.groups) == 4 and not res.quarantined
    meta = [r.meta_json for g in res.groups for r in g.records]
    assert all('"verdict":"template"' in m for m in meta)


def test_disabled_is_identity(image_records, tmp_path):
    records, _ = image_records
    groups = [_group(r, "p") for r in records]
    res = run_dedup(groups, replace(DedupConfig(), enabled=False), LocalFlow(1, quiet=True), str(tmp_path))
    assert res.groups == groups and not res.deduplicated_ids
