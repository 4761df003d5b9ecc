"""Apache Beam runner: every stage of the build graph is a real Beam pipeline.

``map(fn, tasks)`` runs ``Create(indices) → ParDo(stage DoFn)``; ``group_map`` runs
``Create(indices) → ParDo(load + key) → GroupByKey → ParDo(group DoFn)``. Tasks, the stage
function and results travel through a *staging folder* (one pickle per element, written
atomically), not through the pipeline graph:

- the graph stays small whatever the payload (CT volumes, shard contents), so the same code
  runs on FnApiRunner locally and on Dataflow/Flink/Spark with a shared staging location
  (``staging_dir``: a POSIX path mounted on every worker, or ``gs://``/``s3://`` via Beam's
  ``FileSystems``);
- the pseudonymisation secret inside the stage function (worker contexts) is never embedded in
  the job graph submitted to a service;
- results come back to the driver by index, in the original order, whatever the bundle split;
  a retried bundle rewrites the same files (idempotent).

Per stage, ``Metrics.counter`` counts items (namespace ``medcorpus.<stage>``), and every
``QuarantineRecord`` a stage returns is emitted as a tagged side output (``quarantine``) that a
second ``ParDo`` counts per reason (``quarantined.<reason>``). The counters are queried from the
pipeline result, logged, and kept in :attr:`BeamRunner.stage_metrics`.

Local execution: by default the runner keeps N long-lived SDK worker processes (a Beam *worker
pool*, ``apache_beam.runners.worker.worker_pool_main``'s servicer, one per process) and runs each
stage's pipeline on FnApiRunner with an ``EXTERNAL`` environment that hands the pipeline's N
workers to them, round robin. That is how portable runners use a Python worker pool; it saves
the start of N fresh ``sdk_worker_main`` processes (Beam import, gRPC setup) per stage, several
seconds each on a busy machine. ``worker_pool=False`` uses the recipe's plain
``--direct_running_mode=multi_processing`` instead (fresh processes per stage).

A stage function with a ``setup()`` method has it called once per worker (``DoFn.setup``), the
place to load models. An exception inside a DoFn (a bug; bad input is already a quarantine
record returned by the worker) fails the pipeline and propagates out of ``map``: it is never
swallowed. A worker-pool process that dies during a stage (killed, out of memory) is noticed
(FnApiRunner alone would wait for it forever) and the stage's unfinished work is run again on a
fresh pool, up to ``max_attempts`` times. Locally: ``--runner=FnApiRunner`` with ``--direct_num_workers=N
--direct_running_mode=multi_processing`` for N > 1 (never the Prism default runner: it tries to
download a binary).

Production: pass ``beam_options`` naming a runner (``--runner=DataflowRunner …``, Flink, Spark;
see docs/scale.md) and a shared ``staging_dir``.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from tqdm import tqdm

from schemas.records import QuarantineRecord

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

QUARANTINE_TAG = "quarantine"
METRIC_NAMESPACE = "medcorpus"
_RAW = CompressionTypes.UNCOMPRESSED


# --- staging I/O (local paths, gs://, s3://, hdfs:// through Beam's FileSystems) -------------------


def _join(*parts: str) -> str:
    return FileSystems.join(*parts)


def _dump(obj: Any, path: str) -> None:
    """Pickle ``obj`` to ``path`` atomically (temp name + rename): a retried bundle is harmless."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(tmp, compression_type=_RAW) as f:
        f.write(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    if FileSystems.exists(path):  # a retried bundle already finished this element
        FileSystems.delete([tmp])
        return
    FileSystems.rename([tmp], [path])


def _load(path: str) -> Any:
    with FileSystems.open(path, compression_type=_RAW) as f:
        return pickle.loads(f.read())


def _item_path(folder: str, index: int) -> str:
    return _join(folder, f"{index:09d}.pkl")


def _group_path(folder: str, key: str) -> str:
    return _join(folder, f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.pkl")


def _quarantine_records(result: Any) -> list[QuarantineRecord]:
    """The ``QuarantineRecord``s in a stage result (a record, or a list/tuple of records)."""
    if isinstance(result, QuarantineRecord):
        return [result]
    if isinstance(result, list | tuple):
        return [r for r in result if isinstance(r, QuarantineRecord)]
    return []


# --- DoFns ---------------------------------------------------------------------------------------


class _StagedFn:
    """Loads the stage function from the staging folder once per worker and runs its ``setup()``."""

    def __init__(self, fn_path: str) -> None:
        self.fn_path = fn_path
        self.fn: Callable | None = None

    def load(self) -> Callable:
        if self.fn is None:
            self.fn = _load(self.fn_path)
            hook = getattr(self.fn, "setup", None)
            if callable(hook):
                hook()
        return self.fn

    def teardown(self) -> None:
        hook = getattr(self.fn, "teardown", None)
        if callable(hook):
            hook()


class MapDoFn(beam.DoFn):
    """Element ``i`` → ``fn(task_i)`` written to ``out/i``; quarantine records as a tagged output."""

    def __init__(self, stage: str, stage_dir: str) -> None:
        self.stage = stage
        self.stage_dir = stage_dir
        self.items = Metrics.counter(f"{METRIC_NAMESPACE}.{stage}", "items")

    def setup(self) -> None:
        self._fn = _StagedFn(_join(self.stage_dir, "fn.pkl"))
        self._fn.load()

    def process(self, index: int):
        result = self._fn.load()(_load(_item_path(_join(self.stage_dir, "in"), index)))
        _dump(result, _item_path(_join(self.stage_dir, "out"), index))
        self.items.inc()
        for q in _quarantine_records(result):
            yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, q)
        yield index

    def teardown(self) -> None:
        self._fn.teardown()


class KeyDoFn(beam.DoFn):
    """Element ``i`` → ``(key_fn(item_i), (i, item_i))``: the input of the GroupByKey."""

    def __init__(self, stage_dir: str) -> None:
        self.stage_dir = stage_dir

    def setup(self) -> None:
        self._key_fn = _load(_join(self.stage_dir, "key_fn.pkl"))

    def process(self, index: int):
        item = _load(_item_path(_join(self.stage_dir, "in"), index))
        key = self._key_fn(item)
        if not isinstance(key, str):
            raise TypeError(f"group key must be str, got {type(key).__name__}")
        yield key, (index, item)


class GroupDoFn(beam.DoFn):
    """``(key, [(i, item)])`` → ``fn(key, items sorted by i)`` written to ``out/sha256(key)``."""

    def __init__(self, stage: str, stage_dir: str) -> None:
        self.stage = stage
        self.stage_dir = stage_dir
        ns = f"{METRIC_NAMESPACE}.{stage}"
        self.groups = Metrics.counter(ns, "groups")
        self.items = Metrics.counter(ns, "items")

    def setup(self) -> None:
        self._fn = _StagedFn(_join(self.stage_dir, "fn.pkl"))
        self._fn.load()

    def process(self, element):
        key, indexed = element
        indexed = sorted(indexed, key=lambda p: p[0])  # determinism: original order inside a group
        result = self._fn.load()(key, [item for _, item in indexed])
        _dump((key, len(indexed), result), _group_path(_join(self.stage_dir, "out"), key))
        self.groups.inc()
        self.items.inc(len(indexed))
        for q in _quarantine_records(result):
            yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, q)
        yield key

    def teardown(self) -> None:
        self._fn.teardown()


