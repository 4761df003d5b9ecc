"""Dask runner: the build's stages on ``dask.distributed``.

``map`` maps the stage function over the tasks with ``client.map`` (one Dask task per item) and
gathers the results in the original order. ``group_map`` is a ``dask.bag`` ``groupby`` with the
task-based shuffle (a real all-to-all exchange between workers), then the group function per
key; groups are sorted by key on the driver and each group's items by their original position.

Task inputs travel inside the task graph (through the scheduler), not scattered to one worker:
the scheduler can then rerun the tasks of a worker that died on another worker. Scattered data
would die with its worker and fail the stage with a "lost data" error instead.

By default the runner starts a ``LocalCluster(n_workers=N, threads_per_worker=1,
processes=True, dashboard_address=None)``; with ``scheduler_address`` (``tcp://host:8786``) it
connects to an existing cluster and leaves it running on ``close()``.

A stage function with a ``setup()`` method has it called once per worker process before its
first task (the place to load models). An exception in a task (a bug; bad input is already a
quarantine record returned by the worker) is re-raised by ``map``/``group_map`` with its
original type after the stage's other tasks are cancelled: never swallowed. A raising task is
not retried unless ``retries`` > 0; a task whose *worker process* dies is rescheduled by the
scheduler, up to ``distributed.scheduler.allowed-failures`` times (then ``KilledWorker``), which is
safe because every stage function is idempotent (shards are written atomically and skipped
when complete).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tqdm import tqdm

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# worker-process state: (stage token, set-up stage function); one stage runs at a time
_WORKER_FN: dict[str, Any] = {}


class _OnWorker:
    """Picklable task wrapper: set the stage function up once per worker process, then call it."""

    def __init__(self, fn: Callable, token: str) -> None:
        self.fn = fn
        self.token = token

    def _instance(self) -> Callable:
        fn = _WORKER_FN.get(self.token)
        if fn is None:
            _WORKER_FN.clear()  # the previous stage is over: drop its models
            fn = self.fn
            hook = getattr(fn, "setup", None)
            if callable(hook):
                hook()
            _WORKER_FN[self.token] = fn
        return fn

    def __call__(self, task):
        return self._instance()(task)

    def group(self, part: list) -> list:
        """Apply to a partition of ``(key, [(i, item), ...])`` groups → ``(key, n, result)``."""
        fn = self._instance()
        out = []
        for key, indexed in part:
            indexed = sorted(indexed, key=lambda p: p[0])
            out.append((key, len(indexed), fn(key, [item for _, item in indexed])))
        return out


class _IndexedKey:
    """``(i, item) -> key_fn(item)`` for the bag groupby."""

    def __init__(self, key_fn: Callable) -> None:
        self.key_fn = key_fn

    def __call__(self, pair) -> str:
        key = self.key_fn(pair[1])
        if not isinstance(key, str):
            raise TypeError(f"group key must be str, got {type(key).__name__}")
        return key


def _chunks(seq: list, n: int) -> list[list]:
    """Split ``seq`` into ``n`` contiguous, nearly equal, non-empty chunks (n <= len(seq))."""
    size, extra = divmod(len(seq), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(seq[start:end])
        start = end
    return out


class DaskRunner:
    """Run build stages on a Dask distributed cluster (see the module docstring).

    Args:
        workers: worker processes of the local cluster (one thread each); ignored for the
            cluster size when ``scheduler_address`` is given, but still sets the partitioning.
        quiet: no progress bars.
        scheduler_address: ``tcp://host:port`` of a running scheduler; None starts a LocalCluster.
        partitions_per_worker: bag partitions per worker in group stages.
        retries: reruns of a task that *raised* (default 0: fail at once, like the local runner).
            Production builds that call remote services (the vLLM server) may set 1–2 so that a
            transient ``LlmServerUnavailable`` does not fail the build; a bug still fails it after
            the retries. Independent of the rescheduling of tasks whose worker died.
    """

    def __init__(
        self,
        workers: int = 1,
        quiet: bool = False,
        scheduler_address: str | None = None,
        partitions_per_worker: int = 4,
        retries: int = 0,
    ) -> None:
        self.workers = max(1, int(workers))
        self.quiet = quiet
        self.scheduler_address = scheduler_address or None
        self.partitions_per_worker = max(1, partitions_per_worker)
        self.retries = max(0, retries)
        self._client = None
        self._cluster = None

    @property
    def client(self):
        """The ``distributed.Client``, started on first use."""
        if self._client is None:
            from dask.distributed import Client, LocalCluster

            if self.scheduler_address:
                self._client = Client(self.scheduler_address)
                log.info("dask: connected to an existing scheduler")
            else:
                self._cluster = LocalCluster(
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
                self._client = Client(self._cluster)
                log.info("dask: LocalCluster with %d worker processes", self.workers)
        return self._client

    def _n_workers(self) -> int:
        if self.scheduler_address:
            return max(1, len(self.client.scheduler_info().get("workers", {})))
        return self.workers

    def _wait(self, futures: list, desc: str, unit: str) -> None:
        """Progress over ``futures``; on the first failure cancel the rest and re-raise it."""
        from dask.distributed import as_completed

        bar = tqdm(total=len(futures), desc=desc, unit=unit, disable=self.quiet, leave=False)
        try:
            for fut in as_completed(futures):
                if fut.status == "error":
                    self.client.cancel([f for f in futures if not f.done()])
                    log.error("Dask stage %r failed (an exception in a task: see the traceback)", desc)
                    fut.result()  # raises the task's exception with its original type
                bar.update()
        finally:
            bar.close()

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], desc: str) -> list[R]:
        """``[fn(t) for t in tasks]`` on the cluster; order preserved."""
        tasks = list(tasks)
        if not tasks:
            return []
        client = self.client
        token = f"{desc}-{uuid.uuid4().hex}"
        futures = client.map(
            _OnWorker(fn, token),
            tasks,
            pure=False,
            key=[f"{token}-{i}" for i in range(len(tasks))],
            retries=self.retries,
        )
        self._wait(futures, desc, "item")
        return client.gather(futures)

    def group_map(
        self, key_fn: Callable[[T], str], fn: Callable[[str, list[T]], R], items: Sequence[T], desc: str
    ) -> list[R]:
        """Bag groupby (task shuffle) on ``key_fn``; ``fn(key, group)`` per key, sorted by key."""
        import dask
        import dask.bag as db

        items = list(items)
        if not items:
            return []
        client = self.client
        token = f"{desc}-{uuid.uuid4().hex}"
        nparts = min(len(items), self._n_workers() * self.partitions_per_worker)
        # partitions as named literals: ``db.from_sequence`` would tokenize (hash the repr of) every
        # payload byte, seconds per stage for a few hundred MB of records
        parts = [
            dask.delayed(chunk, name=f"{token}-in-{j}", traverse=False)
            for j, chunk in enumerate(_chunks(list(enumerate(items)), nparts))
        ]
        bag = db.from_delayed(parts)
        grouped = bag.groupby(_IndexedKey(key_fn), shuffle="tasks", npartitions=bag.npartitions)
        applied = grouped.map_partitions(_OnWorker(fn, token).group)
        futures = client.compute(applied.to_delayed(), retries=self.retries)
        self._wait(futures, desc, "partition")
        groups = sorted((g for part in client.gather(futures) for g in part), key=lambda g: g[0])
        n_items = sum(n for _, n, _ in groups)
        keys = [k for k, _, _ in groups]
        if n_items != len(items) or len(set(keys)) != len(keys):
            raise RuntimeError(f"Dask stage {desc!r}: groups cover {n_items} of {len(items)} items")
        return [r for _, _, r in groups]

    def close(self) -> None:
        """Close the client; shut down the LocalCluster if this runner started it."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
