"""Local backend of the dataflow API (``pipelines.flow``): this process plus a ``fork`` pool.

Eager: each operation runs when declared. Elements (headers, never payloads) live in this
process; per-element work runs on ``--workers N`` processes of a ``ProcessPoolExecutor``
(fork), in chunks of a few elements. A worker process that dies (OOM kill, segfault in a
native decoder) raises ``BrokenProcessPool`` and fails the build loudly instead of hanging it;
a rerun resumes from the header cache and finished shards. ``workers == 1`` runs in-process.
Wall time per operation is kept in ``stage_seconds`` (written to ``OUT/run.json``).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from pipelines.flow import (
    FlatFn,
    GroupFn,
    KeyFn,
    OrderFn,
    _ApplyFlat,
    _ApplyGroup,
    _ApplyWith,
    group_in_memory,
)


@dataclass(frozen=True)
class _LocalSide:
    value: Any


class _LocalColl:
    def __init__(self, flow: LocalFlow, elements: list) -> None:
        self.flow = flow
        self.elements = elements

    def flat_map(self, fn: FlatFn, desc: str) -> _LocalColl:
        return _LocalColl(self.flow, self.flow._map(_ApplyFlat(fn), self.elements, desc))

    def group(self, key_fn: KeyFn, fn: GroupFn, order: OrderFn, desc: str) -> _LocalColl:
        groups = group_in_memory(self.elements, key_fn, order)
        return _LocalColl(self.flow, self.flow._map(_ApplyGroup(fn), groups, desc))

    def gather(self, fn: Callable[[list], Any], order: OrderFn, desc: str) -> _LocalSide:  # noqa: ARG002
        return _LocalSide(fn(sorted(self.elements, key=order)))

    def flat_map_with(self, fn, side: _LocalSide, desc: str) -> _LocalColl:
        return _LocalColl(self.flow, self.flow._map(_ApplyWith(fn, side.value), self.elements, desc))


class LocalFlow:
    """Eager backend: elements (headers) in this process, per-element work on a process pool.

    ``workers == 1`` runs everything in-process. Work is sent to the pool in chunks of
    ``chunk`` elements (each a few kB), so the per-item pickling cost stays small.
    """

    def __init__(self, workers: int = 1, quiet: bool = False, chunk: int = 8) -> None:
        self.workers = max(1, workers)
        self.quiet = quiet
        self.chunk = chunk
        self._pool: ProcessPoolExecutor | None = None
        self.stage_seconds: dict[str, float] = {}

    def _map(self, fn: Callable[[list], list], elements: list, desc: str) -> list:
        t0 = time.perf_counter()
        try:
            return self._map_timed(fn, elements, desc)
        finally:
            self.stage_seconds[desc] = round(self.stage_seconds.get(desc, 0.0) + time.perf_counter() - t0, 3)

    def _map_timed(self, fn: Callable[[list], list], elements: list, desc: str) -> list:
        n = len(elements)
        out: list = []
        bar = tqdm(total=n, desc=desc, unit="item", disable=self.quiet, leave=False)
        try:
            if self.workers == 1 or n <= 1:
                for e in elements:
                    out.extend(fn([e]))
                    bar.update()
                return out
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"))
            # small chunks early so both workers start at once; at most ~4 chunks per worker in flight
            size = max(1, min(self.chunk, n // (4 * self.workers) or 1))
            chunks = [elements[i : i + size] for i in range(0, n, size)]
            for c, res in zip(chunks, self._pool.map(fn, chunks), strict=True):
                out.extend(res)
                bar.update(len(c))
        finally:
            bar.close()
        return out

    def create(self, elements: list, desc: str) -> _LocalColl:  # noqa: ARG002
        return _LocalColl(self, list(elements))

    def union(self, *colls: _LocalColl) -> _LocalColl:
        return _LocalColl(self, [e for c in colls for e in c.elements])

    def run(self, outputs: dict[str, _LocalColl]) -> dict[str, list]:
        return {name: list(c.elements) for name, c in outputs.items()}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
