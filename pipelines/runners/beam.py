"""Apache Beam backend of the dataflow API (:mod:`pipelines.flow`): the whole build is ONE pipeline.

Graph: :class:`BeamFlow` builds one ``beam.Pipeline`` lazily and :meth:`BeamFlow.run` submits it once.
``create`` → ``Create`` → ``Reshuffle`` (a few seeds, fanned out); ``flat_map``/``flat_map_with`` →
``ParDo`` (side value ``AsSingleton``) → ``Reshuffle`` (a seed expands to thousands of files: without
the break the runner fuses all of their work into the worker that expanded it); ``group`` →
``Map(key)`` → ``GroupByKey`` → ``ParDo(fn(key, values sorted))``; ``gather`` → ``ToList`` →
``Map(fn)``; ``union`` → ``Flatten``. ``run`` tags the outputs by name and writes them as pickled rows
with ``WriteToText`` (which keeps only committed bundles: no duplicates from retries) to a private
folder (local temp, or under ``staging_dir``/``--temp_location``) that it reads back and deletes.
Each stage counts ``in``/``out``/``groups``/``quarantined``/``quarantined.<reason>`` in namespace
``medcorpus.<desc>`` (:attr:`BeamFlow.stage_metrics` after ``run``).

Locally: ``--runner=FnApiRunner`` (never the default runner/Prism offline: it tries to download),
with ``--direct_num_workers=N --direct_running_mode=multi_processing`` for N > 1 (fresh SDK worker
processes, started with the project root on ``PYTHONPATH``). Services: ``beam_options`` naming a
``--runner`` replace those flags: ``--runner=DataflowRunner --project=P --region=R
--temp_location=gs://B/tmp``; ``--runner=FlinkRunner --flink_master=HOST:8081``; ``--runner=SparkRunner
--spark_master_url=spark://HOST:7077`` (or ``--runner=PortableRunner --job_endpoint=HOST:8099``).
Ship the project with ``--requirements_file=requirements/lock.txt --setup_file=pyproject.toml`` or,
better, a worker container ``--sdk_container_image=IMAGE --sdk_location=container`` (Flink/Spark:
``--environment_type=DOCKER --environment_config=IMAGE``). Secrets come from the worker environment
(``MEDCORPUS_SECRET``) or a hook (``MEDCORPUS_SECRET_HOOK``: a secret-manager client), never from
options or the job graph (stage functions pickle without them). Payloads never travel: they stay
in the blob store under the build folder or a staging URL every worker reaches; only headers flow,
and only small rows come back. See docs/scale.md.
"""

from __future__ import annotations

import base64
import itertools
import logging
import os
import pickle
import re
import tempfile
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import Metrics, MetricsFilter
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
from apache_beam.runners.runner import PipelineState

from pipelines.heap import keep_heap
from pipelines.preflight import MissingDependency
from pipelines.runners import ONE_THREAD_ENV, worker_environ
from schemas.records import QuarantineRecord

log = logging.getLogger(__name__)

NAMESPACE = "medcorpus"
PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
#: a worker's MissingDependency as Beam's error text shows it (the traceback of the worker)
_MISSING = re.compile(r"MissingDependency: the '([^']+)' package is not installed \(install (.*?)\)$", re.M)


def _quarantine_reason(element: Any) -> str | None:
    if isinstance(element, tuple) and len(element) == 2:
        element = element[1]
    if isinstance(element, QuarantineRecord):
        return getattr(element.reason, "value", str(element.reason))
    return None


def _itself(element: Any) -> Iterable[Any]:
    return (element,)


class _Stage(beam.DoFn):
    """One stage function per element (with an optional side value) or per group; counts."""

    def __init__(self, fn: Callable, desc: str, order: Callable | None = None, grouped: bool = False) -> None:
        self.fn, self.order, self.grouped = fn, order, grouped
        self.ns = f"{NAMESPACE}.{desc}"
        self.n_in, self.n_out = Metrics.counter(self.ns, "in"), Metrics.counter(self.ns, "out")
        self.n_groups = Metrics.counter(self.ns, "groups")
        self.n_quarantined = Metrics.counter(self.ns, "quarantined")

    def setup(self) -> None:
        keep_heap()

    def process(self, element, *side):
        if self.grouped:
            key, values = element
            values = sorted(values, key=self.order)
            self.n_groups.inc()
            self.n_in.inc(len(values))
            results = self.fn(key, values)
        else:
            self.n_in.inc()
            results = self.fn(element, *side)
        for y in results:
            self.n_out.inc()
            reason = _quarantine_reason(y)
            if reason is not None:
                self.n_quarantined.inc()
                Metrics.counter(self.ns, f"quarantined.{reason}").inc()
            yield y


