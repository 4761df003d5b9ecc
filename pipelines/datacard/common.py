"""Names, settings and small helpers shared by the data card's modules (no I/O beyond parquet reads)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DATACARD_HTML = "datacard.html"
DATACARD_JSON = "datacard.json"
DEDUP = "dedup.parquet"
CARD_VERSION = "1"
NO_DEDUP_NOTE = "no dedup stage in this build"
#: dedup verdicts of a cluster's keeper; any other verdict on a kept record is a flag (e.g. template)
KEEPER_VERDICTS = ("representative", "")
#: the quarantine columns the card counts with
QUARANTINE_COLUMNS = ("source_id", "source_name", "modality", "stage", "reason", "message")
#: keys of a per-item de-identification audit shown verbatim (descriptions, not values)
DEID_TEXT_KEYS = ("profile", "options", "table", "method", "date_shift", "hardening", "identity")
#: list-valued audit keys that name the attributes/fields an action touched (names, never values)
DEID_FIELD_KEYS = (
    "removed",
    "emptied",
    "dummied",
    "dates_shifted",
    "uid_replaced",
    "hardened_dates_shifted",
    "hardened_names_emptied",
    "hardened_uids_replaced",
    "not_carried_over",
)


@dataclass(frozen=True)
class DatacardConfig:
    """How much the card shows. Gallery counts are samples per modality; sizes in pixels/chars.
    The gallery draws from the candidates the shard statistics keep
    (``shard_stats.GALLERY_CANDIDATES`` per modality and split): a count that, with the samples
    picked before it, asks for more than that picks among those candidates (and logs it)."""

    gallery_images: int = 6
    gallery_ecgs: int = 2
    gallery_volumes: int = 2
    gallery_reports: int = 4
    thumb_px: int = 256
    excerpt_chars: int = 700
    example_ids: int = 3
    top_entities: int = 20
    top_deid_fields: int = 10
    dedup_clusters: int = 12


#: the default settings (a module-level instance: the dataclass is frozen)
DEFAULT_CONFIG = DatacardConfig()


@dataclass(frozen=True)
class DatacardResult:
    """What :func:`write_datacard` wrote."""

    html_path: Path
    json_path: Path
    html_bytes: int
    n_samples: int
    n_quarantined: int
    n_gallery_images: int
    identity_holds: bool
    seconds: float


def _read(path: Path, columns: Sequence[str] | None = None) -> list[dict]:
    """Rows of a parquet file as dicts (only ``columns`` if given); ``[]`` if it does not exist."""
    if not path.exists():
        return []
    if columns is not None:
        columns = [c for c in columns if c in pq.read_schema(path).names]
    return pq.read_table(path, columns=columns).to_pylist()


def arrow_columns(path: Path, columns: Sequence[str]) -> list[str]:
    """The ``columns`` a parquet file has."""
    names = pq.read_schema(path).names
    return [c for c in columns if c in names]


def read_arrow(path: Path, columns: Sequence[str], read_dictionary: Sequence[str] = ()) -> pa.Table:
    """Only ``columns`` (those the file has) of a parquet file, as Arrow (no Python rows), read on
    the calling thread: Arrow's reader threads would each keep freed memory in their own
    allocator heaps, which shows as driver RSS that grows with the file."""
    return pq.read_table(
        path,
        columns=arrow_columns(path, columns),
        read_dictionary=list(read_dictionary) or None,
        use_threads=False,
        pre_buffer=False,
    )


#: rows per batch where the card streams a parquet file (larger batches cost RSS, not time)
BATCH_ROWS = 8192
#: key values hashed at once: a distinct count or a lookup over more rows runs in passes, each
#: over one range of the key's values (:func:`key_ranges`), so its hash tables stay this small
PASS_ROWS = 1 << 16


def arrow_batches(
    path: Path,
    columns: Sequence[str] | None,
    batch_rows: int = BATCH_ROWS,
    read_dictionary: Sequence[str] = (),
) -> Iterator[pa.RecordBatch]:
    """A parquet file's ``columns`` (all if ``None``) in batches, read on the calling thread."""
    cols = None if columns is None else arrow_columns(path, columns)
    pf = pq.ParquetFile(path, pre_buffer=False, read_dictionary=list(read_dictionary) or None)
    yield from pf.iter_batches(batch_size=batch_rows, columns=cols, use_threads=False)


