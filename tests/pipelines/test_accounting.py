"""Input units written by workers as parts of inputs.parquet and the accounting identity over
their counts (pipelines.accounting), against plain-Python counts of the same rows; dedup rows as
worker-built Arrow tables (pipelines.rowtables)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.accounting import (
    PARTS_DIR,
    UnitsPart,
    WriteUnits,
    accounting,
    fate_map,
    fate_of,
    file_counts,
    merge_units,
    unit_bucket,
    unit_order,
    with_fate,
)
from pipelines.dedup import DEDUP_SCHEMA, dedup_table, row_order
from pipelines.flow import make_flow
from pipelines.manifest import INPUT_SCHEMA
from pipelines.rowtables import N_BUCKETS, bucket_of, to_tables
from pipelines.stages import Unit
from schemas.modality import Modality
from schemas.reasons import ReasonCode
from schemas.records import QuarantineRecord


def _units(n: int, seed: int = 0) -> list[Unit]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        f = f"f{rng.getrandbits(40):010x}"
        kind, mod = rng.choice([("wfdb", "ecg"), ("dicom", "image"), ("csv_row", "report")])
        for j in range(2 if kind == "csv_row" else 1):  # a table file holds several units
            out.append(Unit(f"{f}-r{j:03d}" if kind == "csv_row" else f, f, f"src_{mod}", kind, mod))
    rng.shuffle(out)
    return out


def _same(x):
    return x


def _run_units(units: list[Unit], out: Path, extras: list, workers: int = 2) -> list[UnitsPart]:
    """The build's unit branch on a real local flow: fates side value → tagged units → parts."""
    flow = make_flow("local", workers, quiet=True)
    try:
        fate = flow.create(extras, "extras").flat_map(fate_of, "fates").gather(fate_map, _same, "fate-map")
        coll = flow.create(units, "units").flat_map_with(with_fate, fate, "units-fate")
        return flow.run({"p": coll.group(unit_bucket, WriteUnits(str(out)), unit_order, "units-write")})["p"]
    finally:
        flow.close()


def test_units_are_written_by_workers_and_merged_in_bucket_order(tmp_path):
    units = _units(300)
    parts = {w: _run_units(units, tmp_path / f"w{w}", [], w) for w in (1, 2)}
    assert 1 < len(parts[2]) <= N_BUCKETS and all(isinstance(p, UnitsPart) for p in parts[2])
    for w in (1, 2):
        assert merge_units(tmp_path / f"in{w}.parquet", tmp_path / f"w{w}", parts[w]) == len(units)
        assert not (tmp_path / f"w{w}" / PARTS_DIR).exists()  # parts removed once merged
    assert (tmp_path / "in1.parquet").read_bytes() == (tmp_path / "in2.parquet").read_bytes()
    f = pq.ParquetFile(tmp_path / "in2.parquet")
    assert f.schema_arrow == INPUT_SCHEMA and f.num_row_groups == len(parts[2])
    rows = f.read().to_pylist()
    assert sorted(r["source_id"] for r in rows) == sorted(u.source_id for u in units)
    buckets = [bucket_of(r["file_id"]) for r in rows]
    assert buckets == sorted(buckets)  # bucket order, then unit id inside a bucket
    for b in set(buckets):
        ids = [r["source_id"] for r in rows if bucket_of(r["file_id"]) == b]
        assert ids == sorted(ids)


def test_a_unit_produced_twice_is_a_bug(tmp_path):
    units = _units(20)
    with pytest.raises(RuntimeError, match="produced twice"):
        _run_units([*units, units[7]], tmp_path, [], 1)


def test_accounting_matches_plain_counts(tmp_path):
    units = _units(400, seed=1)
    rng = random.Random(2)
    q_ids = rng.sample([u.source_id for u in units], 30)
    d_ids = rng.sample([u.source_id for u in units], 40)  # may overlap the quarantined ones
    quarantined = [
        QuarantineRecord(s, "src", Modality.ECG, "decode", ReasonCode.ECG_SIGNAL_CORRUPT, "x") for s in q_ids
    ]
    extras = [*quarantined[:20], *(("q", q) for q in quarantined[20:]), *(("dedup", d) for d in d_ids)]
    parts = _run_units(units, tmp_path, extras)
    written = [("ecg", 5), ("report", 7), ("ecg", 1)]
    acc = accounting(parts, written, quarantined)
    for mod in {u.modality for u in units}:
        mine = [u for u in units if u.modality == mod]
        assert acc["per_modality"][mod] == {
            "inputs": len(mine),
            "written": sum(n for m, n in written if m == mod),
            "quarantined": sum(u.source_id in q_ids for u in mine),
            "deduplicated": sum(u.source_id in d_ids and u.source_id not in q_ids for u in mine),
        }
    assert acc["deduplicated_per_modality"] == dict(
        sorted(Counter(u.modality for u in units if u.source_id in d_ids).items())
    )
    assert acc["n_units"] == len(units) and acc["quarantine_reasons"] == {"ecg_signal_corrupt": 30}
    n_files, per_kind = file_counts(parts)
    assert n_files == len({u.file_id for u in units})
    assert per_kind == dict(sorted(Counter(k for _, k in {(u.file_id, u.kind) for u in units}).items()))


def test_dedup_rows_from_tables_equal_rows_from_dicts(tmp_path):
    rng = random.Random(3)
    rows = [
        {
            "cluster_id": f"c{rng.randrange(20):02d}",
            "record_id": f"r{i:04d}",
            "modality": rng.choice(["ecg", "report"]),
            "patient": f"p{rng.randrange(9)}",
            "kept": i % 3 != 0,
            "verdict": "duplicate" if i % 3 == 0 else "representative",
            "tier": "exact",
            "cosine": 1.0,
            "source_ids": [f"s{i}"],
            "_vs_prior": True,  # a private field: not a dedup.parquet column
        }
        for i in range(120)
    ]
    flow = make_flow("local", 2, quiet=True)
    try:
        coll = flow.create(rows, "rows")
        tables = flow.run({"t": to_tables(coll, DEDUP_SCHEMA, "cluster_id", row_order, "dedup-table")})["t"]
    finally:
        flow.close()
    from_tables, from_dicts = dedup_table(tables), dedup_table(rows)
    assert from_tables.schema == DEDUP_SCHEMA and from_tables.equals(from_dicts)
    pq.write_table(from_tables, tmp_path / "d.parquet")
    assert [r["record_id"] for r in pq.read_table(tmp_path / "d.parquet").to_pylist()] == [
        r["record_id"] for r in sorted(rows, key=row_order)
    ]
