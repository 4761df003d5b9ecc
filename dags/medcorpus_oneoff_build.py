"""One-off build, triggered by hand: backfills, experiments, a corpus from a new export.

Trigger with params (UI "Trigger DAG w/ config", or ``airflow dags trigger medcorpus_oneoff_build
--conf '{"source": "/data/export", "output": "/corpora/x", "config": "/cfg/x.yaml"}'``):

``build``  ``medcorpus build SOURCE --out OUTPUT --config CONFIG [--runner] [--workers]``;
           resumable: a retry (or a re-trigger with the same params) resumes finished shards
``check``  ``medcorpus check-build OUTPUT``: re-hash against the manifests + quarantine gate

The output is a plain build folder (not a published version of the scheduled corpus): use
``medcorpus inspect`` / the trainer on it directly. Scheduled partitions are backfilled with
``airflow backfill create --dag-id medcorpus_incremental_build ...`` instead.
"""

from __future__ import annotations

import shlex

from airflow.sdk import Param, dag, task
from medcorpus_dagkit import build_argv, default_args, fraction_args, optional, run_medcorpus


@dag(
    dag_id="medcorpus_oneoff_build",
    schedule=None,
    catchup=False,
    default_args=default_args(),
    tags=["medcorpus"],
    doc_md=__doc__,
    params={
        "source": Param(type="string", minLength=1, description="input folder (sources are relative to it)"),
        "output": Param(type="string", minLength=1, description="output folder (shards, manifests)"),
        "config": optional("string", "build config YAML (default $MEDCORPUS_CONFIG)"),
        "runner": optional(
            "string", "local | beam | dask (default: the config's)", enum=[None, "local", "beam", "dask"]
        ),
        "workers": optional("integer", "worker processes (default: the config's)", minimum=1),
        "max_quarantine_fraction": optional(
            "number", "fail when more input units are quarantined (default 0.25)", minimum=0, maximum=1
        ),
    },
)
def medcorpus_oneoff_build():
    @task.bash
    def build(params=None) -> str:
        return shlex.join(build_argv(params, "build", params["source"], "--out", params["output"]))

    @task
    def check(params=None) -> dict:
        return run_medcorpus(["check-build", params["output"], *fraction_args(params)])

    build() >> check()


medcorpus_oneoff_build()
