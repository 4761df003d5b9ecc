"""Validate a finished build: re-hash every shard and sample, check the contract and accounting.

Checks: shard sha256 vs the shard manifest; each tar's members vs the sample manifest (names,
order, per-member sha256); ``sizes.json`` vs the manifest; keys legal and unique; no patient
in two splits; every input unit accounted for exactly once (written, quarantined or
deduplicated), per modality equal to ``stats.json``.

The build may be a folder or an output URL (``medcorpus build --out s3://...``): then its
objects are read through fsspec, and ``complete.json`` must be there (the build's last object).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from pipelines import storage
from pipelines.dedup import DEDUP
from pipelines.manifest import BUILD, INPUTS, MANIFEST, QUARANTINE, SHARDS, STATS
from schemas.contract import SHARDS_DIR, SIZES_FILE, SPLITS, is_valid_key


@dataclass
class ValidationReport:
    errors: list[str] = field(default_factory=list)
    n_shards: int = 0
    n_samples: int = 0
    n_units: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


class _Tree:
    """A build's files by relative name: under a folder, or under a storage URL."""

    def __init__(self, root) -> None:
        self.url = storage.join(root) if storage.is_url(root) else ""
        self.root = Path(root)
        self._fs = storage.filesystem(self.url) if self.url else None

    def __truediv__(self, rel: str):
        return storage.join(self.url, rel) if self.url else self.root / rel

    def exists(self, rel: str) -> bool:
        return self._fs.exists(self / rel) if self._fs is not None else (self.root / rel).exists()

    def open(self, rel: str):
        return self._fs.open(self / rel, "rb") if self._fs is not None else open(self.root / rel, "rb")

    def read_text(self, rel: str) -> str:
        with self.open(rel) as f:
            return f.read().decode()


def _read(tree: _Tree, rel: str) -> list[dict]:
    with tree.open(rel) as f:
        return pq.read_table(f).to_pylist()


