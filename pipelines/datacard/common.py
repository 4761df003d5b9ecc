"""Names, settings and small helpers shared by the data card's modules (no I/O beyond parquet reads)."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

DATACARD_HTML = "datacard.html"
DATACARD_JSON = "datacard.json"
DEDUP = "dedup.parquet"
CARD_VERSION = "1"
NO_DEDUP_NOTE = "no dedup stage in this build"
#: dedup verdicts of a cluster's keeper; any other verdict on a kept record is a flag (e.g. template)
KEEPER_VERDICTS = ("representative", "")
#: the manifest columns the card counts with (hashes and ids are not needed)
MANIFEST_COLUMNS = (
    "split",
    "patient",
    "study",
    "modalities",
    "members",
    "n_bytes",
    "source_ids",
    "source_names",
    "licences",
)
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
    """How much the card shows. Gallery counts are samples per modality; sizes in pixels/chars."""

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


def _counts(values: Iterable[Any]) -> dict[str, int]:
    """Counter → plain dict sorted by descending count, then key (deterministic)."""
    c = Counter(str(v) for v in values)
    return {k: c[k] for k in sorted(c, key=lambda k: (-c[k], k))}


def _summary(values: Sequence[float]) -> dict[str, float | int]:
    """n, min, median, mean, max of ``values`` (floats rounded to 3 decimals)."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return {"n": 0}
    r = lambda x: round(float(x), 3)  # noqa: E731
    return {
        "n": len(vals),
        "min": r(min(vals)),
        "median": r(statistics.median(vals)),
        "mean": r(statistics.fmean(vals)),
        "max": r(max(vals)),
    }


def _dims(values: Sequence[float]) -> str:
    return " x ".join(f"{float(v):g}" for v in values)


def _by_count(counter: Mapping[str, int]) -> dict[str, int]:
    """A merged counter sorted like :func:`_counts` (descending count, then key)."""
    return {k: int(counter[k]) for k in sorted(counter, key=lambda k: (-counter[k], k))}


def _verdict(row: Mapping[str, Any]) -> str:
    """A dedup row's verdict (``verdict`` column; ``reason`` accepted for older builds)."""
    return str(row.get("verdict") or row.get("reason") or "")
