"""Plan shards (deterministically, from small rows) and write them in workers (resumable).

Plan: per split, samples sorted by key, packed greedily until ``max_samples`` or ``max_bytes``
(tar bytes, headers and padding included). The plan is computed in one worker from
``(split, key, tar bytes)`` rows, about 100 bytes per sample: 100 MB at 10^6 samples. That is
the one place a process sees every sample, and it sees only keys and sizes; the payloads are
read from the blob store by the shard writers.

Write: each shard is written by one worker from its samples' headers (``SampleHeader``): the
members are read from the blob store, the tar is written atomically, then its per-shard stats
JSON (the resume marker, with the data card's per-shard statistics) and its manifest fragment.
A shard whose tar and stats exist with the same fingerprint (name, keys and member digests,
known from the headers alone) and size is skipped without reading a blob.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipelines.blobs import BlobStore
from pipelines.config import ShardConfig
from pipelines.datacard import CARD_STATS_KEY, is_card_member, shard_card_stats
from pipelines.writer import TarShardWriter, tar_member_size
from schemas.atomic import write_atomic
from schemas.contract import SHARDS_DIR, SPLITS, shard_name
from schemas.records import SampleRecord

log = logging.getLogger(__name__)

TAR_END = 10240  # two zero blocks + record padding, upper bound
FRAGMENTS_DIR = "manifest-parts"


@dataclass(frozen=True)
class SampleHeader:
    """A sample ready to shard: its members as blob references, and its manifest fields.

    ``members`` are ``(name, sha256, size)`` in sorted name order; ``units`` are the sample's
    input units as ``(source_id, modality)`` for the accounting identity.
    """

    key: str
    split: str
    members: tuple[tuple[str, str, int], ...]
    patient: str
    study: str
    modalities: tuple[str, ...]
    modality_mask: tuple[bool, ...]
    record_ids: tuple[str, ...]
    source_ids: tuple[str, ...]
    source_names: tuple[str, ...]
    licences: tuple[str, ...]
    item_modalities: tuple[str, ...]
    units: tuple[tuple[str, str], ...]

    @property
    def tar_bytes(self) -> int:
        return sum(tar_member_size(size) for _, _, size in self.members)

    def sample_sha256(self) -> str:
        h = hashlib.sha256()
        for name, sha, _ in self.members:
            h.update(name.encode() + b"\0" + bytes.fromhex(sha))
        return h.hexdigest()

    def manifest_row(self, shard: str, index: int) -> SampleRecord:
        return SampleRecord(
            key=self.key,
            split=self.split,
            shard=shard,
            index_in_shard=index,
            patient=self.patient,
            study=self.study,
            modalities=self.modalities,
            modality_mask=self.modality_mask,
            members=tuple(m for m, _, _ in self.members),
            member_sha256=tuple(s for _, s, _ in self.members),
            sample_sha256=self.sample_sha256(),
            n_bytes=sum(size for _, _, size in self.members),
            record_ids=self.record_ids,
            source_ids=self.source_ids,
            source_names=self.source_names,
            licences=self.licences,
        )


@dataclass(frozen=True)
class ShardResult:
    """What a shard writer returns to the driver: status and counts, never samples."""

    name: str
    split: str
    n_samples: int
    n_bytes: int
    sha256: str
    skipped: bool
    first_key: str
    last_key: str
    written_units: tuple[tuple[str, int], ...]  # modality → input units written
    modality_sets: tuple[tuple[str, int], ...]  # "ecg+report" → samples


def plan_rows(sample: SampleHeader) -> Iterator[tuple[str, str, int]]:
    """``flat_map``: the ``(split, key, tar bytes)`` row the planner needs of a sample."""
    yield sample.split, sample.key, sample.tar_bytes


@dataclass(frozen=True)
class PlanShards:
    """``gather``: rows sorted by (split, key) → ``{key: shard name}`` (greedy, deterministic)."""

    cfg: ShardConfig

    def __call__(self, rows: list[tuple[str, str, int]]) -> dict[str, str]:
        plan: dict[str, str] = {}
        for split in SPLITS:
            idx, n, size = 0, 0, TAR_END
            for s, key, b in rows:
                if s != split:
                    continue
                if n and (n >= self.cfg.max_samples or size + b > self.cfg.max_bytes):
                    idx, n, size = idx + 1, 0, TAR_END
                plan[key] = shard_name(split, idx)
                n += 1
                size += b
        return plan


def assign_shard(sample: SampleHeader, plan: dict[str, str]) -> Iterator[tuple[str, SampleHeader]]:
    """``flat_map_with``: ``(shard name, sample)`` for the shard-writing GroupByKey."""
    yield plan[sample.key], sample


def shard_of(element: tuple[str, SampleHeader]) -> str:
    return element[0]


def key_of(element: tuple[str, SampleHeader]) -> str:
    return element[1].key


def fingerprint(name: str, samples: list[SampleHeader]) -> str:
    h = hashlib.sha256(name.encode())
    for s in samples:
        h.update(s.key.encode())
        for m, d, _ in s.members:
            h.update(f"{m}:{d}".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class WriteShard:
    """``group`` on shard name: write one shard (unless complete) and its manifest fragment.

    ``out_url``: the build's output URL (``pipelines.outstore``): the worker uploads the shard
    and its stats there right after writing them, and deletes its local tar."""

    out_dir: str
    blob_root: str
    out_url: str = ""

    def __call__(self, name: str, elements: list[tuple[str, SampleHeader]]) -> Iterator[ShardResult]:
        samples = [s for _, s in elements]  # sorted by key (the group's order)
        tar_path = Path(self.out_dir) / SHARDS_DIR / name
        stats_path = tar_path.with_suffix(".json")
        fp = fingerprint(name, samples)
        remote = None
        if self.out_url:
            from pipelines.outstore import OutputStore

            remote = OutputStore(self.out_url)
        done = _finished(name, tar_path, stats_path, fp, remote)
        skipped = bool(done)
        if not skipped:
            done = self._write(name, samples, tar_path, stats_path, fp)
        if remote is not None:
            remote.put_shard(name, tar_path, stats_path)
        _write_fragment(Path(self.out_dir), name, samples)
        written = Counter(m for s in samples for _, m in s.units)
        sets = Counter("+".join(s.modalities) for s in samples)
        yield ShardResult(
            name,
            samples[0].split,
            len(samples),
            done["n_bytes"],
            done["sha256"],
            skipped,
            samples[0].key,
            samples[-1].key,
            tuple(sorted(written.items())),
            tuple(sorted(sets.items())),
        )

    def _write(
        self, name: str, samples: list[SampleHeader], tar_path: Path, stats_path: Path, fp: str
    ) -> dict:
        """Write the tar (atomically), then its stats JSON: the completion marker. Returns the stats."""
        stats_path.unlink(missing_ok=True)  # the stats are the completion marker
        store = BlobStore(self.blob_root)
        card_input = []
        with TarShardWriter(tar_path) as w:
            for s in samples:
                members = {m: store.get(sha) for m, sha, _ in s.members}
                w.write(s.key, members)
                card_input.append((s.key, {m: b for m, b in members.items() if is_card_member(m)}))
        mods = Counter(m for s in samples for m in s.item_modalities)
        done = {
            "shard": name,
            "split": samples[0].split,
            "fingerprint": fp,
            "n_samples": len(samples),
            "items_per_modality": dict(sorted(mods.items())),
            "payload_bytes": sum(size for s in samples for _, _, size in s.members),
            "sha256": w.sha256,  # hashed while writing: the tar is not read back
            "n_bytes": tar_path.stat().st_size,
        }
        done[CARD_STATS_KEY] = shard_card_stats(card_input)  # the data card reads these, not the tar
        write_atomic(stats_path, json.dumps(done, sort_keys=True, indent=1).encode())
        return done


def _finished(name: str, tar_path: Path, stats_path: Path, fp: str, remote) -> dict:
    """The stats of a finished shard with fingerprint ``fp`` (its tar in the work folder with the
    recorded size, or, for an output URL, uploaded before); ``{}`` when it must be written."""
    if tar_path.exists():
        done = _read_stats(stats_path)
        ok = done.get("fingerprint") == fp and done.get("n_bytes") == tar_path.stat().st_size
        return done if ok else {}
    return remote.finished_shard(name, fp, stats_path) if remote is not None else {}


def _read_stats(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def fragment_path(out_dir: Path, name: str) -> Path:
    return out_dir / FRAGMENTS_DIR / Path(name).with_suffix(".parquet")


def _write_fragment(out_dir: Path, name: str, samples: list[SampleHeader]) -> None:
    from pipelines.manifest import table_bytes
    from schemas.arrow import to_table

    rows = [s.manifest_row(name, i) for i, s in enumerate(samples)]
    write_atomic(fragment_path(out_dir, name), table_bytes(to_table(rows, SampleRecord)))


def remove_stale(out_dir: Path, names: set[str]) -> int:
    """Delete temp files, shards and fragments of an earlier plan that are not in this one."""
    keep = {Path(out_dir) / SHARDS_DIR / n for n in names}
    keep |= {p.with_suffix(".json") for p in keep} | {fragment_path(out_dir, n) for n in names}
    removed = 0
    for root in (out_dir / SHARDS_DIR, out_dir / FRAGMENTS_DIR):
        if not root.exists():
            continue
        for p in root.rglob("*"):
            if p.is_file() and (
                ".tmp-" in p.name
                or (p.suffix in (".tar", ".json", ".parquet") and p.name != "sizes.json" and p not in keep)
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
