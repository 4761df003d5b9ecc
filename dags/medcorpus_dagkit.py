"""Shared, parse-cheap pieces of the medcorpus DAGs: settings, the corpus Asset, CLI calls.

Imports only the standard library and ``airflow.sdk``: the DAG processor never imports
medcorpus. Every task runs the ``medcorpus`` CLI in a subprocess, so the Airflow environment
and the medcorpus environment may be different virtualenvs (``MEDCORPUS_BIN`` points at the
latter). Not a DAG file (listed in ``.airflowignore``); Airflow puts the DAG bundle folder on
``sys.path``, which is how the DAG files import it.

Settings: each DAG Param left empty (``None``) falls back to an environment variable of the
worker *at run time* (see :data:`ENV`); parse-time settings (schedule, start date, retries,
asset name) come from the environment of the DAG processor.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import Asset, Param
from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)

#: run-time settings: DAG param name → environment variable (and default)
ENV: dict[str, tuple[str, Any]] = {
    "inbox": ("MEDCORPUS_INBOX", None),
    "corpus_root": ("MEDCORPUS_CORPUS_ROOT", None),
    "config": ("MEDCORPUS_CONFIG", None),
    "layout": ("MEDCORPUS_INBOX_LAYOUT", "daily"),
    "runner": ("MEDCORPUS_RUNNER", None),
    "workers": ("MEDCORPUS_WORKERS", None),
    "max_quarantine_fraction": ("MEDCORPUS_MAX_QUARANTINE_FRACTION", None),
    "train_config": ("MEDCORPUS_TRAIN_CONFIG", None),
    "runs_dir": ("MEDCORPUS_RUNS_DIR", None),
}
#: exit codes of medcorpus that retrying cannot fix: 1 check failed, 2 usage/config error
FINAL_EXIT_CODES: tuple[int, ...] = (1, 2)

#: the published corpus: every successful publish emits one event, extra = {"version", "set_dir", ...}
CORPUS_ASSET = Asset(
    name=os.environ.get("MEDCORPUS_CORPUS_ASSET", "medcorpus_corpus"),
    uri=os.environ.get("MEDCORPUS_CORPUS_ASSET_URI") or None,
    group="medcorpus",
)


def start_date() -> datetime:
    """First data interval start of the scheduled build (``MEDCORPUS_START_DATE``, UTC)."""
    raw = os.environ.get("MEDCORPUS_START_DATE", "2026-01-01")
    dt = datetime.fromisoformat(raw)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


def default_args() -> dict[str, Any]:
    """Retries for transient failures (a killed worker, a full disk): a retried build resumes."""
    return {
        "owner": "medcorpus",
        "retries": int(os.environ.get("MEDCORPUS_RETRIES", "2")),
        "retry_delay": timedelta(seconds=float(os.environ.get("MEDCORPUS_RETRY_DELAY_S", "300"))),
    }


def optional(type_: str, description: str, **schema: Any) -> Param:
    """A Param that may stay empty (then :func:`setting` reads the environment)."""
    return Param(None, type=["null", type_], description=description, **schema)


def setting(params: Mapping[str, Any], name: str, *, required: bool = True) -> Any:
    """``params[name]`` if set, else the worker's environment variable for it, else its default."""
    value = params.get(name)
    if value is None or value == "":
        env, default = ENV[name]
        value = os.environ.get(env, default)
    if required and (value is None or value == ""):
        env = ENV[name][0]
        raise AirflowFailException(f"setting {name!r} is missing: set the DAG param or ${env}")
    return value


def medcorpus_bin() -> list[str]:
    """The medcorpus command: ``$MEDCORPUS_BIN`` (may hold arguments) or ``medcorpus`` on PATH."""
    raw = os.environ.get("MEDCORPUS_BIN", "")
    if raw:
        return shlex.split(raw)
    found = shutil.which("medcorpus")
    if not found:
        raise AirflowFailException("medcorpus not found: set $MEDCORPUS_BIN to <venv>/bin/medcorpus")
    return [found]


