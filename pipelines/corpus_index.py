"""Cross-set deduplication for appends: the corpus index of what the published sets contain.

Every set built into a corpus root (``medcorpus build-set``) writes an **index segment**,
``index.parquet``, beside its manifests: one row per written record (modality, content hash,
patient pseudonym, study key, record id, acquisition time, sample key, the float16 embedding the
near-duplicate tier used, and LSH band codes under fixed parameters). The segment is part of the
set: it is published by the same atomic step that publishes the shards (a rename on a local
disk, the ``versions.json``/``CURRENT`` pointer on object storage) and read only through
``versions.json``. So the index is append-only (one immutable segment per published set), it
changes only when a set is published, and a failed or half-built day is never in it.

A new set is deduplicated against the published sets **with the build's own dedup graph**
(``pipelines.dedup``): the index adds published records to it as extra members, and the same
tiers and patient-aware policy decide:

1. probe: the build's content keys, report study keys and index band codes of its embeddings
   (ids only) are gathered into one small side input;
2. lookup: one task per index segment (in a worker) finds the published records that share a
   content key (exact), a band code (near-duplicate candidates) or a report's study; their
   vectors go to the build's blob store;
3. the published records join the exact/near tiers as members marked ``prior`` (their version):
   candidates are verified by cosine, clustered, and the policy runs per cluster. Published
   members come first: they stay their patient's representative. A new record of the same
   patient is a ``duplicate`` (removed, counted as deduplicated); a report whose text a published
   report of another patient has is a ``template`` (flagged, kept); an image/ECG/volume whose
   content a published record of another patient has is a ``conflict`` (quarantined,
   ``conflicting_patient``). Published records are never removed or changed.
4. corrections: a new report of a study that the corpus already holds, with a different text,
   is a **correction**: the study's new sample is kept whole (its other records' duplicate
   verdicts against the published study become ``supersedes``), and ``supersedes.parquet`` names
   the published version and sample key it replaces.

Readers and "the latest version of each study": sample keys are keyed hashes of the study's
group key, so a corrected study keeps its key. The latest view of a corpus is, for every key, the
sample of the newest published set holding it (:func:`latest_view`); ``supersedes.parquet`` of
each set lists the replaced (version, key) pairs explicitly. A trainer that reads every set
without this view sees both versions of a corrected study; everything else appears once.

Files a corpus-root build writes (beside ``dedup.parquet``): ``index.parquet`` (the segment),
``dedup-prior.parquet`` (the published records its clusters contained: cluster id, record id,
version), ``supersedes.parquet`` and ``crossset.json`` (counts).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines.blobs import BlobStore
from pipelines.dedup import DedupItem, Member, Unique, _content_key, _planes, _vector
from pipelines.link import SampleGroup
from pipelines.rowtables import concat_sorted
from pipelines.samples import sample_key
from schemas.modality import SAMPLE_MODALITIES
from workers.deid.pseudonym import Pseudonymizer
from workers.embed.lsh import LshConfig, choose_bands

log = logging.getLogger(__name__)

INDEX = "index.parquet"
PRIOR = "dedup-prior.parquet"
SUPERSEDES = "supersedes.parquet"
CROSSSET = "crossset.json"
INDEX_FORMAT = 1
#: fixed LSH parameters of the index (the build's own rows grow with its size; the index's cannot)
INDEX_ROWS = 20
INDEX_RECALL = 0.999
INDEX_SEED = LshConfig().seed + 1
_MOD_INDEX = {m.value: i for i, m in enumerate(SAMPLE_MODALITIES)}

INDEX_SCHEMA = pa.schema(
    [
        pa.field("modality", pa.string(), nullable=False),
        pa.field("ckey", pa.string(), nullable=False),
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("patient", pa.string(), nullable=False),
        pa.field("study", pa.string(), nullable=False),
        pa.field("acquired_at", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("vector", pa.binary(), nullable=True),  # float16, the dedup embedding
        pa.field("bands", pa.list_(pa.uint64()), nullable=False),
    ],
    metadata={"medcorpus_index_format": str(INDEX_FORMAT), "rows": str(INDEX_ROWS)},
)
PRIOR_SCHEMA = pa.schema(
    [
        pa.field("cluster_id", pa.string(), nullable=False),
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("patient", pa.string(), nullable=False),
        pa.field("version", pa.string(), nullable=False),
    ]
)
SUPERSEDES_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("study", pa.string(), nullable=False),
        pa.field("supersedes_version", pa.string(), nullable=False),
        pa.field("supersedes_key", pa.string(), nullable=False),
        pa.field("supersedes_record", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class PriorIndex:
    """The published index segments a build deduplicates against: ``(version, path or URL)``."""

    segments: tuple[tuple[str, str], ...] = ()


def index_codes_matrix(mod: str, vecs: np.ndarray, threshold: float) -> np.ndarray:
    """Band codes of the rows of ``vecs`` (n, d) under the index's fixed parameters: an (n, bands)
    uint64 array of ``modality << 56 | band << 32 | the band's bits`` (left-aligned in bytes)."""
    bands = choose_bands(threshold, INDEX_ROWS, INDEX_RECALL)
    bits = (vecs @ _planes(INDEX_SEED, vecs.shape[1], bands * INDEX_ROWS)) > 0
    packed = np.packbits(bits.reshape(len(vecs), bands, INDEX_ROWS), axis=2).astype(np.uint64)
    code = np.zeros((len(vecs), bands), dtype=np.uint64)
    for i in range(packed.shape[2]):
        code = (code << np.uint64(8)) | packed[:, :, i]
    head = (np.uint64(_MOD_INDEX[mod]) << np.uint64(56)) | (
        np.arange(bands, dtype=np.uint64) << np.uint64(32)
    )
    return code | head


