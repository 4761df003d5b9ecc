"""Slice redundancy inside one volume (the "Less is More" finding).

Wolf et al., *Less is More: Selective reduction of CT data for self-supervised pre-training of
deep learning models with contrastive learning* (Comput. Biol. Med. 2024, arXiv:2410.14524)
show that adjacent CT slices are near-duplicates and that dropping redundant slices before
contrastive pre-training improves downstream AUC and cuts training time. They compare each
slice with the last *kept* slice under a similarity measure (deep embeddings, information
theory, hashing) and keep it only when it differs enough.

This module computes, per volume and cheaply (one pass, float64 per slice, no model):

* ``adjacent_ncc_*``: Pearson correlation (normalised cross-correlation) of each slice with the
  next; 1.0 = identical up to a linear intensity change;
* ``exact_duplicate_pairs``: adjacent slices with identical voxels;
* ``hash_duplicate_pairs``: adjacent slices with the same 64-bit average hash (8×8 block means
  above the slice mean), the hashing strategy of the paper in its simplest form;
* ``distinct_slices`` and ``redundancy_score``: the paper's greedy selection with NCC: keep
  slice 0, then keep a slice when its NCC with the last kept slice is below ``threshold``;
  ``redundancy_score = 1 − distinct/n`` (0 = every slice informative, → 1 = all near-duplicates).

The result is JSON-ready (floats rounded to 6 digits) and goes into the volume's meta; dedup can
later drop the redundant slices with :func:`select_distinct_slices`.
"""

from __future__ import annotations

import numpy as np

DEFAULT_NCC_THRESHOLD = 0.98
METHOD = "ncc-greedy/1"


def _slices(volume: np.ndarray, axis: int) -> np.ndarray:
    if volume.ndim != 3:
        raise ValueError(f"expected a 3-D volume, got {volume.ndim}-D")
    return np.moveaxis(volume, axis, 0)


def _ncc(a: np.ndarray, b: np.ndarray, ma: float, sa: float, mb: float, sb: float) -> float:
    """Pearson correlation of two flattened float64 slices with known mean/std."""
    if sa == 0.0 or sb == 0.0:
        return 1.0 if (sa == sb == 0.0 and ma == mb) else 0.0
    # elementwise product + sum, not np.dot: BLAS threads stall on a busy machine (25 ms → 30 µs)
    return float(np.multiply(a - ma, b - mb).sum() / (a.size * sa * sb))


def _ahash(s: np.ndarray) -> int:
    """64-bit average hash: 8×8 block means of the slice above their mean (edge blocks trimmed)."""
    h, w = s.shape
    bh, bw = max(1, h // 8), max(1, w // 8)
    blocks = s[: bh * min(8, h), : bw * min(8, w)].reshape(min(8, h), bh, min(8, w), bw).mean(axis=(1, 3))
    bits = (blocks > blocks.mean()).ravel()
    return int(np.packbits(bits).tobytes().hex() or "0", 16)


def select_distinct_slices(
    volume: np.ndarray, axis: int = 2, threshold: float = DEFAULT_NCC_THRESHOLD
) -> list[int]:
    """Indices of the slices the greedy NCC selection keeps (always includes slice 0)."""
    return _analyse(volume, axis, threshold)[1]


def _analyse(volume: np.ndarray, axis: int, threshold: float) -> tuple[dict, list[int]]:
    sl = _slices(volume, axis)
    n = int(sl.shape[0])
    keep: list[int] = [0] if n else []
    adj: list[float] = []
    exact = hashed = 0
    prev = prev_stats = prev_hash = None
    kept = kept_stats = None
    for i in range(n):
        s = np.asarray(sl[i], dtype=np.float64)
        flat = s.ravel()
        finite = np.isfinite(flat)
        if not finite.all():
            flat = np.where(finite, flat, 0.0)
        stats = (float(flat.mean()), float(flat.std()))
        hsh = _ahash(flat.reshape(s.shape))
        if prev is not None:
            adj.append(_ncc(prev, flat, prev_stats[0], prev_stats[1], *stats))
            exact += int(np.array_equal(prev, flat))
            hashed += int(prev_hash == hsh)
            if _ncc(kept, flat, kept_stats[0], kept_stats[1], *stats) < threshold:
                keep.append(i)
                kept, kept_stats = flat, stats
        else:
            kept, kept_stats = flat, stats
        prev, prev_stats, prev_hash = flat, stats, hsh
    a = np.asarray(adj, dtype=np.float64)

    def r(x: float) -> float:
        return round(float(x), 6)

    result = {
        "method": METHOD,
        "axis": int(axis),
        "n_slices": n,
        "ncc_threshold": threshold,
        "adjacent_ncc_mean": r(a.mean()) if a.size else None,
        "adjacent_ncc_median": r(np.median(a)) if a.size else None,
        "adjacent_ncc_min": r(a.min()) if a.size else None,
        "near_duplicate_pairs": int((a >= threshold).sum()),
        "exact_duplicate_pairs": exact,
        "hash_duplicate_pairs": hashed,
        "distinct_slices": len(keep),
        "redundancy_score": r(1.0 - len(keep) / n) if n else 0.0,
    }
    return result, keep


def slice_redundancy(volume: np.ndarray, axis: int = 2, threshold: float = DEFAULT_NCC_THRESHOLD) -> dict:
    """Slice-redundancy summary of a 3-D ``volume`` along ``axis`` (2 = Z for (X, Y, Z) RAS
    arrays; 0 for (Z, Y, X) DICOM stacks). JSON-ready dict; see the module docstring."""
    return _analyse(volume, axis, threshold)[0]
