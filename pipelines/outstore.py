"""A build's output in object storage: ``medcorpus build INPUT --out s3://bucket/corpus``.

The build itself runs in a local (or shared POSIX) work folder, exactly as a local build: the
blob store, the decode and embedding caches, spill files, manifest fragments and the parts of
``inputs.parquet`` stay there (``--work-dir``, default ``$MEDCORPUS_WORK_ROOT/builds/out-<hash
of the URL>``). What differs is where the corpus files end up:

* **Shards, from the workers.** Each shard writer writes its tar and per-shard stats JSON in the
  work folder as before, then uploads both under ``URL/shards/<split>/`` and deletes its local
  tar (:meth:`OutputStore.put_shard`). The driver never sees shard bytes.
* **Manifests, from the driver** (it writes them anyway): ``manifest.parquet``, ``shards.parquet``,
  ``quarantine.parquet``, ``inputs.parquet``, ``dedup.parquet``, ``sizes.json``, ``stats.json``,
  ``build.json``, the data card and ``run.json``, plus a corpus-root set's index files
  (:meth:`OutputStore.put_outputs`). Objects of an earlier plan's shards are deleted.
* **``complete.json`` last.** A build deletes ``URL/complete.json`` before it writes anything
  there and writes it as the last object: a reader that finds it sees a finished build whose
  objects are byte for byte those of a local build of the same input and config.

Resume: a shard whose local tar is gone (uploaded) is finished when ``URL/shards/...json`` has
the shard's fingerprint and the tar object has the recorded size; it is not rewritten. A no-op
rerun compares ``complete.json`` and the listed object sizes and runs nothing.

Credentials come from each process's environment (fsspec's drivers); nothing here writes them.
One work folder per output URL: two builds writing one URL from two work folders are not locked
against each other (the default work folder is derived from the URL, so one machine's builds are).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines import storage
from schemas.contract import SHARDS_DIR

WORK_ROOT_ENV = "MEDCORPUS_WORK_ROOT"
STAMP = "complete.json"
#: work-folder entries that never go to the store (build-time sidecars, the lock, the stamp)
LOCAL_ONLY = ("cache", "blobs", "manifest-parts", "inputs-parts", ".lock", STAMP)

_FS: dict[tuple[int, str, str], object] = {}


def default_work_dir(url: str) -> Path:
    """``$MEDCORPUS_WORK_ROOT/builds/out-<hash of url>``: one local work folder per output URL."""
    from pipelines.errors import UserError

    root = os.environ.get(WORK_ROOT_ENV, "")
    if not root:
        raise UserError(f"an output URL needs --work-dir or ${WORK_ROOT_ENV} (the build's local work folder)")
    return Path(root) / "builds" / ("out-" + hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16])


_CLIENT_ENV = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "FSSPEC_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
)


def _fs(url: str):
    """The file system of ``url``, one per process (fsspec's async clients are not fork-safe) and
    per store endpoint and identity in the environment (a changed environment gets a new client)."""
    env = hashlib.sha256("\0".join(os.environ.get(k, "") for k in _CLIENT_ENV).encode()).hexdigest()
    key = (os.getpid(), url.split("://", 1)[0], env)
    if key not in _FS:
        _FS[key] = storage.filesystem(url)
    return _FS[key]


@dataclass(frozen=True)
class OutputStore:
    """The output URL of a build (pickles as the URL: workers open their own client)."""

    url: str

    def path(self, rel: str) -> str:
        return storage.join(self.url, rel)

    def size(self, rel: str) -> int | None:
        """Size of ``URL/rel``, or None if there is no such object."""
        try:
            return int(_fs(self.url).info(self.path(rel), refresh=True)["size"])
        except FileNotFoundError:
            return None

    def read(self, rel: str) -> bytes | None:
        try:
            return _fs(self.url).cat_file(self.path(rel))
        except FileNotFoundError:
            return None

    def put(self, local: Path, rel: str) -> None:
        _fs(self.url).put_file(str(local), self.path(rel))

    def finished_shard(self, name: str, fp: str, stats_path: Path) -> dict:
        """The stats of shard ``name`` if the store holds it finished with fingerprint ``fp`` (its
        stats object names ``fp`` and the tar object has the recorded size; the stats are copied
        into the work folder for the data card); else ``{}``."""
        raw = self.read(f"{SHARDS_DIR}/{Path(name).with_suffix('.json').as_posix()}")
        try:
            done = json.loads(raw) if raw is not None else {}
        except ValueError:
            return {}
        if done.get("fingerprint") != fp or self.size(f"{SHARDS_DIR}/{name}") != done.get("n_bytes"):
            return {}
        if not stats_path.is_file() or stats_path.read_bytes() != raw:
            from schemas.atomic import write_atomic

            write_atomic(stats_path, raw)
        return done

    def put_shard(self, name: str, tar_path: Path, stats_path: Path) -> None:
        """Upload a shard written in the work folder (tar, then its stats: the resume marker), then
        delete the local tar. Nothing to do when the tar was uploaded before."""
        if not tar_path.exists():
            return
        self.put(tar_path, f"{SHARDS_DIR}/{name}")
        self.put(stats_path, f"{SHARDS_DIR}/{Path(name).with_suffix('.json').as_posix()}")
        tar_path.unlink()

    def begin(self) -> None:
        """A build is starting: the URL no longer holds a finished build (the stamp goes first)."""
        fs = _fs(self.url)
        if fs.exists(self.path(STAMP)):
            fs.rm_file(self.path(STAMP))

    def put_outputs(self, work: Path, shard_names: set[str]) -> int:
        """Upload what the driver wrote in ``work`` (manifests, sizes.json, stats, build.json, data
        card, run.json, index files; not the sidecars, not the shards: workers uploaded them),
        then delete shard objects under ``URL/shards/`` that this build's plan does not have.
        Returns the number of stale objects deleted."""
        for p in sorted(work.rglob("*")):
            rel = p.relative_to(work)
            if not p.is_file() or rel.parts[0] in LOCAL_ONLY or rel.parts[0].startswith("medcorpus-spill-"):
                continue
            if ".tmp-" in p.name or (rel.parts[0] == SHARDS_DIR and p.name != "sizes.json"):
                continue
            self.put(p, rel.as_posix())
        keep = {f"{SHARDS_DIR}/{n}" for n in shard_names}
        keep |= {Path(k).with_suffix(".json").as_posix() for k in keep}
        keep |= {f"{SHARDS_DIR}/{Path(n).parent.as_posix()}/sizes.json" for n in shard_names}
        fs, base = _fs(self.url), self.path("")
        prefix = base.split("://", 1)[-1].rstrip("/") + "/"
        stale = [
            o
            for o in _find(fs, self.path(SHARDS_DIR))
            if o.split("://", 1)[-1].removeprefix(prefix) not in keep
        ]
        for o in stale:
            fs.rm_file(o)
        return len(stale)

    def finish(self, stamp: bytes) -> None:
        """Write ``complete.json``: the last object of a build."""
        _fs(self.url).pipe_file(self.path(STAMP), stamp)

    def is_complete(self, fp: str, work: Path) -> bool:
        """Whether the URL holds a finished build of fingerprint ``fp``: the stamp names it, every
        output and every shard (with its size) is there, and the work folder has the manifests."""
        import pyarrow.parquet as pq

        from pipelines.manifest import SHARDS
        from pipelines.uptodate import OUTPUTS

        try:
            shards = pq.read_table(work / SHARDS, columns=["shard", "n_bytes"]).to_pylist()
        except (OSError, ValueError):
            return False
        shard_sizes = {s["shard"]: s["n_bytes"] for s in shards}
        raw = self.read(STAMP)
        try:
            stamp = json.loads(raw) if raw is not None else {}
        except ValueError:
            return False
        if not fp or stamp.get("fingerprint") != fp:
            return False
        fs, base = _fs(self.url), self.url.split("://", 1)[-1].rstrip("/") + "/"
        have = {
            k.split("://", 1)[-1].removeprefix(base): int(v["size"])
            for k, v in fs.find(self.url, detail=True).items()
        }
        if not all(name in have and (work / name).is_file() for name in OUTPUTS):
            return False
        return all(have.get(f"{SHARDS_DIR}/{n}") == size for n, size in shard_sizes.items())


def _find(fs, path: str) -> list[str]:
    try:
        return sorted(fs.find(path))
    except FileNotFoundError:
        return []
