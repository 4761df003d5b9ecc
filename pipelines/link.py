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

Or, with ``linking.anchor`` (:class:`AnchorLinker`), stage 2 builds one sample per anchor row
(a hospital admission): the patient's study groups, anchor rows and lab events meet in one
group (headers only), and each anchor takes the earliest item per modality window.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from pipelines.config import AnchorConfig, AnchorWindow, LinkConfig
from schemas.canonical import canonical_json
from schemas.modality import Modality
from schemas.reasons import ReasonCode
from schemas.records import ItemRecord, LabsRecord, QuarantineRecord


@dataclass(frozen=True)
class SampleGroup:
    """Records that become one sample. ``group_key`` is pseudonymous and dot-free."""

    group_key: str
    patient: str
    study: str
    records: tuple[ItemRecord, ...]
    patient_conflict: bool = False
    link_rule: str = "study"
    #: the build has modalities beyond the first four (labs): the mask covers them too
    extended: bool = False
    #: a split given by a split table (``train``/``val``/``test``); empty: the keyed-hash split
    split: str = ""

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


# --- anchor-based linking ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AnchorRow:
    """One anchor (an admission): pseudonymous id, patient, shifted ISO time. A header."""

    table: str
    anchor: str
    patient: str
    time: str
    licence: str = "unknown"


@dataclass(frozen=True)
class LabEvent:
    """One numeric lab value: patient, shifted ISO time, item id, value, unit. A header."""

    table: str
    patient: str
    time: str
    item: str
    value: float
    unit: str
    licence: str = "unknown"


def anchor_patient_key(element: tuple[str, object]) -> str:
    """Stage-2 key of a tagged element: ``g`` (study group), ``a`` (anchor) or ``l`` (lab event)."""
    tag, v = element
    if tag == "g":
        return patient_key(v)  # type: ignore[arg-type]
    return f"patient-{v.patient}"  # type: ignore[union-attr]


def anchor_element_order(element: tuple[str, object]) -> tuple:
    tag, v = element
    if tag == "g":
        return (0, v.group_key)  # type: ignore[union-attr]
    if tag == "a":
        return (1, v.time, v.anchor)  # type: ignore[union-attr]
    return (2, v.time, v.item, v.value, v.unit)  # type: ignore[union-attr]


def _parse(iso: str) -> datetime | None:
    try:
        return datetime.fromisoformat(iso) if iso else None
    except ValueError:
        return None


def in_window(hours: float, w: AnchorWindow) -> bool:
    """Whether an item ``hours`` after the anchor lies in the window (bounds as configured)."""
    lo_ok = hours >= w.min_hours if w.include_min else hours > w.min_hours
    hi_ok = hours <= w.max_hours if w.include_max else hours < w.max_hours
    return lo_ok and hi_ok


def _field_value(rec: ItemRecord, name: str) -> str:
    if hasattr(rec, name):
        return str(getattr(rec, name) or "")
    meta = json.loads(rec.meta_json) if rec.meta_json else {}
    return str((meta.get("table") or {}).get(name, "") or "")


def _unlinked(
    rec: ItemRecord, message: str, reason: ReasonCode = ReasonCode.UNLINKED
) -> list[QuarantineRecord]:
    return [
        QuarantineRecord(sid, rec.source_name, rec.modality, "link", reason, message)
        for sid in rec.source_ids
    ]


@dataclass
class _AnchorPool:
    """One patient's records as the anchor linker sees them."""

    # per windowed modality: (time, record id, record, study group key), sorted by (time, id)
    cands: dict[str, list[tuple[datetime, str, ItemRecord, str]]]
    riders: dict[str, list[ItemRecord]] = field(default_factory=dict)  # group key → unwindowed records
    pending: list[ItemRecord] = field(default_factory=list)  # candidates and riders, for the unlinked pass
    group_of: dict[str, SampleGroup] = field(default_factory=dict)  # record id → its study group


