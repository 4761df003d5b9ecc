"""Embedders + LSH on test sets made from real sample files, against brute-force ground truth.

Variants of real DICOM images (re-encoded, re-windowed, resized, noisy, new UIDs/headers),
real PTB-XL ECGs (gain change, noise, re-written under a new record name) and real PTB-XL
reports (whitespace/case changes) are decoded by the real workers, embedded, and searched with
the LSH tier; precision/recall are measured against brute-force all-pairs cosine at the
threshold the build uses. The dedup policy on top (verdicts per patient) is
``tests/pipelines/test_dedup.py``.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import wfdb

from pipelines.config import DedupConfig
from schemas.modality import Modality
from schemas.records import InputKind
from tests.fixtures.dedup_variants import (
    image_variant_records,
    input_item,
    ptbxl_report_texts,
    report_record,
)
from workers.embed.embedders import TextEmbedder, ThumbnailEmbedder
from workers.embed.lsh import LshConfig, brute_force_pairs, near_duplicate_pairs


@pytest.fixture(scope="module")
def image_records(shared_data, tmp_path_factory):
    return image_variant_records(shared_data, tmp_path_factory.mktemp("dicom_variants"))


def _pr(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    f, t = set(map(tuple, found.tolist())), set(map(tuple, truth.tolist()))
    tp = len(f & t)
    return (tp / len(f) if f else 1.0), (tp / len(t) if t else 1.0)


def _same_origin_pairs(origin: list) -> set[tuple[int, int]]:
    n = len(origin)
    return {(i, j) for i in range(n) for j in range(i + 1, n) if origin[i] == origin[j]}


def test_image_near_duplicates_real_variants(image_records):
    records, origin = image_records
    emb = ThumbnailEmbedder(Modality.IMAGE)(records)
    assert emb.shape == (len(records), 2048)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    thr = DedupConfig().image_threshold
    lsh, _ = near_duplicate_pairs(emb, LshConfig(threshold=thr))
    truth = brute_force_pairs(emb, thr)
    precision, recall = _pr(lsh, truth)
    assert precision >= 0.99 and recall >= 0.99
    # the intended duplicates are found, the different images are not confused
    same = _same_origin_pairs(origin)
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
            item = input_item(hea, ctx.pseudo, InputKind.WFDB, [str(tmp_path / f"{name}.dat")])
            records.append(decode_wfdb(item, ctx)[0])
            origin.append(n)
    emb = ThumbnailEmbedder(Modality.ECG)(records)
    assert emb.shape == (len(records), 3000) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    thr = DedupConfig().ecg_threshold
    lsh, _ = near_duplicate_pairs(emb, LshConfig(threshold=thr))
    precision, recall = _pr(lsh, brute_force_pairs(emb, thr))
    assert precision >= 0.99 and recall >= 0.99
    found = set(map(tuple, lsh.tolist()))
    same = _same_origin_pairs(origin)
    assert found & same == same
    assert not any(origin[i] != origin[j] for i, j in found)


def test_report_variants_exact_and_near(shared_data):
    recs, origin = [], []
    for i, t in enumerate(ptbxl_report_texts(shared_data)):
        for j, v in enumerate((t, "  " + t.upper() + "\n", t.replace(" ", "  "))):
            recs.append(report_record(v, f"r{i:03d}v{j}", f"p{i}"))
            origin.append(i)
    emb = TextEmbedder()(recs)
    assert emb.shape == (len(recs), 384) and emb.dtype == np.float32
    thr = DedupConfig().report_threshold
    lsh, _ = near_duplicate_pairs(emb, LshConfig(threshold=thr))
    precision, recall = _pr(lsh, brute_force_pairs(emb, thr))
    assert precision >= 0.99 and recall >= 0.99
    found = set(map(tuple, lsh.tolist()))
    assert found >= _same_origin_pairs(origin)  # case/whitespace variants normalise to the same text
