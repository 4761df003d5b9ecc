"""Plan shards (deterministically) and write them (in parallel, resumable).

Plan: per split, samples sorted by key, packed greedily until ``max_samples`` or ``max_bytes``
(tar bytes, headers and padding included). Each shard's fingerprint hashes its name, keys and
member digests. Write: a shard whose tar and per-shard stats JSON exist with the same
fingerprint and sha256 is skipped (resume); others are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import ShardConfig
from pipelines.samples import BuiltSample
from pipelines.writer import TarShardWriter, sha256_file, tar_member_size, write_atomic
from schemas.contract import SHARDS_DIR, SPLITS, shard_name

log = logging.getLogger(__name__)

TAR_END = 10240  # two zero blocks + record padding, upper bound


@dataclass(frozen=True)
class ShardTask:
    """One shard to write: its relative name and its samples in order."""

    out_dir: str
    name: str
    split: str
    samples: tuple[BuiltSample, ...]

    def fingerprint(self) -> str:
        h = hashlib.sha256(self.name.encode())
        for s in self.samples:
            h.update(s.key.encode())
            for m, d in zip(s.members, s.member_sha256(), strict=True):
                h.update(f"{m}:{d}".encode())
        return h.hexdigest()

    @property
    def tar_path(self) -> Path:
        return Path(self.out_dir) / SHARDS_DIR / self.name

    @property
    def stats_path(self) -> Path:
        return self.tar_path.with_suffix(".json")


@dataclass(frozen=True)
class ShardResult:
    name: str
    split: str
    n_samples: int
    n_bytes: int
    sha256: str
    skipped: bool


def sample_tar_bytes(sample: BuiltSample) -> int:
    return sum(tar_member_size(len(d)) for d in sample.members.values())


def plan_shards(samples: list[BuiltSample], cfg: ShardConfig, out_dir: Path) -> list[ShardTask]:
    """Deterministic shard plan over all splits."""
    tasks: list[ShardTask] = []
    for split in SPLITS:
        todo = sorted((s for s in samples if s.split == split), key=lambda s: s.key)
        current: list[BuiltSample] = []
        size = TAR_END
        for s in todo:
            b = sample_tar_bytes(s)
            if current and (len(current) >= cfg.max_samples or size + b > cfg.max_bytes):
                tasks.append(
                    ShardTask(
                        str(out_dir),
                        shard_name(split, len([t for t in tasks if t.split == split])),
                        split,
                        tuple(current),
                    )
                )
                current, size = [], TAR_END
            current.append(s)
            size += b
        if current:
            idx = len([t for t in tasks if t.split == split])
            tasks.append(ShardTask(str(out_dir), shard_name(split, idx), split, tuple(current)))
    return tasks


def shard_stats(task: ShardTask) -> dict:
    """Per-shard statistics written next to the tar (also the resume marker)."""
    mods: Counter[str] = Counter()
    for s in task.samples:
        for rec in s.group.records:
            mods[rec.modality.value] += 1
    return {
        "shard": task.name,
        "split": task.split,
        "fingerprint": task.fingerprint(),
        "n_samples": len(task.samples),
        "items_per_modality": dict(sorted(mods.items())),
        "payload_bytes": sum(s.n_bytes for s in task.samples),
    }


def write_shard(task: ShardTask) -> ShardResult:
    """Write one shard unless an identical one is already complete (resume)."""
    fp = task.fingerprint()
    if task.tar_path.exists() and task.stats_path.exists():
        try:
            done = json.loads(task.stats_path.read_text())
        except (OSError, json.JSONDecodeError):
            done = {}
        if done.get("fingerprint") == fp and done.get("sha256") == sha256_file(task.tar_path):
            return ShardResult(
                task.name, task.split, len(task.samples), task.tar_path.stat().st_size, done["sha256"], True
            )
    task.stats_path.unlink(missing_ok=True)  # stats are the completion marker: remove before rewriting
    with TarShardWriter(task.tar_path) as w:
        for s in task.samples:
            w.write(s.key, s.members)
    sha = sha256_file(task.tar_path)
    stats = shard_stats(task) | {"sha256": sha, "n_bytes": task.tar_path.stat().st_size}
    write_atomic(task.stats_path, json.dumps(stats, sort_keys=True, indent=1).encode())
    return ShardResult(task.name, task.split, len(task.samples), stats["n_bytes"], sha, False)


def remove_stale(out_dir: Path, tasks: list[ShardTask]) -> int:
    """Delete temp files and shards of an earlier plan that are not in this one."""
    keep = {t.tar_path for t in tasks} | {t.stats_path for t in tasks}
    removed = 0
    root = out_dir / SHARDS_DIR
    if not root.exists():
        return 0
    for p in root.rglob("*"):
        if p.is_file() and (
            ".tmp-" in p.name or (p.suffix in (".tar", ".json") and p.name != "sizes.json" and p not in keep)
        ):
            p.unlink()
            removed += 1
    return removed


def write_sizes(out_dir: Path, results: list[ShardResult]) -> None:
    """``sizes.json`` per split folder: shard file name → sample count (open_clip convention)."""
    for split in SPLITS:
        sizes = {Path(r.name).name: r.n_samples for r in results if r.split == split}
        path = out_dir / SHARDS_DIR / split / "sizes.json"
        if sizes:
            write_atomic(path, json.dumps(sizes, sort_keys=True, indent=1).encode())
        elif path.exists():
            path.unlink()
