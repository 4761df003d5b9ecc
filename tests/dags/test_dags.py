"""The Airflow DAGs, run for real: Airflow 3 with a temporary home and SQLite, ``dag.test()`` on the
bundled sample data arranged as an inbox of two daily partitions (see ``conftest.py``).

Partitions (``INBOX/<day>/data/...``, the layout ``examples/demo.yaml`` expects):
2026-01-01: every DICOM file (CT series, CR, CXR, MR, SR, waveform ECG), the NIfTI volume and
the deliberately broken files; 2026-01-02: the PTB-XL ECGs and their 6 report rows.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import EXAMPLES, REPO
from tests.dags.conftest import AirflowDriver, medcorpus_bin

DEMO_CFG = REPO / "examples" / "demo.yaml"
BUILD_DAG = "medcorpus_incremental_build"
# dag.test(logical_date=D) on a daily data-interval timetable runs the interval [D - 1 day, D)
RUN_DAY1 = "2026-01-02T00:00:00+00:00"
RUN_DAY2 = "2026-01-03T00:00:00+00:00"
N_REPORT_ROWS = 6  # PTB-XL ecg_id 1 and 6000-6004: the rows of the bundled ECGs


def _tree_hashes(root: Path) -> dict[str, tuple[str, int]]:
    """relative path → (sha256, mtime_ns) of every file under ``root``."""
    return {
        p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _shard_bytes(set_dir: Path) -> dict[str, bytes]:
    files = {
        p.relative_to(set_dir).as_posix(): p.read_bytes()
        for p in (set_dir / "shards").rglob("*")
        if p.is_file()
    }
    return files | {
        n: (set_dir / n).read_bytes() for n in ("manifest.parquet", "shards.parquet", "quarantine.parquet")
    }


def _tis(result: dict) -> dict[str, dict]:
    return {ti["task_id"]: ti for ti in result["tis"]}


def _copy(src_rel: str, dst: Path) -> None:
    src = EXAMPLES / src_rel
    if src.is_dir():
        shutil.copytree(src, dst / src_rel)
    else:
        (dst / src_rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst / src_rel)


@pytest.fixture(scope="module")
def inbox(tmp_path_factory) -> Path:
    inbox = tmp_path_factory.mktemp("inbox")
    day1, day2 = inbox / "2026-01-01" / "data", inbox / "2026-01-02" / "data"
    for rel in ("dicom", "nifti", "quarantine_demo"):
        _copy(rel, day1)
    _copy("ecg", day2)
    with open(EXAMPLES / "reports" / "ptbxl_reports.csv", newline="") as f:
        rows = list(csv.reader(f))
    (day2 / "reports").mkdir(parents=True)
    with open(day2 / "reports" / "ptbxl_reports.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows[: N_REPORT_ROWS + 1])
    for p in inbox.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return inbox


@pytest.fixture(scope="module")
def incremental(airflow: AirflowDriver, inbox: Path, tmp_path_factory) -> dict:
    """Two consecutive scheduled intervals, with the first set's files hashed in between."""
    root = tmp_path_factory.mktemp("corpus")
    conf = {"inbox": str(inbox), "corpus_root": str(root), "config": str(DEMO_CFG)}
    t0 = time.perf_counter()
    r1 = airflow.dag_test(BUILD_DAG, logical_date=RUN_DAY1, run_conf=conf)
    t1 = time.perf_counter()
    first = root / "sets" / "2026-01-01"
    before = _tree_hashes(first) if first.is_dir() else {}
    index1 = json.loads((root / "versions.json").read_text()) if (root / "versions.json").exists() else {}
    r2 = airflow.dag_test(BUILD_DAG, logical_date=RUN_DAY2, run_conf=conf)
    t2 = time.perf_counter()
    print(f"scheduled build runs: interval 1 {t1 - t0:.1f}s, interval 2 {t2 - t1:.1f}s")
    return {"root": root, "conf": conf, "r1": r1, "r2": r2, "first_before": before, "index1": index1}


def _validate(set_dir: Path) -> subprocess.CompletedProcess:
    import shlex

    return subprocess.run(
        [*shlex.split(medcorpus_bin()), "validate", str(set_dir)], capture_output=True, text=True
    )


