"""Versioned shard sets under one corpus root, checked and published atomically.

Layout of a corpus root (one folder, one file system)::

    CORPUS_ROOT/
      staging/<version>/input/   the partition's input snapshot (pipelines.partitions)
      builds/<version>/          a build in progress; rerunning the build resumes it
      sets/<version>/            published sets: validated, immutable, files read-only
      versions.json              every published version in publish order (append-only)
      CURRENT                    the newest published version (largest version string), one line
      .lock                      advisory lock (flock) held while publishing

Life of a version: stage → build into ``builds/<version>`` → :func:`check_build` (re-hash
against the manifests + quarantine gate) → :func:`publish_set`: the checked build folder is
renamed to ``sets/<version>`` (one atomic ``rename``; a set is visible complete or not at
all), then ``versions.json`` and ``CURRENT`` are rewritten by temp + fsync + rename. Earlier
sets are never touched; publishing a version twice is a no-op, so a retried publish (or a
re-run of a whole interval) never duplicates a set. A build that fails its check is never
renamed, so it can never be published.

Quarantine gate: a build whose quarantined input units exceed ``max_quarantine_fraction`` of
all its input units fails the check, loudly, with the per-modality counts (never file names).
Version strings come from :mod:`pipelines.partitions` (``YYYY-MM-DD`` or interval stamps); any
``[A-Za-z0-9][A-Za-z0-9_.-]*`` name is accepted, so they sort chronologically by design.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipelines.manifest import MANIFEST, SHARDS, STATS
from pipelines.writer import sha256_file
from schemas.atomic import fsync_dir, write_atomic

log = logging.getLogger(__name__)

STAGING_DIR = "staging"
BUILDS_DIR = "builds"
SETS_DIR = "sets"
TRASH_DIR = ".trash"
VERSIONS_FILE = "versions.json"
CURRENT_FILE = "CURRENT"
LOCK_FILE = ".lock"
BUILD_LOCK = ".lock"  # the lock file pipelines.build keeps in its output folder
CHECK_MARKER = "CHECKED.json"
SET_INFO = "SET.json"
CACHE_DIR = "cache"
BUILD_SIDECARS = (CACHE_DIR, "blobs", "manifest-parts")
DEFAULT_MAX_QUARANTINE_FRACTION = 0.25
INDEX_FORMAT = 1

_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class PublishError(RuntimeError):
    """A set cannot be published (not built, bad version); reported as one line."""


class CheckFailed(PublishError):
    """The build failed validation or the quarantine gate: it was not published."""


def check_version(version: str) -> str:
    """Return ``version`` if it is a safe single path component, else raise :class:`PublishError`."""
    if not _VERSION_RE.match(version) or version in (".", ".."):
        raise PublishError(f"illegal version name {version!r} (letters, digits, '_', '.', '-')")
    return version


@dataclass(frozen=True)
class CorpusRoot:
    """Paths of one corpus root (see the module docstring)."""

    root: Path

    def staging(self) -> Path:
        return self.root / STAGING_DIR

    def build_dir(self, version: str) -> Path:
        return self.root / BUILDS_DIR / check_version(version)

    def set_dir(self, version: str) -> Path:
        return self.root / SETS_DIR / check_version(version)

    def is_published(self, version: str) -> bool:
        return (self.set_dir(version) / SET_INFO).exists()

    def current_build(self, version: str) -> Path:
        """Where ``version`` lives now: its published set if published, else its build folder."""
        return self.set_dir(version) if self.is_published(version) else self.build_dir(version)


# ---------------------------------------------------------------------------------- check


@dataclass(frozen=True)
class QuarantineSummary:
    """Quarantined vs all input units of a build (units: files or table rows), per modality."""

    n_units: int
    n_quarantined: int
    per_modality: dict[str, dict[str, int]]

    @property
    def fraction(self) -> float:
        return self.n_quarantined / self.n_units if self.n_units else 0.0


def quarantine_summary(stats: dict) -> QuarantineSummary:
    """Summarise ``stats.json``'s ``per_modality`` accounting (``inputs``/``quarantined`` counts)."""
    per = {
        m: {"inputs": int(c.get("inputs", 0)), "quarantined": int(c.get("quarantined", 0))}
        for m, c in sorted(stats.get("per_modality", {}).items())
    }
    return QuarantineSummary(
        n_units=sum(c["inputs"] for c in per.values()),
        n_quarantined=sum(c["quarantined"] for c in per.values()),
        per_modality=per,
    )


@dataclass
class CheckReport:
    """Result of :func:`check_build`. ``ok`` only when validation passed and the gate held."""

    build_dir: Path
    max_quarantine_fraction: float
    validation_errors: list[str] = field(default_factory=list)
    gate_error: str = ""
    n_shards: int = 0
    n_samples: int = 0
    quarantine: QuarantineSummary | None = None

    @property
    def ok(self) -> bool:
        return not self.validation_errors and not self.gate_error

    def to_json(self) -> dict:
        q = self.quarantine
        return {
            "ok": self.ok,
            "n_shards": self.n_shards,
            "n_samples": self.n_samples,
            "n_units": q.n_units if q else 0,
            "n_quarantined": q.n_quarantined if q else 0,
            "quarantine_fraction": round(q.fraction, 6) if q else 0.0,
            "max_quarantine_fraction": self.max_quarantine_fraction,
            "quarantine_per_modality": q.per_modality if q else {},
            "validation_errors": self.validation_errors[:50],
            "gate_error": self.gate_error,
        }


