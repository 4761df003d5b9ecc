"""Benchmark: our TarShardWriter vs webdataset.ShardWriter writing the same samples.

Prints absolute throughput of both and the ratio ours/theirs (>1 means we are faster).
Usage: python bench/bench_writer.py [--samples 2000] [--kib 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import webdataset as wds  # noqa: E402

from pipelines.writer import TarShardWriter  # noqa: E402


def make_samples(n: int, kib: int) -> list[tuple[str, dict[str, bytes]]]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        ecg = rng.standard_normal((12, 5000)).astype(np.float16).tobytes()
        img = rng.integers(
            0, 255, kib * 1024 - len(ecg) if kib * 1024 > len(ecg) else 1024, dtype=np.uint8
        ).tobytes()
        out.append((f"{i:012x}", {"ecg_0.npy": ecg, "image_0.png": img, "meta.json": b'{"split":"train"}'}))
    return out


def run_ours(samples, folder: Path, per_shard: int) -> float:
    t = time.perf_counter()
    for s in range(0, len(samples), per_shard):
        with TarShardWriter(folder / f"ours-{s // per_shard:06d}.tar") as w:
            for key, members in samples[s : s + per_shard]:
                w.write(key, members)
    return time.perf_counter() - t


def run_theirs(samples, folder: Path, per_shard: int) -> float:
    t = time.perf_counter()
    with wds.ShardWriter(str(folder / "theirs-%06d.tar"), maxcount=per_shard, verbose=0) as w:
        for key, members in samples:
            w.write({"__key__": key, **members})
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--kib", type=int, default=256, help="approximate payload per sample, KiB")
    ap.add_argument("--per-shard", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    samples = make_samples(args.samples, args.kib)
    total = sum(len(v) for _, m in samples for v in m.values())
    best_ours = best_theirs = float("inf")
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.repeats):
            for f in Path(d).iterdir():
                f.unlink()
            # alternate order so page-cache effects do not favour one side
            if r % 2:
                best_theirs = min(best_theirs, run_theirs(samples, Path(d), args.per_shard))
                best_ours = min(best_ours, run_ours(samples, Path(d), args.per_shard))
            else:
                best_ours = min(best_ours, run_ours(samples, Path(d), args.per_shard))
                best_theirs = min(best_theirs, run_theirs(samples, Path(d), args.per_shard))
    mb = total / 1e6
    print(
        f"payload: {args.samples} samples, {mb:.1f} MB, {args.per_shard} samples/shard, best of {args.repeats}"
    )
    print(
        f"ours   (TarShardWriter, fsync+rename): {best_ours:.3f}s  {args.samples / best_ours:,.0f} samples/s  {mb / best_ours:,.0f} MB/s"
    )
    print(
        f"theirs (webdataset.ShardWriter):       {best_theirs:.3f}s  {args.samples / best_theirs:,.0f} samples/s  {mb / best_theirs:,.0f} MB/s"
    )
    print(f"ratio ours/theirs throughput: {best_theirs / best_ours:.2f}x")


if __name__ == "__main__":
    main()
