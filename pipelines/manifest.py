"""Parquet outputs: sample manifest, shard manifest, quarantine records, input units."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.arrow import to_table
from schemas.atomic import atomic_open, write_atomic

MANIFEST = "manifest.parquet"
SHARDS = "shards.parquet"
QUARANTINE = "quarantine.parquet"
INPUTS = "inputs.parquet"
STATS = "stats.json"
BUILD = "build.json"

INPUT_SCHEMA = pa.schema(
    [
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("file_id", pa.string(), nullable=False),
        pa.field("source_name", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
    ]
)


def table_bytes(table: pa.Table) -> bytes:
    """Deterministic parquet bytes (no statistics timestamps; fixed compression)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", write_statistics=True, store_schema=True)
    return buf.getvalue()


def write_records(path: Path, records: list, cls: type) -> None:
    write_atomic(path, table_bytes(to_table(records, cls)))


def write_table(path: Path, table: pa.Table) -> None:
    write_atomic(path, table_bytes(table))


def merge_fragments(path: Path, fragments: list[Path], cls: type | pa.Schema) -> int:
    """Concatenate parquet fragments (in the given order) into ``path``, one row group each.

    Streams: one fragment in memory at a time, so the driver's memory stays flat however many
    samples the corpus has. ``cls``: a record dataclass or a schema. Returns the number of rows.
    """
    from schemas.arrow import schema_for

    schema = cls if isinstance(cls, pa.Schema) else schema_for(cls)
    n = 0
    with (
        atomic_open(path, durable=True) as f,
        pq.ParquetWriter(f, schema, compression="zstd", write_statistics=True, store_schema=True) as w,
    ):
        for frag in fragments:
            t = pq.read_table(frag, schema=schema)
            n += t.num_rows
            w.write_table(t)
    return n
