"""Inbox partitions, staging, the check (validation + quarantine gate) and atomic publishing,
on a real build of bundled sample files (3 DICOM slices and one corrupt DICOM)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines import cli
from pipelines.build import run_build
from pipelines.config import config_from_dict
from pipelines.partitions import (
    Partition,
    PartitionError,
    list_partitions,
    partition_from_version,
    stage_partition,
)
from pipelines.publish import (
    CHECK_MARKER,
    CURRENT_FILE,
    SET_INFO,
    VERSIONS_FILE,
    CheckFailed,
    CorpusRoot,
    PublishError,
    check_build,
    current_version,
    publish_set,
    read_index,
)
from pipelines.validate import validate_build
from tests.conftest import EXAMPLES

FILES = ("dicom/mr/MR_small.dcm", "dicom/ct/CT_small.dcm", "dicom/cr/6154", "quarantine_demo/corrupt.dcm")
CONFIG = {
    "deid": {"demo": True},
    "sources": [
        {"name": "dicom", "path": "data/dicom", "licence": "MIT"},
        {"name": "broken", "path": "data/quarantine_demo", "licence": "generated"},
    ],
    "shards": {"max_samples": 1},
    "workers": 1,
}


def _tree_hashes(root: Path) -> dict[str, tuple[str, int]]:
    """relative path → (sha256, mtime_ns) of every file under ``root``."""
    return {
        p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A finished, unpublished real build: 3 decodable DICOM slices + 1 corrupt DICOM (1/4 quarantined)."""
    src = tmp_path_factory.mktemp("src")
    for rel in FILES:
        (src / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(EXAMPLES / rel, src / "data" / rel)
    out = tmp_path_factory.mktemp("build") / "out"
    run_build(src, out, config_from_dict(CONFIG), quiet=True)
    return out


def _copy_build(built: Path, root: Path, version: str) -> Path:
    dst = CorpusRoot(root).build_dir(version)
    shutil.copytree(built, dst)
    return dst


def _corrupt_one_shard(build: Path) -> None:
    tar = sorted((build / "shards").rglob("*.tar"))[0]
    data = bytearray(tar.read_bytes())
    data[700] ^= 0xFF  # inside the first member's data (after its 512-byte header)
    tar.chmod(0o644)
    tar.write_bytes(bytes(data))


# ------------------------------------------------------------------------------- partitions


def _day(inbox: Path, day: str, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (inbox / day / rel).parent.mkdir(parents=True, exist_ok=True)
        (inbox / day / rel).write_bytes(data)


def test_daily_partitions_follow_the_interval(tmp_path):
    inbox = tmp_path / "inbox"
    _day(inbox, "2026-01-01", {"data/a.txt": b"a"})
    _day(inbox, "2026-01-02", {"data/b.txt": b"b"})
    (inbox / "2026-01-03").mkdir()  # empty: no partition
    _day(inbox, "2026-02-30", {"x": b"x"})  # not a calendar day
    _day(inbox, "notes", {"x": b"x"})
    versions = lambda s, e: [p.version for p in list_partitions(inbox, s, e)]  # noqa: E731
    assert versions("2026-01-01", "2026-01-02") == ["2026-01-01"]
    assert versions("2026-01-01T00:00:00Z", "2026-01-04T00:00:00Z") == ["2026-01-01", "2026-01-02"]
    # an interval given in another zone is converted to UTC: 01:00+01:00 is midnight UTC
    assert versions("2026-01-02T01:00:00+01:00", "2026-01-02T02:00:00+01:00") == ["2026-01-02"]
    assert versions("2026-01-02T12:00:00Z", "2026-01-03T00:00:00Z") == []
    with pytest.raises(PartitionError, match="end must be after"):
        list_partitions(inbox, "2026-01-02", "2026-01-01")
    part = partition_from_version("2026-01-02")
    assert (part.start, part.end) == (datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC))
    with pytest.raises(PartitionError):
        partition_from_version("2026-1-2")


def test_mtime_partition_takes_files_modified_in_the_interval(tmp_path):
    inbox = tmp_path / "inbox"
    inside, outside = inbox / "data" / "new.txt", inbox / "data" / "old.txt"
    for p, when in (
        (inside, datetime(2026, 1, 2, 6, tzinfo=UTC)),
        (outside, datetime(2026, 1, 1, 23, tzinfo=UTC)),
    ):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(p.name.encode())
        os.utime(p, (when.timestamp(), when.timestamp()))
    parts = list_partitions(inbox, "2026-01-02", "2026-01-03", layout="mtime")
    assert [p.version for p in parts] == ["20260102T000000Z-20260103T000000Z"]
    assert partition_from_version(parts[0].version, "mtime") == parts[0]
    staged = stage_partition(inbox, parts[0], tmp_path / "staging")
    assert sorted(p.relative_to(staged.input_dir).as_posix() for p in staged.input_dir.rglob("*.txt")) == [
        "data/new.txt"
    ]
    assert list_partitions(inbox, "2026-01-05", "2026-01-06", layout="mtime") == []


def test_staging_is_a_reused_snapshot(tmp_path):
    inbox = tmp_path / "inbox"
    _day(inbox, "2026-01-01", {"data/dicom/a.dcm": b"A" * 10, "data/dicom/sub/b.dcm": b"B" * 5})
    part = partition_from_version("2026-01-01")
    staged = stage_partition(inbox, part, tmp_path / "staging", source_dirs=("data/dicom", "data/ecg"))
    assert (staged.n_files, staged.n_bytes, staged.reused) == (2, 15, False)
    a_src, a_dst = inbox / "2026-01-01/data/dicom/a.dcm", staged.input_dir / "data/dicom/a.dcm"
    assert a_dst.read_bytes() == b"A" * 10 and a_dst.stat().st_ino == a_src.stat().st_ino  # hard link
    assert (staged.input_dir / "data/ecg").is_dir()  # a config source this day brought nothing for
    # a file landing after staging does not change the staged input of a retry
    _day(inbox, "2026-01-01", {"data/dicom/late.dcm": b"L"})
    again = stage_partition(inbox, part, tmp_path / "staging", source_dirs=("data/dicom",))
    assert again.reused and again.listing_sha256 == staged.listing_sha256
    assert not (staged.input_dir / "data/dicom/late.dcm").exists()
    copied = stage_partition(inbox, part, tmp_path / "staging2", copy=True)
    assert copied.n_files == 3
    assert (copied.input_dir / "data/dicom/a.dcm").stat().st_ino != a_src.stat().st_ino
    with pytest.raises(PartitionError, match="escapes"):
        stage_partition(inbox, part, tmp_path / "staging3", source_dirs=("../../etc",))
    assert not (tmp_path / "staging3" / "2026-01-01").exists()


def test_staging_cleans_up_a_killed_attempt(tmp_path):
    inbox = tmp_path / "inbox"
    _day(inbox, "2026-01-01", {"f": b"x"})
    leftover = tmp_path / "staging" / ".2026-01-01.tmp-999999"
    (leftover / "input").mkdir(parents=True)
    stage_partition(inbox, Partition("daily", *_bounds("2026-01-01")), tmp_path / "staging")
    assert not leftover.exists()
    assert sorted(p.name for p in (tmp_path / "staging").iterdir()) == ["2026-01-01"]


def _bounds(day: str) -> tuple[datetime, datetime]:
    p = partition_from_version(day)
    return p.start, p.end


# ------------------------------------------------------------------------------- check


def test_check_passes_and_the_gate_counts_quarantined_units(built, tmp_path):
    build = shutil.copytree(built, tmp_path / "b")
    stats = json.loads((build / "stats.json").read_text())
    assert stats["n_units"] == 4 and stats["n_quarantined"] == 1  # the corrupt DICOM
    rep = check_build(build, 0.25)
    assert rep.ok, rep.to_json()
    assert rep.quarantine.fraction == pytest.approx(0.25)
    assert rep.n_samples == 3 and rep.n_shards == 3
    marker = json.loads((build / CHECK_MARKER).read_text())
    assert marker["ok"] and "shards.parquet" in marker["digests"] and "manifest.parquet" in marker["digests"]
    tight = check_build(build, 0.2)
    assert not tight.ok and not tight.validation_errors
    assert "quarantined 1 of 4 input units (25.0%)" in tight.gate_error
    assert not (build / CHECK_MARKER).exists()  # a failed check leaves no marker behind


def test_check_catches_a_corrupted_shard(built, tmp_path):
    build = shutil.copytree(built, tmp_path / "b")
    _corrupt_one_shard(build)
    rep = check_build(build, 1.0)
    assert not rep.ok and any("sha256 mismatch" in e for e in rep.validation_errors)


# ------------------------------------------------------------------------------- publish


def test_publish_is_atomic_appending_and_idempotent(built, tmp_path):
    root = tmp_path / "corpus"
    _copy_build(built, root, "2026-01-01")
    res = publish_set(root, "2026-01-01", interval=("2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"))
    first = CorpusRoot(root).set_dir("2026-01-01")
    assert res.set_dir == first and not res.already_published and res.current == "2026-01-01"
    assert not CorpusRoot(root).build_dir("2026-01-01").exists()
    assert not (first / "cache").exists()  # the decode cache is not part of a set
    assert validate_build(first).ok
    assert all(
        not (p.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        for p in first.rglob("*")
        if p.is_file()
    )
    assert (root / CURRENT_FILE).read_text() == "2026-01-01\n"
    index = read_index(root)
    entry = index["versions"][0]
    assert entry["n_samples"] == 3 and entry["n_quarantined"] == 1
    assert entry["interval_start"] == "2026-01-01T00:00:00+00:00"
    assert entry["shards_sha256"] == hashlib.sha256((first / "shards.parquet").read_bytes()).hexdigest()
    before = _tree_hashes(first)

    again = publish_set(root, "2026-01-01")  # a retried publish
    assert again.already_published and read_index(root) == index

    _copy_build(built, root, "2026-01-02")
    publish_set(root, "2026-01-02")
    _copy_build(built, root, "2025-12-31")  # a late backfill of an older interval
    publish_set(root, "2025-12-31")
    index2 = read_index(root)
    assert [e["version"] for e in index2["versions"]] == ["2026-01-01", "2026-01-02", "2025-12-31"]
    assert index2["versions"][0] == entry  # earlier entries are never rewritten
    assert current_version(root) == "2026-01-02"  # CURRENT never moves back to an older version
    assert _tree_hashes(first) == before  # the first set is untouched, bytes and mtimes
    assert sorted(p.name for p in (root / "sets").iterdir()) == ["2025-12-31", "2026-01-01", "2026-01-02"]


def test_failed_check_never_publishes(built, tmp_path):
    root = tmp_path / "corpus"
    _copy_build(built, root, "2026-01-01")
    publish_set(root, "2026-01-01")
    snapshot = (read_index(root), (root / CURRENT_FILE).read_text())
    bad = _copy_build(built, root, "2026-01-02")
    _corrupt_one_shard(bad)
    with pytest.raises(CheckFailed, match="sha256 mismatch"):
        publish_set(root, "2026-01-02", max_quarantine_fraction=1.0)
    gated = _copy_build(built, root, "2026-01-03")
    with pytest.raises(CheckFailed, match="max_quarantine_fraction"):
        publish_set(root, "2026-01-03", max_quarantine_fraction=0.1)
    assert (read_index(root), (root / CURRENT_FILE).read_text()) == snapshot
    assert sorted(p.name for p in (root / "sets").iterdir()) == ["2026-01-01"]
    assert bad.is_dir() and gated.is_dir()  # failed builds stay where they are, for inspection
    with pytest.raises(PublishError, match="nothing built"):
        publish_set(root, "2026-01-09")
    with pytest.raises(PublishError, match="illegal version"):
        publish_set(root, "../2026-01-01")


def test_a_stale_check_marker_is_not_trusted(built, tmp_path):
    root = tmp_path / "corpus"
    build = _copy_build(built, root, "2026-01-01")
    assert check_build(build, 0.25).ok
    _corrupt_one_shard(build)  # after the check: shards.parquet still matches the marker...
    stats = json.loads((build / "stats.json").read_text())
    (build / "stats.json").write_text(json.dumps(stats | {"n_files": stats["n_files"]}, indent=2))
    # ...but a changed top-level file invalidates the marker, so publish re-validates and refuses
    with pytest.raises(CheckFailed, match="sha256 mismatch"):
        publish_set(root, "2026-01-01")
    assert not (root / "sets").exists()


def test_publish_refuses_while_a_build_is_writing(built, tmp_path):
    import fcntl

    root = tmp_path / "corpus"
    build = _copy_build(built, root, "2026-01-01")
    with open(build / ".lock", "w") as held:  # what pipelines.build holds while it writes
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(PublishError, match="still writing"):
            publish_set(root, "2026-01-01")
    assert not (root / "sets").exists()
    assert publish_set(root, "2026-01-01").set_dir.is_dir()
    assert not (root / "sets/2026-01-01/.lock").exists()


def _publish_worker(args: tuple[str, str]) -> str:
    root, version = args
    return publish_set(Path(root), version).version


def test_concurrent_publishers_lose_no_version(built, tmp_path):
    root = tmp_path / "corpus"
    versions = [f"2026-01-0{i}" for i in range(1, 5)]
    for v in versions:
        _copy_build(built, root, v)
    with ProcessPoolExecutor(4) as pool:
        assert sorted(pool.map(_publish_worker, [(str(root), v) for v in versions])) == versions
    assert sorted(e["version"] for e in read_index(root)["versions"]) == versions
    assert current_version(root) == "2026-01-04"


# ------------------------------------------------------------------------------- CLI


def test_cli_stage_build_check_publish(built, tmp_path, capsys):
    inbox, root = tmp_path / "inbox", tmp_path / "corpus"
    for rel in FILES:
        (inbox / "2026-01-05" / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(EXAMPLES / rel, inbox / "2026-01-05" / "data" / rel)
    cfg = tmp_path / "cfg.json"  # YAML is a superset of JSON
    cfg.write_text(json.dumps(CONFIG))

    def run(*argv: str) -> tuple[int, dict | None]:
        rc = cli.main(list(argv))
        lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
        return rc, (json.loads(lines[-1]) if lines else None)

    rc, out = run("partitions", str(inbox), "--start", "2026-01-05", "--end", "2026-01-06", "--json")
    assert rc == 0 and [p["version"] for p in out["partitions"]] == ["2026-01-05"]
    assert run("publish", "2026-01-05", "--corpus-root", str(root))[0] == 2  # nothing built yet
    assert (
        run("build-set", "2026-01-05", "--corpus-root", str(root), "--config", str(cfg))[0] == 2
    )  # not staged
    rc, out = run(
        "stage-partition",
        str(inbox),
        "2026-01-05",
        "--corpus-root",
        str(root),
        "--config",
        str(cfg),
        "--json",
    )
    assert rc == 0 and out["n_files"] == 4
    rc, out = run(
        "build-set", "2026-01-05", "--corpus-root", str(root), "--config", str(cfg), "--quiet", "--json"
    )
    assert rc == 0 and out == {
        "version": "2026-01-05",
        "build_dir": str(root / "builds/2026-01-05"),
        "published": False,
    }
    # the staged build is the same build as a direct one of the same files: byte-identical shards
    assert (root / "builds/2026-01-05/shards.parquet").read_bytes() == (built / "shards.parquet").read_bytes()
    rc, out = run(
        "check-build",
        "--corpus-root",
        str(root),
        "--version",
        "2026-01-05",
        "--max-quarantine-fraction",
        "0.2",
        "--json",
    )
    assert rc == 1 and out["gate_error"] and out["quarantine_fraction"] == 0.25
    assert (
        run("publish", "2026-01-05", "--corpus-root", str(root), "--max-quarantine-fraction", "0.2")[0] == 1
    )
    assert not (root / "sets").exists()
    rc, out = run("publish", "2026-01-05", "--corpus-root", str(root), "--json")
    assert rc == 0 and out["current"] == "2026-01-05" and out["n_samples"] == 3
    rc, out = run("build-set", "2026-01-05", "--corpus-root", str(root), "--json")
    assert rc == 0 and out["published"]  # a published set is never rebuilt
    published = _tree_hashes(root / "sets/2026-01-05")
    rc, out = run("check-build", "--corpus-root", str(root), "--version", "2026-01-05", "--json")
    assert rc == 0 and out["ok"]
    assert run("check-build", str(root / "sets/2026-01-05"))[0] == 0  # the same, given as a folder
    assert _tree_hashes(root / "sets/2026-01-05") == published  # checking a published set writes nothing
    rc, out = run("corpus-status", "--corpus-root", str(root), "--json")
    assert rc == 0 and out["current"] == "2026-01-05" and len(out["versions"]) == 1
    assert (root / VERSIONS_FILE).exists() and (root / "sets/2026-01-05" / SET_INFO).exists()