def test_every_dag_file_parses_without_importing_medcorpus(airflow):
    parsed = airflow.parsed
    assert parsed["import_errors"] == {}
    dags = parsed["dags"]
    assert set(dags) == {BUILD_DAG, "medcorpus_oneoff_build", "medcorpus_train_on_new_set"}
    dag_files = {d["file"] for d in dags.values()}
    assert dag_files == set(parsed["files"]) - {"medcorpus_dagkit.py"}  # every DAG file holds a DAG
    assert parsed["heavy_modules"] == []  # parsing imports no medcorpus code, torch, pyarrow, ...
    build = dags[BUILD_DAG]
    assert build["timetable"] == "CronDataIntervalTimetable"
    assert build["tasks"] == [
        "find_partitions",
        "per_partition.build",
        "per_partition.check",
        "per_partition.publish",
        "per_partition.stage",
    ]
    assert build["outlets"] == ["medcorpus_corpus"]
    assert dags["medcorpus_train_on_new_set"]["timetable"] == "AssetTriggeredTimetable"
    assert {"source", "output", "config", "runner"} <= set(dags["medcorpus_oneoff_build"]["params"])


def test_two_intervals_publish_two_sets_and_the_second_appends(airflow, incremental):
    root, r1, r2 = incremental["root"], incremental["r1"], incremental["r2"]
    assert r1["state"] == "success", airflow.log_tail()
    assert r1["data_interval"] == ["2026-01-01 00:00:00+00:00", "2026-01-02 00:00:00+00:00"]
    assert r2["state"] == "success", airflow.log_tail()
    assert {t: ti["state"] for t, ti in _tis(r2).items()} == dict.fromkeys(_tis(r2), "success")
    first, second = root / "sets" / "2026-01-01", root / "sets" / "2026-01-02"
    # the second run appended a set and left every byte (and mtime) of the first alone
    assert _tree_hashes(first) == incremental["first_before"] and incremental["first_before"]
    index = json.loads((root / "versions.json").read_text())
    assert [e["version"] for e in index["versions"]] == ["2026-01-01", "2026-01-02"]
    assert index["versions"][0] == incremental["index1"]["versions"][0]
    assert index["versions"][1]["interval_start"] == "2026-01-02T00:00:00+00:00"
    assert (root / "CURRENT").read_text().strip() == "2026-01-02"
    assert sorted(p.name for p in (root / "sets").iterdir()) == ["2026-01-01", "2026-01-02"]
    assert not any((root / "builds").iterdir()) and not any((root / "staging").iterdir())
    for s in (first, second):
        res = _validate(s)
        assert res.returncode == 0, res.stdout + res.stderr
    # each set holds its own partition's data
    mods1 = json.loads((first / "stats.json").read_text())["per_modality"]
    mods2 = json.loads((second / "stats.json").read_text())["per_modality"]
    assert {"image", "volume", "unknown"} <= set(mods1)  # DICOM, NIfTI and the broken files
    assert set(mods2) == {"ecg", "report"}  # PTB-XL records and their report rows
    assert mods2["report"]["inputs"] == N_REPORT_ROWS and mods2["ecg"]["inputs"] == 6
    assert index["versions"][0]["n_quarantined"] == sum(c["quarantined"] for c in mods1.values()) > 0
    # one corpus Asset event per publish, the version in its extra; the training DAG is queued
    evs = [e for e in airflow.request(op="events")["events"] if e["extra"].get("corpus_root") == str(root)]
    assert [e["extra"]["version"] for e in evs] == ["2026-01-01", "2026-01-02"]
    assert all(
        e["source_dag_id"] == BUILD_DAG and e["source_task_id"] == "per_partition.publish" for e in evs
    )
    assert (
        evs[1]["extra"]["set_dir"] == str(second)
        and evs[1]["extra"]["n_samples"] == index["versions"][1]["n_samples"]
    )
    queued = airflow.request(op="events")["queued"]
    assert {"asset": "medcorpus_corpus", "target_dag_id": "medcorpus_train_on_new_set"} in queued


def test_rerunning_an_interval_never_duplicates_a_set(airflow, incremental):
    root = incremental["root"]
    sets = {v: _tree_hashes(root / "sets" / v) for v in ("2026-01-01", "2026-01-02")}
    index = (root / "versions.json").read_text()
    rerun = airflow.dag_test(BUILD_DAG, logical_date=RUN_DAY2, run_conf=incremental["conf"])
    assert rerun["state"] == "success", airflow.log_tail()
    assert {v: _tree_hashes(root / "sets" / v) for v in sets} == sets
    assert (root / "versions.json").read_text() == index
    last = [e for e in airflow.request(op="events")["events"] if e["extra"].get("corpus_root") == str(root)][
        -1
    ]
    assert last["extra"]["version"] == "2026-01-02" and last["extra"]["already_published"] is True


