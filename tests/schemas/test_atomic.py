"""The one atomic write: temp + rename, fsync only when ``durable``, nothing left on failure."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from schemas import atomic
from schemas.atomic import TMP_MARK, atomic_open, temp_path, write_atomic


def test_write_creates_folders_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.bin"
    write_atomic(target, b"one")
    write_atomic(target, b"two", durable=False)
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.bin"]


def test_mode_is_applied(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a", b"", mode=0o640)
        write_atomic(tmp_path / "b", b"", mode=0o666)
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o644


def test_failure_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    write_atomic(target, b"old")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write(b"half")
        raise RuntimeError("writer died")
    assert target.read_bytes() == b"old"
    assert not any(TMP_MARK in p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize("durable", [True, False])
def test_fsync_only_when_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool) -> None:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    write_atomic(tmp_path / "x", b"data", durable=durable)
    assert bool(calls) is durable


def test_temp_name_is_per_thread(tmp_path: Path) -> None:
    """Two threads writing the same path (the same blob) never share a temp file."""
    names: list[Path] = []
    t = threading.Thread(target=lambda: names.append(temp_path(tmp_path / "x")))
    t.start()
    t.join()
    assert names[0] != temp_path(tmp_path / "x")
    assert TMP_MARK in names[0].name  # build cleanup globs ``*.tmp-*``


def test_no_other_temp_and_rename_writer_in_the_package() -> None:
    """File writes that rename a temp file into place go through ``schemas.atomic``.

    Allowed: ``trainer/train.py`` swaps ``latest.pt`` for a hard link to the step file (nothing
    is written there); folder renames (publishing, partition staging) use ``os.rename``.
    """
    import re

    repo = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"\bos\.replace\(|\.replace\(path\)|\.replace\(target\)")
    found = sorted(
        p.relative_to(repo).as_posix()
        for pkg in ("schemas", "workers", "pipelines", "trainer")
        for p in (repo / pkg).rglob("*.py")
        if any(
            pattern.search(line) and "``" not in line for line in p.read_text(encoding="utf-8").splitlines()
        )
    )
    assert found == ["schemas/atomic.py", "trainer/train.py"]
