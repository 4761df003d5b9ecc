"""Laboratory values: parsing, the train split's empirical CDF, and the ``labs_{i}`` members.

Normalisation (Symile-MIMIC): a value ``x`` of item ``k`` becomes its percentile under the
empirical CDF of item ``k``'s values in the *train* split, ``F(x) = #{train values <= x} / n``
(in [0, 1]). A missing item gets the mean train percentile of that item (the mean of ``F`` over
the train values); an item without train values gets 0.5. The model input is the percentiles
plus the missingness indicators (2 x n_items values).

Member layout (``schemas.contract``): ``labs_{i}.npy`` float32 (3, n_items), rows
``value`` (in the item's unit, NaN when missing), ``percentile`` and ``missing`` (1.0 / 0.0);
``labs_{i}.json`` the item ids, names, units, times (shifted ISO 8601), missingness and the id
of the normalisation statistics (sha256 of ``labs_normalisation.json``'s items).
"""

from __future__ import annotations

import io
import math

import numpy as np

from schemas.canonical import canonical_bytes

LABS_CONVENTION = "1"
ROWS = ("value", "percentile", "missing")


def parse_value(text: object) -> float | None:
    """A finite float from a table cell, or None (empty, ``NaN``, text such as ``"___"``)."""
    if text is None:
        return None
    s = str(text).strip()
    if not s:
        return None
    try:
        v = float(s)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def fit_cdf(values: list[float] | np.ndarray) -> tuple[np.ndarray, float]:
    """Sorted train values (float64) and the mean train percentile of one item."""
    x = np.sort(np.asarray(values, dtype=np.float64), kind="stable")
    if not x.size:
        return x, 0.5
    mean = float(np.mean(np.searchsorted(x, x, side="right") / x.size))
    return x, round(mean, 12)


def percentile(sorted_train: np.ndarray, x: float) -> float:
    """``#{train values <= x} / n`` (0.5 when there are no train values)."""
    if not sorted_train.size:
        return 0.5
    return float(np.searchsorted(sorted_train, x, side="right")) / float(sorted_train.size)


def labs_members(
    items: list[tuple[str, str]],
    present: dict[str, tuple[float, str, str]],
    cdfs: dict[str, tuple[np.ndarray, float]],
    stats_id: str,
) -> tuple[bytes, bytes]:
    """``(npy bytes, json bytes)`` of one sample's labs.

    ``items``: the build's (item id, name) list, in member order; ``present``: item id →
    (value, unit, shifted time) of the values found in the window; ``cdfs``: item id → (sorted
    train values, mean percentile).
    """
    n = len(items)
    arr = np.zeros((3, n), dtype=np.float32)
    units, times, missing = [], [], []
    for j, (item, _) in enumerate(items):
        sorted_train, mean = cdfs.get(item, (np.zeros(0), 0.5))
        if item in present:
            v, unit, t = present[item]
            arr[0, j], arr[1, j], arr[2, j] = v, percentile(sorted_train, v), 0.0
            units.append(unit)
            times.append(t)
            missing.append(False)
        else:
            arr[0, j], arr[1, j], arr[2, j] = np.nan, mean, 1.0
            units.append("")
            times.append("")
            missing.append(True)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    meta = {
        "convention": LABS_CONVENTION,
        "rows": list(ROWS),
        "item_ids": [i for i, _ in items],
        "item_names": [name for _, name in items],
        "units": units,
        "times": times,
        "missing": missing,
        "n_present": int(n - sum(missing)),
        "normalisation": {
            "method": "percentile under the train split's empirical CDF; missing -> train mean percentile",
            "stats_id": stats_id,
        },
    }
    return buf.getvalue(), canonical_bytes(meta)
