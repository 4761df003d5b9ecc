"""Dask backend of the dataflow API (``pipelines.flow``): the whole build as ONE ``dask.bag`` graph.

Graph shape: ``create`` → ``db.from_sequence(seeds)`` (the seeds are the only data embedded in
the graph: a few per source; never pass large lists); ``flat_map`` → ``map_partitions``, and a
bag with fewer than ``4 × workers`` partitions is then split into that many so every worker gets
work (``32 × workers`` after a step that fans out, sources → folders → files, so decoding runs
as small tasks handed to whichever worker is free); ``group`` → the task shuffle of
``Bag.groupby(shuffle="tasks")`` over ``4 × workers`` input partitions (adjacent ones joined; all-to-all
between workers; str keys hashed with crc32, the same in every process) then
``fn(key, values sorted by order)`` per group; ``gather`` → a one-task
``reduction`` calling ``fn(all elements sorted by order)``; ``flat_map_with`` → ``map_partitions``
with that task's Delayed as an argument (computed once, sent worker to worker, never through
the client); ``union`` → ``db.concat``. ``run(outputs)`` hands all output bags to ONE
``client.compute``: shared intermediate tasks run once, only the outputs' small rows come back.

Only headers travel (ids, hashes, blob references): payloads stay in the blob store under the
build folder, so every worker must see the input and build folders at the same path. An exception
in a stage function fails ``run`` with its original type and message (the other tasks are
cancelled). ``retries`` reruns tasks that *raised* (transient errors, e.g. an unreachable LLM
server); a task whose worker process died is rescheduled anyway, up to
``distributed.scheduler.allowed-failures`` times (then ``KilledWorker``): stage functions are
idempotent.

By default the first ``run`` starts a ``LocalCluster(n_workers=workers, threads_per_worker=1,
processes=True)`` (spawned workers inherit the driver's ``sys.path`` and environment) and
``close()`` stops it. On an existing cluster (``--runner dask --dask-scheduler tcp://host:8786``)
workers need the project installed (``requirements/lock.txt`` + ``pip install -e .``) and the
secret in their environment (``MEDCORPUS_SECRET``, or ``MEDCORPUS_SECRET_HOOK``)::

    dask scheduler --port 8786
    MEDCORPUS_SECRET=... dask worker tcp://host:8786 --nworkers 8 --nthreads 1
    medcorpus build IN --out OUT --runner dask --workers 8 --dask-scheduler tcp://host:8786

``close()`` then only disconnects and the cluster keeps running; ``--workers`` (the cluster's
worker processes) still sets the partitioning.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import dask.bag as db
from dask.bag.core import groupby_tasks

from pipelines.flow import FlatFn, GroupFn, KeyFn, OrderFn

log = logging.getLogger(__name__)

PARTITIONS_PER_WORKER = 4
#: partitions per worker after a fan-out step (sources → folders → files): the next step (decoding)
#: runs as many small tasks the scheduler hands out as workers free up, so a partition of slow
#: inputs (CT series, radiographs) does not leave the other workers idle at the end
FAN_PARTITIONS_PER_WORKER = 32


def _crc32(key: str) -> int:
    return zlib.crc32(key.encode("utf-8", "surrogatepass"))


def _token(desc: str) -> str:
    return re.sub(r"\W+", "_", desc) or "stage"


class _Flat:
    def __init__(self, fn: FlatFn) -> None:
        self.fn = fn

    def __call__(self, part: Iterable) -> list:
        return [y for x in part for y in self.fn(x)]


class _FlatWith:
    def __init__(self, fn: Callable[[Any, Any], Iterable[Any]]) -> None:
        self.fn = fn

    def __call__(self, part: Iterable, side: Any) -> list:
        return [y for x in part for y in self.fn(x, side)]


class _Key:
    def __init__(self, key_fn: KeyFn) -> None:
        self.key_fn = key_fn

    def __call__(self, element: Any) -> str:
        key = self.key_fn(element)
        if not isinstance(key, str):
            raise TypeError(f"group key must be str, got {type(key).__name__}")
        return key


class _Groups:
    def __init__(self, fn: GroupFn, order: OrderFn) -> None:
        self.fn = fn
        self.order = order

    def __call__(self, part: Iterable[tuple[str, list]]) -> list:
        return [y for k, xs in part for y in self.fn(k, sorted(xs, key=self.order))]


class _Gather:
    def __init__(self, fn: Callable[[list], Any], order: OrderFn) -> None:
        self.fn = fn
        self.order = order

    def __call__(self, parts: Iterable[list]) -> Any:
        return self.fn(sorted((x for p in parts for x in p), key=self.order))


class _DaskSide:
    def __init__(self, item) -> None:
        # a Delayed on the reduction's own key: an Item argument (or an optimized to_delayed) would
        # copy the upstream tasks under new names and compute them twice
        self.value = item.to_delayed(optimize_graph=False)


class _DaskColl:
    def __init__(self, flow: DaskFlow, bag: db.Bag) -> None:
        self.flow = flow
        self.bag = bag

    def _spread(self, bag: db.Bag, per_worker: int = PARTITIONS_PER_WORKER) -> db.Bag:
        p = per_worker * self.flow.workers
        return bag.repartition(npartitions=p) if bag.npartitions < p else bag

    def _shuffle_input(self) -> db.Bag:
        """This bag with exactly ``flow.partitions`` partitions: more (after a fan-out) are joined
        (adjacent ones, no data movement), as the task shuffle's cost grows with them."""
        p = self.flow.partitions
        return self.bag.repartition(npartitions=p) if self.bag.npartitions != p else self.bag

    def flat_map(self, fn: FlatFn, desc: str) -> _DaskColl:
        bag = self.bag.map_partitions(_Flat(fn), token=_token(desc))
        fine = getattr(fn, "fans_out", False)
        return _DaskColl(
            self.flow, self._spread(bag, FAN_PARTITIONS_PER_WORKER if fine else PARTITIONS_PER_WORKER)
        )

    def group(self, key_fn: KeyFn, fn: GroupFn, order: OrderFn, desc: str) -> _DaskColl:
        # ``Bag.groupby(shuffle="tasks")`` with a crc32 instead of ``tokenize`` as the key hash
        # (same buckets in every process, 3x less CPU); ``flow.partitions`` output partitions
        grouped = groupby_tasks(self._shuffle_input(), _Key(key_fn), hash=_crc32)
        return _DaskColl(self.flow, grouped.map_partitions(_Groups(fn, order), token=_token(desc)))

    def gather(self, fn: Callable[[list], Any], order: OrderFn, desc: str) -> _DaskSide:
        item = self.bag.reduction(list, _Gather(fn, order), split_every=False, name=_token(desc))
        return _DaskSide(item)

    def flat_map_with(self, fn, side: _DaskSide, desc: str) -> _DaskColl:
        return _DaskColl(self.flow, self.bag.map_partitions(_FlatWith(fn), side.value, token=_token(desc)))


