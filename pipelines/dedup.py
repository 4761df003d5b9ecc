"""Tiered, patient-aware deduplication. Verdicts are attributes; inputs are never deleted.

Tiers, per modality:
1. exact: equal hash of the *decoded* content (``content_sha256``; for reports the hash of the
   case/whitespace/placeholder-normalised text), so a re-encoded image or one with a new
   header is the same image;
2. near: embeddings (``workers.embed.embedders``) hashed with random-hyperplane LSH (``workers.embed.lsh``),
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

At scale (``declare_dedup``) every tier is a keyed stage over headers, never one process
holding the corpus: exact = GroupByKey on (modality, content hash); embeddings in batches of
64 per content-hash bucket, inside workers, the model loaded once per worker, vectors to the
blob store; LSH = GroupByKey on (modality, band, band key) carrying only (content hash, vector
reference), candidates verified by cosine in the bucket's worker; components = union-find over
the verified pairs (few: ids only) in one worker; policy = GroupByKey on cluster.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.blobs import BlobStore
from pipelines.config import DedupConfig
from pipelines.flow import Flow, Select
from pipelines.link import SampleGroup
from pipelines.rowtables import concat_sorted, value_counts
from schemas.atomic import atomic_open
from schemas.canonical import canonical_json
from schemas.modality import SAMPLE_MODALITIES, Modality
from schemas.reasons import ReasonCode
from schemas.records import ItemRecord, QuarantineRecord
from workers.embed.embedders import embedder_fingerprint, make_embedder, normalise_report_text
from workers.embed.lsh import LshConfig, auto_rows, choose_bands

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


def _content_key(rec: ItemRecord) -> str:
    if rec.modality is Modality.REPORT:
        return hashlib.sha256(normalise_report_text(rec.text).encode()).hexdigest()
    return rec.content_sha256


@dataclass(frozen=True)
class Member:
    """One clustered record, as the policy needs it (no payload)."""

    record_id: str
    patient: str  # the sample group's patient
    acquired_at: str
    source_ids: tuple[str, ...]
    study: str = ""
    #: the published version holding this record (cross-set dedup, ``pipelines.corpus_index``);
    #: ``""`` for a record of the build. A published record is never removed or quarantined.
    prior: str = ""


@dataclass(frozen=True)
class DedupItem:
    modality: str
    ckey: str
    patient: str
    record: ItemRecord


@dataclass(frozen=True)
class Unique:
    """One unique content of a modality: its representative record and every record holding it."""

    modality: str
    ckey: str
    rep: ItemRecord | None  # None: a published record from the corpus index (its vector is known)
    members: tuple[Member, ...]
    cos: float = 1.0


def dedup_items(group: SampleGroup) -> Iterator[DedupItem]:
    for r in group.records:
        if r.modality not in SAMPLE_MODALITIES:  # labs: values of one admission, not content to dedup
            continue
        yield DedupItem(r.modality.value, _content_key(r), group.patient, r)


def item_modality(it: DedupItem) -> str:
    return it.modality


def count_by_modality(mods: list[str]) -> dict[str, int]:
    return dict(Counter(mods))


def item_content(it: DedupItem) -> str:
    return f"{it.modality}/{it.ckey}"


def item_order(it: DedupItem) -> str:
    return it.record.record_id


def exact_group(key: str, items: list[DedupItem]) -> Iterator[Unique]:  # noqa: ARG001
    """Tier 1: records with equal content → one :class:`Unique` (representative: smallest id)."""
    first = items[0]
    yield Unique(
        first.modality,
        first.ckey,
        first.record,
        tuple(
            Member(i.record.record_id, i.patient, i.record.acquired_at, i.record.source_ids, i.record.study)
            for i in items
        ),
    )


def unique_modality(u: Unique) -> Iterator[str]:
    yield u.modality


def eligible(u: Unique, n_records: dict[str, int]) -> Iterator[Unique]:
    """A modality with fewer than two records has nothing to deduplicate."""
    if n_records.get(u.modality, 0) >= 2:
        yield u


def embed_bucket(u: Unique, n_unique: dict[str, int]) -> Iterator[tuple[str, Unique]]:
    """``flat_map_with``: ``ceil(n / 64)`` buckets per modality by content hash, so batches are
    deterministic whatever the runner (a model's output can depend on the batch it ran in)."""
    n_buckets = max(1, -(-n_unique[u.modality] // EMBED_BATCH))
    yield f"{u.modality}/{int(u.ckey[:12], 16) % n_buckets}", u


def bucket_key(element: tuple[str, Unique]) -> str:
    return element[0]


def bucket_order(element: tuple[str, Unique]) -> str:
    return element[1].ckey


_EMBEDDERS: dict = {}


@dataclass(frozen=True)
class EmbedBucket:
    """``group``: embed a bucket's unique contents in batches of 64 (model loaded once per worker).

    Yields ``(modality, content hash, vector blob sha)``; vectors are float16 (rounded: stable
    verdicts across BLAS builds), cached under ``cache_dir/embed/<embedder>/<content hash>.npy``.
    """

    checkpoints: tuple[tuple[str, str], ...]
    blob_root: str
    cache_dir: str

    def __call__(self, key: str, elements: list[tuple[str, Unique]]) -> Iterator[tuple[str, str, str]]:  # noqa: ARG002
        uniques = [u for _, u in elements]
        mod = Modality(uniques[0].modality)
        checkpoint = dict(self.checkpoints).get(mod.value, "")
        fp = hashlib.sha256(embedder_fingerprint(mod, checkpoint).encode()).hexdigest()[:16]
        cache = Path(self.cache_dir) / "embed" / fp if self.cache_dir else None
        store = BlobStore(self.blob_root)
        vecs: list[np.ndarray | None] = [None] * len(uniques)
        if cache is not None:
            for i, u in enumerate(uniques):
                p = cache / f"{u.ckey}.npy"
                if p.exists():
                    vecs[i] = np.load(p)
        todo = [i for i, v in enumerate(vecs) if v is None]
        from pipelines.blobs import with_payload

        for s in range(0, len(todo), EMBED_BATCH):
            idx = todo[s : s + EMBED_BATCH]
            ek = (mod, checkpoint)
            if ek not in _EMBEDDERS:
                _EMBEDDERS[ek] = make_embedder(mod, checkpoint)
            emb = _EMBEDDERS[ek]([with_payload(uniques[i].rep, store) for i in idx])
            for i, v in zip(idx, emb, strict=True):
                v = v.astype(np.float16)
                vecs[i] = v
                if cache is not None:
                    with atomic_open(cache / f"{uniques[i].ckey}.npy", durable=False, mode=0o666) as f:
                        np.save(f, v)
        for u, v in zip(uniques, vecs, strict=True):
            yield u.modality, u.ckey, store.put(np.asarray(v, dtype=np.float16).tobytes())


def _vector(store: BlobStore, sha: str) -> np.ndarray:
    return np.frombuffer(store.get(sha), dtype=np.float16).astype(np.float32)


@cache
def _planes(seed: int, d: int, n_bits: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((d, n_bits)).astype(np.float32)


@dataclass(frozen=True)
class BandKeys:
    """``flat_map_with`` (side: unique contents per modality): one LSH band key per band.

    Random-hyperplane signatures as ``workers.embed.lsh`` (same seed, same rows/bands rule for the
    modality's n), emitted as ``("mod/band/key", (content hash, vector sha))``: ids only.
    """

    thresholds: tuple[tuple[str, float], ...]
    blob_root: str

    def __call__(self, emb: tuple[str, str, str], n_unique: dict[str, int]) -> Iterator[tuple[str, tuple]]:
        mod, ckey, sha = emb
        cfg = LshConfig(threshold=dict(self.thresholds)[mod])
        rows = cfg.rows or auto_rows(n_unique[mod])
        bands = choose_bands(cfg.threshold, rows, cfg.target_recall)
        v = _vector(BlobStore(self.blob_root), sha)
        bits = (v @ _planes(cfg.seed, v.shape[0], bands * rows)) > 0
        for b in range(bands):
            code = int.from_bytes(np.packbits(bits[b * rows : (b + 1) * rows]).tobytes(), "big")
            yield f"{mod}/{b}/{code:x}", (ckey, sha)


def band_key(element: tuple[str, tuple]) -> str:
    return element[0]


def band_order(element: tuple[str, tuple]) -> str:
    return element[1][0]


@dataclass(frozen=True)
class BucketPairs:
    """``group`` on band bucket: candidate pairs verified by exact cosine → ``(mod, a, b, cos)``.

    Buckets above ``LshConfig.max_bucket`` (mass templates) are chained along a 1-D projection
    within a window, as in ``workers.embed.lsh``, to stay near-linear.
    """

    thresholds: tuple[tuple[str, float], ...]
    blob_root: str

    def __call__(self, key: str, elements: list) -> Iterator[tuple[str, str, str, float]]:
        if len(elements) < 2:
            return
        mod = key.split("/", 1)[0]
        cfg = LshConfig(threshold=dict(self.thresholds)[mod])
        store = BlobStore(self.blob_root)
        ckeys = [e[1][0] for e in elements]
        vecs = np.stack([_vector(store, e[1][1]) for e in elements])
        n = len(ckeys)
        if n <= cfg.max_bucket:
            i, j = np.triu_indices(n, k=1)
        else:
            chain = np.argsort(vecs @ np.ones(vecs.shape[1], dtype=np.float32), kind="stable")
            i = np.concatenate([chain[:-w] for w in range(1, cfg.max_bucket)])
            j = np.concatenate([chain[w:] for w in range(1, cfg.max_bucket)])
        cos = np.einsum("ij,ij->i", vecs[i], vecs[j])
        for a, b, c in zip(i.tolist(), j.tolist(), cos.tolist(), strict=True):
            if c >= cfg.threshold and ckeys[a] != ckeys[b]:
                x, y = sorted((ckeys[a], ckeys[b]))
                yield mod, x, y, float(np.float32(c))


def pair_order(p: tuple[str, str, str, float]) -> tuple:
    return p


def components(pairs: list[tuple[str, str, str, float]]) -> dict[str, tuple[str, float]]:
    """``gather``: union-find over verified pairs → ``{"mod/ckey": (label, best cosine)}``.

    The label of a component is its smallest content hash (deterministic)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    best: dict[str, float] = {}
    for mod, a, b, c in pairs:
        ka, kb = f"{mod}/{a}", f"{mod}/{b}"
        ra, rb = find(ka), find(kb)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
        best[ka] = max(best.get(ka, 0.0), c)
        best[kb] = max(best.get(kb, 0.0), c)
    return {k: (find(k), best[k]) for k in best}


def cluster_member(u: Unique, comps: dict[str, tuple[str, float]]) -> Iterator[tuple[str, Unique]]:
    """``flat_map_with``: a unique content that is in a cluster of ≥ 2 records → (cluster, it)."""
    k = f"{u.modality}/{u.ckey}"
    if k in comps:
        label, c = comps[k]
        yield label, replace(u, cos=1.0 if len(u.members) > 1 else c)
    elif len(u.members) > 1:
        yield k, u


def cluster_key(element: tuple[str, Unique]) -> str:
    return element[0]


def cluster_order(element: tuple[str, Unique]) -> str:
    return element[1].ckey


@dataclass(frozen=True)
class ClusterPolicy:
    """``group`` on cluster: the patient-aware policy → one ``dedup.parquet`` row per record."""

    window_days: float

    def __call__(self, key: str, elements: list[tuple[str, Unique]]) -> Iterator[dict]:  # noqa: ARG002
        uniques = [u for _, u in elements]
        mod = Modality(uniques[0].modality)
        ms = [(m, u) for u in uniques for m in u.members]
        if all(m.prior for m, _ in ms):  # published records only: nothing of this build to decide
            return
        # published records first: already in the corpus, they stay each patient's representative
        ms.sort(key=lambda mu: (not mu[0].prior, mu[0].acquired_at or "9999", mu[0].record_id))
        cluster_id = hashlib.sha256("|".join(sorted(m.record_id for m, _ in ms)).encode()).hexdigest()[:16]
        tier = "exact" if len({u.ckey for u in uniques}) == 1 else "near"
        cross = len({m.patient for m, _ in ms if m.patient}) > 1
        vs_prior = any(m.prior for m, _ in ms)
        for_patient: dict[str, Member] = {}
        for m, u in ms:
            p = m.patient
            if m.prior:
                for_patient.setdefault(p, m)
                v = "prior"
            elif cross and mod is not Modality.REPORT:
                v = "conflict"
            elif p not in for_patient:
                for_patient[p] = m
                v = "template" if cross else "representative"
            else:
                rep = for_patient[p]
                t0, t1 = _t(rep.acquired_at), _t(m.acquired_at)
                within = self.window_days <= 0 or (
                    t0 is not None and t1 is not None and abs((t1 - t0).days) <= self.window_days
                )
                v = "duplicate" if within else ("template" if cross else "representative")
                if not within:
                    for_patient[p] = m
            yield {
                "cluster_id": cluster_id,
                "record_id": m.record_id,
                "modality": mod.value,
                "patient": p,
                "kept": v in ("representative", "template"),
                "verdict": v,
                "tier": tier,
                "cosine": float(u.cos),
                "source_ids": list(m.source_ids),
            } | ({"_vs_prior": True, "_study": m.study, "_prior": m.prior} if vs_prior else {})


def row_order(row: dict) -> tuple:
    return row["modality"], row["cluster_id"], row["record_id"]


def verdict_map(rows: list[dict]) -> dict[str, str]:
    return {r["record_id"]: r["verdict"] for r in rows if r["verdict"] != "prior"}


def apply_verdicts(group: SampleGroup, verdicts: dict[str, str]) -> Iterator[tuple[str, object]]:
    """``flat_map_with``: drop duplicates (``dedup``), quarantine conflicts (``q``), keep the rest."""
    keep = []
    for r in group.records:
        v = verdicts.get(r.record_id)
        if v == "duplicate":
            for sid in r.source_ids:
                yield "dedup", sid
        elif v == "conflict":
            for sid in r.source_ids:
                yield (
                    "q",
                    QuarantineRecord(
                        sid,
                        r.source_name,
                        r.modality,
                        "dedup",
                        ReasonCode.CONFLICTING_PATIENT,
                        "the same content appears under different patients (probable data error)",
                    ),
                )
        else:
            if v is not None:
                meta = json.loads(r.meta_json) if r.meta_json else {}
                meta["dedup"] = {"verdict": v}
                r = replace(r, meta_json=canonical_json(meta))
            keep.append(r)
    if keep:
        yield "group", replace(group, records=tuple(keep))


def _t(iso: str) -> datetime | None:
    try:
        return datetime.fromisoformat(iso) if iso else None
    except ValueError:
        return None


def _ident(x):
    return x


def emit_side(_seed, value) -> Iterator:
    yield value


@dataclass
class DedupGraph:
    """The handles ``declare_dedup`` returns: kept groups, tagged extras, verdict rows, counts."""

    groups: object
    extras: object  # ("q", QuarantineRecord) | ("dedup", source id)
    rows: object
    counts: object  # one element: {"records": {mod: n}, "unique": {mod: n}}
    #: a corpus-root build (``prior`` given): ``(tag, row)`` index/supersedes rows for the driver
    index: object = None


def declare_dedup(
    flow: Flow,
    groups,
    cfg: DedupConfig,
    blob_root: str,
    cache_dir: str,
    *,
    prior=None,
    pseudo=None,
) -> DedupGraph:
    """Declare the three dedup tiers over sample groups (headers) on ``flow``.

    ``prior`` (a :class:`pipelines.corpus_index.PriorIndex`): the build goes into a corpus root.
    Published records join the tiers as members (cross-set dedup), every unique content is
    embedded (the set's index segment holds every record's vector), and the index rows are
    declared too (``pseudo`` names their sample keys)."""
    items = groups.flat_map(dedup_items, "dedup-items")
    n_records = items.flat_map(_modality_of, "dedup-mods").gather(count_by_modality, _ident, "dedup-count")
    uniques = items.group(item_content, exact_group, item_order, "dedup-exact")
    if prior is None:
        uniques = uniques.flat_map_with(eligible, n_records, "dedup-eligible")
    n_unique = uniques.flat_map(unique_modality, "dedup-umods").gather(
        count_by_modality, _ident, "dedup-ucount"
    )
    checkpoints = tuple((m, getattr(cfg, f"{m}_checkpoint")) for m in ("image", "ecg", "volume"))
    thresholds = tuple((m.value, getattr(cfg, f"{m.value}_threshold")) for m in SAMPLE_MODALITIES)
    embs = uniques.flat_map_with(embed_bucket, n_unique, "dedup-buckets").group(
        bucket_key, EmbedBucket(checkpoints, blob_root, cache_dir), bucket_order, "dedup-embed"
    )
    all_uniques, px = uniques, None
    if prior is not None:
        from pipelines.corpus_index import declare_prior

        px = declare_prior(flow, prior, items, embs, thresholds, blob_root)
        all_uniques = flow.union(uniques, px.uniques)  # published members: verified in the lookup
    bands = embs.flat_map_with(BandKeys(thresholds, blob_root), n_unique, "dedup-bands")
    pairs = bands.group(band_key, BucketPairs(thresholds, blob_root), band_order, "dedup-verify")
    if px is not None:
        pairs = flow.union(pairs, px.pairs)
    comps = pairs.gather(components, pair_order, "dedup-components")
    clustered = all_uniques.flat_map_with(cluster_member, comps, "dedup-clusters")
    rows = clustered.group(
        cluster_key, ClusterPolicy(cfg.same_patient_window_days), cluster_order, "dedup-policy"
    )
    if px is not None:
        from pipelines.corpus_index import supersede_rows

        rows = rows.flat_map_with(supersede_rows, px.supersede, "xset-supersede-rows")
    verdicts = rows.gather(verdict_map, row_order, "dedup-verdicts")
    applied = groups.flat_map_with(apply_verdicts, verdicts, "dedup-apply")
    seed = flow.create([0], "dedup-counts")
    counts = seed.flat_map_with(emit_side, n_records, "dedup-n").flat_map_with(
        _with_unique, n_unique, "dedup-u"
    )
    extras = applied.flat_map(_not_group, "dedup-extras")
    kept = applied.flat_map(Select("group"), "dedup-kept")
    index = None
    if px is not None:
        from pipelines.corpus_index import declare_index

        index = declare_index(flow, kept, px, pseudo, blob_root)
    return DedupGraph(kept, extras, rows, counts, index)


def _modality_of(it: DedupItem) -> Iterator[str]:
    yield it.modality


def _with_unique(n_records: dict, n_unique: dict) -> Iterator[dict]:
    yield {"records": n_records, "unique": n_unique}


def _not_group(element: tuple[str, object]) -> Iterator[tuple[str, object]]:
    if element[0] != "group":
        yield element


def dedup_table(rows: list) -> pa.Table:
    """Driver: the ``dedup.parquet`` table, sorted by :func:`row_order`, from the run's rows: Arrow
    tables built in the workers (``pipelines.rowtables``), or dict rows (a corpus-root build)."""
    if rows and isinstance(rows[0], pa.Table):
        return concat_sorted(rows, DEDUP_SCHEMA, ["modality", "cluster_id", "record_id"])
    return pa.Table.from_pylist(sorted(rows, key=row_order), schema=DEDUP_SCHEMA)


def summarise(table: pa.Table, counts: dict) -> tuple[pa.Table, dict, list[str]]:
    """Driver side: the per-modality counts and the deduplicated unit ids of ``dedup_table``."""
    out: dict = {"enabled": True}
    for mod in (m.value for m in SAMPLE_MODALITIES):
        if counts["records"].get(mod, 0) < 2:
            continue
        verdicts = table["verdict"].filter(pc.equal(table["modality"], mod))
        v = value_counts(verdicts)
        out[mod] = {
            "duplicates": v["duplicate"],
            "templates": v["template"],
            "conflicts": v["conflict"],
            "unique_contents": counts["unique"].get(mod, 0),
        }
    duplicates = table["source_ids"].filter(pc.equal(table["verdict"], "duplicate"))
    dedup_ids = sorted(pc.list_flatten(duplicates).to_pylist()) if len(duplicates) else []
    return table, out, dedup_ids


@dataclass
class DedupResult:
    groups: list[SampleGroup]
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    deduplicated_ids: list[str] = field(default_factory=list)
    table: pa.Table | None = None
    counts: dict = field(default_factory=dict)


def run_dedup(
    groups: list[SampleGroup], cfg: DedupConfig, flow: Flow, blob_root: str, cache_dir: str = ""
) -> DedupResult:
    """Run only the dedup tiers on in-memory groups (tools and tests); payloads go to ``blob_root``."""
    if not cfg.enabled:
        return DedupResult(groups=groups, counts={"enabled": False})
    from pipelines.blobs import to_header

    store = BlobStore(blob_root)
    headers = [replace(g, records=tuple(to_header(r, store) for r in g.records)) for g in groups]
    g = declare_dedup(flow, flow.create(headers, "groups"), cfg, blob_root, cache_dir)
    out = flow.run({"groups": g.groups, "extras": g.extras, "rows": g.rows, "counts": g.counts})
    table, counts, _ = summarise(dedup_table(out["rows"]), out["counts"][0])
    quarantined = [v for t, v in out["extras"] if t == "q"]
    dedup_ids = sorted(v for t, v in out["extras"] if t == "dedup")
    kept = sorted(out["groups"], key=lambda x: x.group_key)
    return DedupResult(kept, quarantined, dedup_ids, table, counts)