def build_argv(params: Mapping[str, Any], *head: str) -> list[str]:
    """``medcorpus <head...> [--config] [--runner] [--workers] --quiet`` from params/environment."""
    argv = [*medcorpus_bin(), *head]
    for name in ("config", "runner", "workers"):
        value = setting(params, name, required=False)
        if value not in (None, ""):
            argv += [f"--{name}", str(value)]
    return [*argv, "--quiet"]


def fraction_args(params: Mapping[str, Any]) -> list[str]:
    value = setting(params, "max_quarantine_fraction", required=False)
    return [] if value in (None, "") else ["--max-quarantine-fraction", str(value)]


def run_medcorpus(args: Sequence[str]) -> dict[str, Any]:
    """Run ``medcorpus <args> --json``; return its last stdout line parsed as JSON.

    Output goes to the task log. Exit codes 1/2 (a failed check, a usage error) fail the
    task without retries; anything else non-zero (a crash, a kill) is retried.
    """
    argv = [*medcorpus_bin(), *args, "--json"]
    log.info("running %s", shlex.join(argv))
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    for line in (proc.stdout + proc.stderr).splitlines():
        log.info("%s", line)
    if proc.returncode in FINAL_EXIT_CODES:
        raise AirflowFailException(f"medcorpus {args[0]} failed (exit {proc.returncode}); see the log above")
    if proc.returncode != 0:
        raise RuntimeError(f"medcorpus {args[0]} exited {proc.returncode}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"medcorpus {args[0]} printed no JSON result")
    return json.loads(lines[-1])


def is_url(path: str) -> bool:
    """A storage URL (``s3://...``), not a local path (``file://`` is local)."""
    return "://" in str(path) and not str(path).startswith("file://")


def published_set_dir(corpus_root: str, version: str) -> str:
    """Where ``version`` of ``corpus_root`` lives: ``ROOT/sets/<version>`` for a local root; for a
    storage URL, the prefix ``versions.json`` names (``ROOT/sets/<version>/<publish id>``), read
    with ``medcorpus corpus-status`` (this module never imports medcorpus)."""
    if not is_url(corpus_root):
        return os.path.join(corpus_root, "sets", version)
    status = run_medcorpus(["corpus-status", "--corpus-root", corpus_root])
    for entry in status["versions"]:
        if entry["version"] == version:
            return corpus_root.rstrip("/") + "/" + entry["path"].strip("/")
    raise AirflowFailException(f"version {version} is not published under {corpus_root}")


def choose_published_set(
    triggering: Sequence[Mapping[str, Any]],
    version: str | None,
    corpus_root: str | None,
    latest: Mapping[str, Any] | None,
    runs_dir: str | None = None,
) -> dict[str, str]:
    """Which published set a training run uses, from corpus Asset event extras.

    ``triggering``: extras of the events that triggered the run (the newest version wins);
    else ``version`` (+ ``corpus_root``) given by hand (resolved by :func:`published_set_dir`);
    else ``latest``, the corpus's last event. Returns ``{"version", "set_dir", "run_dir"}``;
    ``run_dir`` is ``runs_dir/<version>`` (default ``<corpus root>/runs/<version>``; a corpus root
    in object storage needs ``runs_dir``: run folders are local).
    """
    if triggering:
        extra = dict(max(triggering, key=lambda x: x["version"]))
    elif version:
        if not corpus_root:
            raise AirflowFailException("a version given by hand needs corpus_root too")
        extra = {
            "version": version,
            "corpus_root": corpus_root,
            "set_dir": published_set_dir(corpus_root, version),
        }
    elif latest:
        extra = dict(latest)
    else:
        raise AirflowFailException("no published corpus version yet")
    root = extra.get("corpus_root") or os.path.dirname(os.path.dirname(extra["set_dir"]))
    if not runs_dir and is_url(root):
        raise AirflowFailException(
            f"corpus root {root} is in object storage: set runs_dir (or $MEDCORPUS_RUNS_DIR) to a local folder"
        )
    runs = runs_dir or os.path.join(root, "runs")
    return {
        "version": extra["version"],
        "set_dir": extra["set_dir"],
        "run_dir": os.path.join(runs, extra["version"]),
    }
