"""Link item records into sample groups.

Skeleton rule: records that share a pseudonymous study key (accession / StudyInstanceUID /
link id such as PTB-XL's ecg_id) form one sample; a record without a study is a sample of its
own. The sample's patient is the records' common patient pseudonym. Declarative rules
(patient + time windows, e.g. Symile-MIMIC's) extend this in ``pipelines.link_rules``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from schemas.records import ItemRecord


@dataclass(frozen=True)
class SampleGroup:
    """Records that become one sample. ``group_key`` is pseudonymous and dot-free."""

    group_key: str
    patient: str
    study: str
    records: tuple[ItemRecord, ...]
    patient_conflict: bool = False


def link_by_study(records: list[ItemRecord]) -> list[SampleGroup]:
    """Group by ``study`` (non-empty) else by ``record_id``; deterministic order by group key."""
    groups: dict[str, list[ItemRecord]] = defaultdict(list)
    for rec in records:
        groups[f"study-{rec.study}" if rec.study else f"record-{rec.record_id}"].append(rec)
    out = []
    for key in sorted(groups):
        recs = sorted(groups[key], key=lambda r: (r.modality.value, r.acquired_at, r.record_id))
        patients = sorted({r.patient for r in recs if r.patient})
        out.append(
            SampleGroup(
                group_key=key,
                patient=patients[0] if patients else "",
                study=recs[0].study,
                records=tuple(recs),
                patient_conflict=len(patients) > 1,
            )
        )
    return out


def link_key(rec: ItemRecord) -> str:
    """Skeleton link key: the study when known, else the record itself."""
    return f"study-{rec.study}" if rec.study else f"record-{rec.record_id}"


def link_group(key: str, recs: list[ItemRecord]) -> list[SampleGroup]:
    """Records sharing a link key → sample group(s); picklable for any runner's ``group_map``."""
    recs = sorted(recs, key=lambda r: (r.modality.value, r.acquired_at, r.record_id))
    patients = sorted({r.patient for r in recs if r.patient})
    return [
        SampleGroup(
            group_key=key,
            patient=patients[0] if patients else "",
            study=recs[0].study,
            records=tuple(recs),
            patient_conflict=len(patients) > 1,
        )
    ]
