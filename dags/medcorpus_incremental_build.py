"""Scheduled incremental build: each data interval's inbox partitions become new shard sets.

Per run (data interval ``[start, end)``, UTC):

``find_partitions``
    ``medcorpus partitions INBOX --start --end``: the partitions whose data arrived in the
    interval (one per day folder with the default ``daily`` layout; none → nothing to do).
``per_partition`` (a task group mapped over the partitions: one build per partition)
    ``stage``    ``medcorpus stage-partition``: snapshot the partition (reused on retry)
    ``build``    ``medcorpus build-set``: build into ``builds/<version>``; a retry resumes it
    ``check``    ``medcorpus check-build``: re-hash against the manifests + quarantine gate
    ``publish``  ``medcorpus publish``: atomic rename to ``sets/<version>``, ``versions.json``
                 and ``CURRENT``; emits a corpus Asset event with the version in its extra

The build deduplicates against every published set (``pipelines/corpus_index.py``): a study
re-exported on a later day is removed, a corrected report supersedes the published one. The
corpus root may be a storage URL (``s3://...``): set ``$MEDCORPUS_WORK_ROOT`` on the workers
(local staging and builds); publish uploads under a unique prefix, then replaces the pointer.

The version is the partition's (e.g. ``2026-01-02``), never a wall-clock time: retries and
re-runs of an interval address the same set and never duplicate it; a published set is never
rebuilt. A failed check (validation, or too many quarantined inputs) fails the run and
publishes nothing. All logic lives in ``pipelines/partitions.py`` and ``pipelines/publish.py``.
"""

from __future__ import annotations

import os
import shlex

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task, task_group
from medcorpus_dagkit import (
    CORPUS_ASSET,
    build_argv,
    default_args,
    fraction_args,
    optional,
    run_medcorpus,
    setting,
    start_date,
)


@dag(
    dag_id="medcorpus_incremental_build",
    schedule=CronDataIntervalTimetable(os.environ.get("MEDCORPUS_SCHEDULE", "@daily"), timezone="UTC"),
    start_date=start_date(),
    catchup=True,  # every interval's partition is built once; missed intervals are caught up
    max_active_runs=1,
    default_args=default_args(),
    tags=["medcorpus"],
    doc_md=__doc__,
    params={
        "inbox": optional("string", "inbox folder (default $MEDCORPUS_INBOX)"),
        "corpus_root": optional("string", "corpus root (default $MEDCORPUS_CORPUS_ROOT)"),
        "config": optional("string", "build config YAML (default $MEDCORPUS_CONFIG)"),
        "layout": Param("daily", enum=["daily", "mtime"], description="inbox layout"),
        "runner": optional(
            "string", "local | beam | dask (default: the config's)", enum=[None, "local", "beam", "dask"]
        ),
        "workers": optional("integer", "worker processes (default: the config's)", minimum=1),
        "max_quarantine_fraction": optional(
            "number", "fail when more input units are quarantined (default 0.25)", minimum=0, maximum=1
        ),
    },
)
def medcorpus_incremental_build():
    @task
    def find_partitions(params=None, data_interval_start=None, data_interval_end=None) -> list[dict]:
        out = run_medcorpus(
            [
                "partitions",
                setting(params, "inbox"),
                "--start",
                data_interval_start.isoformat(),
                "--end",
                data_interval_end.isoformat(),
                "--layout",
                setting(params, "layout"),
            ]
        )
        return out["partitions"]

    @task_group
    def per_partition(partition: dict):
        @task
        def stage(partition: dict, params=None) -> dict:
            args = ["stage-partition", setting(params, "inbox"), partition["version"]]
            args += ["--corpus-root", setting(params, "corpus_root"), "--layout", partition["layout"]]
            config = setting(params, "config", required=False)
            return run_medcorpus(args + (["--config", config] if config else []))

        @task.bash
        def build(partition: dict, params=None) -> str:
            # a bash task: if Airflow stops the task, it kills the build's whole process group
            argv = build_argv(params, "build-set", partition["version"])
            return shlex.join([*argv, "--corpus-root", setting(params, "corpus_root")])

        @task
        def check(partition: dict, params=None) -> dict:
            args = ["check-build", "--corpus-root", setting(params, "corpus_root")]
            return run_medcorpus(args + ["--version", partition["version"], *fraction_args(params)])

        @task(outlets=[CORPUS_ASSET])
        def publish(
            partition: dict, params=None, data_interval_start=None, data_interval_end=None, outlet_events=None
        ) -> dict:
            root = setting(params, "corpus_root")
            out = run_medcorpus(
                [
                    "publish",
                    partition["version"],
                    "--corpus-root",
                    root,
                    "--interval-start",
                    data_interval_start.isoformat(),
                    "--interval-end",
                    data_interval_end.isoformat(),
                    *fraction_args(params),
                ]
            )

            def where(p: str) -> str:  # a storage URL (s3://...) stays as it is
                return p if "://" in p else os.path.abspath(p)

            outlet_events[CORPUS_ASSET].extra = {
                "version": out["version"],
                "corpus_root": where(root),
                "set_dir": where(out["set_dir"]),
                "n_samples": out["n_samples"],
                "n_shards": out["n_shards"],
                "shards_sha256": out["shards_sha256"],
                "already_published": out["already_published"],
            }
            return out

        stage(partition) >> build(partition) >> check(partition) >> publish(partition)

    per_partition.expand(partition=find_partitions())


medcorpus_incremental_build()
