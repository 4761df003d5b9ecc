"""The Runner protocol on every engine: ordered map, keyed groups, setup hooks, loud bugs.

Each case runs on the local process pool (the reference), on Apache Beam (FnApiRunner,
multi_processing, 2 SDK worker processes) and on Dask (LocalCluster, 2 worker processes).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.runners import make_runner
from tests.conftest import REPO
from tests.pipelines import runner_helpers as h

RUNNERS = ("local", "beam", "dask")


@pytest.fixture(scope="module", autouse=True)
def _importable_helpers():
    with h.repo_on_pythonpath(REPO):
        yield


@pytest.fixture(scope="module", params=RUNNERS)
def runner(request):
    r = make_runner(request.param, 2, quiet=True)
    yield r
    r.close()


def test_map_keeps_order_and_values(runner):
    xs = [7, 3, 11, 0, 5, 2, 9, 4, 1, 8, 6, 10]
    assert runner.map(h.square, xs, "square") == [x * x for x in xs]
    assert runner.map(h.square, [], "empty") == []


def test_group_map_sorted_keys_and_input_order_within_groups(runner):
    xs = [5, 9, 1, 3, 12, 4, 7, 0, 10, 2]
    expected = {}
    for x in xs:
        expected.setdefault(h.mod3_key(x), []).append(x)
    got = runner.group_map(h.mod3_key, h.key_and_group, xs, "groups")
    assert got == [(k, expected[k]) for k in sorted(expected)]
    assert got[0] == ("k0", [9, 3, 12, 0])  # input order, not sorted values


def test_bug_in_a_task_fails_the_stage(runner):
    with pytest.raises(RuntimeError, match=h.BUG_MESSAGE):
        runner.map(h.raise_on_seven, list(range(10)), "bug")


def test_quarantine_records_come_back_in_place(runner):
    xs = list(range(10))
    got = runner.map(h.quarantine_odd, xs, "quarantine")
    assert got == [h.quarantine_odd(x) for x in xs]
    if runner.__class__.__name__ == "BeamRunner":
        # the tagged side output was counted per reason by Beam metrics
        m = runner.stage_metrics["quarantine"]
        assert m["items"] == 10 and m["quarantined"] == 5
        assert m["quarantined.empty_file"] == 3 and m["quarantined.dicom_truncated"] == 2


def test_setup_runs_once_per_worker_before_calls(runner, tmp_path):
    if runner.__class__.__name__ == "LocalRunner":
        pytest.skip("the local runner has no per-worker setup hook")
    out = runner.map(h.SetupOnce(str(tmp_path)), list(range(12)), "setup")
    assert [x for x, _, _ in out] == list(range(12))
    assert all(ready for _, _, ready in out)
    pids = {pid for _, pid, _ in out}
    assert len(pids) == 2 and os.getpid() not in pids  # ran in both worker processes
    setups = [p.name.split("-")[1] for p in tmp_path.glob("setup-*")]
    assert sorted(set(setups)) == sorted(str(p) for p in pids)
    assert len(setups) <= 12 // 2  # per worker (DoFn instance), not per element


def test_beam_worker_pool_lifecycle_and_staging_cleanup(tmp_path):
    from pipelines.runners.beam import BeamRunner

    r = BeamRunner(workers=2, quiet=True, staging_dir=str(tmp_path / "staging"))
    try:
        assert r.map(h.square, [1, 2, 3], "sq") == [1, 4, 9]
        procs = list(r._pool.procs)
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
        assert r.map(h.square, [4, 5], "sq2") == [16, 25]
        assert r._pool.procs == procs  # reused across stages
        assert list((tmp_path / "staging").iterdir()) == []  # per-stage folders are removed
    finally:
        r.close()
    assert all(p.poll() is not None for p in procs)


def test_beam_plain_multi_processing_mode():
    from pipelines.runners.beam import BeamRunner

    r = BeamRunner(workers=2, quiet=True, worker_pool=False)
    flags = r.pipeline_options(2).get_all_options()
    assert flags["runner"] == "FnApiRunner" and flags["direct_num_workers"] == 2
    assert flags["direct_running_mode"] == "multi_processing"
    assert r.pipeline_options(1).get_all_options()["direct_num_workers"] == 1
    try:
        assert r.group_map(h.mod3_key, h.key_and_group, [4, 2, 1], "g") == [("k1", [4, 1]), ("k2", [2])]
    finally:
        r.close()
    staging = Path(r.staging_dir)
    assert not staging.exists()
    prod = BeamRunner(beam_options=["--runner=DataflowRunner", "--project=p", "--region=r"])
    assert prod.production and prod.pipeline_options(4).get_all_options()["runner"] == "DataflowRunner"
    prod.close()


def test_dask_on_an_existing_scheduler_retries_only_when_asked(tmp_path):
    from dask.distributed import Client, LocalCluster

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        strict = make_runner("dask", 1, quiet=True, scheduler_address=address)
        assert strict.group_map(h.mod3_key, h.key_and_group, [1, 4, 2], "g") == [("k1", [1, 4]), ("k2", [2])]
        with pytest.raises(RuntimeError, match=h.BUG_MESSAGE):
            strict.map(h.FailOnce(str(tmp_path / "a")), [1, 2, 3], "fail-once")
        strict.close()
        lenient = make_runner("dask", 1, quiet=True, scheduler_address=address, retries=1)
        assert lenient.map(h.FailOnce(str(tmp_path / "b")), [1, 2, 3], "fail-once") == [1, 2, 3]
        assert (tmp_path / "b" / "failed").exists()
        lenient.close()
        with Client(address) as c:  # an existing cluster is left running by close()
            assert c.submit(h.square, 5).result() == 25


# Beam's gRPC reader thread of the abandoned pipeline reports the dead worker's closed stream
_DEAD_WORKER_THREAD_NOISE = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


@_DEAD_WORKER_THREAD_NOISE
def test_a_killed_worker_process_is_retried(runner, tmp_path):
    if runner.__class__.__name__ == "LocalRunner":
        pytest.skip("the local runner does not retry: a dead worker fails the build (tested below)")
    out = runner.map(h.DieOnce(str(tmp_path)), list(range(8)), "die-once")
    assert out == [x * 10 for x in range(8)]
    assert (tmp_path / "died").exists()  # the worker really died once


@_DEAD_WORKER_THREAD_NOISE
def test_a_worker_that_always_dies_fails_the_stage_without_hanging(runner):
    name = runner.__class__.__name__
    if name == "LocalRunner":
        from concurrent.futures.process import BrokenProcessPool

        if runner.workers == 1:
            pytest.skip("in-process: a dying worker is the build process itself")
        with pytest.raises(BrokenProcessPool):
            runner.map(h.die_on_three, list(range(6)), "die-always")
        runner.close()  # a broken pool is replaced on the next stage
        assert runner.map(h.square, [2, 3], "after") == [4, 9]
        return
    if name == "BeamRunner":
        from pipelines.runners.beam import WorkerLost

        expected, runner.max_attempts = WorkerLost, 1  # retries are covered above
    else:
        from distributed import KilledWorker

        expected = KilledWorker
    try:
        with pytest.raises(expected):
            runner.map(h.die_on_three, list(range(6)), "die-always")
    finally:
        runner.max_attempts = 3
    assert runner.map(h.square, [2, 3], "after") == [4, 9]  # the runner recovers
