"""End to end: the demo build on the bundled real sample data, its contract and its guarantees."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from pipelines.build import run_build
from pipelines.config import load_config
from pipelines.validate import validate_build
from tests.conftest import REPO

DEMO_CFG = REPO / "examples" / "demo.yaml"
OUTPUT_FILES = (
    "manifest.parquet",
    "shards.parquet",
    "quarantine.parquet",
    "inputs.parquet",
    "dedup.parquet",
    "stats.json",
    "build.json",
)


def _cfg(**kw):
    cfg = load_config(DEMO_CFG)
    return replace(cfg, strict=True, **kw)


def _snapshot(out: Path) -> dict[str, bytes]:
    files = {
        p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "shards").rglob("*") if p.is_file()
    }
    files |= {name: (out / name).read_bytes() for name in OUTPUT_FILES}
    return files


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    run_build(REPO / "examples", out, _cfg(workers=2), quiet=True)
    return out


def test_webdataset_reads_every_sample(demo):
    manifest = pq.read_table(demo / "manifest.parquet").to_pylist()
    tars = sorted(str(p) for p in (demo / "shards").rglob("*.tar"))
    seen, metas = {}, {}
    for sample in wds.WebDataset(tars, shardshuffle=False, empty_check=False):
        seen[sample["__key__"]] = sorted(k for k in sample if not k.startswith("__"))
        metas[sample["__key__"]] = json.loads(sample["meta.json"])
    assert set(seen) == {m["key"] for m in manifest}
    for m in manifest:
        assert seen[m["key"]] == sorted(m["members"])
        meta = metas[m["key"]]
        assert meta["split"] == m["split"] and meta["modalities"] == m["modalities"]
        assert meta["modality_mask"] == m["modality_mask"] and meta["demo_build"] is True
    # tar -tf lists the members under the dot-free keys
    listing = subprocess.run(
        ["tar", "-tf", tars[0]], capture_output=True, text=True, check=True
    ).stdout.split()
    assert listing and all(
        name.split(".", 1)[0].replace("-", "").replace("_", "").isalnum() for name in listing
    )


def test_all_modalities_present_and_linked(demo):
    stats = json.loads((demo / "stats.json").read_text())
    written = {m: c["written"] for m, c in stats["per_modality"].items()}
    for modality in ("image", "volume", "ecg", "report"):
        assert written.get(modality, 0) > 0, modality
    # PTB-XL ecg_id 6000-6004 pair with their report rows through the study key
    assert stats["samples_with_modalities"].get("ecg+report", 0) >= 5
    # the 20-slice CT series is one volume made of 20 input units
    manifest = pq.read_table(demo / "manifest.parquet").to_pylist()
    assert any(len(m["source_ids"]) == 20 and m["modalities"] == ["volume"] for m in manifest)


def test_accounting_and_validate(demo):
    rep = validate_build(demo)
    assert rep.ok, rep.errors
    stats = json.loads((demo / "stats.json").read_text())
    inputs = pq.read_table(demo / "inputs.parquet").to_pylist()
    assert stats["n_units"] == len(inputs)
    for mod, c in stats["per_modality"].items():
        assert c["inputs"] == c["written"] + c["quarantined"] + c["deduplicated"], mod
    assert len({u["file_id"] for u in inputs}) == stats["n_files"]


def test_bad_inputs_are_quarantined_with_specific_reasons(demo):
    q = pq.read_table(demo / "quarantine.parquet").to_pylist()
    broken = {row["reason"] for row in q if row["source_name"] == "broken_inputs"}
    assert "empty_file" in broken
    assert "unsupported_format" in broken  # the zip archive
    assert "dicom_truncated" in broken
    assert len([r for r in q if r["source_name"] == "broken_inputs"]) == 4
    assert not any(r["reason"] == "decoder_error" for r in q)
    # messages carry no paths
    assert not any("/" in r["message"] or "examples" in r["message"] for r in q)


def test_byte_identical_rebuild_with_other_worker_count(demo, tmp_path):
    run_build(REPO / "examples", tmp_path, _cfg(workers=1), quiet=True, use_cache=False)
    a, b = _snapshot(demo), _snapshot(tmp_path)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_validate_detects_tampering(demo, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(demo, copy, ignore=shutil.ignore_patterns("cache"))
    tar = sorted((copy / "shards").rglob("*.tar"))[0]
    data = bytearray(tar.read_bytes())
    data[1000] ^= 0xFF
    tar.write_bytes(bytes(data))
    rep = validate_build(copy)
    assert any("sha256 mismatch" in e for e in rep.errors)


def _shard_jsons(out: Path) -> list[Path]:
    return (
        [p for p in (out / "shards").rglob("*.json") if p.name != "sizes.json"]
        if (out / "shards").exists()
        else []
    )


KILL_ARGS = ["--strict", "--quiet", "--workers", "1", "--max-samples-per-shard", "1"]

#: kill points: during decode (a few decode sidecars exist), during dedup (embeddings being
#: cached), during shard writing (some shards finished)
KILL_POINTS = {
    "decode": lambda out: (
        len(list((out / "cache" / "headers").rglob("*.pkl"))) >= 3 if (out / "cache").exists() else False
    ),
    "dedup": lambda out: (out / "cache" / "embed").exists() and any((out / "cache" / "embed").rglob("*.npy")),
    "write": lambda out: len(_shard_jsons(out)) >= 2,
}


@pytest.fixture(scope="module")
def kill_reference(tmp_path_factory) -> Path:
    ref = tmp_path_factory.mktemp("ref")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["build", str(REPO / "examples"), "--config", str(DEMO_CFG), *KILL_ARGS, "--out", str(ref)]
    subprocess.run([sys.executable, "-m", "pipelines.cli", *argv], check=True, env=env, capture_output=True)
    return ref


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_kill_then_resume_is_identical(kill_reference, tmp_path, point):
    """SIGKILL the CLI at a kill point; the rerun completes byte-identical, no temp files left."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    reached = KILL_POINTS[point]
    for attempt in range(5):
        out = tmp_path / f"killed{attempt}"
        argv = ["build", str(REPO / "examples"), "--config", str(DEMO_CFG), *KILL_ARGS, "--out", str(out)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while proc.poll() is None and not reached(out):
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not (out / "manifest.parquet").exists():
            break
    else:
        pytest.fail(f"the build always finished before the {point} kill point")
    # nothing partial under a final name: every visible .tar is a complete tar
    for t in (out / "shards").rglob("*.tar") if (out / "shards").exists() else []:
        with tarfile.open(t) as tf:
            assert tf.getmembers()
    res = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *argv], env=env, capture_output=True, text=True, check=True
    )
    if point == "write":
        assert " 0 resumed" not in res.stdout
    assert not list(out.rglob("*.tmp-*"))
    assert _snapshot(out) == _snapshot(kill_reference)


def test_cli_errors_are_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cases = [
        ["build", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
        [
            "build",
            str(REPO / "examples"),
            "--config",
            str(tmp_path / "nope.yaml"),
            "--out",
            str(tmp_path / "o"),
        ],
        [
            "build",
            str(REPO / "examples"),
            "--config",
            str(DEMO_CFG),
            "--out",
            str(tmp_path / "o"),
            "--max-shard-bytes",
            "lots",
        ],
        ["validate", str(tmp_path / "missing")],
    ]
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("workers: many\n")
    cases.append(["build", str(REPO / "examples"), "--config", str(bad_cfg), "--out", str(tmp_path / "o")])
    for argv in cases:
        r = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", *argv], capture_output=True, text=True, env=env
        )
        assert r.returncode == 2, (argv, r.stderr)
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
