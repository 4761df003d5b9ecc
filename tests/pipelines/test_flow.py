"""The dataflow API (``pipelines.flow``): every backend gives the same elements for each operation."""

from __future__ import annotations

import importlib.util

import pytest

from pipelines.flow import Select, make_flow
from tests.pipelines import flow_helpers as h

BACKENDS = ["local"]
if importlib.util.find_spec("apache_beam"):
    BACKENDS.append("beam")
if importlib.util.find_spec("distributed"):
    BACKENDS.append("dask")


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    return request.param


def _run(name, build, workers=2):
    flow = make_flow(name, workers, quiet=True)
    try:
        return flow.run(build(flow))
    finally:
        flow.close()


def test_flat_map_group_gather_side_union(backend):
    def build(flow):
        nums = flow.create([0, 1, 2], "seeds").flat_map(h.expand, "expand")
        groups = nums.group(h.mod3, h.group_summary, h.ident, "group")
        side = nums.gather(h.total, h.ident, "total")
        scaled = nums.flat_map_with(h.scale, side, "scale")
        tagged = nums.flat_map(h.tag_parity, "tag")
        evens = tagged.flat_map(Select("even"), "even")
        both = flow.union(evens, flow.create([100], "more"))
        return {"nums": nums, "groups": groups, "scaled": scaled, "both": both}

    out = _run(backend, build)
    assert sorted(out["nums"]) == list(range(30))
    groups = dict(out["groups"])
    assert sorted(groups) == ["k0", "k1", "k2"]
    # each group's elements arrive sorted by `order`, whatever the shuffle did
    assert groups["k1"] == tuple(range(1, 30, 3))
    assert sorted(out["scaled"]) == [(x, 30 * x) for x in range(30)]
    assert sorted(out["both"]) == [*range(0, 30, 2), 100]


def test_local_single_worker_matches_two_workers():
    def build(flow):
        nums = flow.create(list(range(5)), "seeds").flat_map(h.expand, "expand")
        return {"g": nums.group(h.mod3, h.group_summary, h.ident, "group")}

    assert sorted(_run("local", build, 1)["g"]) == sorted(_run("local", build, 2)["g"])


def test_work_runs_in_worker_processes(backend):
    import os

    def build(flow):
        return {"p": flow.create(list(range(8)), "seeds").flat_map(h.pid_of, "pid")}

    pids = {p for _, p in _run(backend, build)["p"]}
    assert os.getpid() not in pids


def test_worker_processes_run_one_blas_thread(backend):
    # one worker per core: a worker with a BLAS thread per core oversubscribes them (Dask's nanny
    # sets the same); the driver keeps its own thread pool
    pytest.importorskip("threadpoolctl")
    import os

    def build(flow):
        return {"t": flow.create(list(range(8)), "seeds").flat_map(h.blas_threads, "blas")}

    rows = _run(backend, build)["t"]
    assert {pid for _, pid, _ in rows} - {os.getpid()}
    assert {n for _, _, n in rows} == {1}


def test_worker_environ_sets_only_what_is_unset_and_restores(monkeypatch):
    import os

    from pipelines.runners import ONE_THREAD_ENV, worker_environ

    for k in ONE_THREAD_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "4")  # the user's choice wins
    with worker_environ():
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
        assert os.environ["MKL_NUM_THREADS"] == "4"
    assert "OPENBLAS_NUM_THREADS" not in os.environ
    assert os.environ["MKL_NUM_THREADS"] == "4"


def test_a_bug_in_a_stage_fails_the_run(backend):
    def build(flow):
        return {"x": flow.create([0], "seeds").flat_map(h.expand, "e").flat_map(h.boom_on_seven, "boom")}

    with pytest.raises(Exception, match="injected bug"):
        _run(backend, build)