class CountQuarantine(beam.DoFn):
    """Side-output consumer: one Beam counter per quarantine reason (and a total)."""

    def __init__(self, stage: str) -> None:
        self.ns = f"{METRIC_NAMESPACE}.{stage}"
        self.total = Metrics.counter(self.ns, "quarantined")

    def process(self, q: QuarantineRecord):
        self.total.inc()
        Metrics.counter(self.ns, f"quarantined.{q.reason.value}").inc()
        return []


class WorkerLost(RuntimeError):
    """A local SDK worker process died during a stage (killed, out of memory)."""


# --- a long-lived local SDK worker pool ----------------------------------------------------------


class _WorkerPool:
    """N worker-pool processes (one SDK harness thread each per pipeline) behind one dispatcher.

    Each process runs Beam's ``BeamFnExternalWorkerPoolServicer`` (thread mode) and lives until
    :meth:`close` (or until the driver dies: the process exits when its stdin closes). The
    dispatcher is a ``BeamFnExternalWorkerPool`` gRPC service in the driver that forwards each
    ``StartWorker`` of a pipeline to the next process, round robin; FnApiRunner reaches it
    through an ``ExternalEnvironment``.
    """

    def __init__(self, n: int) -> None:
        import grpc
        from apache_beam.portability.api import beam_fn_api_pb2_grpc

        self.procs: list[subprocess.Popen] = []
        self._server = None
        try:
            for _ in range(n):
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "pipelines.runners.beam", "--serve-worker-pool"],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        env={"GRPC_VERBOSITY": "ERROR", **os.environ},
                    )
                )
            addresses = []
            for proc in self.procs:
                line = proc.stdout.readline().strip()
                if not line.startswith("localhost:"):
                    raise RuntimeError("a Beam worker-pool process failed to start")
                addresses.append(line)
            stubs = [
                beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(grpc.insecure_channel(a)) for a in addresses
            ]
            self._server = grpc.server(_thread_pool())
            port = self._server.add_insecure_port("localhost:0")
            beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(
                _Dispatcher(stubs), self._server
            )
            self._server.start()
            self.url = f"localhost:{port}"
        except BaseException:
            self.close()
            raise

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def close(self) -> None:
        if self._server is not None:
            self._server.stop(0)
            self._server = None
        for proc in self.procs:
            if proc.poll() is None:
                proc.stdin.close()  # the process exits when its stdin closes
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.procs = []