def index_codes(mod: str, vec: np.ndarray, threshold: float) -> list[int]:
    """Band codes of one vector (:func:`index_codes_matrix`)."""
    return index_codes_matrix(mod, vec[None, :], threshold)[0].tolist()


# ----------------------------------------------------------------------------- probe + lookup


def probe_items(it: DedupItem) -> Iterator[tuple[str, object]]:
    """Content keys and report studies of the build's records (ids only)."""
    yield "c", f"{it.modality}/{it.ckey}"
    if it.modality == "report" and it.record.study:
        yield "s", it.record.study


@dataclass(frozen=True)
class EmbCodes:
    """``flat_map``: an embedding ``(modality, content hash, vector sha)`` with its index band codes
    (computed once: the probe and the set's own index segment both use them)."""

    thresholds: tuple[tuple[str, float], ...]
    blob_root: str

    def __call__(self, emb: tuple[str, str, str]) -> Iterator[tuple[str, str, str, tuple[int, ...]]]:
        mod, ckey, sha = emb
        v = _vector(BlobStore(self.blob_root), sha)
        yield mod, ckey, sha, tuple(index_codes(mod, v, dict(self.thresholds)[mod]))


def probe_codes(e: tuple[str, str, str, tuple[int, ...]]) -> Iterator[tuple[str, object]]:
    yield "n", e


def probe_order(element: tuple[str, object]) -> tuple[str, str]:
    return element[0], str(element[1])


def make_probe(elements: list[tuple[str, object]]) -> dict:
    """``gather``: content keys ``c``, report studies ``s``, the build's embeddings ``items``
    ``(modality, content hash, vector sha)`` and band code → indices into ``items`` (``b``)."""
    c, st, items = set(), set(), []
    for tag, v in elements:
        if tag == "c":
            c.add(v)
        elif tag == "s":
            st.add(v)
        else:
            items.append(v)
    items.sort(key=lambda e: (e[0], e[1]))
    b: dict[int, list[int]] = defaultdict(list)
    for i, (_, _, _, codes) in enumerate(items):
        for code in codes:
            b[code].append(i)
    return {
        "c": frozenset(c),
        "s": frozenset(st),
        "items": tuple(e[:3] for e in items),
        "b": {k: tuple(v) for k, v in b.items()},
    }


def segment_order(seg: tuple[str, str]) -> tuple[str, str]:
    return seg


#: rows per row group of a segment: a lookup reads the key columns whole, the vectors only of
#: the row groups holding a match
SEGMENT_ROW_GROUP = 1024
KEY_COLUMNS = ["modality", "ckey", "study", "bands"]


