"""Dask backend of the dataflow API (``pipelines.flow``): the whole build as ONE task graph, computed once.

Each task reads encrypted partition files and writes its own (``pipelines.runners.spill``, the
same tasks as the local backend); a task's result is a list of ``(file, element count)`` pairs,
so Dask holds and moves only file names between workers, and the client receives only the
outputs' file names (it reads those small rows itself). Collections never live in worker memory:
a build's worker memory does not grow with the corpus (the ``dask.bag`` graph this replaces held
every partition in its workers until its last reader ran: 1.1 → 3.1 GB from 10^4 to 10^5
samples), and input paths never rest in clear in Dask's own spill folder.

Graph shape, fixed before any data is seen (task counts do not depend on the corpus):

- ``create`` → one literal partition per seed (a few per source; never pass large lists);
- ``flat_map`` chains are fused as on the local backend (single-reader steps that do not fan out)
  into one task per input partition group; a chain that fans out (sources → folders → files)
  deals its outputs into ``32 × workers`` slices, and task k of the next step reads slice k of
  every task of this one, so decoding runs as many small tasks handed to whichever worker is free;
- ``group`` → a two-phase shuffle: one map task per input partition group writes ONE file of
  ``4 × workers`` bucket chunks (crc32 of the key); reduce task b reads chunk b of every map file
  and calls ``fn(key, values sorted by order)``;
- ``gather`` → one task in a worker writes the side value to a file; ``flat_map_with`` tasks
  depend on it and load it once per worker process;
- after the last reader of a collection has run, a clean-up task deletes its files.

``run(outputs)`` hands every output and clean-up task to ONE ``client.compute``: shared steps
run once. The spill folder (``spill_dir``: the build folder) must be on a file system every
worker and the client see at the same path, as are the input and build folders. The spill key
(32 random bytes per run) travels inside the task specs to the scheduler and workers, like the
rest of the graph; use TLS on a cluster whose network you do not trust. The pseudonymisation
secret never does: workers resolve it from their environment.

An exception in a stage function fails ``run`` with its original type and message (the other
tasks are cancelled). ``retries`` (a constructor argument for API callers; the CLI leaves it at
0) reruns tasks that *raised* (transient errors, e.g. the LLM stage's ``LlmServerUnavailable``
once the client's own per-request retries are spent); a task whose worker process died is
rescheduled anyway, up to ``distributed.scheduler.allowed-failures`` times (then
``KilledWorker``): tasks are idempotent.

By default the first ``run`` starts a ``LocalCluster(n_workers=workers, threads_per_worker=1,
processes=True)`` (spawned workers inherit the driver's ``sys.path`` and environment) and
``close()`` stops it. On an existing cluster (``--runner dask --dask-scheduler tcp://host:8786``)
workers need the project installed (``requirements/lock.txt`` + ``pip install -e .``) and the
secret in their environment (``MEDCORPUS_SECRET``, or ``MEDCORPUS_SECRET_HOOK``)::

    dask scheduler --port 8786
    MEDCORPUS_SECRET=... dask worker tcp://host:8786 --nworkers 8 --nthreads 1
    medcorpus build IN --out OUT --runner dask --workers 8 --dask-scheduler tcp://host:8786

``close()`` then only disconnects and the cluster keeps running; ``--workers`` (the cluster's
worker processes) still sets the slice and bucket counts.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import dask
from dask.delayed import Delayed

from pipelines.flow import KeyFn
from pipelines.runners import drop_dask_malloc_trim
from pipelines.runners.local import PART, Node, SideNode, count_consumers, fused_chain
from pipelines.runners.spill import BucketTask, ChainTask, GatherTask, GroupTask, Step, clear_sides, load

log = logging.getLogger(__name__)

PARTITIONS_PER_WORKER = 4  #: shuffle buckets (reduce tasks of a ``group``) per worker
#: slices per worker after a fan-out step (sources → folders → files): the next step (decoding)
#: runs as that many small tasks the scheduler hands out as workers free up, so a slice of slow
#: inputs (CT series, radiographs) does not leave the other workers idle at the end
FAN_PARTITIONS_PER_WORKER = 32

#: Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand freed memory back to
#: the OS). Setting it switches off glibc's dynamic mmap threshold, so every array over 128 kB (an
#: ECG's 12 x 5,000 samples, an image) is a fresh ``mmap`` whose pages fault in again: the same
#: numpy work took 0.13 s per task in such a worker against 0.07 s without it. LocalCluster workers
#: keep glibc's defaults and every task ends with ``malloc_trim(0)`` instead (``_trim_heap``); on
#: your own cluster set ``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null`` in
#: the workers' Dask config (docs/scale.md).
GLIBC_DEFAULTS = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}

#: one partition group: the tasks (or literal partitions) it comes from, each with a slice index
#: (``None``: the task's whole output)
Handle = list[tuple[Delayed, int | None]]


# --- task bodies (run in workers; arguments are earlier tasks' results) ---------------------------


def _sources(selectors: tuple, results: tuple) -> tuple:
    """The partition files (or literal seed lists) of one handle, from its producers' results."""
    out: list = []
    for sel, res in zip(selectors, results, strict=True):
        out.extend(src for src, _ in (res if sel is None else res[sel]))
    return tuple(out)