def key_ranges(path: Path, column: str, pass_rows: int | None = None) -> list[tuple[str | None, str | None]]:
    """``[(lo, hi), ...]``: ranges ``lo <= value < hi`` (``None``: open) that cut a string column's
    values into about ``pass_rows`` (default :data:`PASS_ROWS`) rows each, at quantiles of an evenly spaced sample of the
    column (deterministic: the file's order). One range ``(None, None)`` for a small file."""
    n = pq.ParquetFile(path).metadata.num_rows
    passes = -(-n // (pass_rows or PASS_ROWS))
    if passes <= 1:
        return [(None, None)]
    step = max(1, n // (passes * 256))
    picks, seen = [], 0
    for b in arrow_batches(path, [column]):
        col = b.column(0)
        picks.append(col.take(pa.array(np.arange((-seen) % step, len(col), step))))
        seen += len(col)
    sample = pc.drop_null(pa.chunked_array(picks, type=pa.string()))
    sample = sample.take(pc.sort_indices(sample)).to_pylist()  # about passes x 256 values
    bounds = sorted({sample[len(sample) * i // passes] for i in range(1, passes)} if sample else set())
    edges = [None, *bounds, None]
    return list(zip(edges[:-1], edges[1:], strict=True))


def in_range(values: pa.Array | pa.ChunkedArray, lo: str | None, hi: str | None) -> Any:
    """Mask of ``lo <= value < hi`` (``None``: every row)."""
    mask = None
    if lo is not None:
        mask = pc.greater_equal(values, lo)
    if hi is not None:
        below = pc.less(values, hi)
        mask = below if mask is None else pc.and_(mask, below)
    return mask


def rows_in_range(
    path: Path,
    columns: Sequence[str],
    key: str,
    lo: str | None,
    hi: str | None,
    read_dictionary: Sequence[str] = (),
) -> pa.Table:
    """The rows (``columns``) of a parquet file whose ``key`` lies in ``[lo, hi)``, streamed."""
    if lo is None and hi is None:
        return read_arrow(path, columns, read_dictionary).unify_dictionaries()
    parts = []
    for b in arrow_batches(path, columns, read_dictionary=read_dictionary):
        parts.append(b.filter(in_range(b.column(key), lo, hi)))
    schema = parts[0].schema if parts else None
    if schema is None:
        return read_arrow(path, columns, read_dictionary).slice(0, 0)
    return pa.Table.from_batches(parts, schema=schema).unify_dictionaries()


def distinct_count(path: Path, column: str, where: Any = None) -> int:
    """Distinct non-null values of a string column (``where(table)``: an optional row mask), in
    passes over ranges of the values."""
    n = 0
    for lo, hi in key_ranges(path, column):
        t = rows_in_range(path, [column], column, lo, hi)
        values = t.column(column) if where is None else t.column(column).filter(where(t))
        n += int(pc.count_distinct(values).as_py())
    return n


def release_arrow() -> None:
    """Hand the memory Arrow's allocator keeps after frees back to the system (between steps)."""
    pa.default_memory_pool().release_unused()


def _counts(values: Iterable[Any]) -> dict[str, int]:
    """Counter → plain dict sorted by descending count, then key (deterministic)."""
    c = Counter(str(v) for v in values)
    return {k: c[k] for k in sorted(c, key=lambda k: (-c[k], k))}


def _summary(values: Sequence[float] | np.ndarray) -> dict[str, float | int]:
    """n, min, median, mean, max of the finite ``values`` (floats rounded to 3 decimals), on a
    numpy array: the median and mean as ``statistics.median``/``fmean`` compute them (the middle
    value or the mean of the two middle ones; an exact sum)."""
    vals = np.asarray(values, dtype=np.float64)  # None → nan
    vals = np.sort(vals[np.isfinite(vals)])
    n = int(vals.size)
    if not n:
        return {"n": 0}
    r = lambda x: round(float(x), 3)  # noqa: E731
    mid = n // 2
    median = float(vals[mid]) if n % 2 else (float(vals[mid - 1]) + float(vals[mid])) / 2
    return {
        "n": n,
        "min": r(vals[0]),
        "median": r(median),
        "mean": r(math.fsum(vals) / n),
        "max": r(vals[-1]),
    }


def _dims(values: Sequence[float]) -> str:
    return " x ".join(f"{float(v):g}" for v in values)


def _by_count(counter: Mapping[str, int]) -> dict[str, int]:
    """A merged counter sorted like :func:`_counts` (descending count, then key)."""
    return {k: int(counter[k]) for k in sorted(counter, key=lambda k: (-counter[k], k))}


def _verdict(row: Mapping[str, Any]) -> str:
    """A dedup row's verdict (``verdict`` column; ``reason`` accepted for older builds)."""
    return str(row.get("verdict") or row.get("reason") or "")