def read_segment(path: str, columns: list[str] | None = None) -> pa.Table:
    """One index segment (a local path or a storage URL)."""
    import pyarrow.parquet as pq

    from pipelines.storage import open_input

    with open_input(path) as f:
        return pq.read_table(f, columns=columns)


def _read_rows(path: str, rows: np.ndarray) -> list[dict]:
    """Full rows ``rows`` (sorted segment row numbers) of a segment, reading only their row groups."""
    import pyarrow.parquet as pq

    from pipelines.storage import open_input

    with open_input(path) as f:
        pf = pq.ParquetFile(f)
        starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
        groups = sorted(set(np.searchsorted(starts, rows, side="right") - 1))
        t = pf.read_row_groups(groups)
    offset = np.concatenate([[0], np.cumsum([starts[g + 1] - starts[g] for g in groups])])
    local = [
        int(offset[groups.index(g)] + r - starts[g])
        for r, g in zip(rows, np.searchsorted(starts, rows, side="right") - 1, strict=True)
    ]
    return t.take(pa.array(local, pa.int64())).to_pylist()


@dataclass(frozen=True)
class LookupSegment:
    """``flat_map_with`` (side: the probe): the published records of one segment that matter.

    A published record that shares a band code with build records is verified here, by exact
    cosine against those records (the near tier's test: cosine >= the modality's threshold,
    float16 vectors as ``BucketPairs``), so only real near-duplicates enter the graph. Yields
    ``("u", Unique)`` for exact and verified matches, ``("p", (modality, a, b, cosine))`` for the
    pairs (an exact match pairs its content key with itself: it joins the build's content in the
    clusters), ``("s", (study, version, key, record id, ckey))`` for published reports of a
    probed study (corrections).
    """

    blob_root: str
    thresholds: tuple[tuple[str, float], ...]

    def __call__(self, seg: tuple[str, str], probe: dict[str, frozenset]) -> Iterator[tuple[str, object]]:
        import pyarrow.compute as pc

        version, path = seg
        t = read_segment(path, KEY_COLUMNS)
        if t.num_rows == 0:
            return
        mk = pc.binary_join_element_wise(t["modality"], t["ckey"], "/")
        exact = pc.is_in(mk, value_set=pa.array(sorted(probe["c"]), pa.string())).to_numpy(
            zero_copy_only=False
        )
        near = np.zeros(t.num_rows, dtype=bool)
        cands: dict[int, set[int]] = defaultdict(set)  # segment row → indices into probe["items"]
        if probe["b"]:
            flat = pc.list_flatten(t["bands"])
            parents = pc.list_parent_indices(t["bands"]).to_numpy()
            hit = pc.is_in(flat, value_set=pa.array(sorted(probe["b"]), pa.uint64())).to_numpy(
                zero_copy_only=False
            )
            codes = flat.to_numpy()[hit].tolist()
            for row, code in zip(parents[hit].tolist(), codes, strict=True):
                cands[row].update(probe["b"][code])
            near[list(cands)] = True
        study_hit = pc.and_(
            pc.equal(t["modality"], "report"),
            pc.is_in(t["study"], value_set=pa.array(sorted(probe["s"]), pa.string())),
        ).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(exact | near | study_hit)
        if len(rows) == 0:
            return
        sub = _read_rows(path, rows)
        store = BlobStore(self.blob_root)
        thresholds = dict(self.thresholds)
        new_vecs: dict[int, np.ndarray] = {}
        for i, r in zip(rows.tolist(), sub, strict=True):
            mod, ckey = r["modality"], r["ckey"]
            pairs = []
            if near[i] and r["vector"] is not None:
                v = np.frombuffer(r["vector"], dtype=np.float16).astype(np.float32)
                for j in sorted(cands[i]):
                    nmod, nckey, nsha = probe["items"][j]
                    if nmod != mod or nckey == ckey:
                        continue
                    if j not in new_vecs:
                        new_vecs[j] = _vector(store, nsha)
                    c = float(np.float32(np.dot(v, new_vecs[j])))
                    if c >= thresholds[mod]:
                        x, y = sorted((ckey, nckey))
                        pairs.append((mod, x, y, c))
            if exact[i] or pairs:
                m = Member(r["record_id"], r["patient"], r["acquired_at"], (), r["study"], version)
                yield "u", Unique(mod, ckey, None, (m,))
            if exact[i]:
                yield "p", (mod, ckey, ckey, 1.0)
            for pair in pairs:
                yield "p", pair
            if study_hit[i]:
                yield "s", (r["study"], version, r["key"], r["record_id"], ckey)


