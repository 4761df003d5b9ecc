"""A no-op rerun in seconds: a finished build whose inputs, config and code have not changed is
not run again.

After a build succeeds, ``OUT/complete.json`` records a keyed fingerprint of

* every file under the input folder (and under a source folder outside it): relative path,
  size and modification time (``lstat``: symlinks are not followed, as discovery does not),
  the same stat-based identity the decode cache trusts;
* ``build.json`` as this run would write it (the config and tool versions);
* the project's code (``pipelines``, ``workers``, ``schemas``).

A rerun lists and stats the inputs (about 2 s per 10^5 files, no file is opened) and, if the
fingerprint is the same and every output is in place (manifests, data card, each shard with its
recorded size), returns the finished build's result without starting a worker. Anything else
takes the normal resumable path, which does only the unfinished work per item and per shard.
The stamp is deleted when a build starts, so a killed build never leaves one behind.

The fingerprint is an HMAC under the build's secret (``Pseudonymizer.token``): file names may
carry patient names, and the stamp must not allow testing guesses of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pyarrow.parquet as pq

from pipelines.decode import code_fingerprint
from pipelines.manifest import BUILD, INPUTS, MANIFEST, QUARANTINE, SHARDS, STATS
from schemas.atomic import write_atomic
from schemas.contract import SHARDS_DIR
from workers.deid.pseudonym import Pseudonymizer

log = logging.getLogger(__name__)

STAMP = "complete.json"
STAMP_FORMAT = 1
#: outputs a finished build has besides its shards
OUTPUTS = (MANIFEST, SHARDS, QUARANTINE, INPUTS, STATS, BUILD, "datacard.html", "datacard.json")


def _walk(root: Path, h: hashlib._Hash, skip: Path) -> int:
    """Feed (relative path, size, mtime, mode) of every file under ``root`` into ``h``, in sorted
    order; the folder ``skip`` (the build's output, if it lies inside the input) is left out."""
    n = 0
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = sorted(os.scandir(root / rel), key=lambda e: e.name)
        except OSError as e:  # unreadable folder: part of the identity (the build reports it)
            h.update(f"!{rel}:{e.errno}\0".encode())
            continue
        subdirs = []
        for e in entries:
            path = f"{rel}/{e.name}" if rel else e.name
            if e.is_dir(follow_symlinks=False):
                if root / path != skip:
                    subdirs.append(path)
                continue
            st = e.stat(follow_symlinks=False)
            h.update(
                f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_mode}\0".encode("utf-8", "surrogateescape")
            )
            n += 1
        stack.extend(reversed(subdirs))
    return n


def fingerprint(
    input_dir: Path, source_dirs: list[Path], out_dir: Path, build_info: bytes, pseudo: Pseudonymizer
) -> str:
    """The keyed fingerprint of a build's inputs, ``build.json`` bytes and code."""
    h = hashlib.sha256()
    input_dir, skip = input_dir.resolve(), out_dir.resolve()
    roots = [input_dir] + sorted(
        {d.resolve() for d in source_dirs if not d.resolve().is_relative_to(input_dir)}
    )
    n = 0
    for i, root in enumerate(roots):
        h.update(f"root {i}\0".encode())
        n += _walk(root, h, skip)
    h.update(
        b"build.json\0"
        + build_info
        + b"\0code\0"
        + code_fingerprint(("pipelines", "workers", "schemas")).encode()
    )
    log.debug("input fingerprint over %d files", n)
    return pseudo.token("build-complete", h.hexdigest(), 64)


def clear(out_dir: Path) -> None:
    """A build is starting: the folder is no longer a finished build of any fingerprint."""
    (out_dir / STAMP).unlink(missing_ok=True)


def stamp_bytes(fp: str) -> bytes:
    """``complete.json`` of a finished build of fingerprint ``fp`` ("" for a build that is never
    a no-op rerun: a corpus-root set, a build without the decode cache)."""
    return json.dumps({"format": STAMP_FORMAT, "fingerprint": fp}).encode()


def mark_complete(out_dir: Path, fp: str) -> None:
    write_atomic(out_dir / STAMP, stamp_bytes(fp))


def is_complete(out_dir: Path, fp: str) -> bool:
    """Whether ``out_dir`` holds a finished build of fingerprint ``fp`` with every output in place."""
    try:
        stamp = json.loads((out_dir / STAMP).read_text())
    except (OSError, ValueError):
        return False
    if stamp.get("format") != STAMP_FORMAT or stamp.get("fingerprint") != fp:
        return False
    if not all((out_dir / name).is_file() for name in OUTPUTS):
        return False
    try:
        shards = pq.read_table(out_dir / SHARDS, columns=["shard", "n_bytes"]).to_pylist()
    except (OSError, ValueError):
        return False
    for s in shards:  # a shard deleted or cut short: the normal path rewrites it
        p = out_dir / SHARDS_DIR / s["shard"]
        if not p.is_file() or p.stat().st_size != s["n_bytes"]:
            return False
    return True
