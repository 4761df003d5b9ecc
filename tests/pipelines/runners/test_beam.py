"""The Beam backend of the dataflow API: one pipeline per run, stage metrics, errors, options.

The stage functions below are module-level (``tests.pipelines.runners.test_beam``): Beam's SDK worker
processes unpickle them by reference.
"""

from __future__ import annotations

import os

import pytest

pytest.importorskip("apache_beam")

import apache_beam as beam  # noqa: E402

from pipelines.flow import Select  # noqa: E402
from pipelines.runners.beam import BeamFlow  # noqa: E402
from schemas.modality import Modality  # noqa: E402
from schemas.reasons import ReasonCode  # noqa: E402
from schemas.records import QuarantineRecord  # noqa: E402
from tests.pipelines import flow_helpers as h  # noqa: E402


def _bad(x: int, reason: ReasonCode) -> QuarantineRecord:
    return QuarantineRecord(f"src{x}", "toy", Modality.IMAGE, "decode", reason, "bad input")


def decode(x: int):
    """Even → ("ok", x); odd → ("quarantine", record): empty file if x % 4 == 1, else truncated."""
    if x % 2 == 0:
        yield "ok", x
    else:
        yield "quarantine", _bad(x, ReasonCode.EMPTY_FILE if x % 4 == 1 else ReasonCode.DICOM_TRUNCATED)


def dedup(key: str, xs: list):
    """Per group: keep the first, the rest become bare quarantine records (duplicates)."""
    yield xs[0]
    for x in xs[1:]:
        yield _bad(x, ReasonCode.DUPLICATE)


def keep_ints(x):
    if isinstance(x, int):
        yield x


def tens(x: int) -> str:
    return f"t{x // 10}"


def _build(flow: BeamFlow) -> dict:
    nums = flow.create([0, 1, 2], "seeds").flat_map(h.expand, "expand")  # 0..29
    decoded = nums.flat_map(decode, "decode")
    ok = decoded.flat_map(Select("ok"), "ok")
    kept = ok.group(tens, dedup, h.ident, "dedup")  # 15 evens in 3 groups: 3 kept, 12 duplicates
    return {"kept": kept.flat_map(keep_ints, "kept"), "decoded": decoded}


def _check_metrics(flow: BeamFlow, out: dict) -> None:
    assert sorted(out["kept"]) == [0, 10, 20]
    m = flow.stage_metrics
    assert m["seeds"]["out"] == 3
    assert (m["expand"]["in"], m["expand"]["out"]) == (3, 30)
    d = m["decode"]
    assert (d["in"], d["out"], d["quarantined"]) == (30, 30, 15)
    assert d["quarantined.empty_file"] == 8 and d["quarantined.dicom_truncated"] == 7
    # the counters agree with the records that come back (what the quarantine manifest holds)
    records = [e for tag, e in out["decoded"] if tag == "quarantine"]
    assert len(records) == d["quarantined"]
    g = m["dedup"]
    assert (g["groups"], g["in"], g["out"]) == (3, 15, 15)
    assert g["quarantined"] == g["quarantined.duplicate"] == 12
    assert "quarantined" not in m["ok"]


def test_stage_metrics_two_workers():
    before = os.environ.get("PYTHONPATH")
    flow = BeamFlow(workers=2, quiet=True)
    try:
        out = flow.run(_build(flow))
    finally:
        flow.close()
    _check_metrics(flow, out)
    assert os.environ.get("PYTHONPATH") == before  # set for the workers only during the run


def test_one_worker_one_pipeline_per_run(monkeypatch):
    runs = []
    real_run = beam.Pipeline.run

    def counting_run(self, *args, **kwargs):
        runs.append(self)
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(beam.Pipeline, "run", counting_run)
    flow = BeamFlow(workers=1, quiet=True)
    out = flow.run(_build(flow))
    _check_metrics(flow, out)
    assert len(runs) == 1
    # a second graph on the same flow is a new pipeline, run once more
    out2 = flow.run({"x": flow.create([4], "again").flat_map(h.expand, "expand")})
    assert sorted(out2["x"]) == list(range(40, 50))
    assert len(runs) == 2 and runs[0] is not runs[1]
    assert flow.stage_metrics["expand"] == {"in": 1, "out": 10}


def test_same_desc_twice_and_edge_cases(tmp_path):
    staging = tmp_path / "staging"
    flow = BeamFlow(workers=1, quiet=True, staging_dir=str(staging))
    a = flow.create([1], "s").flat_map(h.expand, "x")
    b = a.flat_map(h.tag_parity, "x").flat_map(Select("odd"), "x")
    empty = flow.create([], "none")
    side = empty.gather(h.total, h.ident, "total")
    out = flow.run(
        {
            "b": b,
            "one": flow.union(b),
            "zero": flow.union(),
            "side": a.flat_map_with(h.scale, side, "scale"),
            "nothing": empty.group(h.mod3, h.group_summary, h.ident, "g"),
        }
    )
    assert sorted(out["b"]) == sorted(out["one"]) == [11, 13, 15, 17, 19]
    assert out["zero"] == [] and out["nothing"] == []
    assert sorted(out["side"]) == [(x, 0) for x in range(10, 20)]  # total() of nothing: n == 0
    assert flow.stage_metrics["x"]["in"] == 1 + 10 + 10  # three stages named "x", summed
    assert not any(staging.rglob("*"))  # the output rows were read back and deleted


def test_a_bug_fails_the_run_with_its_message():
    flow = BeamFlow(workers=1, quiet=True)
    coll = flow.create([0], "seeds").flat_map(h.expand, "e").flat_map(h.boom_on_seven, "boom")
    with pytest.raises(Exception, match="injected bug in a flow stage"):
        flow.run({"x": coll})
    with pytest.raises(TypeError, match="group key must be str"):
        flow.run({"g": flow.create([1], "s").group(h.ident, h.group_summary, h.ident, "g")})


def test_options():
    local = BeamFlow(workers=3).pipeline_options().get_all_options(drop_default=True)
    assert local["runner"] == "FnApiRunner" and local["direct_num_workers"] == 3
    assert local["direct_running_mode"] == "multi_processing"
    assert "direct_num_workers" not in BeamFlow(workers=1).pipeline_options().get_all_options(True)
    prod = BeamFlow(
        workers=8,
        beam_options=["--runner=DataflowRunner", "--project=p", "--region=r"],
        staging_dir="gs://bucket/tmp",
    )
    opts = prod.pipeline_options().get_all_options(drop_default=True)
    assert opts["runner"] == "DataflowRunner" and opts["temp_location"] == "gs://bucket/tmp"
    assert "direct_num_workers" not in opts and "direct_running_mode" not in opts
