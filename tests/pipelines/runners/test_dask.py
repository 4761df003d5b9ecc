"""The Dask backend of the dataflow API: one graph per run, existing clusters, failures, graph size.

The stage functions below are module-level so that worker processes can unpickle them (they
import ``tests.pipelines.runners.test_dask``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

pytest.importorskip("distributed")

import cloudpickle  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402
from distributed.core import Status  # noqa: E402

from pipelines.runners.dask import DaskFlow  # noqa: E402
from tests.pipelines import flow_helpers as h  # noqa: E402

# --- stage functions (run in worker processes) ------------------------------------------------------


def logged_expand(seed: tuple[str, int]) -> Iterable[int]:
    """Expand like ``h.expand`` and append one line per call to a log file."""
    log, n = seed
    with open(log, "a") as f:
        f.write(f"{n}\n")
    return range(10 * n, 10 * n + 10)


def fan_out(n: int) -> Iterable[int]:
    return range(n)


fan_out.fans_out = True  # its outputs are cut into slices, one task each of the next step


def slow_pid(x: int) -> Iterable[tuple[int, int]]:
    time.sleep(0.02)  # long enough for the scheduler to spread (steal) tasks
    yield x, os.getpid()


def key256(x: int) -> str:
    return f"k{x % 256:03d}"


def count_group(key: str, xs: list) -> Iterable[tuple]:
    yield key, len(xs), xs == sorted(xs)


def count_all(xs: list) -> int:
    return len(xs)


def every_1000th_below(x: int, n: int) -> Iterable[int]:
    if x < n and x % 1000 == 0:
        yield x


def die_once(element: tuple[str, int]) -> Iterable[int]:
    """Kill the worker process the first time element 2 is seen (marker file), then pass through."""
    marker, n = element
    if n == 2 and not os.path.exists(marker):
        Path(marker).touch()
        os._exit(1)
    yield n


def fail_once(element: tuple[str, int]) -> Iterable[int]:
    """Raise (a transient error) the first time element 1 is seen, then pass through."""
    marker, n = element
    if n == 1 and not os.path.exists(marker):
        Path(marker).touch()
        raise ConnectionError("transient: server unavailable")
    yield n


class WithMarker:
    """``n -> (marker, n)`` (a picklable closure)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, n: int) -> Iterable[tuple[str, int]]:
        yield self.marker, n


