"""Fixed costs of the Dask backend against the local backend on small flows (same process, same machine).

Runs each flow ``--repeat`` times on a warm 2-worker ``DaskFlow`` and on a ``LocalFlow`` with the
same workers, and prints the best and median wall seconds of each and the ratio dask / local.
The flows are the dataflow API's shapes (``pipelines.flow``): a few ``flat_map``s, a fan-out to
20,000 / 200,000 elements, and a ``group`` into 256 keys. The cluster start and close are timed
once. What a real build adds on top is decoding, which dominates (``bench/bench_scale.py``).

Usage::

    .venv/bin/python bench/bench_dask_flow.py --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def fan(n: int) -> Iterable[int]:
    return range(n)


fan.fans_out = True


def plus1(x: int) -> Iterable[int]:
    yield x + 1


def key256(x: int) -> str:
    return f"k{x % 256:03d}"


def count(key: str, xs: list) -> Iterable[tuple]:
    yield key, len(xs)


def ident(x):
    return x


FLOWS = {
    "tiny flow (1 seed, 3 flat_maps)": lambda f: (
        f.create([3], "s").flat_map(plus1, "a").flat_map(plus1, "b").flat_map(plus1, "c")
    ),
    "1 seed -> 20,000 elements -> 2 flat_maps": lambda f: (
        f.create([20_000], "s").flat_map(fan, "fan").flat_map(plus1, "a").flat_map(plus1, "b")
    ),
    "1 seed -> 200,000 elements -> 2 flat_maps": lambda f: (
        f.create([200_000], "s").flat_map(fan, "fan").flat_map(plus1, "a").flat_map(plus1, "b")
    ),
    "1 seed -> 20,000 elements -> group into 256 keys": lambda f: (
        f.create([20_000], "s").flat_map(fan, "fan").group(key256, count, ident, "g")
    ),
}


def _time(flow, build, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        flow.run({"x": build(flow)})
        out.append(time.perf_counter() - t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)

    from pipelines.runners.dask import DaskFlow
    from pipelines.runners.local import LocalFlow

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        dflow = DaskFlow(workers=args.workers, quiet=True, spill_dir=tmp)
        dflow.client.wait_for_workers(args.workers)
        start = time.perf_counter() - t
        lflow = LocalFlow(workers=args.workers, quiet=True, spill_dir=tmp)
        _time(lflow, FLOWS["tiny flow (1 seed, 3 flat_maps)"], 1)  # spawn the pool once
        print("| flow | dask best / median s | local best / median s | dask / local (best) |")
        print("|---|---:|---:|---:|")
        for name, build in FLOWS.items():
            d, loc = _time(dflow, build, args.repeat), _time(lflow, build, args.repeat)
            print(
                f"| {name} | {min(d):.2f} / {statistics.median(d):.2f} | "
                f"{min(loc):.2f} / {statistics.median(loc):.2f} | {min(d) / min(loc):.2f} |"
            )
        t = time.perf_counter()
        dflow.close()
        lflow.close()
        print(f"\ncluster start {start:.1f} s, close {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
