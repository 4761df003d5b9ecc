"""How a data interval maps to a source partition, and the per-partition staging snapshot.

A scheduler run (Airflow's data interval ``[start, end)``, UTC) builds the data that *arrived*
in that interval. Two inbox layouts say what "arrived" means:

``daily`` (default)
    ``INBOX/<YYYY-MM-DD>/<source layout>``: the folder names the UTC day its data arrived.
    An interval takes every day folder whose midnight lies in ``[start, end)``; one partition
    per day, version ``YYYY-MM-DD``. Use with daily (or coarser) schedules; a producer must
    finish a day's folder before that day's interval closes.
``mtime``
    ``INBOX/<source layout>``: files whose modification time lies in ``[start, end)``; one
    partition per interval, version ``YYYYMMDDTHHMMSSZ-YYYYMMDDTHHMMSSZ``.

Either way, inside a partition the paths are the ones the build config's ``sources[].path``
refers to, so the same config builds every partition.

Staging: :func:`stage_partition` snapshots a partition into ``STAGING/<version>/input`` with
hard links (copies across file systems or with ``copy=True``), creates every config source
folder the partition lacks, writes ``STAGED.json``, and renames the whole folder into place
last. A staged partition is never restaged, so a retried build reads exactly the same input
even if more files landed in the inbox meanwhile. File names are never logged or recorded
(they may hold PHI): the marker holds counts and a digest of the listing only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("daily", "mtime")
STAGED_MARKER = "STAGED.json"
INPUT_DIR = "input"

_DAY_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_STAMP = "%Y%m%dT%H%M%SZ"
_MTIME_RE = re.compile(r"^(\d{8}T\d{6}Z)-(\d{8}T\d{6}Z)$")


class PartitionError(ValueError):
    """A bad interval, partition key or inbox; reported to the user as one line."""


def parse_time(value: str | datetime) -> datetime:
    """ISO 8601 (``2026-01-02``, ``2026-01-02T00:00:00+00:00``, ``...Z``) → aware UTC datetime.

    Naive values are taken as UTC (Airflow's data intervals are always aware).
    """
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise PartitionError(f"not an ISO 8601 time: {value!r}") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass(frozen=True)
class Partition:
    """One source partition: the input of one shard set.

    ``version`` is derived from the partition alone (never from the wall clock), so a retried
    or re-run interval maps to the same version. ``start``/``end`` are UTC, ``end`` exclusive.
    """

    layout: str
    start: datetime
    end: datetime

    @property
    def version(self) -> str:
        if self.layout == "daily":
            return self.start.strftime("%Y-%m-%d")
        return f"{self.start.strftime(_STAMP)}-{self.end.strftime(_STAMP)}"

    def to_json(self) -> dict[str, str]:
        return {
            "version": self.version,
            "layout": self.layout,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
        }


def partition_from_version(version: str, layout: str = "daily") -> Partition:
    """Inverse of :attr:`Partition.version`."""
    if layout == "daily":
        m = _DAY_RE.match(version)
        if not m:
            raise PartitionError(f"daily partition versions look like YYYY-MM-DD, got {version!r}")
        try:
            start = datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=UTC)
        except ValueError:
            raise PartitionError(f"not a calendar day: {version!r}") from None
        return Partition("daily", start, start + timedelta(days=1))
    if layout == "mtime":
        m = _MTIME_RE.match(version)
        if not m:
            raise PartitionError(f"mtime partition versions look like {_STAMP}-{_STAMP}, got {version!r}")
        start, end = (datetime.strptime(s, _STAMP).replace(tzinfo=UTC) for s in m.groups())
        if end <= start:
            raise PartitionError("partition end must be after its start")
        return Partition("mtime", start, end)
    raise PartitionError(f"unknown inbox layout {layout!r} (one of {', '.join(LAYOUTS)})")


def _files_under(root: Path) -> list[Path]:
    """Regular files (no symlinks, no hidden names) under ``root``, sorted by relative POSIX path."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            p = Path(dirpath) / name
            if not name.startswith(".") and p.is_file() and not p.is_symlink():
                out.append(p)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def partition_files(inbox: Path, partition: Partition) -> tuple[Path, list[Path]]:
    """``(base folder, files)`` of a partition; the files' paths relative to base are kept on staging."""
    inbox = Path(inbox)
    if partition.layout == "daily":
        base = inbox / partition.version
        return base, (_files_under(base) if base.is_dir() else [])
    lo, hi = partition.start.timestamp(), partition.end.timestamp()
    return inbox, [p for p in _files_under(inbox) if lo <= p.stat().st_mtime < hi]


def _url_files(base: str) -> list[tuple[str, str, int]]:
    """``(URL, path relative to base, size)`` of the objects under a storage URL, no hidden names."""
    from pipelines import storage

    fs = storage.filesystem(base)
    root = base.split("://", 1)[1].rstrip("/")
    out = []
    for path, info in sorted(fs.find(base, detail=True).items()):
        rel = path.split("://", 1)[-1][len(root) :].strip("/")
        if info.get("type") == "file" and rel and not any(part.startswith(".") for part in rel.split("/")):
            out.append((storage.join(base, rel), rel, int(info.get("size") or 0)))
    return out


def _url_partitions(inbox: str, lo: datetime, hi: datetime, layout: str) -> list[Partition]:
    from pipelines import storage

    if layout != "daily":
        raise PartitionError("an inbox URL supports the daily layout only (object stores keep no mtime tree)")
    fs = storage.filesystem(inbox)
    if not fs.exists(inbox):
        raise PartitionError("inbox not found")
    parts = []
    for d in sorted(fs.ls(inbox, detail=False)):
        name = d.rstrip("/").rsplit("/", 1)[-1]
        if not _DAY_RE.match(name):
            continue
        try:
            part = partition_from_version(name, "daily")
        except PartitionError:
            continue
        if lo <= part.start < hi and _url_files(storage.join(inbox, name)):
            parts.append(part)
    return parts


def list_partitions(
    inbox: Path, start: str | datetime, end: str | datetime, layout: str = "daily"
) -> list[Partition]:
    """The non-empty partitions whose data arrived in ``[start, end)``, oldest first. ``inbox`` may
    be a storage URL (``s3://bucket/inbox``, daily layout): its day prefixes are listed."""
    from pipelines.storage import is_url

    if is_url(inbox):
        lo, hi = parse_time(start), parse_time(end)
        if hi <= lo:
            raise PartitionError("interval end must be after its start")
        return _url_partitions(str(inbox), lo, hi, layout)
    inbox = Path(inbox)
    if not inbox.is_dir():
        raise PartitionError(f"inbox folder not found: {inbox}")
    lo, hi = parse_time(start), parse_time(end)
    if hi <= lo:
        raise PartitionError("interval end must be after its start")
    if layout == "mtime":
        part = Partition("mtime", lo, hi)
        return [part] if partition_files(inbox, part)[1] else []
    if layout != "daily":
        raise PartitionError(f"unknown inbox layout {layout!r} (one of {', '.join(LAYOUTS)})")
    parts = []
    for d in sorted(inbox.iterdir()):
        if not (d.is_dir() and _DAY_RE.match(d.name)):
            continue
        try:
            part = partition_from_version(d.name, "daily")
        except PartitionError:
            continue
        if lo <= part.start < hi and _files_under(d):
            parts.append(part)
    return parts


@dataclass(frozen=True)
class StagedPartition:
    """A staged partition: ``input_dir`` is the build input (the config's source paths are relative to it)."""

    version: str
    input_dir: Path
    n_files: int
    n_bytes: int
    listing_sha256: str
    reused: bool

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "input": str(self.input_dir),
            "n_files": self.n_files,
            "n_bytes": self.n_bytes,
            "listing_sha256": self.listing_sha256,
            "reused": self.reused,
        }


