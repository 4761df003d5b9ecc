"""Link item records into sample groups with declarative rules (``pipelines.config.LinkConfig``).

Two keyed group stages (GroupByKey on Beam, a shuffle on Dask):

1. by study: records sharing a pseudonymous study key (accession, StudyInstanceUID, a link id
   such as PTB-XL's ecg_id) form one group; a record without a study is a group of its own.
   The group's patient is its records' patient (an ECG file without patient IDs inherits it
   from the report row of the same study).
2. by patient: groups of one patient are merged by time windows around anchor records
   (Symile-MIMIC: ECG anchor, chest X-ray 24–72 h after), greedily, anchors in time order,
   each candidate group joining the nearest anchor whose window holds it. Then the
   ``unlinked`` policy: a group with a single modality is kept as a single-modality sample or
   dropped as a quarantine record with reason ``unlinked`` (still counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pipelines.config import LinkConfig
from schemas.reasons import ReasonCode
from schemas.records import ItemRecord, QuarantineRecord


@dataclass(frozen=True)
class SampleGroup:
    """Records that become one sample. ``group_key`` is pseudonymous and dot-free."""

    group_key: str
    patient: str
    study: str
    records: tuple[ItemRecord, ...]
    patient_conflict: bool = False
    link_rule: str = "study"

    @property
    def modalities(self) -> frozenset[str]:
        return frozenset(r.modality.value for r in self.records)


def _sorted(recs) -> tuple[ItemRecord, ...]:
    return tuple(sorted(recs, key=lambda r: (r.modality.value, r.acquired_at, r.record_id)))


def link_key(rec: ItemRecord) -> str:
    """Stage-1 key: the study when known, else the record itself."""
    return f"study-{rec.study}" if rec.study else f"record-{rec.record_id}"


def link_group(key: str, recs: list[ItemRecord]) -> list[SampleGroup]:
    """Stage 1: records sharing a study → one group (picklable for any runner's ``group_map``)."""
    recs_t = _sorted(recs)
    patients = sorted({r.patient for r in recs_t if r.patient})
    rule = "study" if key.startswith("study-") else "single"
    return [
        SampleGroup(
            group_key=key,
            patient=patients[0] if patients else "",
            study=recs_t[0].study,
            records=recs_t,
            patient_conflict=len(patients) > 1,
            link_rule=rule,
        )
    ]


def patient_key(group: SampleGroup) -> str:
    """Stage-2 key: the patient, else the group itself (no cross-group linking without a patient)."""
    return f"patient-{group.patient}" if group.patient else f"group-{group.group_key}"


def _time(group: SampleGroup, modality: str) -> datetime | None:
    times = [r.acquired_at for r in group.records if r.modality.value == modality and r.acquired_at]
    if not times:
        return None
    try:
        return datetime.fromisoformat(min(times))
    except ValueError:
        return None


class PatientLinker:
    """Stage 2 (picklable ``(key, groups) -> [SampleGroup | QuarantineRecord]``)."""

    def __init__(self, cfg: LinkConfig) -> None:
        self.cfg = cfg

    def __call__(self, key: str, groups: list[SampleGroup]) -> list[SampleGroup | QuarantineRecord]:
        groups = sorted(groups, key=lambda g: g.group_key)
        merged: dict[str, list[SampleGroup]] = {g.group_key: [g] for g in groups}
        rule_of: dict[str, str] = {g.group_key: g.link_rule for g in groups}
        absorbed: set[str] = set()
        for w in self.cfg.windows:
            anchors = [
                (t, g)
                for g in groups
                if g.group_key not in absorbed and (t := _time(g, w.anchor)) is not None
            ]
            anchors.sort(key=lambda tg: (tg[0], tg[1].group_key))
            for g in groups:
                if g.group_key in absorbed or g.modalities != {w.modality}:
                    continue
                t = _time(g, w.modality)
                if t is None:
                    continue
                best = None
                for ta, a in anchors:
                    if a.group_key == g.group_key or a.group_key in absorbed:
                        continue
                    dh = (t - ta).total_seconds() / 3600.0
                    if w.min_hours <= dh <= w.max_hours and (best is None or abs(dh) < best[0]):
                        best = (abs(dh), a)
                if best is not None:
                    a = best[1]
                    merged[a.group_key].append(g)
                    absorbed.add(g.group_key)
                    rule_of[a.group_key] = f"window:{w.anchor}+{w.modality}"
        out: list[SampleGroup | QuarantineRecord] = []
        for g in groups:
            if g.group_key in absorbed:
                continue
            parts = merged[g.group_key]
            recs = _sorted(r for p in parts for r in p.records)
            new = SampleGroup(
                group_key=g.group_key,
                patient=g.patient,
                study=g.study,
                records=recs,
                patient_conflict=any(p.patient_conflict for p in parts),
                link_rule=rule_of[g.group_key],
            )
            if self.cfg.unlinked == "drop" and len(new.modalities) < 2:
                out.extend(
                    QuarantineRecord(
                        sid,
                        r.source_name,
                        r.modality,
                        "link",
                        ReasonCode.UNLINKED,
                        "no other modality linked (linking.unlinked: drop)",
                    )
                    for r in recs
                    for sid in r.source_ids
                )
            else:
                out.append(new)
        return out