class _PoolRunnerMarker:
    """Mixin marking an FnApiRunner that runs on this module's worker pool (watched by ``_run``)."""


@functools.cache
def _pool_runner_class(fn_api_runner: type) -> type:
    return type("PoolFnApiRunner", (_PoolRunnerMarker, fn_api_runner), {})


class _NoInMemoryWarning(logging.Filter):
    """FnApiRunner warns that N workers want ``multi_processing`` mode; with the EXTERNAL worker
    pool environment the N workers *are* processes, so that warning is wrong here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("If direct_num_workers is not equal to 1")


logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner").addFilter(_NoInMemoryWarning())


def _thread_pool():
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="beam-pool-dispatch")


def _dispatcher_base():
    from apache_beam.portability.api import beam_fn_api_pb2_grpc

    return beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolServicer


class _Dispatcher(_dispatcher_base()):
    """Forwards ``StartWorker``/``StopWorker`` to the pool processes, round robin."""

    def __init__(self, stubs: list) -> None:
        self._stubs = stubs
        self._next = itertools.count()
        self._lock = threading.Lock()
        self._assigned: dict[str, int] = {}

    def StartWorker(self, request, context):  # noqa: N802 (gRPC method name)
        with self._lock:
            k = next(self._next) % len(self._stubs)
            self._assigned[request.worker_id] = k
        return self._stubs[k].StartWorker(request)

    def StopWorker(self, request, context):  # noqa: N802
        from apache_beam.portability.api import beam_fn_api_pb2

        with self._lock:
            k = self._assigned.pop(request.worker_id, None)
        if k is None:
            return beam_fn_api_pb2.StopWorkerResponse()
        return self._stubs[k].StopWorker(request)


def _serve_worker_pool() -> None:
    """Entry point of one pool process: print the pool's address, serve until stdin closes."""
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    address, server = BeamFnExternalWorkerPoolServicer.start(use_process=False, port=0)
    print(address, flush=True)
    sys.stdin.read()
    server.stop(0)


# --- the runner ----------------------------------------------------------------------------------


