"""Interchangeable executors. Each maps a picklable function over tasks, preserving order.

Adapters stay thin: the build graph (``pipelines.build``) owns every decision; a runner only
decides *where* the per-item functions run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Runner(Protocol):
    """Ordered parallel map: ``map(fn, tasks)[i] == fn(tasks[i])``; keyed grouping for global stages.

    ``group_map(key_fn, fn, items)`` groups ``items`` by ``key_fn(item)`` (a str), sorts the
    groups by key and each group's items by their position in ``items``, and returns
    ``[fn(key, group_items) for each key in sorted order]`` — a GroupByKey on Beam, a
    groupby/shuffle on Dask. Results must not depend on the engine or the worker count.
    """

    workers: int

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], desc: str) -> list[R]: ...

    def group_map(
        self, key_fn: Callable[[T], str], fn: Callable[[str, list[T]], R], items: Sequence[T], desc: str
    ) -> list[R]: ...

    def close(self) -> None: ...


def make_runner(name: str, workers: int, quiet: bool = False, **options) -> Runner:
    """Runner by name: ``local`` (processes), ``beam`` or ``dask``."""
    if name == "local":
        from pipelines.runners.local import LocalRunner

        return LocalRunner(workers=workers, quiet=quiet)
    if name == "beam":
        from pipelines.runners.beam import BeamRunner

        return BeamRunner(workers=workers, quiet=quiet, **options)
    if name == "dask":
        from pipelines.runners.dask import DaskRunner

        return DaskRunner(workers=workers, quiet=quiet, **options)
    raise ValueError(f"unknown runner {name!r}")