def _digests(build_dir: Path) -> dict[str, str]:
    """sha256 of every top-level file of a build (manifests, stats; shards are covered by shards.parquet)."""
    return {
        p.name: sha256_file(p)
        for p in sorted(build_dir.iterdir())
        if p.is_file() and p.name not in (CHECK_MARKER, SET_INFO, BUILD_LOCK) and ".tmp-" not in p.name
    }


def gate(summary: QuarantineSummary, max_fraction: float) -> str:
    """The quarantine gate: ``""`` if it holds, else a PHI-free one-line reason."""
    if not 0.0 <= max_fraction <= 1.0:
        raise ValueError(f"max_quarantine_fraction must lie in [0, 1], got {max_fraction}")
    if summary.fraction <= max_fraction:
        return ""
    per = ", ".join(f"{m} {c['quarantined']}/{c['inputs']}" for m, c in summary.per_modality.items())
    return (
        f"quarantined {summary.n_quarantined} of {summary.n_units} input units "
        f"({summary.fraction:.1%}) > max_quarantine_fraction {max_fraction:.1%} (per modality: {per})"
    )


def check_build(
    build_dir: Path,
    max_quarantine_fraction: float = DEFAULT_MAX_QUARANTINE_FRACTION,
    *,
    write_marker: bool = True,
) -> CheckReport:
    """Validate a finished build (``pipelines.validate``: re-hash shards, accounting, splits) and apply
    the quarantine gate. On success writes ``CHECKED.json`` (digests of the manifests) unless told not
    to; :func:`publish_set` reuses it instead of re-hashing every shard.
    """
    from pipelines.validate import validate_build

    build_dir = Path(build_dir)
    rep = CheckReport(build_dir, max_quarantine_fraction)
    write_marker = write_marker and not (build_dir / SET_INFO).exists()  # a published set is never written
    if not build_dir.is_dir():
        rep.validation_errors.append("build folder not found")
        return rep
    if write_marker:
        (build_dir / CHECK_MARKER).unlink(missing_ok=True)
    val = validate_build(build_dir)
    rep.validation_errors = list(val.errors)
    rep.n_shards, rep.n_samples = val.n_shards, val.n_samples
    if (build_dir / STATS).exists():
        rep.quarantine = quarantine_summary(json.loads((build_dir / STATS).read_text()))
        rep.gate_error = gate(rep.quarantine, max_quarantine_fraction)
    if rep.ok and write_marker:
        marker = rep.to_json() | {"digests": _digests(build_dir)}
        write_atomic(build_dir / CHECK_MARKER, json.dumps(marker, sort_keys=True, indent=1).encode())
    return rep


def _marker_valid(build_dir: Path, max_quarantine_fraction: float) -> dict | None:
    """The ``CHECKED.json`` of ``build_dir`` if it still matches the files and the threshold."""
    path = build_dir / CHECK_MARKER
    try:
        marker = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not marker.get("ok") or marker.get("digests") != _digests(build_dir):
        return None
    if marker.get("quarantine_fraction", 1.0) > max_quarantine_fraction:
        return None
    return marker


def checked_marker(build_dir: Path, version: str, max_quarantine_fraction: float) -> dict:
    """The build's valid ``CHECKED.json``, running :func:`check_build` first when there is none.

    Raises :class:`CheckFailed` when the build fails its check (it is then not publishable).
    """
    marker = _marker_valid(build_dir, max_quarantine_fraction)
    if marker is None:
        rep = check_build(build_dir, max_quarantine_fraction)
        if not rep.ok:
            raise CheckFailed(
                f"version {version} failed its check, not published: "
                + "; ".join([*rep.validation_errors[:5], rep.gate_error]).strip("; ")
            )
        marker = _marker_valid(build_dir, max_quarantine_fraction)
        assert marker is not None
    return marker


# ---------------------------------------------------------------------------------- index


def read_index(root: Path) -> dict:
    """``versions.json`` of a corpus root (an empty index if nothing was published yet)."""
    path = Path(root) / VERSIONS_FILE
    if not path.exists():
        return {"format": INDEX_FORMAT, "current": None, "versions": []}
    return json.loads(path.read_text())


def current_version(root: Path) -> str | None:
    """The version ``CURRENT`` points at, or None."""
    path = Path(root) / CURRENT_FILE
    return path.read_text().strip() or None if path.exists() else None


