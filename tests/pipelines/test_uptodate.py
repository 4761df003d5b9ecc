"""A no-op rerun of a finished build runs nothing (pipelines.uptodate); any change to the inputs,
the config or the outputs takes the normal resumable path."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines import uptodate
from pipelines.build import run_build
from pipelines.config import ShardConfig, load_config
from pipelines.flow import make_flow
from tests.conftest import REPO


def _cfg(**kw):
    return replace(load_config(REPO / "examples" / "demo.yaml"), strict=True, **kw)


class _Refuse:
    """A backend that fails if the build asks it for anything: proves that nothing ran."""

    workers = 1
    spill_dir = ""
    stage_seconds: dict = {}

    def __getattr__(self, name):  # create, union, run, ...: any use of the backend
        raise AssertionError("an up-to-date build must not run its graph")

    def close(self):
        pass


def _run_json(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def _shard_times(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "shards").rglob("*.tar")}


@pytest.fixture()
def built(tmp_path) -> tuple[Path, Path]:
    src = tmp_path / "in"
    shutil.copytree(REPO / "examples", src, symlinks=True)
    out = tmp_path / "out"
    run_build(src, out, _cfg(workers=1), quiet=True)
    return src, out


def test_a_no_op_rerun_runs_nothing_and_returns_the_same_result(built):
    src, out = built
    first = _run_json(out)
    stamp = json.loads((out / uptodate.STAMP).read_text())
    assert not first["up_to_date"] and len(stamp["fingerprint"]) == 64
    before = _shard_times(out)
    res = run_build(src, out, _cfg(workers=1), quiet=True, runner=_Refuse())
    assert _run_json(out)["up_to_date"] and _shard_times(out) == before
    manifest = pq.read_table(out / "manifest.parquet")
    assert res.n_samples == manifest.num_rows and res.n_shards == res.n_shards_skipped > 0
    stats = json.loads((out / "stats.json").read_text())
    assert res.per_modality == stats["per_modality"] and res.n_units == stats["n_units"]


@pytest.mark.parametrize("change", ["touch_input", "new_input", "config", "shard_deleted", "no_cache"])
def test_any_change_takes_the_normal_path(built, change):
    src, out = built
    cfg = _cfg(workers=1)
    use_cache = True
    if change == "touch_input":
        f = next(p for p in sorted((src / "data").rglob("*")) if p.is_file())
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    elif change == "new_input":
        (src / "data" / "reports").mkdir(exist_ok=True)
        (src / "data" / "reports" / "new-note.txt").write_text("Sinus rhythm. Normal ECG.\n")
    elif change == "config":
        cfg = replace(cfg, shards=ShardConfig(max_samples=3, max_bytes=cfg.shards.max_bytes))
    elif change == "shard_deleted":
        next((out / "shards").rglob("*.tar")).unlink()
    else:
        use_cache = False
    with pytest.raises(AssertionError, match="must not run"):
        run_build(src, out, cfg, quiet=True, runner=_Refuse(), use_cache=use_cache)
    assert not (out / uptodate.STAMP).exists()  # cleared when a build starts
    flow = make_flow("local", 1, quiet=True)
    try:
        run_build(src, out, cfg, quiet=True, runner=flow, use_cache=use_cache)
    finally:
        flow.close()
    assert not _run_json(out)["up_to_date"]


def test_the_stamp_names_no_input_and_depends_on_the_secret(built, monkeypatch):
    src, out = built
    text = (out / uptodate.STAMP).read_text()
    names = {p.name for p in src.rglob("*")}
    assert not [n for n in names if len(n) > 4 and n in text]
    cfg = _cfg(workers=1)
    monkeypatch.setenv("MEDCORPUS_SECRET", "another-secret-0123456789abcdef")
    cfg2 = replace(cfg, deid=replace(cfg.deid, demo=False, secret_env="MEDCORPUS_SECRET"))
    from workers.deid.pseudonym import Pseudonymizer

    fps = {
        uptodate.fingerprint(src, [], out, b"{}", Pseudonymizer(c.secret(), c.secret_source()))
        for c in (cfg, cfg2)
    }
    assert len(fps) == 2
