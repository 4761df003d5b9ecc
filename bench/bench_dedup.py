"""Scaling benchmark of the near-duplicate tier: LSH (SimHash banding) vs brute force.

Synthetic 384-d unit vectors (the MiniLM dimension) with 10% planted near-duplicates at
cosine 0.97–0.995. Each (size, method) runs in its own subprocess so peak RSS is its own.
Prints time and peak memory per size, the speed ratio at 10^5, and LSH recall/precision
against brute force where brute force is feasible (faiss exact search too, if installed).

Usage: python bench/bench_dedup.py [--sizes 10000 100000 1000000] [--brute-max 100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

THRESHOLD = 0.97
DIM = 384


def make_data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, DIM), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    k = n // 10
    src = rng.integers(0, n - k, k)
    # noise norm e → cosine ≈ 1/sqrt(1+e^2); e in [0.1, 0.25] → cos 0.97..0.995
    e = rng.uniform(0.1, 0.25, (k, 1)).astype(np.float32) / np.sqrt(DIM)
    dup = base[src] + rng.standard_normal((k, DIM), dtype=np.float32) * e
    base[n - k :] = dup / np.linalg.norm(dup, axis=1, keepdims=True)
    return base


def run_one(n: int, method: str, out: str) -> None:
    from workers.embed.lsh import LshConfig, brute_force_pairs, near_duplicate_pairs

    x = make_data(n)
    t = time.perf_counter()
    if method == "lsh":
        pairs, _ = near_duplicate_pairs(x, LshConfig(threshold=THRESHOLD))
    elif method == "brute":
        pairs = brute_force_pairs(x, THRESHOLD)
    else:  # faiss exact inner-product range search
        import faiss

        index = faiss.IndexFlatIP(DIM)
        index.add(x)
        lims, _, ids = index.range_search(x, THRESHOLD)
        rows = np.repeat(np.arange(n), np.diff(lims))
        pairs = np.stack([rows, ids], axis=1)
        pairs = pairs[pairs[:, 0] < pairs[:, 1]]
    seconds = time.perf_counter() - t
    np.save(out, pairs.astype(np.int64))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps({"n": n, "method": method, "seconds": seconds, "peak_rss_mb": rss_mb, "pairs": len(pairs)})
    )


def _child(n: int, method: str, out: str) -> dict:
    r = subprocess.run(
        [sys.executable, __file__, "--one", str(n), method, out], capture_output=True, text=True, check=True
    )
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--brute-max", type=int, default=100_000)
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        run_one(int(args.one[0]), args.one[1], args.one[2])
        return
    try:
        import faiss  # noqa: F401

        methods_extra = ["faiss"]
    except ImportError:
        methods_extra = []
        print("faiss not installed: comparing against numpy brute force only")
    results = {}
    with tempfile.TemporaryDirectory() as d:
        for n in args.sizes:
            methods = ["lsh"] + (["brute", *methods_extra] if n <= args.brute_max else [])
            for m in methods:
                res = _child(n, m, f"{d}/{m}-{n}.npy")
                results[(n, m)] = res
                line = f"n={n:>9,d} {m:<6} {res['seconds']:8.2f}s  peak RSS {res['peak_rss_mb']:8.0f} MB  pairs {res['pairs']:,d}"
                if m == "lsh" and n <= args.brute_max:
                    pass
                print(line, flush=True)
            if n <= args.brute_max:
                lsh = np.load(f"{d}/lsh-{n}.npy")
                brute = np.load(f"{d}/brute-{n}.npy")
                a = set((lsh[:, 0] * n + lsh[:, 1]).tolist())
                b = set((brute[:, 0] * n + brute[:, 1]).tolist())
                tp = len(a & b)
                print(
                    f"           recall vs brute force {tp / max(1, len(b)):.4f}  precision {tp / max(1, len(a)):.4f}"
                )
    sizes = [n for n in args.sizes if (n, "lsh") in results]
    for small, big in zip(sizes, sizes[1:], strict=False):
        t0, t1 = results[(small, "lsh")]["seconds"], results[(big, "lsh")]["seconds"]
        print(f"LSH growth {small:,d} -> {big:,d}: x{t1 / t0:.1f} time for x{big / small:.0f} data")
    if (100_000, "brute") in results:
        r = results[(100_000, "brute")]["seconds"] / results[(100_000, "lsh")]["seconds"]
        print(f"speed ratio at 10^5: LSH is {r:.1f}x faster than brute force")


if __name__ == "__main__":
    main()