TINY_TRAINING = """\
data: {modalities: [ecg, report], batch_size: 2, workers: 0, ecg_downsample: 10, shuffle_buffer: 4, shuffle_initial: 2}
model: {embed_dim: 16, ecg_width: 4, text_dim: 16, text_buckets: 512, head: linear}
optim: {warmup_steps: 1, lr: 0.003}
epochs: 1
threads: 1
log_every: 1
progress: false
"""


def test_training_dag_trains_and_evaluates_on_the_newest_published_set(airflow, incremental, tmp_path):
    root = incremental["root"]
    cfg = tmp_path / "train.yaml"
    cfg.write_text(TINY_TRAINING)
    # a manual run with no version takes the corpus Asset's latest event: the set of interval 2
    res = airflow.dag_test(
        "medcorpus_train_on_new_set", run_conf={"train_config": str(cfg), "eval_split": "val"}
    )
    assert res["state"] == "success", airflow.log_tail()
    assert [ti["task_id"] for ti in res["tis"]] == ["evaluate", "pick_set", "train"]
    run = root / "runs" / "2026-01-02"
    ckpts = sorted((run / "checkpoints").glob("step-*.pt"))
    assert ckpts, "no checkpoint written"
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert metrics and all(math.isfinite(m["loss"]) for m in metrics)
    stats = json.loads((root / "sets" / "2026-01-02" / "stats.json").read_text())
    ev = json.loads((run / "eval-val.json").read_text())
    assert ev["split"] == "val" and ev["n_samples"] == stats["samples_per_split"]["val"] > 0
    assert set(ev["modality_counts"]) == {"ecg", "report"}


def test_the_training_set_is_picked_from_asset_events(airflow):
    pick = lambda **kw: airflow.request(op="call", func="choose_published_set", kwargs=kw)["result"]  # noqa: E731
    ev = lambda v: {"version": v, "corpus_root": "/c", "set_dir": f"/c/sets/{v}"}  # noqa: E731
    got = pick(
        triggering=[ev("2026-01-02"), ev("2026-01-03"), ev("2026-01-01")],
        version=None,
        corpus_root=None,
        latest=ev("2025-12-31"),
    )
    assert got == {"version": "2026-01-03", "set_dir": "/c/sets/2026-01-03", "run_dir": "/c/runs/2026-01-03"}
    got = pick(triggering=[], version="2026-01-05", corpus_root="/d", latest=ev("2026-01-09"), runs_dir="/r")
    assert got == {"version": "2026-01-05", "set_dir": "/d/sets/2026-01-05", "run_dir": "/r/2026-01-05"}
    assert (
        pick(triggering=[], version=None, corpus_root=None, latest=ev("2026-01-09"))["version"]
        == "2026-01-09"
    )


def test_a_failed_validation_never_publishes(airflow, incremental, inbox, tmp_path):
    """A finished build whose shard got corrupted before its check: the run fails, nothing is published."""
    root = tmp_path / "corpus"
    build = root / "builds" / "2026-01-01"
    shutil.copytree(incremental["root"] / "sets" / "2026-01-01", build)
    for p in build.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    (build / "SET.json").unlink()
    (build / "CHECKED.json").unlink()
    tar = sorted((build / "shards").rglob("*.tar"))[0]
    data = bytearray(tar.read_bytes())
    data[700] ^= 0xFF
    tar.write_bytes(bytes(data))
    conf = incremental["conf"] | {"corpus_root": str(root)}
    # the build task is marked done: the corrupted build above is what it left behind
    res = airflow.dag_test(
        BUILD_DAG, logical_date=RUN_DAY1, run_conf=conf, mark_success_pattern=r"per_partition\.build"
    )
    tis = _tis(res)
    assert res["state"] == "failed"
    assert tis["per_partition.check"]["state"] == "failed" and tis["per_partition.check"]["try_number"] == 1
    assert tis["per_partition.publish"]["state"] == "upstream_failed"
    assert "sha256 mismatch" in airflow.log_tail(400)
    assert (
        not (root / "sets").exists()
        and not (root / "versions.json").exists()
        and not (root / "CURRENT").exists()
    )
    assert build.is_dir()  # kept for inspection
    evs = airflow.request(op="events")["events"]
    assert not [e for e in evs if e["extra"].get("corpus_root") == str(root)]


