"""Every input accounted for: inputs = written + quarantined + deduplicated, per modality.

The input units never reach the driver. Workers tag each unit with its fate (quarantined,
deduplicated: a side value built from the run's quarantine records and dedup removals, small
unless the input is mostly bad), group them into :data:`N_BUCKETS` buckets by file, and write
each bucket as a parquet part sorted by unit id (:class:`WriteUnits`), returning one
:class:`UnitsPart` of counts. The driver sums the counts (:func:`accounting`) and streams the
parts, in bucket order, into ``inputs.parquet`` (:func:`merge_units`): its memory does not grow
with the number of units (a MIMIC ``labevents`` table has 10^8 rows, each an input unit).
"""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.manifest import INPUT_SCHEMA
from pipelines.rowtables import bucket_of
from schemas.atomic import atomic_open
from schemas.records import QuarantineRecord

#: parts of ``inputs.parquet`` written by the workers (merged, then removed, by the driver)
PARTS_DIR = "inputs-parts"
QUARANTINED, DEDUPLICATED = 1, 2  # fate flags of a unit


def fate_of(element) -> Iterator[tuple[str, int]]:
    """``flat_map``: ``(unit id, flag)`` from a quarantine record, a dedup ``("q", record)`` or
    ``("dedup", unit id)`` extra."""
    if isinstance(element, QuarantineRecord):
        yield element.source_id, QUARANTINED
    elif element[0] == "q":
        yield element[1].source_id, QUARANTINED
    elif element[0] == "dedup":
        yield element[1], DEDUPLICATED


def fate_map(pairs: list[tuple[str, int]]) -> dict[str, int]:
    """``gather``: unit id → OR of its fate flags."""
    out: dict[str, int] = {}
    for sid, flag in pairs:
        out[sid] = out.get(sid, 0) | flag
    return out


def with_fate(unit, fates: dict[str, int]) -> Iterator[tuple[object, int]]:
    """``flat_map_with``: ``(unit, fate flags)``."""
    yield unit, fates.get(unit.source_id, 0)


def unit_bucket(element: tuple) -> str:
    """Bucket of a ``(unit, fate)``: by file, so a file's units (and its distinct count) share one."""
    return bucket_of(element[0].file_id)


def unit_order(element: tuple) -> str:
    """Order inside a bucket: unit id."""
    return element[0].source_id


@dataclass(frozen=True)
class UnitsPart:
    """What a units bucket writer returns: its part file and counts (no unit ids)."""

    bucket: str
    n_units: int
    #: ((modality, fate flags), count)
    counts: tuple[tuple[tuple[str, int], int], ...]
    n_files: int
    #: (kind, distinct files)
    files_per_kind: tuple[tuple[str, int], ...]


def part_path(out_dir: str | Path, bucket: str) -> Path:
    return Path(out_dir) / PARTS_DIR / f"{bucket}.parquet"


@dataclass(frozen=True)
class WriteUnits:
    """``group`` on bucket: write the bucket's units as one parquet part (sorted by unit id); a
    unit produced twice is a decoder bug (the run fails)."""

    out_dir: str

    def __call__(self, bucket: str, elements: list[tuple]) -> Iterator[UnitsPart]:
        units = [u for u, _ in elements]
        for a, b in zip(units, units[1:], strict=False):
            if a.source_id == b.source_id:
                raise RuntimeError(f"input unit {a.source_id} produced twice (decoder bug)")
        cols = {f.name: [getattr(u, f.name) for u in units] for f in INPUT_SCHEMA}
        path = part_path(self.out_dir, bucket)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, durable=False) as f:
            pq.write_table(pa.table(cols, schema=INPUT_SCHEMA), f, compression="zstd", store_schema=True)
        counts = Counter((u.modality, fate) for u, fate in elements)
        files = {(u.file_id, u.kind) for u in units}
        yield UnitsPart(
            bucket,
            len(units),
            tuple(sorted(counts.items())),
            len({f for f, _ in files}),
            tuple(sorted(Counter(k for _, k in files).items())),
        )


def merge_units(out_path: Path, out_dir: Path, parts: list[UnitsPart]) -> int:
    """Stream the parts, in bucket order, into ``inputs.parquet`` (one row group each; rows in
    bucket order, then unit id: the same for every runner and worker count); remove the parts."""
    from pipelines.manifest import merge_fragments

    n = merge_fragments(
        out_path, [part_path(out_dir, p.bucket) for p in sorted(parts, key=lambda p: p.bucket)], INPUT_SCHEMA
    )
    shutil.rmtree(out_dir / PARTS_DIR, ignore_errors=True)
    return n


def file_counts(parts: Iterable[UnitsPart]) -> tuple[int, dict[str, int]]:
    """Distinct input files, and distinct files per kind (a file's units share one bucket)."""
    parts = list(parts)
    per_kind: Counter = Counter()
    for p in parts:
        per_kind.update(dict(p.files_per_kind))
    return sum(p.n_files for p in parts), dict(sorted(per_kind.items()))


def accounting(
    parts: Iterable[UnitsPart], written_units: Iterable[tuple[str, int]], quarantined: list[QuarantineRecord]
) -> dict:
    """Per-modality accounting: inputs = written + quarantined + deduplicated (unit counts).

    ``parts``: the unit writers' counts by (modality, fate); ``written_units``: (modality, count)
    pairs from the shard writers. A unit both quarantined and deduplicated counts as quarantined
    (and in ``deduplicated_per_modality``). ``medcorpus validate`` re-checks the identity
    against the manifests.
    """
    per: dict[str, Counter] = defaultdict(Counter)
    dedup_by_mod: Counter = Counter()
    n_units = 0
    for p in parts:
        n_units += p.n_units
        for (modality, fate), n in p.counts:
            per[modality]["inputs"] += n
            if fate & QUARANTINED:
                per[modality]["quarantined"] += n
            elif fate & DEDUPLICATED:
                per[modality]["deduplicated"] += n
            if fate & DEDUPLICATED:
                dedup_by_mod[modality] += n
    for modality, n in written_units:
        per[modality]["written"] += n
    return {
        "per_modality": {
            m: {k: c[k] for k in ("inputs", "written", "quarantined", "deduplicated")}
            for m, c in sorted(per.items())
        },
        "quarantine_reasons": dict(sorted(Counter(q.reason.value for q in quarantined).items())),
        "deduplicated_per_modality": dict(sorted(dedup_by_mod.items())),
        "n_units": n_units,
        "n_quarantined": len(quarantined),
    }