class DaskFlow:
    """The Flow protocol on ``dask.distributed`` (see the module docstring)."""

    def __init__(
        self, workers: int = 1, quiet: bool = False, scheduler_address: str | None = None, retries: int = 0
    ) -> None:
        self.workers = max(1, int(workers))
        self.quiet = quiet
        self.scheduler_address = scheduler_address or None
        self.retries = max(0, int(retries))
        self.partitions = PARTITIONS_PER_WORKER * self.workers
        self._client = None
        self._cluster = None

    @property
    def client(self):
        """The ``distributed.Client``, started on first use."""
        if self._client is None:
            from distributed import Client, LocalCluster

            if self.scheduler_address:
                self._client = Client(self.scheduler_address, set_as_default=False)
                log.info("dask: connected to %s", self.scheduler_address)
            else:
                self._cluster = LocalCluster(
                    n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None
                )
                self._client = Client(self._cluster, set_as_default=False)
                log.info("dask: LocalCluster with %d worker processes", self.workers)
        return self._client

    def create(self, elements: list, desc: str) -> _DaskColl:  # noqa: ARG002
        elements = list(elements)
        return _DaskColl(
            self, db.from_sequence(elements, npartitions=max(1, min(len(elements), self.partitions)))
        )

    def union(self, *colls: _DaskColl) -> _DaskColl:
        return _DaskColl(self, db.concat([c.bag for c in colls]))

    def run(self, outputs: dict[str, _DaskColl]) -> dict[str, list]:
        if not outputs:
            return {}
        names = list(outputs)
        client = self.client
        futures = client.compute([outputs[n].bag for n in names], retries=self.retries)
        try:
            if not self.quiet:
                from distributed import progress

                progress(futures, scheduler=client.scheduler.address)
            results = client.gather(futures)
        except BaseException:
            client.cancel(futures)
            raise
        return {n: list(r) for n, r in zip(names, results, strict=True)}

    def close(self) -> None:
        """Disconnect; stop the LocalCluster if this flow started it."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