def _link_or_copy(src: Path, dst: Path, copy: bool) -> None:
    if not copy:
        try:
            os.link(src, dst)
            return
        except OSError:  # other file system, or links not permitted: fall back to a copy
            pass
    shutil.copy2(src, dst)


def stage_partition(
    inbox: Path,
    partition: Partition,
    staging_root: Path,
    *,
    source_dirs: tuple[str, ...] = (),
    copy: bool = False,
) -> StagedPartition:
    """Snapshot ``partition`` into ``staging_root/<version>/input`` (idempotent, atomic).

    ``source_dirs`` are folders (relative to the build input) that must exist even when this
    partition brought no file for them: the build config's source paths. An existing staged
    partition is reused as is (``reused=True``), so a retry sees the same input.
    """
    staging_root = Path(staging_root)
    final = staging_root / partition.version
    marker = final / STAGED_MARKER
    if marker.exists():
        info = json.loads(marker.read_text())
        return StagedPartition(
            partition.version,
            final / INPUT_DIR,
            info["n_files"],
            info["n_bytes"],
            info["listing_sha256"],
            True,
        )
    if final.exists():  # a folder without its marker is not ours to reuse
        raise PartitionError(f"staging folder exists without {STAGED_MARKER}: {final} (remove it)")
    files, downloaded = _inbox_files(inbox, partition)
    staging_root.mkdir(parents=True, exist_ok=True)
    for old in staging_root.glob(f".{partition.version}.tmp-*"):  # leftovers of a killed attempt
        shutil.rmtree(old, ignore_errors=True)
    tmp = staging_root / f".{partition.version}.tmp-{os.getpid()}"
    inp = tmp / INPUT_DIR
    inp.mkdir(parents=True)
    n_bytes, listing_sha256 = _fill_input(inp, files, copy)
    _make_source_dirs(inp, source_dirs)
    info = {
        "version": partition.version,
        "partition": partition.to_json(),
        "n_files": len(files),
        "n_bytes": n_bytes,
        "listing_sha256": listing_sha256,
        "mode": "download" if downloaded else ("copy" if copy else "hardlink"),
    }
    (tmp / STAGED_MARKER).write_text(json.dumps(info, sort_keys=True, indent=1))
    try:
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if marker.exists():  # a concurrent attempt staged it first: use theirs
            return stage_partition(inbox, partition, staging_root, source_dirs=source_dirs, copy=copy)
        raise
    log.info("staged partition %s: %d files, %d bytes", partition.version, len(files), n_bytes)
    return StagedPartition(
        partition.version, final / INPUT_DIR, len(files), n_bytes, info["listing_sha256"], False
    )