def bad_value(x: int) -> Iterable[int]:
    if x == 13:
        raise ValueError(f"bad element {x} in stage")
    yield x


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """An 'existing' cluster the flows connect to (one start for the whole module)."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def _flow(cluster, **kw) -> DaskFlow:
    return DaskFlow(workers=2, quiet=True, scheduler_address=cluster.scheduler_address, **kw)


def _wait_for_two_workers(cluster) -> None:
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)


def _run(flow: DaskFlow, outputs):
    try:
        return flow.run(outputs)
    finally:
        flow.close()


# --- tests -----------------------------------------------------------------------------------------------


def test_the_graph_is_computed_once_and_shared_steps_run_once(cluster, tmp_path, monkeypatch):
    calls = []
    original = Client.compute

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Client, "compute", counting)
    log = tmp_path / "expand.log"
    flow = _flow(cluster)
    nums = flow.create([(str(log), n) for n in range(3)], "seeds").flat_map(logged_expand, "expand")
    side = nums.gather(h.total, h.ident, "total")
    outputs = {
        "nums": nums,
        "groups": nums.group(h.mod3, h.group_summary, h.ident, "group"),
        "scaled": nums.flat_map_with(h.scale, side, "scale"),
        "evens": nums.flat_map(h.tag_parity, "tag"),
    }
    out = _run(flow, outputs)

    assert len(calls) == 1  # one submission for all four outputs
    assert sorted(log.read_text().split()) == ["0", "1", "2"]  # nums computed once, not once per consumer
    assert sorted(out["nums"]) == list(range(30))
    assert dict(out["groups"])["k1"] == tuple(range(1, 30, 3))
    assert sorted(out["scaled"]) == [(x, 30 * x) for x in range(30)]


def test_an_existing_scheduler_keeps_running_after_close(cluster):
    flow = _flow(cluster)
    pids = _run(flow, {"p": flow.create(list(range(4)), "s").flat_map(h.pid_of, "pid")})["p"]
    assert os.getpid() not in {p for _, p in pids}
    assert flow._cluster is None and flow._client is None
    assert cluster.scheduler.status == Status.running
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        assert client.submit(sum, [1, 2]).result() == 3


def test_a_killed_worker_process_is_rescheduled(cluster, tmp_path):
    marker = str(tmp_path / "died")
    flow = _flow(cluster)
    nums = flow.create([8], "s").flat_map(fan_out, "fan").flat_map(WithMarker(marker), "pair")
    out = _run(flow, {"n": nums.flat_map(die_once, "die")})
    assert os.path.exists(marker)  # the worker really died once
    assert sorted(out["n"]) == list(range(8))
    _wait_for_two_workers(cluster)  # the nanny restarts the dead worker


def test_fan_out_feeds_both_workers(cluster):
    _wait_for_two_workers(cluster)
    flow = _flow(cluster)
    pids = _run(flow, {"p": flow.create([160], "s").flat_map(fan_out, "fan").flat_map(slow_pid, "slow-pid")})[
        "p"
    ]
    assert sorted(x for x, _ in pids) == list(range(160))
    assert len({p for _, p in pids}) == 2  # one seed, yet both workers got elements


def test_an_exception_fails_the_run_with_its_message(cluster):
    flow = _flow(cluster)
    with pytest.raises(ValueError, match="bad element 13 in stage"):
        _run(flow, {"x": flow.create([40], "s").flat_map(fan_out, "fan").flat_map(bad_value, "bad")})


def test_retries_cover_a_transient_error(cluster, tmp_path):
    def build(flow, marker):
        seeds = flow.create([(marker, n) for n in range(3)], "s")
        return {"x": seeds.flat_map(fail_once, "flaky")}

    flow = _flow(cluster)
    with pytest.raises(ConnectionError, match="transient"):
        _run(flow, build(flow, str(tmp_path / "a")))
    flow = _flow(cluster, retries=1)
    assert sorted(_run(flow, build(flow, str(tmp_path / "b")))["x"]) == [0, 1, 2]


def test_the_graph_holds_only_the_seeds(cluster):
    def build(flow, n):
        nums = flow.create([n], "seeds").flat_map(fan_out, "fan")
        side = nums.gather(count_all, h.ident, "count")
        return {
            "groups": nums.group(key256, count_group, h.ident, "group"),
            "some": nums.flat_map_with(every_1000th_below, side, "keep"),
        }

    def graph_of(n):
        flow = DaskFlow(workers=2, quiet=True)
        outputs = build(flow, n)
        tasks, cleanup = flow.graph(outputs)
        assert flow._client is None  # building the graph starts nothing
        graph = {k: v for t in tasks + cleanup for k, v in t.__dask_graph__().items()}
        return len(graph), len(cloudpickle.dumps(graph))

    (n_small, small), (n_large, large) = graph_of(10), graph_of(10_000)
    assert n_small == n_large  # task counts are fixed before any data is seen
    assert large < 64_000
    assert abs(large - small) < 64  # the expansion is not in the graph

    flow = _flow(cluster)
    out = _run(flow, build(flow, 10_000))
    assert len(out["groups"]) == 256
    assert sum(n for _, n, _ in out["groups"]) == 10_000
    assert all(ordered for _, _, ordered in out["groups"])
    assert sorted(out["some"]) == list(range(0, 10_000, 1000))


def padded(n: int) -> Iterable[str]:
    """n → 20,000 elements of 500 bytes each (10 MB in all)."""
    for i in range(20_000):
        yield f"{n}-{i:05d}-" + "x" * 488


padded.fans_out = True


def key_of_padded(s: str) -> str:
    return s[:7]


def worker_bytes(key: str, xs: list) -> Iterable[tuple]:
    """(key, len, bytes Dask holds in this worker's memory while a late step runs)."""
    from dask.sizeof import sizeof
    from distributed import get_worker

    for _ in range(100):  # the worker's event loop may add results while we read
        try:
            held = list(get_worker().data.values())
            break
        except RuntimeError:
            continue
    yield key, len(xs), sum(sizeof(v) for v in held)


def test_collections_live_in_files_not_in_worker_memory(cluster, tmp_path):
    """Workers hold file names between steps: a 10 MB collection leaves < 1 MB in Dask's memory."""
    flow = DaskFlow(
        workers=2, quiet=True, scheduler_address=cluster.scheduler_address, spill_dir=str(tmp_path)
    )
    elements = flow.create([0, 1, 2, 3, 4], "seeds").flat_map(padded, "pad")
    out = _run(flow, {"g": elements.group(key_of_padded, worker_bytes, h.ident, "g")})["g"]
    assert sum(n for _, n, _ in out) == 100_000
    assert max(b for _, _, b in out) < 1_000_000, out
    assert not os.listdir(tmp_path)  # every spill file deleted with its folder


def malloc_env(x: int) -> Iterable[tuple]:
    yield (
        x,
        os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        os.environ.get("OMP_NUM_THREADS"),
        os.environ.get("MALLOC_ARENA_MAX"),
    )


def test_own_cluster_workers_keep_glibc_malloc_defaults():
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_ (1.6-1.9x the CPU for numpy work); our LocalCluster does not."""
    flow = DaskFlow(workers=1, quiet=True)
    out = _run(flow, {"e": flow.create([1], "s").flat_map(malloc_env, "env")})["e"]
    assert out == [(1, None, "1", None)]  # no trim threshold, glibc's arenas, one BLAS thread


def test_runs_never_share_task_keys(cluster, tmp_path):
    """The same graph run twice (or two builds on one scheduler) computes twice, from its own files."""
    flow = _flow(cluster, spill_dir=str(tmp_path))
    try:
        for _ in range(3):
            nums = flow.create([5], "s").flat_map(h.expand, "expand").flat_map(h.tag_parity, "tag")
            out = flow.run({"t": nums})["t"]
            assert sorted(out) == sorted(h.tag_parity(x).__next__() for x in range(50, 60))
    finally:
        flow.close()


def test_local_pool_workers_do_not_inherit_the_setting_a_nanny_leaked(monkeypatch, tmp_path):
    from pipelines.runners.local import LocalFlow

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # what a Nanny leaves in its parent's environ
    flow = LocalFlow(workers=2, quiet=True, spill_dir=str(tmp_path))
    out = _run(flow, {"e": flow.create([1, 2], "s").flat_map(malloc_env, "env")})["e"]
    assert sorted(o[:3] for o in out) == [(1, None, "1"), (2, None, "1")]


def test_a_deleted_spill_file_stops_the_run_with_a_clear_error(tmp_path):
    """A recomputed task whose inputs were cleaned up (its worker died) says so, not ENOENT."""
    from pipelines.runners import dask as dask_runner
    from pipelines.runners.spill import Step

    gone = str(tmp_path / "medcorpus-spill-x" / "0001-decode-000000")
    steps = (Step(h.expand),)
    with pytest.raises(dask_runner.SpillLost, match="0001-decode-000000 of an earlier step is gone"):
        dask_runner._chain(steps, (str(tmp_path / "out"), 512, os.urandom(32), 0), (None,), [(gone, 3)])
    other = str(tmp_path / "input.dat")  # a stage's own missing file is not a spill file
    with pytest.raises(FileNotFoundError):
        dask_runner._chain(steps, (str(tmp_path / "out"), 512, os.urandom(32), 0), (None,), [(other, 3)])
