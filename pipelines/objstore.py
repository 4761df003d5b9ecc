"""Corpus roots in object storage (S3 and S3-compatible stores such as MinIO or Ceph; GCS, Azure
through their fsspec drivers): publish, versions, and what readers resolve.

An object store has no atomic rename of a folder, so a set is never published by moving it.
Layout of a corpus root URL::

    ROOT/sets/<version>/<publish id>/   one upload of a checked build under a prefix nobody else
                                        uses (shards, manifests, index segment; SET.json last)
    ROOT/versions.json                  THE POINTER: every published version and its prefix.
                                        One small object, replaced by one PUT: the commit point
    ROOT/CURRENT                        the newest version, one line (a convenience copy,
                                        written after versions.json; readers trust versions.json)

A reader resolves a set through ``versions.json`` only (:func:`read_versions`,
:func:`set_location`), so it sees a set complete or not at all: an upload that failed half-way
sits under a prefix no pointer names (:func:`orphans` lists them for clean-up) and a re-run
uploads a new prefix and then names it; a version already in ``versions.json`` is never uploaded
again. The build itself runs in a local work folder (``--work-root``: staging and builds), checked
there exactly as for a local corpus root.

Publishing assumes one publisher per corpus root at a time (the scheduled DAG runs one interval
at a time); the pointer is read, extended and written back.

Credentials come from the environment of each process (``AWS_ACCESS_KEY_ID``, ...;
``AWS_ENDPOINT_URL_S3`` or ``FSSPEC_S3_ENDPOINT_URL`` for an S3-compatible server); nothing here
writes them anywhere.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path

from pipelines import storage
from pipelines.manifest import MANIFEST, SHARDS
from pipelines.publish import (
    BUILD_LOCK,
    BUILD_SIDECARS,
    CURRENT_FILE,
    INDEX_FORMAT,
    SET_INFO,
    SETS_DIR,
    VERSIONS_FILE,
    CheckFailed,
    PublishError,
    PublishResult,
    check_version,
    checked_marker,
    read_index,
)

log = logging.getLogger(__name__)


def read_versions(root) -> dict:
    """``versions.json`` of a corpus root, a local path or a URL (empty if nothing is published)."""
    if not storage.is_url(root):
        return read_index(Path(root))
    fs = storage.filesystem(str(root))
    url = storage.join(root, VERSIONS_FILE)
    if not fs.exists(url):
        return {"format": INDEX_FORMAT, "current": None, "versions": []}
    return json.loads(fs.cat_file(url))


def set_location(root, entry: dict):
    """Where a published set lives: ``ROOT/<entry path>`` (a Path for a local root, else a URL)."""
    return storage.join(root, entry["path"]) if storage.is_url(root) else Path(root) / entry["path"]


def is_published(root, version: str) -> bool:
    return any(e["version"] == version for e in read_versions(root)["versions"])


def _files(build_dir: Path) -> list[Path]:
    """The files of a checked build that make the set (no build-time sidecars, no lock, no temp)."""
    out = []
    for p in sorted(build_dir.rglob("*")):
        rel = p.relative_to(build_dir)
        if not p.is_file() or rel.parts[0] in BUILD_SIDECARS or p.name in (BUILD_LOCK, SET_INFO):
            continue
        if ".tmp-" in p.name:
            continue
        out.append(p)
    return out


def publish_to_store(
    root: str,
    build_dir: Path,
    version: str,
    *,
    max_quarantine_fraction: float,
    interval: tuple[str, str] | None = None,
    staged_partition: dict | None = None,
) -> PublishResult:
    """Publish the checked local build ``build_dir`` as ``version`` of the corpus root URL ``root``.

    Idempotent: a version ``versions.json`` already names is returned as it is (nothing is
    uploaded). Raises :class:`CheckFailed` when the build fails its check, or was deduplicated
    against fewer sets than are published now; then nothing under ``root`` changes.
    """
    from pipelines.corpus_index import stale_reason

    check_version(version)
    fs = storage.filesystem(root)
    index = read_versions(root)
    for e in index["versions"]:
        if e["version"] == version:
            return PublishResult(version, set_location(root, e), index["current"], True, e)
    build_dir = Path(build_dir)
    if not build_dir.is_dir():
        raise PublishError(f"nothing built for version {version} (run build-set first)")
    marker = checked_marker(build_dir, version, max_quarantine_fraction)
    if stale := stale_reason(root, build_dir, version):
        raise CheckFailed(stale)
    prefix = f"{SETS_DIR}/{version}/{uuid.uuid4().hex[:16]}"
    entry = {
        "version": version,
        "path": prefix,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "interval_start": interval[0] if interval else None,
        "interval_end": interval[1] if interval else None,
        "partition": staged_partition,
        "n_shards": marker["n_shards"],
        "n_samples": marker["n_samples"],
        "n_units": marker["n_units"],
        "n_quarantined": marker["n_quarantined"],
        "quarantine_fraction": marker["quarantine_fraction"],
        "shards_sha256": marker["digests"][SHARDS],
        "manifest_sha256": marker["digests"][MANIFEST],
    }
    dest = storage.join(root, prefix)
    for p in _files(build_dir):  # 1. the set, under its own prefix (invisible until named)
        fs.put_file(str(p), storage.join(dest, p.relative_to(build_dir).as_posix()))
    info = {"version": version, "entry": entry, "check": {k: v for k, v in marker.items() if k != "ok"}}
    fs.pipe_file(storage.join(dest, SET_INFO), json.dumps(info, sort_keys=True, indent=1).encode())
    # 2. the commit point: one PUT of the pointer; then the CURRENT convenience copy
    index["versions"].append(entry)
    index["current"] = max(e["version"] for e in index["versions"])
    fs.pipe_file(storage.join(root, VERSIONS_FILE), json.dumps(index, sort_keys=True, indent=1).encode())
    fs.pipe_file(storage.join(root, CURRENT_FILE), f"{index['current']}\n".encode())
    log.info("published version %s (%d samples) under %s", version, entry["n_samples"], prefix)
    return PublishResult(version, dest, index["current"], False, entry)


def orphans(root: str) -> list[str]:
    """Set prefixes under ``ROOT/sets/`` that ``versions.json`` does not name (failed uploads)."""
    fs = storage.filesystem(root)
    named = {e["path"] for e in read_versions(root)["versions"]}
    base = storage.join(root, SETS_DIR)
    if not fs.exists(base):
        return []
    out = []
    for vdir in fs.ls(base, detail=False):
        for pdir in fs.ls(vdir, detail=False):
            rel = f"{SETS_DIR}/{vdir.rstrip('/').rsplit('/', 1)[-1]}/{pdir.rstrip('/').rsplit('/', 1)[-1]}"
            if rel not in named:
                out.append(rel)
    return sorted(out)