def _sha256(f, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    while block := f.read(chunk):
        h.update(block)
    return h.hexdigest()


def validate_build(out_dir) -> ValidationReport:
    """Check a finished build folder or output URL (see the module docstring); errors are PHI-free lines."""
    out_dir = _Tree(out_dir)
    rep = ValidationReport()
    names = (BUILD, STATS, MANIFEST, SHARDS, QUARANTINE, INPUTS) + (("complete.json",) if out_dir.url else ())
    for name in names:
        if not out_dir.exists(name):
            rep.errors.append(f"missing {name}: the build did not finish (rerun it to resume)")
    if rep.errors:
        return rep
    samples = _read(out_dir, MANIFEST)
    shards = _read(out_dir, SHARDS)
    quarantine = _read(out_dir, QUARANTINE)
    inputs = _read(out_dir, INPUTS)
    stats = json.loads(out_dir.read_text(STATS))
    rep.n_shards, rep.n_samples, rep.n_units = len(shards), len(samples), len(inputs)
    rep.errors += _check_shards(out_dir, samples, shards)
    rep.errors += _check_sizes(out_dir, shards)
    rep.errors += _check_keys_and_splits(samples)
    rep.errors += _check_accounting(out_dir, samples, quarantine, inputs, stats)
    return rep


def _check_shards(out_dir: _Tree, samples: list[dict], shards: list[dict]) -> list[str]:
    """Each shard file against its sha256 and sample count, and its tar members (names, order,
    per-member sha256) against the sample manifest."""
    errors: list[str] = []
    by_shard: dict[str, list[dict]] = defaultdict(list)
    for s in samples:
        by_shard[s["shard"]].append(s)
    for sh in shards:
        rel = f"{SHARDS_DIR}/{sh['shard']}"
        if not out_dir.exists(rel):
            errors.append(f"{sh['shard']}: shard file missing")
            continue
        with out_dir.open(rel) as f:
            sha = _sha256(f)
        if sha != sh["sha256"]:
            errors.append(f"{sh['shard']}: sha256 mismatch")
        expected = sorted(by_shard.get(sh["shard"], []), key=lambda s: s["index_in_shard"])
        if len(expected) != sh["n_samples"]:
            errors.append(
                f"{sh['shard']}: manifest lists {len(expected)} samples, shard record {sh['n_samples']}"
            )
        want = [
            (s["key"], m, d) for s in expected for m, d in zip(s["members"], s["member_sha256"], strict=True)
        ]
        got = []
        with out_dir.open(rel) as f, tarfile.open(fileobj=f) as tar:
            for info in tar:
                key, _, member = info.name.partition(".")
                data = tar.extractfile(info).read() if info.isfile() else b""
                got.append((key, member, hashlib.sha256(data).hexdigest()))
        if got != want:
            errors.append(f"{sh['shard']}: tar members differ from the manifest")
    return errors


def _check_sizes(out_dir: _Tree, shards: list[dict]) -> list[str]:
    """Each split's ``sizes.json`` against the shard manifest."""
    errors: list[str] = []
    for split in SPLITS:
        sizes_rel = f"{SHARDS_DIR}/{split}/{SIZES_FILE}"
        want_sizes = {Path(sh["shard"]).name: sh["n_samples"] for sh in shards if sh["split"] == split}
        have = json.loads(out_dir.read_text(sizes_rel)) if out_dir.exists(sizes_rel) else {}
        if have != want_sizes:
            errors.append(f"{split}/{SIZES_FILE} disagrees with the shard manifest")
    return errors


def _check_keys_and_splits(samples: list[dict]) -> list[str]:
    """Sample keys unique and legal; no patient in two splits."""
    errors: list[str] = []
    keys = [s["key"] for s in samples]
    if len(set(keys)) != len(keys):
        errors.append("duplicate sample keys")
    bad = [k for k in keys if not is_valid_key(k)]
    if bad:
        errors.append(f"{len(bad)} illegal sample keys (dots or other characters)")
    splits_of: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        if s["patient"]:
            splits_of[s["patient"]].add(s["split"])
    leaking = [p for p, sp in splits_of.items() if len(sp) > 1]
    if leaking:
        errors.append(f"{len(leaking)} patients appear in more than one split")
    return errors


def _check_accounting(
    out_dir: _Tree, samples: list[dict], quarantine: list[dict], inputs: list[dict], stats: dict
) -> list[str]:
    """Every input unit written, quarantined or deduplicated exactly once, no unknown source id,
    every discovered file accounted for, and per modality equal to ``stats.json``."""
    errors: list[str] = []
    written = Counter(sid for s in samples for sid in s["source_ids"])
    quarantined = Counter(q["source_id"] for q in quarantine)
    dedup_rows = _read(out_dir, DEDUP) if out_dir.exists(DEDUP) else []
    deduplicated: Counter = Counter(
        sid for d in dedup_rows if d["verdict"] == "duplicate" for sid in d["source_ids"]
    )
    unit_mod = {u["source_id"]: u["modality"] for u in inputs}
    per: dict[str, Counter] = defaultdict(Counter)
    for uid, mod in unit_mod.items():
        n = written[uid] + quarantined[uid] + deduplicated[uid]
        if n != 1:
            errors.append(f"input unit {uid}: accounted {n} times (must be exactly once)")
        per[mod]["inputs"] += 1
        per[mod]["written"] += written[uid] > 0
        per[mod]["quarantined"] += quarantined[uid] > 0
        per[mod]["deduplicated"] += deduplicated[uid] > 0
    extra = (set(written) | set(quarantined) | set(deduplicated)) - set(unit_mod)
    if extra:
        errors.append(f"{len(extra)} source ids in outputs that are not input units")
    n_files = len({u["file_id"] for u in inputs})
    if n_files != stats.get("n_files"):
        errors.append(f"{stats.get('n_files')} files discovered but {n_files} accounted for")
    for mod, c in per.items():
        if c["inputs"] != c["written"] + c["quarantined"] + c["deduplicated"]:
            errors.append(f"{mod}: inputs != written + quarantined + deduplicated")
        recorded = stats.get("per_modality", {}).get(mod, {})
        if {k: recorded.get(k) for k in c} != dict(c) or recorded.get("inputs") != c["inputs"]:
            errors.append(f"{mod}: stats.json accounting differs from the manifests")
    return errors