def lookup_order(element: tuple[str, object]) -> tuple:
    tag, v = element
    if tag == "u":
        return tag, v.modality, v.ckey, v.members[0].prior, v.members[0].record_id
    return tag, tuple(str(x) for x in v)


def report_studies(it: DedupItem) -> Iterator[tuple[str, tuple]]:
    if it.modality == "report" and it.record.study:
        yield "n", (it.record.study, it.ckey)


def supersede_map(elements: list[tuple[str, tuple]]) -> dict[str, tuple]:
    """``gather``: studies the build corrects → the published ``(version, key, record id)`` of each.

    A study is corrected when the build has a report of it whose text (content key) none of the
    published reports of that study has."""
    new: dict[str, set[str]] = defaultdict(set)
    prior: dict[str, set[tuple]] = defaultdict(set)
    for tag, v in elements:
        if tag == "n":
            new[v[0]].add(v[1])
        else:
            prior[v[0]].add(v[1:])
    out = {}
    for study in sorted(new.keys() & prior.keys()):
        if new[study] - {p[3] for p in prior[study]}:
            out[study] = tuple(sorted(p[:3] for p in prior[study]))
    return out


def supersede_rows(row: dict, smap: dict[str, tuple]) -> Iterator[dict]:
    """``flat_map_with``: a record of a corrected study is republished with it, not removed."""
    if row["verdict"] == "duplicate" and row.get("_vs_prior") and row.get("_study") in smap:
        row = row | {"verdict": "supersedes", "kept": True}
    yield row


# ----------------------------------------------------------------------------- the segment


@dataclass(frozen=True)
class IndexRecords:
    """``flat_map``: a kept sample group → one index row per record (keyed by content), and
    ``("s", row)`` rows for ``supersedes.parquet`` (side: the corrected studies)."""

    pseudo: Pseudonymizer

    def __call__(self, group: SampleGroup, smap: dict[str, tuple]) -> Iterator[tuple[str, tuple]]:
        key = sample_key(group, self.pseudo)
        for r in group.records:
            if r.modality not in SAMPLE_MODALITIES:
                continue
            ckey = _content_key(r)
            row = {
                "modality": r.modality.value,
                "ckey": ckey,
                "record_id": r.record_id,
                "patient": group.patient,
                "study": r.study,
                "acquired_at": r.acquired_at,
                "key": key,
            }
            yield f"{r.modality.value}/{ckey}", ("r", row)
        for study in sorted({r.study for r in group.records if r.study in smap}):
            for version, old_key, old_rid in smap[study]:
                row = {
                    "key": key,
                    "study": study,
                    "supersedes_version": version,
                    "supersedes_key": old_key,
                    "supersedes_record": old_rid,
                }
                yield "supersedes", ("s", row)


def vector_refs(e: tuple[str, str, str, tuple[int, ...]]) -> Iterator[tuple[str, tuple]]:
    yield f"{e[0]}/{e[1]}", ("v", (e[2], e[3]))


def index_key(element: tuple[str, tuple]) -> str:
    return element[0]


def index_order(element: tuple[str, tuple]) -> tuple:
    tag, v = element[1]
    return tag, v if isinstance(v, str) else json.dumps(v, sort_keys=True)


@dataclass(frozen=True)
class JoinVector:
    """``group`` on ``modality/content``: index rows with their vector and band codes."""

    blob_root: str

    def __call__(self, key: str, elements: list) -> Iterator[tuple[str, dict]]:
        if key == "supersedes":
            for _, (_, row) in elements:
                yield "supersedes", row
            return
        refs = [v for _, (tag, v) in elements if tag == "v"]
        vec = BlobStore(self.blob_root).get(refs[0][0]) if refs else None  # float16 bytes, as embedded
        for _, (tag, row) in elements:
            if tag != "r":
                continue
            if vec is None:
                yield "index", row | {"vector": None, "bands": []}
            else:
                yield "index", row | {"vector": vec, "bands": list(refs[0][1])}


