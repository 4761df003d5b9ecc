"""Parquet outputs: sample manifest, shard manifest, quarantine records, input units."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.writer import write_atomic
from schemas.arrow import to_table

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
