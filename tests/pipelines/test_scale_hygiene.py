"""Secret and PHI hygiene of distributed builds, and what reaches the driver.

- A secret planted through ``$MEDCORPUS_SECRET`` and a PHI-like patient folder name appear in no
  byte that a Beam or a Dask build stages or writes: the output folder (shards, manifests, blob
  store, caches) and every temporary file the engines write (``TMPDIR`` points at a folder the
  test scans). Workers resolve the secret from their environment; stage functions pickle the
  pseudonymiser as a reference (``env:MEDCORPUS_SECRET``) plus a keyed check value.
- Structural: what each runner returns to the driver is small rows (unit counts, quarantine records,
  dedup verdicts, one status row per shard), never payloads: the pickled size of every output
  is counted and bounded per input unit, and no record with payload bytes is among them.
"""

from __future__ import annotations

import pickle
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.build import run_build
from pipelines.config import DedupConfig, DeidConfig, ShardConfig, load_config
from pipelines.flow import make_flow
from pipelines.rowtables import N_BUCKETS
from tests.conftest import REPO

SECRET = "HygieneCanary-3c9d1e7f5a2b-QZX"
PHI_FOLDER = "DOE_JOHNATHAN_MRN48151623"


def _input(examples: Path, dst: Path) -> Path:
    ecg = dst / "data" / "ecg" / "ptbxl_500hz" / PHI_FOLDER
    ecg.mkdir(parents=True)
    for stem in ("HR06000", "HR06001", "HR06002"):
        for suf in (".hea", ".mat"):
            shutil.copy2(examples / "ecg" / "ptbxl_500hz" / f"{stem}{suf}", ecg / f"{stem}{suf}")
    rep = dst / "data" / "reports"
    rep.mkdir(parents=True)
    lines = (examples / "reports" / "ptbxl_reports.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    rows = [ln for ln in lines[1:] if ln.split(",", 1)[0] in ("6000", "6001", "6002")]
    (rep / "ptbxl_reports.csv").write_text("".join([lines[0], *rows]))
    return dst


def _config(input_dir: Path):
    cfg = load_config(REPO / "examples" / "demo.yaml")
    sources = tuple(s for s in cfg.sources if (input_dir / s.path).is_dir())
    return replace(
        cfg,
        sources=sources,
        strict=True,
        workers=2,
        deid=DeidConfig(demo=False),
        dedup=DedupConfig(enabled=False),
        shards=ShardConfig(max_samples=2, max_bytes=64 << 20),
    )


class CountingFlow:
    """Wraps a backend; records the pickled size of what ``run`` hands back to the driver."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.workers = inner.workers
        self.returned: dict[str, list[int]] = {}
        self.outputs: dict[str, list] = {}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, outputs):
        out = self.inner.run(outputs)
        self.outputs = out
        self.returned = {k: [len(pickle.dumps(x)) for x in v] for k, v in out.items()}
        return out


def _assert_small_rows(outputs: dict[str, list]) -> None:
    """The driver got small rows only (no record, no payload): the input units never (workers
    write them as parts of inputs.parquet), only one UnitsPart of counts per bucket."""
    kinds = {type(x).__name__ for rows in outputs.values() for x in rows}
    assert kinds <= {"Table", "UnitsPart", "QuarantineRecord", "ShardResult"}, kinds
    assert {type(p).__name__ for p in outputs["units"]} == {"UnitsPart"}
    assert len(outputs["units"]) <= N_BUCKETS


def _scan(folder: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for p in folder.rglob("*"):
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            hits += [f"{p.relative_to(folder)}: {n[:12]!r}" for n in needles if n in data]
        hits += [f"name {p.relative_to(folder)}" for n in needles if n.decode() in p.name]
    return hits


@pytest.mark.parametrize("name", ["beam", "dask", "local"])
def test_no_secret_or_phi_path_in_staged_or_written_bytes(name, examples_dir, tmp_path, monkeypatch):
    input_dir = _input(examples_dir, tmp_path / "in")
    tmp = tmp_path / "engine-tmp"
    tmp.mkdir()
    monkeypatch.setenv("MEDCORPUS_SECRET", SECRET)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR in this process
    out = tmp_path / "out"
    flow = CountingFlow(make_flow(name, 2, quiet=True))
    try:
        res = run_build(input_dir, out, _config(input_dir), quiet=True, runner=flow)
    finally:
        flow.close()
    assert res.n_samples == 3 and not res.demo_build
    needles = [SECRET.encode(), SECRET.encode("utf-16-le"), PHI_FOLDER.encode(), b"MRN48151623"]
    assert _scan(out, needles) == []
    assert _scan(tmp, needles) == []
    # the driver got small rows only: no record, no payload
    _assert_small_rows(flow.outputs)
    per_unit = sum(map(sum, flow.returned.values())) / res.n_units
    assert per_unit < 1024, per_unit


N_STRUCTURAL = 1000  # ECG records (+ one report row each, + CXR images at N/100)


@pytest.fixture(scope="module")
def scale_input(tmp_path_factory, shared_data):
    """10^3 ECGs with report rows and 10 chest X-rays, replicated from the real samples."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("scale_inputs", REPO / "bench" / "scale_inputs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["scale_inputs"] = mod
    spec.loader.exec_module(mod)
    root = tmp_path_factory.mktemp("scale-1000")
    mod.generate(root, N_STRUCTURAL, seed=3, cxr_per=100, ct_per=10**9, shared=shared_data)
    from pipelines.config import config_from_dict

    cfg = config_from_dict(mod.build_config(max_samples=200))
    return root, replace(cfg, dedup=DedupConfig(enabled=False), strict=True)


@pytest.mark.parametrize("name", ["local", "dask"])
def test_only_small_rows_reach_the_driver_at_10_3(name, scale_input, tmp_path, monkeypatch):
    """At 10^3 samples the driver receives < 1 kB per input unit, and ~0.1 % of the shard bytes."""
    root, cfg = scale_input
    monkeypatch.setenv("MEDCORPUS_SECRET", SECRET)
    flow = CountingFlow(make_flow(name, 2, quiet=True))
    try:
        res = run_build(root, tmp_path / "out", cfg, quiet=True, runner=flow)
    finally:
        flow.close()
    assert res.n_samples >= N_STRUCTURAL and res.n_decoder_errors == 0
    returned = sum(map(sum, flow.returned.values()))
    shard_bytes = sum(p.stat().st_size for p in (tmp_path / "out" / "shards").rglob("*.tar"))
    _assert_small_rows(flow.outputs)
    assert sum(p.n_units for p in flow.outputs["units"]) == res.n_units
    assert returned / res.n_units < 1024
    assert returned < shard_bytes / 200, (returned, shard_bytes)