def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def _trim_heap() -> None:
    """Hand the memory a finished task freed back to the OS (glibc ``malloc_trim(0)``, ~ms).

    Instead of Dask's ``MALLOC_TRIM_THRESHOLD_`` (see ``GLIBC_DEFAULTS``), which trims on every
    ``free`` but fixes the mmap threshold: without either, a worker kept 1,446 MB at 10^5
    samples against 1,044 MB at 10^4.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class SpillLost(RuntimeError):
    """A task's input files were deleted: rerun the build (it resumes from the header cache)."""


def _reads_spill(fn):
    """Turn a missing spill file into :class:`SpillLost` with a message that says what happened.

    A collection's files are deleted once every reader has run. If a worker process dies after
    that, Dask recomputes the results it held (file names) by rerunning their tasks, whose inputs
    are gone: the build stops and a rerun resumes from the header cache and finished shards, as on
    the local backend after a lost worker.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except FileNotFoundError as e:
            if "medcorpus-spill-" not in str(e.filename or ""):
                raise
            raise SpillLost(
                f"the spill file {os.path.basename(e.filename)} of an earlier step is gone (a worker "
                "died after that step's readers had run); rerun the build: it resumes"
            ) from None
        finally:
            _trim_heap()

    return wrapper


@_reads_spill
def _chain(steps: tuple, spec: tuple, selectors: tuple, *results: Any) -> list:
    prefix, part, key, slices = spec
    sources = _sources(selectors, results[: len(selectors)])  # the rest: side values this chain waits for
    return ChainTask(sources, steps, prefix, part, key, slices)()


@_reads_spill
def _bucket(key_fn: KeyFn, spec: tuple, selectors: tuple, *results: Any) -> int:
    n_buckets, path, key = spec
    return BucketTask(_sources(selectors, results), key_fn, n_buckets, path, key)()


@_reads_spill
def _reduce(fn_order: tuple, spec: tuple, *maps: int) -> list:  # noqa: ARG001 - maps: ordering only
    fn, order = fn_order
    map_prefix, n_maps, bucket, prefix, key = spec
    return GroupTask(map_prefix, n_maps, bucket, fn, order, prefix, PART, key)()


@_reads_spill
def _gather(fn_order: tuple, spec: tuple, selectors: tuple, *results: Any) -> str:
    fn, order = fn_order
    path, key = spec
    GatherTask(_sources(selectors, results), fn, order, path, key)()
    return path


def _collect(selectors: tuple, *results: Any) -> list:
    return [
        p for sel, res in zip(selectors, results, strict=True) for p in (res if sel is None else res[sel])
    ]


def _unlink(n_producers: int, selectors: tuple, *results: Any) -> int:
    """Delete the partition files of a collection once every reader has run (``results`` beyond
    the producers' are the readers', passed only so that this task runs after them)."""
    n = 0
    for sel, res in zip(selectors, results[:n_producers], strict=True):
        for src, _ in res if sel is None else res[sel]:
            if isinstance(src, str):
                with contextlib.suppress(FileNotFoundError):  # a rerun of this task after a lost worker
                    os.unlink(src)
                n += 1
    return n


def _unlink_maps(map_prefix: str, n_maps: int, *reducers: Any) -> int:  # noqa: ARG001 - ordering only
    for i in range(n_maps):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{map_prefix}{i:06d}")
    return n_maps


def _token(desc: str) -> str:
    return re.sub(r"\W+", "_", desc) or "stage"


class _Plan:
    """Turns the declared graph into Delayed tasks (one per partition group), with clean-up tasks."""

    def __init__(self, flow: DaskFlow, outputs: dict[str, Node], key: bytes, tmp: str) -> None:
        self.flow = flow
        self.key = key
        self.tmp = tmp
        self.serial = 0
        # task keys are unique per run: two builds on one scheduler, or one flow run twice, must
        # never share a key (the scheduler would hand a run another run's files)
        self.run_id = os.urandom(4).hex()
        self.memo: dict[int, list[Handle]] = {}
        self.sides: dict[int, tuple[str, Delayed]] = {}
        self.consumers = count_consumers(list(outputs.values()))
        for node in outputs.values():  # read by the client at the end: never fused away
            self.consumers[id(node)] = self.consumers.get(id(node), 0) + 1
        # read by the client at the end (an output that is a union: its parents' files)
        self.keep = {o for n in outputs.values() for o in self._origins(n)}
        self.readers: dict[int, list[Delayed]] = defaultdict(list)  # producing node → reader tasks
        self.producers: dict[int, list[Handle]] = {}  # node whose files a clean-up task deletes
        self.cleanup: list[Delayed] = []

    def _name(self, desc: str) -> str:
        self.serial += 1
        return f"{_token(desc)}-{self.run_id}-{self.serial:04d}"

    def _read(self, node: Node, task: Delayed) -> None:
        """``task`` reads partitions of ``node``: the files' clean-up waits for it."""
        for origin in self._origins(node):
            self.readers[origin].append(task)

    def _origins(self, node: Node) -> list[int]:
        if node.kind == "union":
            return [o for p in node.parents for o in self._origins(p)]
        return [id(node)]

    def handles(self, node: Node) -> list[Handle]:
        if id(node) not in self.memo:
            if node.kind == "create":
                name = self._name(node.spec["desc"])
                res = [
                    [(dask.delayed([([e], 1)], name=f"{name}-{i:06d}", traverse=False), None)]
                    for i, e in enumerate(node.spec["elements"])
                ]
            elif node.kind == "union":
                res = [h for p in node.parents for h in self.handles(p)]
            elif node.kind == "flat":
                res = self._chain(node)
            else:
                res = self._group(node)
            self.memo[id(node)] = res
            if node.kind in ("flat", "group"):
                self.producers[id(node)] = res
        return self.memo[id(node)]

    def side(self, side: SideNode) -> tuple[str, Delayed]:
        if id(side) not in self.sides:
            name = self._name(side.desc)
            path = os.path.join(self.tmp, f"{name}-side")
            hs = self.handles(side.parent)
            flat = [x for h in hs for x in h]
            task = dask.delayed(_gather, pure=False)(
                dask.delayed((side.fn, side.order), name=f"{name}-fn", traverse=False),
                (path, self.key),
                tuple(s for _, s in flat),
                *(d for d, _ in flat),
                dask_key_name=name,
            )
            self._read(side.parent, task)
            self.sides[id(side)] = (path, task)
        return self.sides[id(side)]

    def _chain(self, node: Node) -> list[Handle]:
        chain = fused_chain(node, self.consumers, self.memo)
        source = chain[0].parents[0]
        sides = [self.side(n.spec["side"]) if "side" in n.spec else None for n in chain]
        name = self._name("+".join(n.spec["desc"] for n in chain[:3]))
        steps = dask.delayed(
            tuple(Step(n.spec["fn"], s[0] if s else "") for n, s in zip(chain, sides, strict=True)),
            name=f"{name}-fn",
            traverse=False,
        )
        waits = [s[1] for s in sides if s]
        fans = getattr(node.spec["fn"], "fans_out", False)
        slices = FAN_PARTITIONS_PER_WORKER * self.flow.workers if fans else 0
        tasks = []
        for i, h in enumerate(self.handles(source)):
            task = dask.delayed(_chain, pure=False)(
                steps,
                (os.path.join(self.tmp, f"{name}-{i:06d}"), PART, self.key, slices),
                tuple(s for _, s in h),
                *(d for d, _ in h),
                *waits,
                dask_key_name=f"{name}-{i:06d}",
            )
            self._read(source, task)
            tasks.append(task)
        if fans:
            return [[(t, k) for t in tasks] for k in range(slices)]
        return [[(t, None)] for t in tasks]

    def _group(self, node: Node) -> list[Handle]:
        source = node.parents[0]
        name = self._name(node.spec["desc"])
        map_prefix = os.path.join(self.tmp, f"{name}-m")
        n_buckets = PARTITIONS_PER_WORKER * self.flow.workers
        key_fn = dask.delayed(node.spec["key_fn"], name=f"{name}-key", traverse=False)
        maps = []
        for i, h in enumerate(self.handles(source)):
            task = dask.delayed(_bucket, pure=False)(
                key_fn,
                (n_buckets, f"{map_prefix}{i:06d}", self.key),
                tuple(s for _, s in h),
                *(d for d, _ in h),
                dask_key_name=f"{name}-map-{i:06d}",
            )
            self._read(source, task)
            maps.append(task)
        fn_order = dask.delayed((node.spec["fn"], node.spec["order"]), name=f"{name}-fn", traverse=False)
        reducers = [
            dask.delayed(_reduce, pure=False)(
                fn_order,
                (map_prefix, len(maps), b, os.path.join(self.tmp, f"{name}-r{b:06d}"), self.key),
                *maps,
                dask_key_name=f"{name}-{b:06d}",
            )
            for b in range(n_buckets)
        ]
        self.cleanup.append(
            dask.delayed(_unlink_maps, pure=False)(
                map_prefix, len(maps), *reducers, dask_key_name=f"{name}-unlink-maps"
            )
        )
        return [[(t, None)] for t in reducers]

    def collect(self, node: Node) -> Delayed:
        flat = [x for h in self.handles(node) for x in h]
        return dask.delayed(_collect, pure=False)(
            tuple(s for _, s in flat), *(d for d, _ in flat), dask_key_name=self._name("collect")
        )

    def finish(self) -> list[Delayed]:
        """Clean-up tasks: each deletes a collection's files after its last reader."""
        for node_id, hs in self.producers.items():
            if node_id in self.keep or not self.readers[node_id]:
                continue  # an output (read by the client) or fused away: the folder goes at the end
            flat = [x for h in hs for x in h]
            self.cleanup.append(
                dask.delayed(_unlink, pure=False)(
                    len(flat),
                    tuple(s for _, s in flat),
                    *(d for d, _ in flat),
                    *self.readers[node_id],
                    dask_key_name=self._name("unlink"),
                )
            )
        return self.cleanup


