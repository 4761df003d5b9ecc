"""Every input accounted for: inputs = written + quarantined + deduplicated, per modality.

The input units arrive at the driver as Arrow tables of :data:`pipelines.manifest.INPUT_SCHEMA`
(built in the workers, :mod:`pipelines.rowtables`), never as one Python object per unit; the
counts here are ``pyarrow.compute`` over those columns (~60–100 bytes per unit in the driver).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.manifest import INPUT_SCHEMA
from pipelines.rowtables import concat_sorted
from schemas.records import QuarantineRecord


def unit_order(unit) -> str:
    """Order of ``Unit`` rows inside a bucket table (``inputs.parquet`` is sorted by unit id)."""
    return unit.source_id


def collect_units(tables: Sequence[pa.Table]) -> pa.Table:
    """The units of a run as one table sorted by unit id; a unit produced twice is a decoder bug."""
    units = concat_sorted(tables, INPUT_SCHEMA, ["source_id"])
    ids = units["source_id"]
    if len(ids) > 1:
        same = pc.equal(ids.slice(1), ids.slice(0, len(ids) - 1))
        if pc.any(same).as_py():
            first = pc.index(same, True).as_py()
            raise RuntimeError(f"input unit {ids[first + 1].as_py()} produced twice (decoder bug)")
    return units


def _counts(values: pa.Array | pa.ChunkedArray) -> Counter:
    vc = pc.value_counts(values)
    return Counter(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)))


def _ids(values: Iterable[str]) -> pa.Array:
    return pa.array(sorted(set(values)), pa.string())


def file_counts(units: pa.Table) -> tuple[int, dict[str, int]]:
    """Distinct input files, and distinct files per kind (a file of several units counts once)."""
    pairs = units.select(["file_id", "kind"]).group_by(["file_id", "kind"]).aggregate([])
    return pc.count_distinct(units["file_id"]).as_py(), dict(sorted(_counts(pairs["kind"]).items()))


def accounting(
    units: pa.Table,
    written_units: Iterable[tuple[str, int]],
    quarantined: list[QuarantineRecord],
    deduplicated: list[str],
) -> dict:
    """Per-modality accounting: inputs = written + quarantined + deduplicated (unit counts).

    ``units``: the run's units (:func:`collect_units`); ``written_units``: (modality, count) pairs
    from the shard writers; the rest are the driver's small rows. ``medcorpus validate`` re-checks
    the identity against the manifests.
    """
    ids, mods = units["source_id"], units["modality"]
    is_q = pc.is_in(ids, value_set=_ids(q.source_id for q in quarantined))
    is_d = pc.is_in(ids, value_set=_ids(deduplicated))
    per: dict[str, Counter] = defaultdict(Counter)
    for name, mask in (
        ("inputs", None),
        ("quarantined", is_q),
        ("deduplicated", pc.and_(is_d, pc.invert(is_q))),
    ):
        for modality, n in _counts(mods if mask is None else mods.filter(mask)).items():
            per[modality][name] += n
    for modality, n in written_units:
        per[modality]["written"] += n
    return {
        "per_modality": {
            m: {k: c[k] for k in ("inputs", "written", "quarantined", "deduplicated")}
            for m, c in sorted(per.items())
        },
        "quarantine_reasons": dict(sorted(Counter(q.reason.value for q in quarantined).items())),
        "deduplicated_per_modality": dict(sorted(_counts(mods.filter(is_d)).items())),
        "n_units": units.num_rows,
        "n_quarantined": len(quarantined),
    }