class BeamRunner:
    """Run each build stage as an Apache Beam pipeline (see the module docstring).

    Args:
        workers: parallel SDK workers for the local FnApiRunner (``--direct_num_workers``); a
            stage with fewer tasks uses fewer, and 1 runs in-process.
        quiet: no progress bars.
        beam_options: extra pipeline flags. If they name a ``--runner`` (Dataflow, Flink, Spark,
            …) they are used as given, without the local FnApiRunner flags.
        staging_dir: where stage inputs/results are exchanged; must be reachable from every
            worker on a cluster (shared mount or ``gs://…``). Default: a local temp folder.
        keep_staging: keep the staging folder after each stage (debugging).
        worker_pool: locally, reuse N long-lived SDK worker processes across stages (default);
            False starts fresh ones per stage (``--direct_running_mode=multi_processing``; Beam
            then waits forever if one of them is killed).
        max_attempts: runs of a stage whose worker-pool process died (the unfinished elements
            of a map stage, the whole of a group stage) before the stage fails.
    """

    def __init__(
        self,
        workers: int = 1,
        quiet: bool = False,
        beam_options: Sequence[str] = (),
        staging_dir: str | None = None,
        keep_staging: bool = False,
        worker_pool: bool = True,
        max_attempts: int = 3,
    ) -> None:
        self.workers = max(1, int(workers))
        self.quiet = quiet
        self.beam_options = tuple(beam_options)
        self.keep_staging = keep_staging
        self.worker_pool = worker_pool
        self.max_attempts = max(1, max_attempts)
        self._pool: _WorkerPool | None = None
        self._own_staging = staging_dir is None
        self.staging_dir = staging_dir or tempfile.mkdtemp(prefix="medcorpus-beam-")
        self._stage_seq = 0
        #: per stage (desc): Beam counters of the last run of that stage, name → value
        self.stage_metrics: dict[str, dict[str, int]] = {}

    # -- options --
    @property
    def production(self) -> bool:
        """True when ``beam_options`` choose a runner (the local FnApiRunner flags are not added)."""
        return any(o.startswith("--runner") for o in self.beam_options)

    def pipeline_options(self, n_workers: int) -> PipelineOptions:
        """Options for one stage with ``n_workers`` parallel local workers."""
        if self.production:
            return PipelineOptions(list(self.beam_options))
        flags = ["--runner=FnApiRunner"]
        if n_workers > 1:
            flags.append(f"--direct_num_workers={n_workers}")
            if not self.worker_pool:
                flags.append("--direct_running_mode=multi_processing")
        return PipelineOptions(flags + list(self.beam_options))

    def _pipeline(self, n_workers: int) -> beam.Pipeline:
        """A pipeline for one stage; locally on the worker pool when ``n_workers`` > 1."""
        options = self.pipeline_options(n_workers)
        if self.production or n_workers <= 1 or not self.worker_pool:
            return beam.Pipeline(options=options)
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner
        from apache_beam.transforms.environments import ExternalEnvironment

        if self._pool is not None and not self._pool.alive():
            log.warning("a Beam worker-pool process died: starting a new pool")
            self._pool.close()
            self._pool = None
        if self._pool is None:
            self._pool = _WorkerPool(self.workers)
        runner = _pool_runner_class(FnApiRunner)(default_environment=ExternalEnvironment(self._pool.url))
        return beam.Pipeline(runner=runner, options=options)

    # -- stages --
    def _new_stage(self, desc: str) -> str:
        self._stage_seq += 1
        safe = "".join(c if c.isalnum() else "_" for c in desc)[:40]
        return _join(self.staging_dir, f"{self._stage_seq:03d}-{safe}-{uuid.uuid4().hex[:8]}")

    def _stage_inputs(self, stage_dir: str, tasks: Sequence[Any], **fns: Callable) -> None:
        for name, f in fns.items():
            _dump(f, _join(stage_dir, f"{name}.pkl"))
        in_dir = _join(stage_dir, "in")
        for i, t in enumerate(tasks):
            _dump(t, _item_path(in_dir, i))

    def _run(self, pipeline: beam.Pipeline, desc: str, out_dir: str, total: int | None, unit: str) -> None:
        """Run a built pipeline; progress from the result files; watch the local worker pool.

        The pipeline runs in a helper thread so that the death of a worker-pool process (which
        FnApiRunner would wait for forever) is noticed here and raised as :class:`WorkerLost`.
        """
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                result = pipeline.run()
                result.wait_until_finish()
                box["result"] = result
            except BaseException as exc:  # re-raised in the calling thread
                box["error"] = exc

        pool = self._pool if isinstance(pipeline.runner, _PoolRunnerMarker) else None
        bar = tqdm(total=total, desc=desc, unit=unit, disable=self.quiet, leave=False)
        seen = 0
        thread = threading.Thread(target=target, name=f"beam-stage-{desc}", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.5)
                if pool is not None and thread.is_alive() and not pool.alive():
                    raise WorkerLost(f"Beam stage {desc!r}: a worker process died")
                if not self.quiet and "://" not in out_dir:
                    n = _count_results(out_dir)
                    if n > seen:
                        bar.update(n - seen)
                        seen = n
        finally:
            bar.close()
        if "error" in box:
            log.error("Beam stage %r failed (an exception inside a DoFn: see the traceback)", desc)
            raise box["error"]
        self._record_metrics(box["result"], desc)

    def _record_metrics(self, result, desc: str) -> None:
        ns = f"{METRIC_NAMESPACE}.{desc}"
        try:
            counters = result.metrics().query(MetricsFilter().with_namespace(ns))["counters"]
        except (NotImplementedError, AttributeError, KeyError):  # a runner without metrics
            log.info("beam %s: metrics not available from this runner", desc)
            return
        values: dict[str, int] = {}
        for c in counters:
            values[c.key.metric.name] = values.get(c.key.metric.name, 0) + int(c.committed or 0)
        self.stage_metrics[desc] = dict(sorted(values.items()))
        reasons = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("quarantined.")}
        log.info(
            "beam %s: %d items, %d quarantined %s",
            desc,
            values.get("items", 0),
            values.get("quarantined", 0),
            reasons or "",
        )

    def _attempts(self, desc: str, run_once: Callable[[int], None]) -> int:
        """Call ``run_once(attempt)`` until it finishes without losing a worker; returns attempts.

        A lost worker process (killed, out of memory) is retried with a fresh pool, up to
        ``max_attempts`` times (Dataflow retries a failed bundle 4 times; Dask reschedules the
        tasks of a dead worker). An exception raised *by a DoFn* is never retried: it is a bug.
        """
        for attempt in range(1, self.max_attempts + 1):
            try:
                run_once(attempt)
                return attempt
            except WorkerLost:
                self.stage_metrics.pop(desc, None)
                if self._pool is not None:
                    self._pool.close()
                    self._pool = None
                if attempt == self.max_attempts:
                    raise
                log.warning("Beam stage %r: a worker process died; retrying its unfinished work", desc)
        raise AssertionError("unreachable")

    def _cleanup(self, stage_dir: str) -> None:
        if self.keep_staging:
            return
        try:
            if FileSystems.exists(stage_dir):
                FileSystems.delete([stage_dir])
        except Exception as exc:  # cleanup must not hide the stage's own outcome
            log.warning("could not remove Beam staging folder (%s)", type(exc).__name__)

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], desc: str) -> list[R]:
        """``[fn(t) for t in tasks]`` as a Beam pipeline; order preserved."""
        tasks = list(tasks)
        if not tasks:
            return []
        stage_dir = self._new_stage(desc)
        out_dir = _join(stage_dir, "out")
        try:
            self._stage_inputs(stage_dir, tasks, fn=fn)

            def run_once(attempt: int) -> None:
                done = _finished(out_dir) if attempt > 1 else set()
                todo = [i for i in range(len(tasks)) if _item_name(i) not in done]
                if not todo:
                    return
                p = self._pipeline(min(self.workers, len(todo)))
                outs = (
                    p
                    | "Create" >> beam.Create(todo)
                    | desc >> beam.ParDo(MapDoFn(desc, stage_dir)).with_outputs(QUARANTINE_TAG, main="done")
                )
                _ = outs[QUARANTINE_TAG] | "CountQuarantine" >> beam.ParDo(CountQuarantine(desc))
                self._run(p, desc, out_dir, len(tasks), "item")

            attempts = self._attempts(desc, run_once)
            done = _finished(out_dir)
            missing = [i for i in range(len(tasks)) if _item_name(i) not in done]
            if missing:
                raise RuntimeError(
                    f"Beam stage {desc!r}: no result for {len(missing)} elements (work was lost)"
                )
            results = [_load(_item_path(out_dir, i)) for i in range(len(tasks))]
        finally:
            self._cleanup(stage_dir)
        if attempts == 1:
            self._check_quarantine_count(desc, results)
        return results

    def group_map(
        self, key_fn: Callable[[T], str], fn: Callable[[str, list[T]], R], items: Sequence[T], desc: str
    ) -> list[R]:
        """GroupByKey on ``key_fn``; ``fn(key, group)`` per key; results in sorted key order."""
        items = list(items)
        if not items:
            return []
        stage_dir = self._new_stage(desc)
        out_dir = _join(stage_dir, "out")
        try:
            self._stage_inputs(stage_dir, items, fn=fn, key_fn=key_fn)

            def run_once(attempt: int) -> None:
                if attempt > 1 and FileSystems.exists(out_dir):
                    FileSystems.delete([out_dir])  # groups are rebuilt whole
                p = self._pipeline(min(self.workers, len(items)))
                outs = (
                    p
                    | "Create" >> beam.Create(range(len(items)))
                    | "Key" >> beam.ParDo(KeyDoFn(stage_dir))
                    | "GroupByKey" >> beam.GroupByKey()
                    | desc >> beam.ParDo(GroupDoFn(desc, stage_dir)).with_outputs(QUARANTINE_TAG, main="done")
                )
                _ = outs[QUARANTINE_TAG] | "CountQuarantine" >> beam.ParDo(CountQuarantine(desc))
                self._run(p, desc, out_dir, None, "group")

            self._attempts(desc, run_once)
            match = FileSystems.match([_join(out_dir, "*.pkl")])[0].metadata_list
            groups = sorted((_load(m.path) for m in match), key=lambda g: g[0])
        finally:
            self._cleanup(stage_dir)
        n_items = sum(n for _, n, _ in groups)
        keys = [k for k, _, _ in groups]
        if n_items != len(items) or len(set(keys)) != len(keys):
            raise RuntimeError(
                f"Beam stage {desc!r}: groups cover {n_items} of {len(items)} items (work was lost)"
            )
        results = [r for _, _, r in groups]
        self._check_quarantine_count(desc, results)
        return results

    def _check_quarantine_count(self, desc: str, results: list) -> None:
        """The side-output counter must agree with the quarantine records in the results."""
        got = self.stage_metrics.get(desc, {})
        if "items" not in got:
            return  # metrics unavailable on this runner
        n = sum(len(_quarantine_records(r)) for r in results)
        if got.get("quarantined", 0) != n:
            raise RuntimeError(
                f"Beam stage {desc!r}: side output counted {got.get('quarantined', 0)} quarantine "
                f"records, results hold {n}"
            )

    def close(self) -> None:
        """Stop the worker pool; remove the staging folder this runner created."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._own_staging and not self.keep_staging and os.path.isdir(self.staging_dir):
            shutil.rmtree(self.staging_dir, ignore_errors=True)


def _item_name(index: int) -> str:
    return f"{index:09d}.pkl"


def _finished(folder: str) -> set[str]:
    """Names of the finished result files in ``folder``."""
    if not FileSystems.exists(folder):
        return set()
    return {m.path.rsplit("/", 1)[-1] for m in FileSystems.match([_join(folder, "*.pkl")])[0].metadata_list}


def _count_results(folder: str) -> int:
    try:
        return sum(1 for e in os.scandir(folder) if e.name.endswith(".pkl"))
    except FileNotFoundError:
        return 0


if __name__ == "__main__" and sys.argv[1:] == ["--serve-worker-pool"]:
    _serve_worker_pool()