@contextmanager
def corpus_lock(root: Path) -> Iterator[None]:
    """Exclusive advisory lock on the corpus root (serialises publishers on one host / POSIX FS)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _lock_build(build_dir: Path) -> int:
    """Take the build folder's own lock (``pipelines.build`` holds it while building), or refuse."""
    fd = os.open(build_dir / BUILD_LOCK, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise PublishError("a build is still writing this version; not published") from None
    return fd


def _update_index(root: Path, entry: dict) -> str:
    """Append ``entry`` (if its version is new), repoint CURRENT at the newest version; atomic files."""
    index = read_index(root)
    if entry["version"] not in {e["version"] for e in index["versions"]}:
        index["versions"].append(entry)
    current = max(e["version"] for e in index["versions"])
    index["current"] = current
    write_atomic(root / VERSIONS_FILE, json.dumps(index, sort_keys=True, indent=1).encode())
    write_atomic(root / CURRENT_FILE, f"{current}\n".encode())
    return current


def _make_read_only(tree: Path) -> None:
    for dirpath, _, filenames in os.walk(tree):
        for name in filenames:
            p = Path(dirpath) / name
            p.chmod(stat.S_IMODE(p.stat().st_mode) & ~0o222)


# ---------------------------------------------------------------------------------- publish


@dataclass(frozen=True)
class PublishResult:
    """What :func:`publish_set` did. ``entry`` is the version's ``versions.json`` record."""

    version: str
    set_dir: Path
    current: str
    already_published: bool
    entry: dict

    def to_json(self) -> dict:
        return {
            "version": self.version,
            "set_dir": str(self.set_dir),
            "current": self.current,
            "already_published": self.already_published,
        } | {k: v for k, v in self.entry.items() if k not in ("version",)}


def publish_set(
    root: Path,
    version: str,
    *,
    max_quarantine_fraction: float = DEFAULT_MAX_QUARANTINE_FRACTION,
    interval: tuple[str, str] | None = None,
) -> PublishResult:
    """Publish ``builds/<version>`` as ``sets/<version>`` (check, then one rename, then the pointers).

    Idempotent: an already published version only has its index entry and CURRENT ensured.
    Raises :class:`PublishError` when there is nothing to publish or the check fails; then
    nothing under the corpus root changes except the build's own ``CHECKED.json``.
    ``interval`` is the scheduler's data interval ``(start, end)`` (ISO strings), recorded only.
    """
    root = Path(root)
    corpus = CorpusRoot(root)
    check_version(version)
    with corpus_lock(root):
        set_dir, build_dir = corpus.set_dir(version), corpus.build_dir(version)
        if corpus.is_published(version):
            entry = json.loads((set_dir / SET_INFO).read_text())["entry"]
            current = _update_index(root, entry)
            return PublishResult(version, set_dir, current, True, entry)
        if set_dir.exists():
            raise PublishError(f"sets/{version} exists but is not a published set (remove it by hand)")
        if not build_dir.is_dir():
            raise PublishError(f"nothing built for version {version} (run build-set first)")
        build_lock = _lock_build(build_dir)
        try:
            marker = checked_marker(build_dir, version, max_quarantine_fraction)
            from pipelines.corpus_index import stale_reason

            if stale := stale_reason(root, build_dir, version):  # cross-set dedup missed a newer set
                raise CheckFailed(stale)
            staged = corpus.staging() / version / "STAGED.json"
            entry = {
                "version": version,
                "path": f"{SETS_DIR}/{version}",
                "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "interval_start": interval[0] if interval else None,
                "interval_end": interval[1] if interval else None,
                "partition": json.loads(staged.read_text()).get("partition") if staged.exists() else None,
                "n_shards": marker["n_shards"],
                "n_samples": marker["n_samples"],
                "n_units": marker["n_units"],
                "n_quarantined": marker["n_quarantined"],
                "quarantine_fraction": marker["quarantine_fraction"],
                "shards_sha256": marker["digests"][SHARDS],
                "manifest_sha256": marker["digests"][MANIFEST],
            }
            # build-time sidecars (decode cache, blob store, manifest fragments): not part of a set
            for sidecar in BUILD_SIDECARS:
                if (build_dir / sidecar).exists():
                    trash = root / TRASH_DIR / f"{version}-{sidecar}-{os.getpid()}"
                    trash.parent.mkdir(parents=True, exist_ok=True)
                    os.rename(build_dir / sidecar, trash)
                    shutil.rmtree(trash, ignore_errors=True)
            info = {
                "version": version,
                "entry": entry,
                "check": {k: v for k, v in marker.items() if k != "ok"},
            }
            write_atomic(build_dir / SET_INFO, json.dumps(info, sort_keys=True, indent=1).encode())
            _make_read_only(build_dir)
            set_dir.parent.mkdir(parents=True, exist_ok=True)
            (build_dir / BUILD_LOCK).unlink(missing_ok=True)  # the build's lock: not part of the set
            os.rename(build_dir, set_dir)  # the publish itself: atomic on one file system
            fsync_dir(set_dir.parent)
        finally:
            os.close(build_lock)
        current = _update_index(root, entry)
    shutil.rmtree(corpus.staging() / version, ignore_errors=True)
    log.info(
        "published version %s (%d samples, %d shards); current is %s",
        version,
        entry["n_samples"],
        entry["n_shards"],
        current,
    )
    return PublishResult(version, set_dir, current, False, entry)
