"""Local runner: a process pool (``--workers N``) with a progress bar; N=1 runs in-process.

Uses ``concurrent.futures.ProcessPoolExecutor`` (fork): a worker process that dies (OOM kill,
segfault in a native decoder) raises ``BrokenProcessPool`` and fails the build loudly instead
of hanging it; a rerun resumes from the decode cache and finished shards.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


class LocalRunner:
    """Ordered map over a ``fork`` process pool, created lazily and reused across stages."""

    def __init__(self, workers: int = 1, quiet: bool = False) -> None:
        self.workers = max(1, workers)
        self.quiet = quiet
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], desc: str) -> list[R]:
        bar = tqdm(total=len(tasks), desc=desc, unit="item", disable=self.quiet, leave=False)
        out: list[R] = []
        try:
            if self.workers == 1 or len(tasks) <= 1:
                for t in tasks:
                    out.append(fn(t))
                    bar.update()
            else:
                if self._pool is None:
                    self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"))
                for r in self._pool.map(fn, tasks, chunksize=1):
                    out.append(r)
                    bar.update()
        finally:
            bar.close()
        return out

    def group_map(
        self, key_fn: Callable[[T], str], fn: Callable[[str, list[T]], R], items: Sequence[T], desc: str
    ) -> list[R]:
        """Group in-process (the shuffle is free locally), apply ``fn`` per group in parallel."""
        groups: dict[str, list[T]] = {}
        for it in items:
            groups.setdefault(key_fn(it), []).append(it)
        keys = sorted(groups)
        return self.map(_ApplyGroup(fn), [(k, groups[k]) for k in keys], desc)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class _ApplyGroup:
    """Picklable ``(key, items) -> fn(key, items)`` adapter."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def __call__(self, kv):
        return self.fn(kv[0], kv[1])