@dataclass
class PriorGraph:
    uniques: object
    pairs: object
    supersede: object  # side: {study: ((version, key, record id), ...)}
    codes: object  # the build's embeddings with their index band codes


def declare_prior(flow, prior: PriorIndex, items, embs, thresholds, blob_root: str) -> PriorGraph:
    """Declare probe → lookup (one task per segment) → published members, pairs, corrections."""
    codes = embs.flat_map(EmbCodes(thresholds, blob_root), "xset-codes")
    probe = flow.union(
        items.flat_map(probe_items, "xset-probe-items"),
        codes.flat_map(probe_codes, "xset-probe-codes"),
    ).gather(make_probe, probe_order, "xset-probe")
    segs = flow.create(list(prior.segments), "xset-segments")
    hits = segs.flat_map_with(LookupSegment(blob_root, thresholds), probe, "xset-lookup")
    from pipelines.flow import Select

    studies = flow.union(
        items.flat_map(report_studies, "xset-new-studies"),
        hits.flat_map(_tagged("s", "p"), "xset-prior-studies"),
    )
    return PriorGraph(
        uniques=hits.flat_map(Select("u"), "xset-uniques"),
        pairs=hits.flat_map(Select("p"), "xset-pairs"),
        supersede=studies.gather(supersede_map, _study_order, "xset-supersede"),
        codes=codes,
    )


@dataclass(frozen=True)
class _tagged:  # noqa: N801 - a small picklable retagger
    tag: str
    new_tag: str

    def __call__(self, element: tuple[str, object]) -> Iterator[tuple[str, object]]:
        if element[0] == self.tag:
            yield self.new_tag, element[1]


def _study_order(element: tuple[str, tuple]) -> tuple:
    return element[0], tuple(str(x) for x in element[1])


def declare_index(flow, kept_groups, px: PriorGraph, pseudo, blob_root: str):
    """Declare the set's index segment rows and its ``supersedes`` rows (``(tag, row)``)."""
    recs = kept_groups.flat_map_with(IndexRecords(pseudo), px.supersede, "xset-index-records")
    vecs = px.codes.flat_map(vector_refs, "xset-index-vectors")
    return flow.union(recs, vecs).group(index_key, JoinVector(blob_root), index_order, "xset-index")


# ----------------------------------------------------------------------------- driver side


def write_segment(path: Path, table: pa.Table) -> None:
    """Deterministic segment bytes, in row groups of :data:`SEGMENT_ROW_GROUP` rows."""
    import io

    import pyarrow.parquet as pq

    from schemas.atomic import write_atomic

    buf = io.BytesIO()
    pq.write_table(
        table,
        buf,
        compression="zstd",
        write_statistics=True,
        store_schema=True,
        row_group_size=SEGMENT_ROW_GROUP,
    )
    write_atomic(path, buf.getvalue())


def index_row_order(r: dict) -> tuple:
    """Order of the index segment's rows (its sort keys: :data:`INDEX_SORT`)."""
    return r["modality"], r["ckey"], r["record_id"], r["key"]


INDEX_SORT = ("modality", "ckey", "record_id", "key")


