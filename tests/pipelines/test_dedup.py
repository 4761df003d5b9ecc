"""The dedup stage's patient-aware policy on records decoded from real sample files.

Exact and near-duplicate clusters become verdicts per patient: same patient, a duplicate is
removed; the same image under two patients is a conflict (quarantined); template reports
across patients are flagged and kept. The embedders and the LSH search underneath are tested
against brute-force ground truth in ``tests/workers/embed/test_near_duplicates.py``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipelines.config import DedupConfig
from pipelines.dedup import run_dedup
from pipelines.link import SampleGroup
from pipelines.runners.local import LocalFlow
from tests.fixtures.dedup_variants import image_variant_records, report_record


@pytest.fixture(scope="module")
def image_records(shared_data, tmp_path_factory):
    return image_variant_records(shared_data, tmp_path_factory.mktemp("dicom_variants"))


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


def test_template_reports_across_patients_are_kept(tmp_path):
    tpl = "sinusrhythmus normales ekg"
    recs = [report_record(tpl, f"t{i}", f"p{i}") for i in range(4)] + [report_record(tpl.upper(), "t9", "p0")]
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
