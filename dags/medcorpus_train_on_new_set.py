"""Train and evaluate on each newly published shard set (scheduled on the corpus Asset).

Runs whenever ``medcorpus_incremental_build`` publishes a version (the Asset event's extra
carries ``version`` and ``set_dir``):

``pick_set``  the newest version among the triggering events; for a manual run, the
              ``version`` param (with ``corpus_root``), else the latest corpus event
``train``     ``medcorpus train --shards SET --config TRAIN_CONFIG --out RUNS/<version>``
``evaluate``  ``medcorpus evaluate --checkpoint <train's checkpoint> --shards SET --split SPLIT``
"""

from __future__ import annotations

import json
import os
import shlex

from airflow.sdk import Param, dag, task
from airflow.sdk.exceptions import AirflowFailException
from medcorpus_dagkit import CORPUS_ASSET, default_args, medcorpus_bin, optional, setting


@dag(
    dag_id="medcorpus_train_on_new_set",
    schedule=[CORPUS_ASSET],
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["medcorpus"],
    doc_md=__doc__,
    params={
        "version": optional("string", "manual runs: the published version to train on"),
        "corpus_root": optional("string", "manual runs: corpus root (default $MEDCORPUS_CORPUS_ROOT)"),
        "train_config": optional("string", "trainer config YAML/JSON (default $MEDCORPUS_TRAIN_CONFIG)"),
        "runs_dir": optional("string", "run folders (default $MEDCORPUS_RUNS_DIR, else CORPUS_ROOT/runs)"),
        "eval_split": Param("test", enum=["train", "val", "test"], description="split to evaluate on"),
    },
)
def medcorpus_train_on_new_set():
    @task(inlets=[CORPUS_ASSET], retries=0)
    def pick_set(params=None, triggering_asset_events=None, inlet_events=None) -> dict:
        events = list(triggering_asset_events[CORPUS_ASSET]) if triggering_asset_events else []
        if events:  # scheduled by the Asset: the newest version that triggered this run
            extra = max((e.extra for e in events), key=lambda x: x["version"])
        elif params.get("version"):
            root = setting(params, "corpus_root")
            extra = {"version": params["version"], "corpus_root": root}
            extra["set_dir"] = os.path.join(root, "sets", params["version"])
        else:  # a manual run without a version: the latest published event of the corpus
            latest = list(inlet_events[CORPUS_ASSET])
            if not latest:
                raise AirflowFailException("no published corpus version yet")
            extra = latest[-1].extra
        if not os.path.isdir(extra["set_dir"]):
            raise AirflowFailException(f"published set not found: {extra['set_dir']}")
        runs = params.get("runs_dir") or os.environ.get("MEDCORPUS_RUNS_DIR")
        runs = runs or os.path.join(
            extra.get("corpus_root") or os.path.dirname(os.path.dirname(extra["set_dir"])), "runs"
        )
        return {
            "version": extra["version"],
            "set_dir": extra["set_dir"],
            "run_dir": os.path.join(runs, extra["version"]),
        }

    @task.bash
    def train(picked: dict, params=None) -> str:
        argv = [*medcorpus_bin(), "train", "--shards", picked["set_dir"], "--out", picked["run_dir"]]
        config = setting(params, "train_config", required=False)
        return shlex.join(argv + (["--config", config] if config else []))

    @task.bash
    def evaluate(picked: dict, trained: str, params=None) -> str:
        checkpoint = json.loads(trained)["checkpoint"]  # train prints one JSON line last
        argv = [*medcorpus_bin(), "evaluate", "--checkpoint", checkpoint, "--shards", picked["set_dir"]]
        out = os.path.join(picked["run_dir"], f"eval-{params['eval_split']}.json")
        return shlex.join(argv + ["--split", params["eval_split"], "--out", out])

    picked = pick_set()
    evaluate(picked, train(picked))


medcorpus_train_on_new_set()