def write_outputs(out_dir: Path, out: dict, prior: PriorIndex) -> dict | None:
    """Driver: take the cross-set rows out of ``out`` and write the index files; ``None`` if the
    build did not run in a corpus root. Removes published members' rows from ``out["dedup_rows"]``."""
    from pipelines.manifest import write_table
    from schemas.atomic import write_atomic

    if "xset_index" not in out:
        return None
    rows = out.get("dedup_rows", [])
    prior_rows = [r for r in rows if r["verdict"] == "prior"]
    new_rows = [r for r in rows if r["verdict"] != "prior"]
    out["dedup_rows"] = new_rows
    index = concat_sorted(out["xset_index"], INDEX_SCHEMA, INDEX_SORT)  # tables built in the workers
    sup = sorted({json.dumps(r, sort_keys=True) for r in out["xset_supersedes"]})
    write_segment(out_dir / INDEX, index)
    prior_tab = [
        {
            "cluster_id": r["cluster_id"],
            "record_id": r["record_id"],
            "modality": r["modality"],
            "patient": r["patient"],
            "version": r["_prior"],
        }
        for r in sorted(
            prior_rows, key=lambda r: (r["modality"], r["cluster_id"], r["_prior"], r["record_id"])
        )
    ]
    write_table(out_dir / PRIOR, pa.Table.from_pylist(prior_tab, schema=PRIOR_SCHEMA))
    write_table(
        out_dir / SUPERSEDES, pa.Table.from_pylist([json.loads(s) for s in sup], schema=SUPERSEDES_SCHEMA)
    )
    per: dict[str, Counter] = defaultdict(Counter)
    for r in new_rows:
        if r.get("_vs_prior"):
            per[r["modality"]][r["verdict"]] += 1
    summary = {
        "format": INDEX_FORMAT,
        "segments": [v for v, _ in prior.segments],
        "index_rows": index.num_rows,
        "index_vectors": index.num_rows - index["vector"].null_count,
        "published_members": len(prior_rows),
        "supersedes": len(sup),
        "against_published": {m: dict(sorted(c.items())) for m, c in sorted(per.items())},
    }
    write_atomic(out_dir / CROSSSET, json.dumps(summary, sort_keys=True, indent=1).encode())
    return summary


def prior_index(root, exclude: str = "", versions: dict | None = None) -> PriorIndex:
    """The index segments of every version ``versions.json`` lists (but ``exclude``); ``root``
    is a local corpus root or a URL (then workers read the segments from the store).
    ``versions``: the pointer already read (a publisher's compare-and-swap), else it is read."""
    from pipelines import storage
    from pipelines.objstore import read_versions, set_location

    segs = []
    fs = storage.filesystem(str(root)) if storage.is_url(root) else None
    for e in (versions if versions is not None else read_versions(root))["versions"]:
        if e["version"] == exclude:
            continue
        loc = set_location(root, e)
        if fs is None:
            if (loc / INDEX).exists():
                segs.append((e["version"], str(loc / INDEX)))
        elif fs.exists(storage.join(loc, INDEX)):
            segs.append((e["version"], storage.join(loc, INDEX)))
    return PriorIndex(tuple(sorted(segs)))


def latest_view(root) -> pa.Table:
    """Latest version of each study: for every sample key, the newest published set holding it.

    Columns: ``key``, ``version``, ``split``, ``shard``, ``sample_sha256``, sorted by key."""
    import pyarrow.parquet as pq

    from pipelines import storage
    from pipelines.manifest import MANIFEST
    from pipelines.objstore import read_versions, set_location

    seen: dict[str, dict] = {}
    for e in sorted(read_versions(root)["versions"], key=lambda e: e["version"], reverse=True):
        with storage.open_input(storage.join(set_location(root, e), MANIFEST)) as f:
            t = pq.read_table(f, columns=["key", "split", "shard", "sample_sha256"])
        for r in t.to_pylist():
            seen.setdefault(r["key"], r | {"version": e["version"]})
    rows = [seen[k] for k in sorted(seen)]
    schema = pa.schema([(n, pa.string()) for n in ("key", "version", "split", "shard", "sample_sha256")])
    return pa.Table.from_pylist(rows, schema=schema)


def stale_reason(root, build_dir: Path, version: str, versions: dict | None = None) -> str:
    """``""`` if ``build_dir`` was deduplicated against every set published now, else why not.

    A set built while another was published (two partitions of one interval built side by
    side) missed that set's records: publishing it could add copies, so it is refused and the
    build is rerun (it resumes: decoding and embeddings are cached)."""
    path = Path(build_dir) / CROSSSET
    if not path.exists():
        return ""
    used = set(json.loads(path.read_text())["segments"])
    now = {v for v, _ in prior_index(root, exclude=version, versions=versions).segments}
    missed = sorted(now - used)
    if not missed:
        return ""
    return (
        f"version {version} was deduplicated before {', '.join(missed)} was published: "
        "rerun build-set (it resumes), then publish"
    )