class DaskFlow:
    """The Flow protocol on ``dask.distributed`` (see the module docstring)."""

    def __init__(
        self,
        workers: int = 1,
        quiet: bool = False,
        scheduler_address: str | None = None,
        retries: int = 0,
        spill_dir: str | None = None,
    ) -> None:
        self.workers = max(1, int(workers))
        self.quiet = quiet
        self.scheduler_address = scheduler_address or None
        self.retries = max(0, int(retries))
        self.spill_dir = spill_dir  # the build sets its output folder (shared by every worker)
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
                drop_dask_malloc_trim()  # left by an earlier cluster of this process
                with dask.config.set(GLIBC_DEFAULTS):
                    self._cluster = LocalCluster(
                        n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None
                    )
                self._client = Client(self._cluster, set_as_default=False)
                log.info("dask: LocalCluster with %d worker processes", self.workers)
        return self._client

    # -- the Flow protocol --
    def create(self, elements: list, desc: str) -> Node:
        return Node(self, "create", elements=list(elements), desc=desc)

    def union(self, *colls: Node) -> Node:
        return Node(self, "union", tuple(colls), desc="union")

    def graph(self, outputs: dict[str, Node], tmp: str = "/spill") -> tuple[list[Delayed], list[Delayed]]:
        """The Delayed tasks of ``outputs`` (one per output) and the clean-up tasks, as ``run`` computes them."""
        plan = _Plan(self, outputs, os.urandom(32), tmp)
        collected = [plan.collect(node) for node in outputs.values()]
        return collected, plan.finish()

    def run(self, outputs: dict[str, Node]) -> dict[str, list]:
        if not outputs:
            return {}
        tmp = tempfile.mkdtemp(prefix="medcorpus-spill-", dir=self.spill_dir)
        try:
            plan = _Plan(self, outputs, os.urandom(32), tmp)
            collected = [plan.collect(node) for node in outputs.values()]
            tasks = collected + plan.finish()
            client = self.client
            futures = client.compute(tasks, retries=self.retries)
            try:
                if not self.quiet:
                    from distributed import progress

                    progress(futures, scheduler=client.scheduler.address)
                parts = client.gather(futures[: len(collected)])
                client.gather(futures[len(collected) :])  # clean-up done (and its errors raised)
            except BaseException:
                client.cancel(futures)
                raise
            return {
                name: [e for src, _ in ps for e in (src if isinstance(src, list) else load(src, plan.key))]
                for name, ps in zip(outputs, parts, strict=True)
            }
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            clear_sides()

    def close(self) -> None:
        """Disconnect; stop the LocalCluster if this flow started it."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
