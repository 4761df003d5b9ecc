"""What the page shows beyond numbers: the gallery's samples and the largest dedup clusters,
chosen deterministically, and the few shard members read for them (the only tar reads when
every shard has card statistics)."""

from __future__ import annotations

import contextlib
import logging
import tarfile
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.datacard.common import DatacardConfig, arrow_batches, key_ranges, release_arrow, rows_in_range
from pipelines.datacard.shard_stats import DEDUP_PREVIEW_CHARS, GALLERY_CANDIDATES, Scan
from schemas.contract import META_MEMBER, SHARDS_DIR

log = logging.getLogger(__name__)


def _pick(cands: list[str], info: dict[str, dict], n: int, taken: list[str], what: str = "") -> list[str]:
    """Up to ``n`` keys, multimodal samples first, round-robin over splits, deterministic."""
    if n and n + len(taken) > GALLERY_CANDIDATES:
        log.warning(
            "data card: %d %s samples asked for after %d picks; the picks come from the first %d "
            "candidates per split",
            n,
            what,
            len(taken),
            GALLERY_CANDIDATES,
        )
    cands = sorted((k for k in cands if k not in taken), key=lambda k: (-len(info[k]["modalities"]), k))
    out: list[str] = []
    by_split: dict[str, list[str]] = defaultdict(list)
    for k in cands:
        by_split[info[k]["split"]].append(k)
    while len(out) < n and any(by_split.values()):
        for s in sorted(by_split):
            if by_split[s] and len(out) < n:
                out.append(by_split[s].pop(0))
    return out


def select_gallery(scan: Scan, cfg: DatacardConfig) -> list[str]:
    """Sample keys to show: ECGs, volumes, images, then reports (preferring ones with findings),
    drawn from the scan's candidate lists (per split the first ``GALLERY_CANDIDATES`` samples in
    the same order, so the picks are those of a scan of every sample)."""
    info = scan.samples
    chosen: list[str] = []
    for modality, n in (
        ("ecg", cfg.gallery_ecgs),
        ("volume", cfg.gallery_volumes),
        ("image", cfg.gallery_images),
    ):
        chosen += _pick(scan.gallery.get(modality, []), info, n, chosen, modality)
    already = sum(1 for k in chosen if any(p.startswith("report_") for p in info[k]["prefixes"]))
    cands = scan.gallery.get("report_findings") or scan.gallery.get("report", [])
    chosen += _pick(cands, info, max(0, cfg.gallery_reports - already), chosen, "report")
    return chosen


def _want_text(
    scan: Scan, wanted: dict[str, set[str]], shard: str, key: str, prefix: str, chars: int
) -> None:
    """Ask for a report's text member if the head kept in the statistics is shorter than needed."""
    n_chars, _, _, head = scan.report(key, prefix)
    if len(head) < min(n_chars, chars + 1):
        wanted[shard].add(f"{key}.{prefix}.txt")


def report_text(scan: Scan, data: Mapping[str, bytes], key: str, prefix: str) -> str:
    """A report's text: the member if it was read, else the head kept in the statistics."""
    member = f"{key}.{prefix}.txt"
    if member in data:
        return data[member].decode("utf-8", "replace")
    return scan.report(key, prefix)[3]


def gallery_members(scan: Scan, keys: list[str], cfg: DatacardConfig) -> dict[str, set[str]]:
    """``{shard: {member names}}`` the gallery shows: each sample's meta.json (captions), image
    PNGs, ECG/volume arrays, the findings of its reports (and their text if not kept long enough)."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        info = scan.samples[key]
        wanted[info["shard"]].add(f"{key}.{META_MEMBER}")
        for p in info["prefixes"]:
            if p.startswith("image_"):
                wanted[info["shard"]].add(f"{key}.{p}.png")
            elif p.startswith(("ecg_", "volume_")):
                wanted[info["shard"]].add(f"{key}.{p}.npy")
            elif p.startswith("report_"):
                if scan.report(key, p)[2]:
                    wanted[info["shard"]].add(f"{key}.{p}.json")
                _want_text(scan, wanted, info["shard"], key, p, cfg.excerpt_chars)
    return wanted


def read_members(build_dir: Path, wanted: Mapping[str, set[str]], shards_url: str = "") -> dict[str, bytes]:
    """``{shard: {member names}}`` → ``{member name: bytes}`` (member name = ``key.member``); each
    shard is opened once and read only up to its last wanted member. A shard not in ``build_dir``
    is read from ``shards_url`` (a build into object storage) when given."""
    out: dict[str, bytes] = {}
    for shard in sorted(s for s in wanted if wanted[s]):
        todo = set(wanted[shard])
        local = build_dir / SHARDS_DIR / shard
        with contextlib.ExitStack() as stack:
            if shards_url and not local.exists():
                from pipelines.storage import join, open_input

                f = stack.enter_context(open_input(join(shards_url, shard)))
                tar = stack.enter_context(tarfile.open(fileobj=f))
            else:
                tar = stack.enter_context(tarfile.open(local))
            for member in tar:
                if member.name in todo:
                    out[member.name] = tar.extractfile(member).read()
                    todo.discard(member.name)
                    if not todo:
                        break
    return out


def _largest(sizes: pa.Table, k: int) -> pa.Table:
    return sizes.sort_by([("n", "descending"), ("cluster_id", "ascending")]).slice(0, k)


def dedup_shown(path: Path, cfg: DatacardConfig) -> list[list[dict]]:
    """The largest clusters of ``dedup.parquet`` (several records each), largest first, then by
    cluster id: the rows of each, in file order. Cluster sizes are counted in Arrow; only the rows
    of the clusters shown become Python dicts."""
    if not path.exists() or cfg.dedup_clusters <= 0 or not pq.ParquetFile(path).metadata.num_rows:
        return []
    tops = []
    for lo, hi in key_ranges(path, "cluster_id"):  # each range: its largest clusters
        vc = pc.value_counts(rows_in_range(path, ["cluster_id"], "cluster_id", lo, hi).column("cluster_id"))
        sizes = pa.table({"cluster_id": vc.field("values"), "n": vc.field("counts")})
        sizes = sizes.filter(pc.greater(sizes["n"], 1))
        tops.append(_largest(sizes, cfg.dedup_clusters))
    order = (
        _largest(pa.concat_tables(tops), cfg.dedup_clusters).column("cluster_id").to_pylist() if tops else []
    )
    if not order:
        return []
    wanted = pa.array(order, type=pa.string())
    clusters: dict[str, list[dict]] = {c: [] for c in order}
    for batch in arrow_batches(path, None):
        rows = batch.filter(pc.is_in(batch.column("cluster_id"), value_set=wanted))
        for r in rows.to_pylist():
            clusters[r["cluster_id"]].append(r)
    release_arrow()
    return [clusters[c] for c in order]


def dedup_members(scan: Scan, shown: list[list[dict]]) -> dict[str, set[str]]:
    """``{shard: {member names}}`` the dedup view shows: kept images (and report text if not kept
    long enough in the statistics)."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for cluster in shown:
        for r in cluster:
            key, prefix, shard = scan.record(r["record_id"])
            if key and prefix.startswith("image_"):
                wanted[shard].add(f"{key}.{prefix}.png")
            elif key and prefix.startswith("report_"):
                _want_text(scan, wanted, shard, key, prefix, DEDUP_PREVIEW_CHARS)
    return wanted