def _inbox_files(inbox: Path, partition: Partition) -> tuple[list[tuple[Any, Path, Any]], bool]:
    """The partition's files as (source: URL or local path, path relative to the partition,
    filesystem for a URL else ``None``), and whether they are downloaded (a storage inbox)."""
    from pipelines.storage import filesystem, is_url, join

    if is_url(inbox):  # a storage inbox: the day prefix's objects are downloaded (daily layout)
        if partition.layout != "daily":
            raise PartitionError("an inbox URL supports the daily layout only")
        fs = filesystem(str(inbox))
        files = [(url, Path(rel), fs) for url, rel, _ in _url_files(join(inbox, partition.version))]
        downloaded = True
    else:
        base, local_files = partition_files(inbox, partition)
        files = [(src, src.relative_to(base), None) for src in local_files]
        downloaded = False
    if not files:
        raise PartitionError(f"partition {partition.version} has no files in the inbox")
    return files, downloaded


def _fill_input(inp: Path, files: list[tuple[Any, Path, Any]], copy: bool) -> tuple[int, str]:
    """Download, hard-link or copy ``files`` under ``inp``; returns the bytes staged and the
    sha256 of the listing (``rel\\0size\\n`` per file, in order)."""
    listing = hashlib.sha256()
    n_bytes = 0
    for src, rel, fs in files:
        dst = inp / rel
        if not dst.resolve().is_relative_to(inp.resolve()):
            raise PartitionError("an inbox object name escapes the staging folder")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if fs is not None:
            fs.get_file(src, str(dst))
        else:
            _link_or_copy(src, dst, copy)
        size = dst.stat().st_size
        n_bytes += size
        listing.update(f"{rel.as_posix()}\0{size}\n".encode())
    return n_bytes, listing.hexdigest()


def _make_source_dirs(inp: Path, source_dirs: tuple[str, ...]) -> None:
    """Create the config's source folders under ``inp`` (they must stay inside it)."""
    for d in source_dirs:
        target = (inp / d).resolve()
        if not target.is_relative_to(inp.resolve()):
            raise PartitionError(f"source path escapes the build input: {d!r}")
        target.mkdir(parents=True, exist_ok=True)