def _key_by(element: Any, key_fn: Callable) -> tuple[str, Any]:
    key = key_fn(element)
    if not isinstance(key, str):
        raise TypeError(f"group key must be str, got {type(key).__name__}")
    return key, element


def _gather(xs: list, fn: Callable, order: Callable, desc: str) -> Any:
    Metrics.counter(f"{NAMESPACE}.{desc}", "in").inc(len(xs))
    return fn(sorted(xs, key=order))


def _encode(element: Any, name: str) -> str:
    return base64.b64encode(pickle.dumps((name, element), pickle.HIGHEST_PROTOCOL)).decode("ascii")


def _local_runner():
    """FnApiRunner whose SDK worker processes get options (so they log at WARNING, not INFO)."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from google.protobuf import json_format, struct_pb2

    opts = json_format.ParseDict({"options": {"default_sdk_harness_log_level": "WARN"}}, struct_pb2.Struct())
    info = beam_provision_api_pb2.ProvisionInfo(retrieval_token="unused", pipeline_options=opts)
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(info))


class _BeamColl:
    def __init__(self, flow: BeamFlow, pcoll: beam.PCollection) -> None:
        self.flow, self.pcoll = flow, pcoll

    def _apply(self, transform: beam.PTransform, desc: str, reshuffle: bool = False) -> _BeamColl:
        out = self.pcoll | self.flow._label(desc) >> transform
        if reshuffle:
            out = out | self.flow._label(f"{desc}/reshuffle") >> beam.Reshuffle()
        return _BeamColl(self.flow, out)

    def flat_map(self, fn: Callable[[Any], Iterable], desc: str) -> _BeamColl:
        return self._apply(beam.ParDo(_Stage(fn, desc)), desc, reshuffle=self.flow.breaks_fusion(fn))

    def group(self, key_fn, fn, order, desc: str) -> _BeamColl:
        keyed = self._apply(beam.Map(_key_by, key_fn), f"{desc}/key")
        return keyed._apply(beam.GroupByKey(), f"{desc}/gbk")._apply(
            beam.ParDo(_Stage(fn, desc, order, grouped=True)), desc
        )

    def gather(self, fn: Callable[[list], Any], order, desc: str) -> beam.pvalue.AsSingleton:
        xs = self._apply(beam.combiners.ToList(), f"{desc}/list")
        return beam.pvalue.AsSingleton(xs._apply(beam.Map(_gather, fn, order, desc), desc).pcoll)

    def flat_map_with(self, fn, side: beam.pvalue.AsSingleton, desc: str) -> _BeamColl:
        return self._apply(beam.ParDo(_Stage(fn, desc), side), desc, reshuffle=self.flow.breaks_fusion(fn))


class BeamFlow:
    """The :class:`pipelines.flow.Flow` backend on Apache Beam (see the module docstring).

    Args:
        workers: local SDK worker processes (FnApiRunner); 1 runs in this process.
        quiet: accepted for the Flow signature (Beam shows no progress bars).
        beam_options: pipeline flags; when they name a ``--runner`` they replace the local flags.
        staging_dir: becomes ``--temp_location`` (unless one is given) and holds the output rows
            of a run until the driver has read them; default: a private local temp folder.

    ``reshuffle`` (attribute): ``"fan-out"`` (default) breaks fusion after a ``flat_map`` whose
    function declares ``fans_out = True`` (one element → many expensive ones: sources → folders
    → files); ``"always"`` after every ``flat_map``; ``"never"``. Other steps feed a GroupByKey,
    which redistributes anyway, and each break costs ~0.1 ms of CPU per element.
    """

    def __init__(
        self,
        workers: int = 1,
        quiet: bool = False,
        beam_options: list[str] | None = None,
        staging_dir: str | None = None,
    ) -> None:
        self.workers = max(1, int(workers))
        self.quiet = quiet
        self.beam_options = list(beam_options or [])
        self.staging_dir = staging_dir
        self.reshuffle = "fan-out"
        self.stage_metrics: dict[str, dict[str, int]] = {}
        self.result: Any = None  # the PipelineResult of the last run
        self._pipeline: beam.Pipeline | None = None
        self._labels = itertools.count()

    def breaks_fusion(self, fn: Any) -> bool:
        if self.reshuffle == "always":
            return True
        return self.reshuffle == "fan-out" and bool(getattr(fn, "fans_out", False))

    @property
    def production(self) -> bool:
        return any(o.startswith("--runner") for o in self.beam_options)

    def pipeline_options(self) -> PipelineOptions:
        flags = list(self.beam_options)
        if not self.production:
            flags.insert(0, "--runner=FnApiRunner")
            if self.workers > 1:
                flags += [f"--direct_num_workers={self.workers}", "--direct_running_mode=multi_processing"]
        if self.staging_dir and not any(o.startswith("--temp_location") for o in flags):
            flags.append(f"--temp_location={self.staging_dir}")
        return PipelineOptions(flags)

    def _label(self, desc: str) -> str:
        return f"{desc}#{next(self._labels)}"

    @property
    def pipeline(self) -> beam.Pipeline:
        if self._pipeline is None:
            runner = None if self.production else _local_runner()
            self._pipeline = beam.Pipeline(runner=runner, options=self.pipeline_options())
        return self._pipeline

    # -- the Flow protocol --
    def create(self, elements: list, desc: str) -> _BeamColl:
        seeds = self.pipeline | self._label(desc) >> beam.Create(list(elements), reshuffle=False)
        return _BeamColl(self, seeds)._apply(beam.ParDo(_Stage(_itself, desc)), desc, reshuffle=True)

    def union(self, *colls: _BeamColl) -> _BeamColl:
        if not colls:
            return _BeamColl(self, self.pipeline | self._label("union") >> beam.Create([]))
        if len(colls) == 1:
            return colls[0]
        return _BeamColl(self, tuple(c.pcoll for c in colls) | self._label("union") >> beam.Flatten())

    def run(self, outputs: dict[str, _BeamColl]) -> dict[str, list]:
        """Submit the pipeline once; each output's elements (small rows) as a list."""
        p, self._pipeline = self.pipeline, None  # the next graph is a new pipeline
        out_dir = self._out_dir()
        prefix = FileSystems.join(out_dir, "rows")
        rows: dict[str, list] = {name: [] for name in outputs}
        if outputs:
            named = tuple(
                c.pcoll | self._label(f"{n}/encode") >> beam.Map(_encode, n) for n, c in outputs.items()
            )
            _ = (
                named
                | self._label("outputs") >> beam.Flatten()
                | self._label("write") >> beam.io.WriteToText(prefix)
            )
        try:
            self.result = self._submit(p)
            for m in FileSystems.match([prefix + "*"])[0].metadata_list:
                with FileSystems.open(m.path) as f:
                    for line in f.read().splitlines():
                        name, element = pickle.loads(base64.b64decode(line))
                        rows[name].append(element)
        finally:
            if FileSystems.exists(out_dir):
                FileSystems.delete([out_dir])
        self._record_metrics(self.result)
        return rows

    def close(self) -> None:
        self._pipeline = None

    # -- internals --
    def _out_dir(self) -> str:
        base = self.staging_dir or self.pipeline_options().view_as(GoogleCloudOptions).temp_location
        if base:
            return FileSystems.join(base, f"medcorpus-rows-{uuid.uuid4().hex}")
        if self.production:
            raise ValueError("on a Beam service, give staging_dir or --temp_location (for the output rows)")
        return tempfile.mkdtemp(prefix="medcorpus-beam-rows-")

    def _submit(self, p: beam.Pipeline):
        old = os.environ.get("PYTHONPATH")
        local_workers = not self.production and self.workers > 1
        if local_workers:  # fresh SDK worker processes must import this project (and its tests)
            os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (PROJECT_ROOT, old) if x)
        try:
            # local SDK workers (one per core) get one BLAS/OpenMP thread each, as on Dask
            with worker_environ(ONE_THREAD_ENV if local_workers else {}):
                result = p.run()
                state = result.wait_until_finish()
        except Exception as exc:  # a worker's MissingDependency arrives as text inside Beam's error
            missing = _MISSING.search(str(exc))
            if missing:
                raise MissingDependency(*missing.groups()) from None
            raise
        finally:
            if local_workers and old is None:
                os.environ.pop("PYTHONPATH", None)
            elif local_workers:
                os.environ["PYTHONPATH"] = old
        if state not in (None, PipelineState.DONE):
            raise RuntimeError(f"the Beam pipeline ended in state {state}")
        return result

    def _record_metrics(self, result) -> None:
        metrics: dict[str, dict[str, int]] = {}
        try:
            counters = result.metrics().query(MetricsFilter())["counters"]
        except (NotImplementedError, AttributeError, KeyError):
            counters = []
            log.info("beam: this runner reports no metrics")
        for c in counters:
            ns, name = c.key.metric.namespace, c.key.metric.name
            if ns.startswith(NAMESPACE + "."):
                value = c.committed if c.committed is not None else c.attempted
                stage = metrics.setdefault(ns[len(NAMESPACE) + 1 :], {})
                stage[name] = stage.get(name, 0) + int(value or 0)
        self.stage_metrics = {k: dict(sorted(v.items())) for k, v in sorted(metrics.items())}
        for stage, values in self.stage_metrics.items():
            log.info("beam %s: %s", stage, values)