class AnchorLinker:
    """Stage 2 with anchors (picklable ``(key, tagged elements) -> tagged outputs``).

    Per patient: filters first (``filtered_out``), then anchors in (time, id) order; for each
    window the ``earliest`` (or ``nearest``) item not yet claimed, and for a labs window the
    earliest value of each lab item. An anchor missing a required modality makes no sample and
    claims nothing. Records of modalities without a window ride along with a chosen record of
    their study group (a CXR's report). Unclaimed records are quarantined ``unlinked`` (or kept
    as their own samples with ``linking.unlinked: keep``).

    Yields ``("group", SampleGroup)``, ``("q", QuarantineRecord)``, ``("anchor", row dict)``
    (one per anchor: what it linked, by source id) and ``("count", (table, name, n))``.
    """

    def __init__(self, cfg: AnchorConfig, unlinked: str = "drop") -> None:
        self.cfg = cfg
        self.unlinked = unlinked
        self.windows = {w.modality: w for w in cfg.windows}
        self.extended = "labs" in self.windows

    def _filter(self, rec: ItemRecord) -> str:
        """The filter a record fails (a PHI-free message), or ``""``."""
        for f in self.cfg.filters:
            if f.modality != rec.modality.value:
                continue
            if f.field and f.values:
                value = _field_value(rec, f.field).strip().upper()
                if value not in {v.strip().upper() for v in f.values}:
                    shown = "".join(ch for ch in value if ch.isalnum() or ch in " _-")[:16] or "(empty)"
                    return f"{f.field} {shown} not in the keep list"
            if f.qc_exclude:
                kinds = {flag.split(":", 1)[0] for flag in getattr(rec, "qc_flags", ())}
                hit = sorted(kinds & set(f.qc_exclude))
                if hit:
                    return f"QC flag {hit[0]} excluded by linking.anchor.filters"
        return ""

    def _pick(self, cands: list, ta: datetime, w: AnchorWindow, claimed: set[str]):
        best = None
        for t, rid, rec, gk in cands:  # sorted by (time, record id)
            if self.cfg.exclusive and rid in claimed:
                continue
            dh = (t - ta).total_seconds() / 3600.0
            if not in_window(dh, w):
                continue
            if self.cfg.pick == "earliest":
                return rec, gk
            if best is None or abs(dh) < best[0]:
                best = (abs(dh), rec, gk)
        return (best[1], best[2]) if best else None

    def _labs(self, events: list, a: AnchorRow, ta: datetime) -> LabsRecord | None:
        w = self.windows["labs"]
        first: dict[str, tuple] = {}
        for t, e in events:  # sorted by (time, item, value, unit): the first per item is the earliest
            if e.item in first:
                continue
            if in_window((t - ta).total_seconds() / 3600.0, w):
                first[e.item] = (t, e)
        if not first:
            return None
        items = sorted(first)
        vals = tuple(first[i][1].value for i in items)
        times = tuple(first[i][1].time for i in items)
        units = tuple(first[i][1].unit for i in items)
        digest = hashlib.sha256(repr((items, vals, units)).encode()).hexdigest()
        e0 = first[items[0]][1]
        meta = {
            "window_hours": [w.min_hours, w.max_hours],
            "n_items": len(items),
            "table": {"name": e0.table},
        }
        return LabsRecord(
            record_id=hashlib.sha256(f"labs|{a.anchor}".encode()).hexdigest()[:16],
            modality=Modality.LABS,
            source_ids=(),
            source_name=e0.table,
            licence=e0.licence,
            patient=a.patient,
            study=a.anchor,
            acquired_at=min(times),
            content_sha256=digest,
            meta_json=canonical_json(meta),
            anchor=a.anchor,
            item_ids=tuple(items),
            units=units,
            values=vals,
            times=times,
        )

    def __call__(self, key: str, elements: list) -> list[tuple[str, object]]:  # noqa: ARG002
        counts: Counter[tuple[str, str]] = Counter()
        groups = [v for t, v in elements if t == "g"]
        anchors = [(ta, v) for t, v in elements if t == "a" and (ta := _parse(v.time)) is not None]
        anchors.sort(key=lambda x: (x[0], x[1].anchor))
        events = [(te, v) for t, v in elements if t == "l" and (te := _parse(v.time)) is not None]
        events.sort(key=lambda x: (x[0], x[1].item, x[1].value, x[1].unit))
        pool, out = self._pool(groups)
        claimed: set[str] = set()
        lab_table = next((e.table for _, e in events), "")
        for ta, a in anchors:
            out += self._link_anchor(ta, a, events, pool, claimed, counts, lab_table)
        if events:
            counts[(lab_table, "lab_events")] += len(events)
        out += self._leftovers(pool, claimed, bool(anchors))
        out.extend(("count", (t, name, n)) for (t, name), n in sorted(counts.items()))
        return out

    def _pool(self, groups: list[SampleGroup]) -> tuple[_AnchorPool, list[tuple[str, object]]]:
        """One patient's records sorted into window candidates and riders, and the ``("q", ...)``
        ``filtered_out`` quarantines of the records failing a filter."""
        pool = _AnchorPool(cands={m: [] for m in self.windows if m != "labs"})
        out: list[tuple[str, object]] = []
        for g in groups:
            for r in g.records:
                m = r.modality.value
                pool.group_of[r.record_id] = g
                if m not in pool.cands:
                    pool.riders.setdefault(g.group_key, []).append(r)
                    pool.pending.append(r)
                    continue
                why = self._filter(r)
                if why:
                    out.extend(("q", q) for q in _unlinked(r, why, ReasonCode.FILTERED_OUT))
                    continue
                pool.pending.append(r)
                t = _parse(r.acquired_at)
                if t is not None:
                    pool.cands[m].append((t, r.record_id, r, g.group_key))
        for c in pool.cands.values():
            c.sort(key=lambda x: (x[0], x[1]))
        return pool, out

    def _link_anchor(
        self,
        ta: datetime,
        a: AnchorRow,
        events: list,
        pool: _AnchorPool,
        claimed: set[str],
        counts: Counter[tuple[str, str]],
        lab_table: str,
    ) -> list[tuple[str, object]]:
        """One anchor (at time ``ta``): its ``("anchor", row)`` and, if every required window is
        filled, its ``("group", SampleGroup)``; claims what it links and counts into ``counts``."""
        chosen: dict[str, tuple[ItemRecord, str]] = {}
        for m, c in pool.cands.items():
            hit = self._pick(c, ta, self.windows[m], claimed)
            if hit is not None:
                chosen[m] = hit
        labs = self._labs(events, a, ta) if self.extended else None
        present = set(chosen) | ({"labs"} if labs is not None else set())
        missing = [w.modality for w in self.cfg.windows if w.required and w.modality not in present]
        row = {
            "anchor": a.anchor,
            "patient": a.patient,
            "time": a.time,
            "status": "linked" if not missing else "missing:" + ",".join(missing),
            "linked": {m: list(rec.source_ids) for m, (rec, _) in sorted(chosen.items())},
            "labs_items": list(labs.item_ids) if labs is not None else [],
        }
        counts[(a.table, "anchors")] += 1
        counts[(a.table, f"anchors_{row['status'].split(':')[0]}")] += 1
        for m in missing:
            counts[(a.table, f"anchors_missing_{m}")] += 1
        if missing:
            row["linked"] = {}
            return [("anchor", row)]
        recs: list[ItemRecord] = []
        for rec, gk in chosen.values():
            claimed.add(rec.record_id)
            recs.append(rec)
            for rider in pool.riders.get(gk, []):
                if rider.record_id not in claimed:
                    claimed.add(rider.record_id)
                    recs.append(rider)
        if labs is not None:
            recs.append(labs)
            counts[(lab_table, "lab_values_used")] += len(labs.item_ids)
        row["sample_group"] = f"anchor-{a.anchor}"
        group = SampleGroup(
            group_key=f"anchor-{a.anchor}",
            patient=a.patient,
            study=a.anchor,
            records=_sorted(recs),
            patient_conflict=any(
                pool.group_of[r.record_id].patient_conflict for r in recs if r.record_id in pool.group_of
            ),
            link_rule=f"anchor:{a.table}",
            extended=self.extended,
        )
        return [("anchor", row), ("group", group)]

    def _leftovers(self, pool: _AnchorPool, claimed: set[str], has_anchors: bool) -> list[tuple[str, object]]:
        """Records no anchor claimed: their own study-group samples with ``unlinked: keep``, else
        ``unlinked`` quarantines with the reason."""
        out: list[tuple[str, object]] = []
        left = [r for r in pool.pending if r.record_id not in claimed]
        if self.unlinked == "keep":
            by_group: dict[str, list[ItemRecord]] = {}
            for r in left:
                by_group.setdefault(pool.group_of[r.record_id].group_key, []).append(r)
            for gk, recs in sorted(by_group.items()):
                g = pool.group_of[recs[0].record_id]
                out.append(
                    (
                        "group",
                        SampleGroup(
                            gk,
                            g.patient,
                            g.study,
                            _sorted(recs),
                            g.patient_conflict,
                            g.link_rule,
                            self.extended,
                        ),
                    )
                )
        else:
            for r in left:
                why = "no anchor window holds this item" if has_anchors else "no anchor row for this patient"
                if not r.acquired_at and r.modality.value in pool.cands:
                    why = "no acquisition time to place in an anchor window"
                out.extend(("q", q) for q in _unlinked(r, why))
        return out
