"""A build's input in object storage: ``medcorpus build s3://bucket/export --out ...``.

The decoders (pydicom, wfdb, nibabel) open paths, and a WFDB record needs its header and signal
files side by side, so the input is mirrored into a local folder before the build, by the
workers, in a small graph on the build's own backend: one task lists the objects under the URL
and yields their folders (and removes local folders the store no longer has); one task per
folder downloads the objects that are new or changed (size, modification time) and removes local
files the store no longer has. Object names stay in the workers' memory, as in discovery; the
driver receives counts. Each local file takes its object's modification time, so the decode
cache and the no-op rerun (both stat-based) see an unchanged object as unchanged: a rerun lists
the store and downloads nothing.

The mirror (``--input-mirror``, default ``$MEDCORPUS_WORK_ROOT/inputs/in-<hash of the URL>``)
holds a full copy of the input: it is the local folder the build reads. Names starting with a
dot are skipped (as discovery skips them); names that would escape the mirror are refused.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipelines import storage
from schemas.atomic import atomic_open

WORK_ROOT_ENV = "MEDCORPUS_WORK_ROOT"


def default_mirror(url: str) -> Path:
    """``$MEDCORPUS_WORK_ROOT/inputs/in-<hash of url>``: one local mirror per input URL."""
    from pipelines.errors import UserError

    root = os.environ.get(WORK_ROOT_ENV, "")
    if not root:
        raise UserError(f"an input URL needs --input-mirror or ${WORK_ROOT_ENV} (its local copy)")
    return Path(root) / "inputs" / ("in-" + hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16])


def _rel(url: str, path: str) -> str:
    """``path`` (as fsspec lists it, without the scheme) relative to ``url``."""
    base = url.split("://", 1)[-1].rstrip("/")
    return path.split("://", 1)[-1][len(base) :].strip("/")


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/") if part)


def _inside(root: Path, rel: str) -> Path:
    dst = root / rel
    if rel.startswith("/") or ".." in rel.split("/") or not dst.resolve().is_relative_to(root.resolve()):
        raise ValueError("an input object name escapes the input mirror")
    return dst


@dataclass(frozen=True)
class ListInputFolders:
    """``flat_map`` on one seed: the folders (relative to the URL) that hold objects; local
    folders of the mirror that hold none of them are removed."""

    url: str
    local: str

    def __call__(self, _seed) -> Iterator[str]:
        fs = storage.filesystem(self.url)
        folders: set[str] = {""}
        for path in fs.find(self.url):
            rel = _rel(self.url, path)
            if rel and not _hidden(rel):
                folders.add(posixpath.dirname(rel))
        keep = {""}
        for f in folders:
            while f:
                keep.add(f)
                f = posixpath.dirname(f)
        root = Path(self.local)
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
            if d.exists() and d.relative_to(root).as_posix() not in keep:
                shutil.rmtree(d)
        yield from sorted(folders)


@dataclass(frozen=True)
class MirrorFolder:
    """``flat_map`` on a folder: download its new or changed objects (atomically, with the
    object's modification time), remove local files the store no longer has; yields
    ``(objects, downloaded, bytes downloaded)``."""

    url: str
    local: str

    def __call__(self, folder: str) -> Iterator[tuple[int, int, int]]:
        fs = storage.filesystem(self.url)
        root = Path(self.local)
        dst_dir = _inside(root, folder) if folder else root
        dst_dir.mkdir(parents=True, exist_ok=True)
        keep: set[str] = set()
        n = n_new = n_bytes = 0
        for info in fs.ls(storage.join(self.url, folder) if folder else self.url, detail=True):
            name = posixpath.basename(info["name"].rstrip("/"))
            if info.get("type") != "file" or name.startswith("."):
                continue
            keep.add(name)
            n += 1
            dst = _inside(root, f"{folder}/{name}" if folder else name)
            size, mtime = int(info.get("size") or 0), _mtime(info)
            st = dst.stat() if dst.is_file() else None
            if st is not None and st.st_size == size and int(st.st_mtime) == int(mtime):
                continue
            # a cache (recomputed if lost): the project's atomic write, not fsynced; a temp left
            # by a crash is not in ``keep`` and goes in the clean-up below
            with atomic_open(dst, durable=False, mode=0o666) as out, fs.open(info["name"], "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
            os.utime(dst, (mtime, mtime))
            n_new += 1
            n_bytes += size
        for p in dst_dir.iterdir():
            if p.is_file() and p.name not in keep:
                p.unlink()
        yield n, n_new, n_bytes


def _mtime(info: dict) -> float:
    """An object's modification time (seconds since the epoch) from an fsspec listing entry."""
    t = info.get("LastModified") or info.get("mtime") or info.get("updated") or 0
    return t.timestamp() if hasattr(t, "timestamp") else float(t)


def mirror_input(flow, url: str, local: Path) -> dict[str, int]:
    """Bring the mirror ``local`` up to date with the objects under ``url``, in the workers of
    ``flow``; returns counts (objects, downloaded, bytes downloaded)."""
    local.mkdir(parents=True, exist_ok=True)
    folders = flow.create([0], "input-seed").flat_map(ListInputFolders(url, str(local)), "input-folders")
    rows = flow.run({"mirror": folders.flat_map(MirrorFolder(url, str(local)), "input-mirror")})["mirror"]
    return {
        "objects": sum(r[0] for r in rows),
        "downloaded": sum(r[1] for r in rows),
        "bytes": sum(r[2] for r in rows),
    }
