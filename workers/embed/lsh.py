"""Near-duplicate search by embedding hashing: random-hyperplane (SimHash) signatures, LSH banding.

For unit vectors at cosine ``c`` the chance that one random hyperplane puts both on the same
side is ``p = 1 - arccos(c) / pi``. With ``bands`` bands of ``rows`` bits, a pair becomes a
candidate with probability ``1 - (1 - p**rows)**bands``: :func:`choose_bands` picks ``bands``
so that pairs at the threshold are found with ``target_recall``. Candidates are verified by
exact cosine, so precision is exact by construction; recall is the LSH probability.

Cost is linear in the number of vectors (projection + one sort per band) plus the candidates.
Buckets larger than ``max_bucket`` (mass templates) are compared along a sorted chain window
instead of all pairs, which keeps them connected without quadratic blow-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LshConfig:
    """``threshold``: cosine at or above which two items are near-duplicates."""

    threshold: float = 0.97
    rows: int = 0  # bits per band; 0 = auto: ceil(log2(n)) + 6, so random collisions stay ~linear in n
    target_recall: float = 0.999
    seed: int = 20261128
    max_bucket: int = 64
    chunk: int = 65536


def collision_probability(cos: float, rows: int, bands: int) -> float:
    p = 1.0 - math.acos(max(-1.0, min(1.0, cos))) / math.pi
    return 1.0 - (1.0 - p**rows) ** bands


def choose_bands(threshold: float, rows: int, target_recall: float) -> int:
    """Smallest number of bands reaching ``target_recall`` at ``threshold``."""
    p = (1.0 - math.acos(threshold) / math.pi) ** rows
    if p >= 1.0:
        return 1
    return max(1, math.ceil(math.log(1.0 - target_recall) / math.log(1.0 - p)))


def auto_rows(n: int) -> int:
    """Bits per band for ``n`` vectors: two unrelated vectors share a band with probability
    ``2**-rows``, so ``rows = log2(n) + 6`` keeps the expected random candidates per band at
    about ``n / 128`` (linear in n); the band count then grows only like ``log n``."""
    return int(min(40, max(16, math.ceil(math.log2(max(n, 2))) + 6)))


def _band_keys(emb: np.ndarray, cfg: LshConfig, bands: int, rows: int) -> np.ndarray:
    """(bands, n) uint64 keys: each band's ``rows`` sign bits packed into an integer."""
    n, d = emb.shape
    rng = np.random.default_rng(cfg.seed)
    planes = rng.standard_normal((d, bands * rows)).astype(np.float32)
    nbytes = (rows + 7) // 8
    shifts = (np.uint64(8) * np.arange(nbytes - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)
    keys = np.empty((bands, n), dtype=np.uint64)
    for start in range(0, n, cfg.chunk):
        bits = (emb[start : start + cfg.chunk] @ planes) > 0  # (chunk, bands*rows) bool
        packed = np.packbits(bits.reshape(-1, bands, rows), axis=2)  # (chunk, bands, nbytes)
        keys[:, start : start + cfg.chunk] = (packed.astype(np.uint64) << shifts).sum(axis=2).T
    return keys


def candidate_pairs(emb: np.ndarray, cfg: LshConfig) -> np.ndarray:
    """Unique candidate pairs ``(i, j)``, ``i < j``, as an (m, 2) int64 array."""
    n = emb.shape[0]
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    rows = cfg.rows or auto_rows(n)
    bands = choose_bands(cfg.threshold, rows, cfg.target_recall)
    keys = _band_keys(emb, cfg, bands, rows)
    out: list[np.ndarray] = []
    for b in range(bands):
        order = np.argsort(keys[b], kind="stable")
        sk = keys[b][order]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        sizes = np.diff(np.r_[starts, n])
        two = starts[sizes == 2]  # the common case, vectorised
        out.append(np.stack([order[two], order[two + 1]], axis=1))
        for s, size in zip(starts[sizes > 2], sizes[sizes > 2], strict=True):
            members = order[s : s + size]
            if size <= cfg.max_bucket:
                i, j = np.triu_indices(size, k=1)
                out.append(np.stack([members[i], members[j]], axis=1))
            else:  # huge bucket: chain along a 1-D projection, window max_bucket
                proj = emb[members] @ np.ones(emb.shape[1], dtype=np.float32)
                chain = members[np.argsort(proj, kind="stable")]
                for w in range(1, cfg.max_bucket):
                    out.append(np.stack([chain[:-w], chain[w:]], axis=1))
    pairs = np.concatenate(out).astype(np.int64)
    if len(pairs) == 0:
        return pairs.reshape(0, 2)
    pairs.sort(axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return _decode_pairs(np.unique(pairs[:, 0] * n + pairs[:, 1]), n)


def _decode_pairs(codes: np.ndarray, n: int) -> np.ndarray:
    return np.stack([codes // n, codes % n], axis=1)


def near_duplicate_pairs(emb: np.ndarray, cfg: LshConfig) -> tuple[np.ndarray, np.ndarray]:
    """Verified pairs with cosine >= threshold: ``(pairs (m, 2), cosines (m,))``."""
    cand = candidate_pairs(emb, cfg)
    if len(cand) == 0:
        return cand, np.zeros(0, dtype=np.float32)
    cos = np.empty(len(cand), dtype=np.float32)
    for s in range(0, len(cand), cfg.chunk):
        c = cand[s : s + cfg.chunk]
        cos[s : s + cfg.chunk] = np.einsum("ij,ij->i", emb[c[:, 0]], emb[c[:, 1]])
    keep = cos >= cfg.threshold
    return cand[keep], cos[keep]


def brute_force_pairs(emb: np.ndarray, threshold: float, block: int = 4096) -> np.ndarray:
    """All pairs ``i < j`` with cosine >= threshold by blocked exact search (ground truth)."""
    n = emb.shape[0]
    out = []
    for s in range(0, n, block):
        sims = emb[s : s + block] @ emb.T  # (block, n)
        i, j = np.nonzero(sims >= threshold)
        i = i + s
        m = i < j
        out.append(np.stack([i[m], j[m]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def clusters(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components (union-find) over ``pairs``: a label per item, (n,) int."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(pairs) == 0:
        return np.arange(n)
    g = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(g, directed=False)[1]
