"""A tiny dataflow API the build graph is written in, with one backend per runner.

The build is declared once as a graph over *collections of small picklable elements* (headers:
ids, hashes, blob references; never payload bytes) and executed once by a backend:

- ``local``: lazy; collections spilled to encrypted partition files, work on a process pool
  (``pipelines.runners.local``);
- ``beam``: one Beam pipeline (``Create`` → ``FlatMap`` / ``GroupByKey`` / side inputs), submitted once;
- ``dask``: one task graph over the same spill files as ``local``, computed once
  (``pipelines.runners.dask``).

Operations (every backend must give the same *multiset* of elements; order is never promised,
so consumers sort, and group/gather functions receive their elements sorted by ``order``):

``flow.create(elements)``
    a collection from a small list of seeds (e.g. one per configured source).
``coll.flat_map(fn)``
    ``fn(element) -> iterable``, run in workers, elements in parallel. A function whose outputs
    are many and expensive (a source → its folders → its files) declares ``fans_out = True``, so
    an engine that fuses steps (Beam) redistributes its outputs across workers.
``coll.group(key_fn, fn, order)``
    GroupByKey on ``key_fn(element)`` (a str), then ``fn(key, elements sorted by order) -> iterable``
    in a worker, once per key.
``coll.gather(fn, order)``
    all elements, sorted by ``order``, to one ``fn(list) -> value`` call: a *side value* (small:
    counts, an id → label map, a shard plan of a few hundred bytes per sample).
``coll.flat_map_with(fn, side)``
    ``fn(element, side value) -> iterable`` (a side input).
``flow.union(*colls)``
    the elements of several collections.
``flow.run({name: coll})``
    executes the graph once and returns each named collection's elements as a list (small rows
    only: status, counts, manifest rows; the driver never sees payloads).

Stage functions are picklable objects; a function that needs a heavy resource (a model, a server
client) loads it lazily once per worker process. An exception in a stage function is a bug and
fails the run (bad input is already a quarantine record). Functions must be deterministic and
idempotent (a retried task rewrites the same files).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

FlatFn = Callable[[Any], Iterable[Any]]
GroupFn = Callable[[str, list], Iterable[Any]]
KeyFn = Callable[[Any], str]
OrderFn = Callable[[Any], Any]


class Side(Protocol):
    """A handle on a side value (the result of ``gather``)."""


class Coll(Protocol):
    """A handle on a collection of small picklable elements."""

    def flat_map(self, fn: FlatFn, desc: str) -> Coll: ...

    def group(self, key_fn: KeyFn, fn: GroupFn, order: OrderFn, desc: str) -> Coll: ...

    def gather(self, fn: Callable[[list], Any], order: OrderFn, desc: str) -> Side: ...

    def flat_map_with(self, fn: Callable[[Any, Any], Iterable[Any]], side: Side, desc: str) -> Coll: ...


class Flow(Protocol):
    """A backend: builds the graph lazily (Beam, Dask) or eagerly (local), runs it once."""

    workers: int

    def create(self, elements: list, desc: str) -> Coll: ...

    def union(self, *colls: Coll) -> Coll: ...

    def run(self, outputs: dict[str, Coll]) -> dict[str, list]: ...

    def close(self) -> None: ...


# --- helpers shared by the backends ----------------------------------------------------------------


@dataclass(frozen=True)
class Select:
    """``flat_map`` adapter: keep the payload of ``(tag, value)`` elements whose tag is ``tag``."""

    tag: str

    def __call__(self, element: tuple[str, Any]) -> Iterable[Any]:
        if element[0] == self.tag:
            yield element[1]


def group_in_memory(elements: Iterable, key_fn: KeyFn, order: OrderFn) -> list[tuple[str, list]]:
    """``[(key, elements sorted by order)]`` sorted by key (the local shuffle)."""
    groups: dict[str, list] = {}
    for e in elements:
        k = key_fn(e)
        if not isinstance(k, str):
            raise TypeError(f"group key must be str, got {type(k).__name__}")
        groups.setdefault(k, []).append(e)
    return [(k, sorted(groups[k], key=order)) for k in sorted(groups)]


def make_flow(name: str, workers: int, quiet: bool = False, **options) -> Flow:
    """Backend by runner name: ``local``, ``beam`` or ``dask`` (options: see each backend)."""
    if name == "local":
        from pipelines.runners.local import LocalFlow

        return LocalFlow(workers=workers, quiet=quiet)
    if name == "beam":
        from pipelines.runners.beam import BeamFlow

        return BeamFlow(workers=workers, quiet=quiet, **options)
    if name == "dask":
        from pipelines.runners.dask import DaskFlow

        return DaskFlow(workers=workers, quiet=quiet, **options)
    raise ValueError(f"unknown runner {name!r}")
