"""Tiered, patient-aware deduplication. Verdicts are attributes; inputs are never deleted.

Tiers, per modality:
1. exact: equal hash of the *decoded* content (``content_sha256``; for reports the hash of the
   case/whitespace/placeholder-normalised text), so a re-encoded image or one with a new
   header is the same image;
2. near: embeddings (``workers.embed``) hashed with random-hyperplane LSH (``workers.lsh``),
   candidates verified by exact cosine >= the modality's threshold, clustered with union-find.
3. policy per cluster: members of one patient (and within ``same_patient_window_days`` of the
   representative, if set) are duplicates: the representative (earliest, then smallest record
   id) is kept, the others are removed as ``deduplicated``. A report cluster spanning several
   patients is a *template* (e.g. "no acute cardiopulmonary process"): flagged, kept. An
   image/ECG/volume cluster spanning several patients is a probable data error: every member
   is quarantined with ``conflicting_patient``.

The verdict of every clustered record is written to ``dedup.parquet`` (cluster_id, record_id,
modality, patient, kept, verdict, tier, cosine). Embeddings are cached as sidecars keyed by
content hash and embedder, so a changed threshold re-mixes without re-embedding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines.config import DedupConfig
from pipelines.link import SampleGroup
from schemas.modality import SAMPLE_MODALITIES, Modality
from schemas.reasons import ReasonCode
from schemas.records import ItemRecord, QuarantineRecord
from workers.embed import embedder_fingerprint, make_embedder, normalise_report_text
from workers.lsh import LshConfig, clusters, near_duplicate_pairs

log = logging.getLogger(__name__)

DEDUP = "dedup.parquet"
EMBED_BATCH = 64

DEDUP_SCHEMA = pa.schema(
    [
        pa.field("cluster_id", pa.string(), nullable=False),
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("patient", pa.string(), nullable=False),
        pa.field("kept", pa.bool_(), nullable=False),
        pa.field("verdict", pa.string(), nullable=False),  # representative|duplicate|template|conflict
        pa.field("tier", pa.string(), nullable=False),  # exact|near
        pa.field("cosine", pa.float32(), nullable=False),
        pa.field("source_ids", pa.list_(pa.string()), nullable=False),
    ]
)


@dataclass(frozen=True)
class EmbedTask:
    """A deterministic batch of records of one modality to embed (sorted by content key)."""

    modality: Modality
    records: tuple[ItemRecord, ...]
    checkpoint: str
    cache_dir: str


def _content_key(rec: ItemRecord) -> str:
    if rec.modality is Modality.REPORT:
        return hashlib.sha256(normalise_report_text(rec.text).encode()).hexdigest()
    return rec.content_sha256


_EMBEDDERS: dict = {}


def embed_batch(task: EmbedTask) -> np.ndarray:
    """Embed a batch (sidecar-cached per content key). Runs in any runner's worker."""
    fp = hashlib.sha256(embedder_fingerprint(task.modality, task.checkpoint).encode()).hexdigest()[:16]
    cache = Path(task.cache_dir) / "embed" / fp if task.cache_dir else None
    keys = [_content_key(r) for r in task.records]
    out: list[np.ndarray | None] = [None] * len(keys)
    if cache is not None:
        for i, k in enumerate(keys):
            p = cache / f"{k}.npy"
            if p.exists():
                out[i] = np.load(p)
    todo = [i for i, v in enumerate(out) if v is None]
    if todo:
        ek = (task.modality, task.checkpoint)
        if ek not in _EMBEDDERS:
            _EMBEDDERS[ek] = make_embedder(task.modality, task.checkpoint)
        emb = _EMBEDDERS[ek]([task.records[i] for i in todo])
        for i, v in zip(todo, emb, strict=True):
            v = v.astype(np.float16).astype(np.float32)  # rounding: stable verdicts across BLAS builds
            out[i] = v
            if cache is not None:
                cache.mkdir(parents=True, exist_ok=True)
                tmp = cache / f"{keys[i]}.npy.tmp-{os.getpid()}"
                with open(tmp, "wb") as f:
                    np.save(f, v)
                os.replace(tmp, cache / f"{keys[i]}.npy")
    return np.stack(out) if out else np.zeros((0, 1), np.float32)


@dataclass
class DedupResult:
    groups: list[SampleGroup]
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    deduplicated_ids: list[str] = field(default_factory=list)
    table: pa.Table | None = None
    counts: dict = field(default_factory=dict)


def _t(rec: ItemRecord) -> datetime | None:
    try:
        return datetime.fromisoformat(rec.acquired_at) if rec.acquired_at else None
    except ValueError:
        return None


