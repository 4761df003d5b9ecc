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
from medcorpus_dagkit import (
    CORPUS_ASSET,
    choose_published_set,
    default_args,
    medcorpus_bin,
    optional,
    setting,
)


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
    @task(inlets=[CORPUS_ASSET])
    def pick_set(params=None, triggering_asset_events=None, inlet_events=None) -> dict:
        triggering = (
            [e.extra for e in triggering_asset_events[CORPUS_ASSET]] if triggering_asset_events else []
        )
        latest = list(inlet_events[CORPUS_ASSET])
        picked = choose_published_set(
            triggering,
            params.get("version"),
            setting(params, "corpus_root", required=False),
            latest[-1].extra if latest else None,
            setting(params, "runs_dir", required=False),
        )
        # a storage URL was resolved through versions.json (or came from the publish event)
        if "://" not in picked["set_dir"] and not os.path.isdir(picked["set_dir"]):
            raise AirflowFailException(f"published set not found: {picked['set_dir']}")
        return picked

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
