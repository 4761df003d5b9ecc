"""Input units as worker-built Arrow tables (pipelines.rowtables) and the accounting identity over
them (pipelines.accounting), against plain-Python counts of the same rows."""

from __future__ import annotations

import random
from collections import Counter

import pyarrow.parquet as pq
import pytest

from pipelines.accounting import accounting, collect_units, file_counts, unit_order
from pipelines.dedup import DEDUP_SCHEMA, dedup_table, row_order
from pipelines.flow import make_flow
from pipelines.manifest import INPUT_SCHEMA, table_bytes
from pipelines.rowtables import N_BUCKETS, to_tables
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


def _tables(units: list[Unit], workers: int = 2) -> list:
    flow = make_flow("local", workers, quiet=True)
    try:
        coll = flow.create(units, "units")
        return flow.run({"t": to_tables(coll, INPUT_SCHEMA, "file_id", unit_order, "units-table")})["t"]
    finally:
        flow.close()


def test_units_cross_as_bucket_tables_and_merge_sorted_independent_of_workers():
    units = _units(300)
    one, two = _tables(units, 1), _tables(units, 2)
    assert 1 < len(two) <= N_BUCKETS and all(t.schema == INPUT_SCHEMA for t in two)
    merged = collect_units(two)
    assert merged["source_id"].to_pylist() == sorted(u.source_id for u in units)
    assert merged.to_pylist()[0] == vars(min(units, key=unit_order))
    assert table_bytes(merged) == table_bytes(collect_units(list(reversed(one))))


def test_a_unit_produced_twice_is_a_bug():
    units = _units(20)
    with pytest.raises(RuntimeError, match="produced twice"):
        collect_units(_tables([*units, units[7]], 1))


def test_accounting_matches_plain_counts():
    units = _units(400, seed=1)
    table = collect_units(_tables(units, 1))
    rng = random.Random(2)
    q_ids = rng.sample([u.source_id for u in units], 30)
    d_ids = rng.sample([u.source_id for u in units], 40)  # may overlap the quarantined ones
    quarantined = [
        QuarantineRecord(s, "src", Modality.ECG, "decode", ReasonCode.ECG_SIGNAL_CORRUPT, "x") for s in q_ids
    ]
    written = [("ecg", 5), ("report", 7), ("ecg", 1)]
    acc = accounting(table, written, quarantined, d_ids)
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
    n_files, per_kind = file_counts(table)
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
