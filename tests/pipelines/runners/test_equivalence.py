"""The same build on the local runner, Apache Beam and Dask (2 workers each): byte-identical output.

Input: a subset of the bundled sample data (DICOM images, 4 slices of the real CT series, PTB-XL
ECGs with their report rows, and every deliberately broken file of ``quarantine_demo``), built
with the demo config. Compared: every file of the output folder except the decode/embedding
cache (shards, per-shard stats, sizes.json, all parquet manifests, stats.json, build.json).
The runner object is passed to ``run_build`` so the config (and build.json) stays identical.
Each runner executes the build as one graph (``pipelines.flow``).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.build import run_build
from pipelines.config import ShardConfig, load_config
from pipelines.flow import make_flow
from pipelines.preflight import MissingDependency
from tests.conftest import REPO
from tests.pipelines import runner_helpers as h

RUNNERS = ("local", "beam", "dask")
SKIP = {"cache", "blobs", ".lock", "run.json"}  # run.json: timings of this run
ECG_IDS = ("6000", "6001", "6002", "1")
SERIES_SLICES = 4
TABLE_ROWS = 1


@pytest.fixture(scope="module", autouse=True)
def _importable_helpers():
    with h.repo_on_pythonpath(REPO):
        yield


def _subset(examples: Path, dst: Path) -> Path:
    return h.demo_subset(examples, dst, ECG_IDS, SERIES_SLICES)


def _config(input_dir: Path, strict: bool = True):
    """The demo config; report tables decoded in parts of ``TABLE_ROWS`` rows (one task each)."""
    cfg = load_config(REPO / "examples" / "demo.yaml")
    sources = tuple(s for s in cfg.sources if (input_dir / s.path).is_dir())
    return replace(
        cfg,
        sources=sources,
        strict=strict,
        workers=2,
        shards=ShardConfig(max_samples=3, max_bytes=64 << 20),
        limits=replace(cfg.limits, table_rows_per_task=TABLE_ROWS),
    )


def _table_parts(input_dir: Path) -> int:
    rows = (input_dir / "data" / "reports" / "ptbxl_reports.csv").read_text(encoding="utf-8").count("\n") - 1
    return -(-rows // TABLE_ROWS)


def _snapshot(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.relative_to(out).parts[0] not in SKIP
    }


@pytest.fixture(scope="module")
def runners():
    """One runner per engine for the whole module (Dask's cluster starts once)."""
    rs = {name: make_flow(name, 2, quiet=True) for name in ("beam", "dask")}
    yield rs
    for r in rs.values():
        r.close()


@pytest.fixture(scope="module")
def builds(tmp_path_factory, examples_dir, runners):
    """Per runner: first build, its snapshot, and the rerun after deleting one finished shard."""
    input_dir = _subset(examples_dir, tmp_path_factory.mktemp("input"))
    cfg = _config(input_dir)
    out = {}
    for name in RUNNERS:
        # local: a fresh pool per build (run_build makes one from cfg.runner == "local"): a pool
        # reused across builds would have inherited the first build's folder lock when it forked
        runner = runners.get(name)
        dst = tmp_path_factory.mktemp(f"build-{name}")
        first = run_build(input_dir, dst, cfg, quiet=True, runner=runner)
        metrics = {k: dict(v) for k, v in getattr(runner, "stage_metrics", {}).items()}
        snap = _snapshot(dst)
        tars = sorted((dst / "shards").rglob("*.tar"))
        mtimes = {t: t.stat().st_mtime_ns for t in tars}
        tars[0].unlink()
        rerun = run_build(input_dir, dst, cfg, quiet=True, runner=runner)
        out[name] = {
            "input": input_dir,
            "dir": dst,
            "first": first,
            "metrics": metrics,
            "snapshot": snap,
            "rerun": rerun,
            "rerun_snapshot": _snapshot(dst),
            "deleted": tars[0],
            "untouched": all(t.stat().st_mtime_ns == m for t, m in mtimes.items() if t != tars[0]),
        }
    return out


def test_reference_build_is_not_trivial(builds):
    ref = builds["local"]
    stats = json.loads(ref["snapshot"]["stats.json"])
    written = {m: c["written"] for m, c in stats["per_modality"].items()}
    for modality in ("image", "volume", "ecg", "report"):
        assert written.get(modality, 0) > 0, modality
    assert stats["samples_with_modalities"].get("ecg+report", 0) >= 3
    assert ref["first"].n_shards >= 3
    assert sum(1 for k in ref["snapshot"] if k.endswith(".tar")) == ref["first"].n_shards


@pytest.mark.parametrize("name", ["beam", "dask"])
def test_byte_identical_to_local(builds, name):
    ref, got = builds["local"]["snapshot"], builds[name]["snapshot"]
    assert sorted(got) == sorted(ref)
    assert [k for k in ref if ref[k] != got[k]] == []


@pytest.mark.parametrize("name", RUNNERS)
def test_bad_files_quarantined_as_on_local(builds, name):
    rows = pq.read_table(builds[name]["dir"] / "quarantine.parquet").to_pylist()
    broken = sorted((r["reason"], r["stage"]) for r in rows if r["source_name"] == "broken_inputs")
    assert len(broken) == 4
    reasons = {r for r, _ in broken}
    assert {"empty_file", "unsupported_format"} <= reasons  # decided by the pipeline itself
    assert reasons & {"dicom_truncated", "dicom_corrupt"}  # decided by the DICOM decoder
    assert not any(r["reason"] == "decoder_error" for r in rows)
    ref = pq.read_table(builds["local"]["dir"] / "quarantine.parquet").to_pylist()
    assert rows == ref


def test_beam_counters_match_the_quarantine_manifest(builds):
    """Beam counters of the decode stage, per quarantine reason, equal the manifest."""
    rows = pq.read_table(builds["beam"]["dir"] / "quarantine.parquet").to_pylist()
    decode_reasons: dict[str, int] = {}
    for r in rows:
        if r["stage"] == "decode":
            decode_reasons[r["reason"]] = decode_reasons.get(r["reason"], 0) + 1
    m = builds["beam"]["metrics"]["decode"]
    parts = _table_parts(builds["beam"]["input"])  # the report table is decoded in row-range parts
    assert parts >= 3
    assert m["in"] == builds["beam"]["first"].n_files + parts - 1
    got = {k.split(".", 1)[1]: v for k, v in m.items() if k.startswith("quarantined.")}
    assert got == decode_reasons and sum(got.values()) == m["quarantined"] > 0
    # group stages count their groups: the slices of the CT series are one group
    series = builds["beam"]["metrics"]["series"]
    assert series["in"] >= SERIES_SLICES and series["groups"] < series["in"]


@pytest.mark.parametrize("name", RUNNERS)
def test_rerun_skips_finished_shards_and_rewrites_the_missing_one(builds, name):
    b = builds[name]
    assert b["rerun"].n_shards == b["first"].n_shards
    assert b["rerun"].n_shards_skipped == b["first"].n_shards - 1
    assert b["untouched"]  # finished shards were not rewritten
    assert b["deleted"].exists()
    assert b["rerun_snapshot"] == b["snapshot"]


BUG = (("wfdb", f"{h.__name__}:decode_bug"),)  # travels with the decode tasks into every worker


def _tiny_input(examples_dir: Path, dst: Path) -> Path:
    for f in ("ecg/ptbxl_500hz/HR06000.hea", "ecg/ptbxl_500hz/HR06000.mat", "quarantine_demo/empty.dcm"):
        (dst / "data" / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(examples_dir / f, dst / "data" / f)
    for f in ("ecg/ptbxl_100hz/00001_lr.hea", "ecg/ptbxl_100hz/00001_lr.dat"):
        (dst / "data" / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(examples_dir / f, dst / "data" / f)
    return dst


@pytest.mark.parametrize("name", ["beam", "dask"])
def test_a_bug_fails_the_build_loudly(name, runners, examples_dir, tmp_path):
    """strict: an unexpected exception in a decoder (inside a worker process) fails the build."""
    input_dir = _tiny_input(examples_dir, tmp_path / "in")
    cfg = _config(input_dir, strict=True)
    with pytest.raises(RuntimeError, match=h.BUG_MESSAGE):
        run_build(input_dir, tmp_path / "out", cfg, quiet=True, runner=runners[name], decoder_overrides=BUG)
    assert not (tmp_path / "out" / "manifest.parquet").exists()


def test_a_bug_is_quarantined_identically_when_not_strict(runners, examples_dir, tmp_path):
    """lenient: the same bug becomes ``decoder_error`` quarantine records on every runner."""
    input_dir = _tiny_input(examples_dir, tmp_path / "in")
    cfg = _config(input_dir, strict=False)
    q = {}
    for name in RUNNERS:
        out = tmp_path / name
        runner = runners[name] if name != "local" else make_flow("local", 2, quiet=True)
        try:
            res = run_build(input_dir, out, cfg, quiet=True, runner=runner, decoder_overrides=BUG)
        finally:
            if name == "local":
                runner.close()
        assert res.n_decoder_errors == 2  # both ECG records
        q[name] = (out / "quarantine.parquet").read_bytes()
    assert q["beam"] == q["local"] and q["dask"] == q["local"]


@pytest.mark.parametrize("name", RUNNERS)
def test_a_missing_package_stops_the_build_on_every_runner(name, runners, examples_dir, tmp_path):
    """An ImportError inside a decoder (in a worker, behind the watchdog) is a broken environment:
    the build stops with MissingDependency naming the package, and nothing is quarantined."""
    input_dir = _tiny_input(examples_dir, tmp_path / "in")
    cfg = _config(input_dir, strict=False)
    absent = (("wfdb", "tests.fixtures.faulty_decoders:missing_package"),)
    runner = runners[name] if name != "local" else make_flow("local", 2, quiet=True)
    try:
        with pytest.raises(MissingDependency) as info:
            run_build(input_dir, tmp_path / "out", cfg, quiet=True, runner=runner, decoder_overrides=absent)
    finally:
        if name == "local":
            runner.close()
    assert isinstance(info.value, MissingDependency)
    assert info.value.module == "medcorpus_test_absent_package"
    assert not (tmp_path / "out" / "quarantine.parquet").exists()
    assert not (tmp_path / "out" / "manifest.parquet").exists()


@pytest.mark.parametrize("name", RUNNERS)
def test_a_hanging_decoder_is_quarantined_as_timeout_on_every_runner(name, runners, examples_dir, tmp_path):
    """The per-item limit is a watchdog process, not SIGALRM: it works in Beam and Dask workers too."""
    input_dir = _tiny_input(examples_dir, tmp_path / "in")
    cfg = _config(input_dir, strict=False)
    cfg = replace(cfg, limits=replace(cfg.limits, item_timeout_s=2.0))
    hang = (("wfdb", "tests.fixtures.faulty_decoders:hang"),)
    runner = runners[name] if name != "local" else make_flow("local", 2, quiet=True)
    try:
        res = run_build(input_dir, tmp_path / "out", cfg, quiet=True, runner=runner, decoder_overrides=hang)
    finally:
        if name == "local":
            runner.close()
    rows = pq.read_table(tmp_path / "out" / "quarantine.parquet").to_pylist()
    assert sorted(r["reason"] for r in rows if r["reason"] == "timeout") == ["timeout", "timeout"]
    assert res.n_decoder_errors == 0