def test_too_many_quarantined_inputs_fail_the_run(airflow, tmp_path):
    inbox, root = tmp_path / "inbox", tmp_path / "corpus"
    day = inbox / "2026-01-05" / "data"
    _copy("quarantine_demo", day)  # 4 broken files
    _copy("dicom/mr/MR_small.dcm", day)  # 1 good one
    for p in inbox.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    conf = {"inbox": str(inbox), "corpus_root": str(root), "config": str(DEMO_CFG)}
    res = airflow.dag_test(BUILD_DAG, logical_date="2026-01-06T00:00:00+00:00", run_conf=conf)
    tis = _tis(res)
    assert res["state"] == "failed"
    assert tis["per_partition.build"]["state"] == "success"
    assert tis["per_partition.check"]["state"] == "failed" and tis["per_partition.check"]["try_number"] == 1
    assert tis["per_partition.publish"]["state"] == "upstream_failed"
    assert "quarantined 4 of 5 input units (80.0%) > max_quarantine_fraction 25.0%" in airflow.log_tail(400)
    assert not (root / "sets").exists() and not (root / "CURRENT").exists()
    # the same build passes a looser gate on a re-run: it resumes and publishes
    res = airflow.dag_test(
        BUILD_DAG, logical_date="2026-01-06T00:00:00+00:00", run_conf=conf | {"max_quarantine_fraction": 0.9}
    )
    assert res["state"] == "success", airflow.log_tail()
    entry = json.loads((root / "versions.json").read_text())["versions"][0]
    assert (entry["version"], entry["n_units"], entry["n_quarantined"]) == ("2026-01-05", 5, 4)


def _kill_build_when_decoding(
    driver_pid: int, build_dir: Path, marker: str, found: dict, timeout_s: float = 300
) -> None:
    """SIGKILL the build task's process group (medcorpus and its pool workers) once the build has
    decoded a few inputs (decode sidecars written) but not finished (no stats.json)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        n_cached = len(list((build_dir / "cache").rglob("*.pkl"))) if (build_dir / "cache").is_dir() else 0
        if n_cached >= 3:
            for proc in psutil.Process(driver_pid).children(recursive=True):
                try:
                    cmd, leader = " ".join(proc.cmdline()), os.getpgid(proc.pid) == proc.pid
                except (psutil.Error, ProcessLookupError):
                    continue
                # the task's process group (BashOperator starts a new session; bash -c execs a lone
                # command): its leader is the medcorpus build-set process
                if "build-set" in cmd and marker in cmd and leader:
                    found["finished_before_kill"] = (build_dir / "stats.json").exists()
                    found["cached_at_kill"] = n_cached
                    os.killpg(proc.pid, signal.SIGKILL)
                    found["killed"] = True
                    return
        time.sleep(0.02)


def test_a_killed_build_task_is_retried_to_the_same_shards(airflow, incremental, tmp_path):
    root = tmp_path / "corpus-killed"
    conf = incremental["conf"] | {"corpus_root": str(root)}
    found: dict = {}
    killer = threading.Thread(
        target=_kill_build_when_decoding,
        args=(airflow.proc.pid, root / "builds" / "2026-01-01", str(root), found),
        daemon=True,
    )
    killer.start()
    res = airflow.dag_test(BUILD_DAG, logical_date=RUN_DAY1, run_conf=conf)
    killer.join(timeout=10)
    assert found.get("killed"), "the build task was never caught mid-build"
    assert not found["finished_before_kill"]
    assert res["state"] == "success", airflow.log_tail()
    assert _tis(res)["per_partition.build"]["try_number"] == 2  # killed once, retried by Airflow
    killed_then_retried = _shard_bytes(root / "sets" / "2026-01-01")
    uninterrupted = _shard_bytes(incremental["root"] / "sets" / "2026-01-01")
    assert killed_then_retried.keys() == uninterrupted.keys()
    differ = sorted(k for k in uninterrupted if killed_then_retried[k] != uninterrupted[k])
    # (a shared working tree whose workers/ code changed between the two builds also differs here)
    assert not differ, f"killed+retried build differs from the uninterrupted one in {differ}"


def test_oneoff_build_dag_with_params(airflow, tmp_path):
    src, out = tmp_path / "export", tmp_path / "out"
    _copy("dicom/mr", src / "data")
    _copy("dicom/cr", src / "data")
    cfg = tmp_path / "oneoff.yaml"
    cfg.write_text(
        "deid: {demo: true}\nsources:\n  - {name: pydicom, path: data/dicom, licence: MIT}\nworkers: 2\n"
    )
    conf = {"source": str(src), "output": str(out), "config": str(cfg), "runner": "local", "workers": 1}
    res = airflow.dag_test("medcorpus_oneoff_build", run_conf=conf)
    assert res["state"] == "success", airflow.log_tail()
    assert [ti["state"] for ti in res["tis"]] == ["success", "success"]
    assert _validate(out).returncode == 0
    # runner and workers do not change the output (byte-identical by contract), so build.json
    # does not record them; the output and config params are what this checks
    assert json.loads((out / "stats.json").read_text())["n_samples"] == 2