def run_dedup(groups: list[SampleGroup], cfg: DedupConfig, runner, cache_dir: str) -> DedupResult:
    """Apply the three tiers to the records of ``groups``; return groups without duplicates."""
    if not cfg.enabled:
        return DedupResult(groups=groups, counts={"enabled": False})
    patient_of = {r.record_id: g.patient for g in groups for r in g.records}
    by_mod: dict[Modality, list[ItemRecord]] = {m: [] for m in SAMPLE_MODALITIES}
    for g in groups:
        for r in g.records:
            by_mod[r.modality].append(r)
    rows: list[dict] = []
    verdict: dict[str, str] = {}
    counts: dict = {"enabled": True}
    for mod, recs in by_mod.items():
        if len(recs) < 2:
            continue
        recs.sort(key=lambda r: r.record_id)
        # tier 1: exact content → one representative row per unique content
        keys = [_content_key(r) for r in recs]
        key_count = Counter(keys)
        uniq = sorted(key_count)
        index_of = {k: i for i, k in enumerate(uniq)}
        first_rec = {}
        for r, k in zip(recs, keys, strict=True):
            first_rec.setdefault(k, r)
        # tier 2: embeddings of unique contents, LSH near-duplicates
        reps = [first_rec[k] for k in uniq]
        checkpoint = getattr(cfg, f"{mod.value}_checkpoint", "") if mod is not Modality.REPORT else ""
        tasks = [
            EmbedTask(mod, tuple(reps[s : s + EMBED_BATCH]), checkpoint, cache_dir)
            for s in range(0, len(reps), EMBED_BATCH)
        ]
        emb = np.concatenate(runner.map(embed_batch, tasks, f"embed-{mod.value}"))
        thr = getattr(cfg, f"{mod.value}_threshold")
        pairs, cos = near_duplicate_pairs(emb, LshConfig(threshold=thr))
        labels_u = clusters(len(uniq), pairs)
        best_cos: dict[int, float] = {}
        for (i, j), c in zip(pairs.tolist(), cos.tolist(), strict=True):
            best_cos[i] = max(best_cos.get(i, 0.0), c)
            best_cos[j] = max(best_cos.get(j, 0.0), c)
        members: dict[int, list[ItemRecord]] = {}
        for r, k in zip(recs, keys, strict=True):
            members.setdefault(int(labels_u[index_of[k]]), []).append(r)
        n_dup = n_tpl = n_conf = 0
        for lab in sorted(members, key=lambda lab: min(r.record_id for r in members[lab])):
            ms = members[lab]
            if len(ms) < 2:
                continue
            ms.sort(key=lambda r: (r.acquired_at or "9999", r.record_id))
            cluster_id = hashlib.sha256("|".join(sorted(r.record_id for r in ms)).encode()).hexdigest()[:16]
            tier = "exact" if len({_content_key(r) for r in ms}) == 1 else "near"
            patients = {patient_of[r.record_id] for r in ms}
            named = {p for p in patients if p}
            cross = len(named) > 1
            for_patient: dict[str, ItemRecord] = {}
            for r in ms:
                p = patient_of[r.record_id]
                k = _content_key(r)
                c = 1.0 if key_count[k] > 1 else best_cos.get(index_of[k], 1.0)
                if cross and mod is not Modality.REPORT:
                    v = "conflict"
                elif p not in for_patient:
                    for_patient[p] = r
                    v = "template" if cross else "representative"
                else:
                    rep = for_patient[p]
                    window = cfg.same_patient_window_days
                    t0, t1 = _t(rep), _t(r)
                    within = window <= 0 or (
                        t0 is not None and t1 is not None and abs((t1 - t0).days) <= window
                    )
                    v = "duplicate" if within else ("template" if cross else "representative")
                    if not within:
                        for_patient[p] = r
                verdict[r.record_id] = v
                rows.append(
                    {
                        "cluster_id": cluster_id,
                        "record_id": r.record_id,
                        "modality": mod.value,
                        "patient": p,
                        "kept": v in ("representative", "template"),
                        "verdict": v,
                        "tier": tier,
                        "cosine": float(c),
                        "source_ids": list(r.source_ids),
                    }
                )
                n_dup += v == "duplicate"
                n_tpl += v == "template"
                n_conf += v == "conflict"
        counts[mod.value] = {
            "duplicates": n_dup,
            "templates": n_tpl,
            "conflicts": n_conf,
            "unique_contents": len(uniq),
        }
    # apply verdicts
    quarantined: list[QuarantineRecord] = []
    dedup_ids: list[str] = []
    new_groups: list[SampleGroup] = []
    for g in groups:
        keep = []
        for r in g.records:
            v = verdict.get(r.record_id)
            if v == "duplicate":
                dedup_ids.extend(r.source_ids)
            elif v == "conflict":
                quarantined.extend(
                    QuarantineRecord(
                        sid,
                        r.source_name,
                        r.modality,
                        "dedup",
                        ReasonCode.CONFLICTING_PATIENT,
                        "the same content appears under different patients (probable data error)",
                    )
                    for sid in r.source_ids
                )
            else:
                if v is not None:
                    meta = json.loads(r.meta_json) if r.meta_json else {}
                    meta["dedup"] = {"verdict": v}
                    r = replace(r, meta_json=json.dumps(meta, sort_keys=True, separators=(",", ":")))
                keep.append(r)
        if keep:
            new_groups.append(replace(g, records=tuple(keep)))
    rows.sort(key=lambda d: (d["modality"], d["cluster_id"], d["record_id"]))
    table = pa.Table.from_pylist(rows, schema=DEDUP_SCHEMA)
    return DedupResult(new_groups, quarantined, sorted(dedup_ids), table, counts)
