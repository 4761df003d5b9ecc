"""Small rows → compact Arrow tables in the workers, so the driver never holds a Python object per row.

A build's per-record outputs (one dedup verdict row per clustered record, one index row per
record of a corpus-root set, one anchor-link row per admission) are O(N). As Python objects they
cost ~0.5–1 kB per row in the driver; as Arrow columns ~60–100 bytes. (Input units never reach
the driver at all: :mod:`pipelines.accounting`.) :func:`to_tables` groups a collection into
:data:`N_BUCKETS` buckets and turns each bucket into one table *in a worker*; the driver only
concatenates and sorts (:func:`concat_sorted`), then counts with ``pyarrow.compute``.

The bucket of a row never changes the output: the driver sorts by a unique key.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.flow import Coll, OrderFn

#: buckets (group keys) per table collection: a table per bucket crosses to the driver
N_BUCKETS = 16


def _get(row: Any, name: str) -> Any:
    """A field of a dict row or a dataclass row (``None`` if the row lacks it)."""
    return row.get(name) if isinstance(row, dict) else getattr(row, name, None)


@dataclass(frozen=True)
class BucketBy:
    """Key function: the bucket of a row, from one of its string fields (crc32 mod N_BUCKETS)."""

    field: str

    def __call__(self, row: Any) -> str:
        return bucket_of(str(_get(row, self.field)))


def bucket_of(value: str) -> str:
    """The bucket (``"00"``..) of a string key: crc32, the same in every process."""
    return f"{zlib.crc32(value.encode('utf-8', 'surrogatepass')) % N_BUCKETS:02d}"


@dataclass(frozen=True)
class ToTable:
    """Group function: one bucket's rows (dicts or dataclasses) → one table of ``schema``.

    Fields of a row that the schema does not name are dropped."""

    schema: pa.Schema

    def __call__(self, key: str, rows: list) -> Iterator[pa.Table]:  # noqa: ARG002 - the bucket
        cols = {f.name: [_get(r, f.name) for r in rows] for f in self.schema}
        yield pa.table(cols, schema=self.schema)


def to_tables(coll: Coll, schema: pa.Schema, bucket_field: str, order: OrderFn, desc: str) -> Coll:
    """The rows of ``coll`` as Arrow tables of ``schema`` (one per non-empty bucket)."""
    return coll.group(BucketBy(bucket_field), ToTable(schema), order, desc)


def concat_sorted(tables: Sequence[pa.Table], schema: pa.Schema, keys: Sequence[str]) -> pa.Table:
    """Driver: the tables of :func:`to_tables` as one table sorted by ``keys`` (ascending; string
    order is UTF-8 byte order = code point order, as Python's ``sorted``), one chunk per column."""
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables(tables).sort_by([(k, "ascending") for k in keys])
    return table.combine_chunks()


def value_counts(values: pa.Array | pa.ChunkedArray) -> Counter:
    """Driver: ``pyarrow.compute.value_counts`` as a Counter (value → count)."""
    vc = pc.value_counts(values)
    return Counter(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True)))
