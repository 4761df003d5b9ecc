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

Several publishers may share a corpus root. The pointer is replaced by a conditional PUT, a
compare-and-swap on S3 (``If-Match: <ETag read>``, or ``If-None-Match: *`` when it does not exist
yet): a publisher whose PUT is refused (412 Precondition Failed, 409 ConditionalRequestConflict)
re-reads the pointer and merges its version into what it finds, so no publisher ever overwrites
another's version. If the other publisher named the same version, the set is published once (the
loser's upload is an orphan); if it named a set whose records this build was not deduplicated
against, this one is refused as stale (rerun build-set). Stores other than S3 (GCS, Azure through
fsspec) get a plain PUT and a warning: one publisher at a time there.

Credentials come from the environment of each process (``AWS_ACCESS_KEY_ID``, ...;
``AWS_ENDPOINT_URL_S3`` or ``FSSPEC_S3_ENDPOINT_URL`` for an S3-compatible server); nothing here
writes them anywhere.
"""

from __future__ import annotations

import json
import logging
import random
import time
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


def _empty() -> dict:
    return {"format": INDEX_FORMAT, "current": None, "versions": []}


def read_versions(root) -> dict:
    """``versions.json`` of a corpus root, a local path or a URL (empty if nothing is published)."""
    if not storage.is_url(root):
        return read_index(Path(root))
    fs = storage.filesystem(str(root))
    try:
        return json.loads(fs.cat_file(storage.join(root, VERSIONS_FILE)))
    except FileNotFoundError:
        return _empty()


# ------------------------------------------------------------------ the pointer's compare-and-swap

#: fsspec protocols whose pointer PUT is conditional (s3fs forwards IfMatch/IfNoneMatch to PutObject)
CONDITIONAL_PROTOCOLS = ("s3", "s3a")
#: attempts at merging a version into a pointer other publishers keep changing
POINTER_ATTEMPTS = 20


class PointerChanged(Exception):
    """The conditional PUT of ``versions.json`` was refused: another publisher replaced it."""


def _protocol(fs) -> str:
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def read_pointer(fs, root: str) -> tuple[dict, str | None]:
    """``versions.json`` and the ETag it was read at (None: it does not exist yet).

    The ETag is read first (HEAD), the body second: if another publisher replaces the pointer in
    between, the body is newer than the ETag and the conditional PUT built on it is refused, so a
    merge never rests on a body older than its ETag."""
    url = storage.join(root, VERSIONS_FILE)
    fs.invalidate_cache(url)
    try:
        etag = fs.info(url).get("ETag") or ""
        return json.loads(fs.cat_file(url)), etag
    except FileNotFoundError:
        return _empty(), None


def _refused(exc: BaseException) -> bool:
    """True when a storage error is S3's answer to a failed precondition (412, or 409 when two
    conditional writes of one key were in flight at once)."""
    while exc is not None:
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409") or status in (
                412,
                409,
            )
        exc = exc.__cause__ or exc.__context__
    return False


def write_pointer(fs, root: str, index: dict, etag: str | None) -> None:
    """Replace ``versions.json`` by ``index`` if it is still at ``etag`` (None: if it still does
    not exist); raise :class:`PointerChanged` otherwise."""
    url = storage.join(root, VERSIONS_FILE)
    data = json.dumps(index, sort_keys=True, indent=1).encode()
    if _protocol(fs) not in CONDITIONAL_PROTOCOLS:
        log.warning("%s:// has no conditional PUT here: one publisher at a time on this root", _protocol(fs))
        fs.pipe_file(url, data)
        return
    try:
        if etag is None:
            fs.pipe_file(url, data, mode="create")  # If-None-Match: *
        else:
            fs.pipe_file(url, data, IfMatch=etag)
    except (FileExistsError, FileNotFoundError):  # created meanwhile / deleted meanwhile
        raise PointerChanged from None
    except OSError as exc:
        if _refused(exc):
            raise PointerChanged from None
        raise
    finally:
        fs.invalidate_cache(url)


def _write_current(fs, root: str) -> None:
    """``CURRENT`` := the pointer's current version. Publishers finishing together may write it
    out of order, so each re-reads the pointer after writing and writes again until they agree
    (the last writer has seen the newest pointer)."""
    for _ in range(10):
        current = read_pointer(fs, root)[0]["current"]
        fs.pipe_file(storage.join(root, CURRENT_FILE), f"{current}\n".encode())
        if read_pointer(fs, root)[0]["current"] == current:
            return


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
    against fewer sets than are published now: then nothing names anything of it (when another
    publisher's set appeared during the upload, the upload stays as an orphan prefix).
    Safe beside other publishers of the same root: see the module docstring.
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
    entry = _set_entry(version, prefix, marker, interval, staged_partition)
    dest = storage.join(root, prefix)
    for p in _files(build_dir):  # 1. the set, under its own prefix (invisible until named)
        fs.put_file(str(p), storage.join(dest, p.relative_to(build_dir).as_posix()))
    info = {"version": version, "entry": entry, "check": {k: v for k, v in marker.items() if k != "ok"}}
    fs.pipe_file(storage.join(dest, SET_INFO), json.dumps(info, sort_keys=True, indent=1).encode())
    # 2. the commit point: a compare-and-swap of the pointer, merged again after each lost race
    index, named = _name_version(fs, root, build_dir, version, prefix, entry)
    if named is not None:
        return PublishResult(version, set_location(root, named), index["current"], True, named)
    _write_current(fs, root)  # 3. the convenience copy
    log.info("published version %s (%d samples) under %s", version, entry["n_samples"], prefix)
    return PublishResult(version, dest, index["current"], False, entry)


def _set_entry(
    version: str,
    prefix: str,
    marker: dict,
    interval: tuple[str, str] | None,
    staged_partition: dict | None,
) -> dict:
    """The set's ``versions.json`` entry: where it is, when it was published, what it covers and
    the check marker's counts and digests."""
    return {
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


def _name_version(
    fs, root: str, build_dir: Path, version: str, prefix: str, entry: dict
) -> tuple[dict, dict | None]:
    """Add ``entry`` to ``versions.json`` by compare-and-swap, reading and merging again after
    each lost race (up to ``POINTER_ATTEMPTS``, with a short random back-off).

    Returns the index written and ``None``; or the index read and the entry of ``version`` when
    another publisher named it first. Raises :class:`CheckFailed` when the set became stale."""
    from pipelines.corpus_index import stale_reason

    for attempt in range(1, POINTER_ATTEMPTS + 1):
        index, etag = read_pointer(fs, root)
        for e in index["versions"]:
            if e["version"] == version:  # another publisher named it first: published once
                log.warning(
                    "version %s was published meanwhile; this upload (%s) is an orphan", version, prefix
                )
                return index, e
        if stale := stale_reason(root, build_dir, version, versions=index):
            raise CheckFailed(f"{stale} (this upload, {prefix}, is an orphan)")
        index["versions"].append(entry)
        index["current"] = max(e["version"] for e in index["versions"])
        try:
            write_pointer(fs, root, index, etag)
            return index, None
        except PointerChanged:
            log.info(
                "versions.json changed while publishing %s: merging again (attempt %d)", version, attempt
            )
            time.sleep(random.uniform(0.05, 0.2) * min(attempt, 5))
    raise PublishError(
        f"versions.json kept changing under {POINTER_ATTEMPTS} attempts to publish {version}: "
        "nothing named it; publish again"
    )


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


#: ``corpus-gc`` keeps an unnamed prefix whose newest object is younger than this: it may be an
#: upload in progress (a publish names its prefix only after the last object is written)
GC_MIN_AGE_HOURS = 24.0


def collect_garbage(
    root: str, *, older_than_hours: float = GC_MIN_AGE_HOURS, dry_run: bool = False
) -> list[dict]:
    """Delete the prefixes under ``ROOT/sets/`` that ``versions.json`` does not name (failed or
    lost uploads, :func:`orphans`) whose newest object is older than ``older_than_hours``.

    Never a named prefix: the pointer is read again just before each deletion, so a prefix a
    publisher named after the listing is kept. Returns one row per orphan: ``prefix``,
    ``n_objects``, ``bytes``, ``newest`` (ISO time), ``action`` (``deleted``, ``would delete``,
    ``kept: younger than N h``, ``kept: named meanwhile``)."""
    fs = storage.filesystem(root)
    now = datetime.now(UTC)
    rows = []
    for rel in orphans(root):
        url = storage.join(root, rel)
        objs = fs.find(url, detail=True)
        times = [_modified(fs, p, d) for p, d in objs.items()]
        newest = max(times) if times else None
        row = {
            "prefix": rel,
            "n_objects": len(objs),
            "bytes": int(sum(d.get("size") or 0 for d in objs.values())),
            "newest": newest.isoformat(timespec="seconds") if newest else None,
        }
        age_h = (now - newest).total_seconds() / 3600 if newest else float("inf")
        if age_h < older_than_hours:
            row["action"] = f"kept: younger than {older_than_hours:g} h"
        elif rel in {e["path"] for e in read_versions(root)["versions"]}:
            row["action"] = "kept: named meanwhile"
        elif dry_run:
            row["action"] = "would delete"
        else:
            fs.rm(url, recursive=True)
            row["action"] = "deleted"
            log.info("deleted unnamed prefix %s (%d objects)", rel, len(objs))
        rows.append(row)
    return rows


def _modified(fs, path: str, detail: dict) -> datetime:
    t = detail.get("LastModified") or detail.get("mtime") or fs.modified(path)
    if isinstance(t, (int, float)):
        t = datetime.fromtimestamp(t, UTC)
    return t if t.tzinfo else t.replace(tzinfo=UTC)
