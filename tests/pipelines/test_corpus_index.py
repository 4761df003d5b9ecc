"""Cross-set deduplication for appends (pipelines/corpus_index.py), on real sample data.

Two daily sets are built into one corpus root with the real pipeline (PTB-XL report rows and
ECGs, pydicom sample images): day 2 re-exports part of day 1, corrects one report, carries a
report text of day 1 under another patient and an image of day 1 under another patient.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
import pytest

from pipelines.build import run_build
from pipelines.config import config_from_dict
from pipelines.corpus_index import (
    CROSSSET,
    INDEX,
    PRIOR,
    SUPERSEDES,
    index_row_order,
    latest_view,
    prior_index,
)
from pipelines.dedup import DEDUP
from pipelines.manifest import MANIFEST, QUARANTINE
from pipelines.publish import CheckFailed, CorpusRoot, publish_set, read_index
from pipelines.validate import validate_build
from tests.conftest import EXAMPLES

CONFIG = {
    "deid": {"demo": True},
    "sources": [
        {
            "name": "reports",
            "path": "reports",
            "licence": "CC-BY-4.0",
            "report": {
                "columns": {
                    "report_id": "ecg_id",
                    "patient_id": "patient_id",
                    "study_id": "ecg_id",
                    "timestamp": "recording_date",
                    "text": ["report"],
                    "report_type": "cardiology",
                }
            },
        },
        {"name": "ecg", "path": "ecg", "licence": "CC-BY-4.0", "ecg": {"study_id_pattern": "(\\d+)"}},
        {"name": "dicom", "path": "dicom", "licence": "MIT"},
    ],
    "shards": {"max_samples": 8},
    "workers": 1,
    "strict": True,
}
D1, D2, D3 = "2026-01-01", "2026-01-02", "2026-01-03"
D2B = "2026-01-02-redelivered"  # day 2's export delivered again, built before day 2 was published
CORRECTED = "6000"  # its ECG (HR06000) is in both days; its report is corrected on day 2


def _rows() -> tuple[list[str], list[dict]]:
    with open(EXAMPLES / "reports" / "ptbxl_reports.csv", newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    path.write_text(buf.getvalue())


def _copy(rel: str, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(EXAMPLES / rel, dst)


def _day1(src: Path) -> None:
    fields, rows = _rows()
    _write_csv(src / "reports" / "reports.csv", fields, rows[0:10])
    for ext in ("hea", "mat"):
        _copy(f"ecg/ptbxl_500hz/HR06000.{ext}", src / "ecg" / f"HR06000.{ext}")
    _copy("dicom/ct/CT_small.dcm", src / "dicom" / "CT_small.dcm")
    _copy("dicom/mr/MR_small.dcm", src / "dicom" / "MR_small.dcm")


def _day2(src: Path) -> None:
    fields, rows = _rows()
    again = [dict(r) for r in rows[5:10]]  # re-exported unchanged: 5 duplicates
    corrected = dict(next(r for r in rows if r["ecg_id"] == CORRECTED))
    corrected["report"] = "sinus rhythm. left anterior fascicular block. corrected: no t wave changes."
    template = dict(rows[0]) | {"ecg_id": "99998", "patient_id": "424242.0"}  # day 1's text, another patient
    new = [dict(r) for r in rows[10:14]]
    # day 1's report of study 6002 again, one word edited, under a new study of the same patient:
    # a near-duplicate (not an exact one) of a published record → duplicate
    near = dict(rows[3]) | {"ecg_id": "99997"}
    assert "physiological" in near["report"]
    near["report"] = near["report"].replace("physiological", "physiologic")
    _write_csv(src / "reports" / "reports.csv", fields, [*again, corrected, template, *new, near])
    for ext in ("hea", "mat"):
        _copy(f"ecg/ptbxl_500hz/HR06000.{ext}", src / "ecg" / f"HR06000.{ext}")
    _copy("dicom/ct/CT_small.dcm", src / "dicom" / "CT_small.dcm")  # re-exported: duplicate
    ds = pydicom.dcmread(EXAMPLES / "dicom" / "mr" / "MR_small.dcm")
    ds.PatientID = "OTHER-PATIENT-77"  # the same pixels under another patient: a conflict
    (src / "dicom").mkdir(parents=True, exist_ok=True)
    ds.save_as(src / "dicom" / "MR_small.dcm")


def _build_set(root: Path, src: Path, version: str):
    corpus = CorpusRoot(root)
    run_build(src, corpus.build_dir(version), config_from_dict(CONFIG), quiet=True, prior=prior_index(root))
    return corpus.build_dir(version)


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus") / "root"
    src1, src2 = tmp_path_factory.mktemp("day1"), tmp_path_factory.mktemp("day2")
    _day1(src1)
    _day2(src2)
    _build_set(root, src1, D1)
    publish_set(root, D1)
    b2 = _build_set(root, src2, D2)
    assert validate_build(b2).ok, validate_build(b2).errors  # accounting identity incl. cross-set removals
    _build_set(root, src2, D2B)
    publish_set(root, D2)
    return root


def test_first_set_writes_a_full_index_segment(corpus: Path) -> None:
    s1 = CorpusRoot(corpus).set_dir(D1)
    index = pq.read_table(s1 / INDEX).to_pylist()
    manifest = pq.read_table(s1 / MANIFEST).to_pylist()
    written = {rid for r in manifest for rid in r["record_ids"]}
    assert {r["record_id"] for r in index} == written  # every written record, nothing else
    assert all(r["vector"] is not None and r["bands"] for r in index)  # near tier usable later
    assert {r["modality"] for r in index} == {"report", "ecg", "image"}
    assert all(r["patient"].startswith("p") for r in index if r["modality"] == "report")
    xs = json.loads((s1 / CROSSSET).read_text())
    assert xs["segments"] == [] and xs["index_rows"] == xs["index_vectors"] == len(index)
    # the rows, built as tables in the workers, are merged in the segment's order
    assert [index_row_order(r) for r in index] == sorted(index_row_order(r) for r in index)


def test_append_removes_duplicates_flags_templates_quarantines_conflicts(corpus: Path) -> None:
    s2 = CorpusRoot(corpus).set_dir(D2)
    xs = json.loads((s2 / CROSSSET).read_text())
    assert xs["segments"] == [D1]
    against = xs["against_published"]
    assert against["report"]["duplicate"] == 6  # 5 re-exported + 1 near-duplicate
    # templates: day 1's first text under another patient, and the two new reports reading
    # "sinusrhythmus normales ekg", which day 1 holds under two other patients
    assert against["report"]["template"] == 3
    assert against["image"] == {"conflict": 1, "duplicate": 1}
    assert against["ecg"] == {"supersedes": 1}  # republished with its corrected study
    q = pq.read_table(s2 / QUARANTINE).to_pylist()
    assert [r["reason"] for r in q if r["stage"] == "dedup"] == ["conflicting_patient"]
    stats = json.loads((s2 / "stats.json").read_text())
    assert stats["per_modality"]["report"]["deduplicated"] == 6
    assert stats["per_modality"]["image"]["deduplicated"] == 1
    # the published members of day 2's clusters are named, with their version
    prior = pq.read_table(s2 / PRIOR).to_pylist()
    assert {r["version"] for r in prior} == {D1} and len(prior) >= 8
    # dedup.parquet holds day 2's records only
    d2_rows = pq.read_table(s2 / DEDUP).to_pylist()
    assert "prior" not in {r["verdict"] for r in d2_rows}
    (near,) = [r for r in d2_rows if r["tier"] == "near"]  # verified by cosine in the lookup
    assert near["verdict"] == "duplicate" and 0.97 <= near["cosine"] < 1.0
    assert near["cluster_id"] in {r["cluster_id"] for r in prior}


def test_corrected_report_supersedes_and_latest_view(corpus: Path) -> None:
    c = CorpusRoot(corpus)
    sup = pq.read_table(c.set_dir(D2) / SUPERSEDES).to_pylist()
    assert len(sup) == 1
    (row,) = sup
    assert row["supersedes_version"] == D1 and row["supersedes_key"] == row["key"]
    m2 = {r["key"]: r for r in pq.read_table(c.set_dir(D2) / MANIFEST).to_pylist()}
    assert sorted(m2[row["key"]]["modalities"]) == ["ecg", "report"]  # the whole study, corrected
    m1 = {r["key"] for r in pq.read_table(c.set_dir(D1) / MANIFEST).to_pylist()}
    view = {r["key"]: r["version"] for r in latest_view(corpus).to_pylist()}
    assert set(view) == m1 | set(m2)  # every study once
    assert view[row["key"]] == D2
    assert all(view[k] == D1 for k in m1 - set(m2))
    # day 2's new samples are the corrected study, the template report and the 4 new reports
    assert len(m2) == 6 and len(set(m2) & m1) == 1


def test_index_grows_only_on_publish_and_reruns_never_copy(corpus: Path, tmp_path: Path) -> None:
    c = CorpusRoot(corpus)
    assert [v for v, _ in prior_index(corpus).segments] == [D1, D2]
    # publishing again: a no-op
    again = publish_set(corpus, D2)
    assert again.already_published and len(read_index(corpus)["versions"]) == 2
    before = _tree(corpus / "sets") | {"versions.json": _tree(corpus)["versions.json"]}
    # a failing day: every input unreadable → the quarantine gate refuses it
    bad = tmp_path / "bad"
    _copy("quarantine_demo/corrupt.dcm", bad / "dicom" / "corrupt.dcm")
    (bad / "reports").mkdir()
    (bad / "ecg").mkdir()
    _build_set(corpus, bad, D3)
    with pytest.raises(CheckFailed):
        publish_set(corpus, D3)
    after = _tree(corpus / "sets") | {"versions.json": _tree(corpus)["versions.json"]}
    assert after == before  # the published corpus is untouched
    assert [v for v, _ in prior_index(corpus).segments] == [D1, D2]  # the failed day is not indexed
    assert (c.build_dir(D3) / INDEX).exists()  # its segment exists, unpublished: never read


def test_a_set_built_before_another_was_published_is_refused_then_rebuilt(corpus: Path) -> None:
    c = CorpusRoot(corpus)
    with pytest.raises(CheckFailed, match="rerun build-set"):
        publish_set(corpus, D2B)
    assert not c.is_published(D2B)
    src = c.build_dir(D2B).parent.parent.parent / "redelivered"
    _day2(src)
    _build_set(corpus, src, D2B)  # resumes in place, now against day 1 and day 2
    res = publish_set(corpus, D2B)
    xs = json.loads((res.set_dir / CROSSSET).read_text())
    assert xs["segments"] == [D1, D2]
    # the same export again: nothing new is written, everything is a duplicate or a conflict
    assert res.entry["n_samples"] == 0
    assert xs["against_published"]["report"] == {"duplicate": 12}
    view = latest_view(corpus).to_pylist()
    assert len(view) == len({r["key"] for r in view})


def test_lookup_reads_only_the_row_groups_of_its_matches(tmp_path: Path) -> None:
    import numpy as np
    import pyarrow as pa

    from pipelines.corpus_index import INDEX_SCHEMA, SEGMENT_ROW_GROUP, _read_rows, write_segment

    n = 2 * SEGMENT_ROW_GROUP + 952
    rows = [
        {
            "modality": "report",
            "ckey": f"{i:064x}",
            "record_id": str(i),
            "patient": f"p{i % 7}",
            "study": f"s{i}",
            "acquired_at": "",
            "key": f"k{i}",
            "vector": i.to_bytes(4, "little"),
            "bands": [i, i + 1],
        }
        for i in range(n)
    ]
    table = pa.Table.from_pylist(rows, schema=INDEX_SCHEMA)
    write_segment(tmp_path / INDEX, table)
    assert pq.ParquetFile(tmp_path / INDEX).num_row_groups == 3
    for sel in ([0], [5, SEGMENT_ROW_GROUP - 1, SEGMENT_ROW_GROUP, n - 1], list(range(0, n, 97))):
        assert _read_rows(str(tmp_path / INDEX), np.array(sel)) == table.take(pa.array(sel)).to_pylist()
