"""What the page shows beyond numbers: the gallery's samples and the largest dedup clusters,
chosen deterministically, and the few shard members read for them (the only tar reads when
every shard has card statistics)."""

from __future__ import annotations

import tarfile
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from pipelines.datacard.common import DatacardConfig
from pipelines.datacard.shard_stats import DEDUP_PREVIEW_CHARS, Scan
from schemas.contract import META_MEMBER, SHARDS_DIR


def _pick(cands: list[str], info: dict[str, dict], n: int, taken: list[str]) -> list[str]:
    """Up to ``n`` keys, multimodal samples first, round-robin over splits, deterministic."""
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
    """Sample keys to show: ECGs, volumes, images, then reports (preferring ones with findings)."""
    info = scan.samples
    has = {
        m: [k for k, v in info.items() if any(p.startswith(m + "_") for p in v["prefixes"])]
        for m in ("ecg", "volume", "image", "report")
    }
    chosen: list[str] = []
    for modality, n in (
        ("ecg", cfg.gallery_ecgs),
        ("volume", cfg.gallery_volumes),
        ("image", cfg.gallery_images),
    ):
        chosen += _pick(has[modality], info, n, chosen)
    with_findings = [
        k
        for k in has["report"]
        if any(scan.report(k, p)[2] for p in info[k]["prefixes"] if p.startswith("report_"))
    ]
    reports = set(has["report"])
    already = sum(1 for k in chosen if k in reports)
    chosen += _pick(with_findings or has["report"], info, max(0, cfg.gallery_reports - already), chosen)
    return chosen


def _want_text(scan: Scan, wanted: dict[str, set[str]], key: str, prefix: str, chars: int) -> None:
    """Ask for a report's text member if the head kept in the statistics is shorter than needed."""
    n_chars, _, _, head = scan.report(key, prefix)
    if len(head) < min(n_chars, chars + 1):
        wanted[scan.samples[key]["shard"]].add(f"{key}.{prefix}.txt")


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
                _want_text(scan, wanted, key, p, cfg.excerpt_chars)
    return wanted


def read_members(build_dir: Path, wanted: Mapping[str, set[str]]) -> dict[str, bytes]:
    """``{shard: {member names}}`` → ``{member name: bytes}`` (member name = ``key.member``); each
    shard is opened once and read only up to its last wanted member."""
    out: dict[str, bytes] = {}
    for shard in sorted(s for s in wanted if wanted[s]):
        todo = set(wanted[shard])
        with tarfile.open(build_dir / SHARDS_DIR / shard) as tar:
            for member in tar:
                if member.name in todo:
                    out[member.name] = tar.extractfile(member).read()
                    todo.discard(member.name)
                    if not todo:
                        break
    return out


def dedup_shown(rows: list[dict], cfg: DatacardConfig) -> list[list[dict]]:
    """The largest clusters (several records each), largest first: the rows of each."""
    clusters: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        clusters[r["cluster_id"]].append(r)
    multi = sorted((c for c in clusters if len(clusters[c]) > 1), key=lambda c: (-len(clusters[c]), c))
    return [clusters[c] for c in multi[: cfg.dedup_clusters]]


def dedup_members(scan: Scan, shown: list[list[dict]]) -> dict[str, set[str]]:
    """``{shard: {member names}}`` the dedup view shows: kept images (and report text if not kept
    long enough in the statistics)."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for cluster in shown:
        for r in cluster:
            key, prefix = scan.record_index.get(r["record_id"], ("", ""))
            if key and prefix.startswith("image_"):
                wanted[scan.samples[key]["shard"]].add(f"{key}.{prefix}.png")
            elif key and prefix.startswith("report_"):
                _want_text(scan, wanted, key, prefix, DEDUP_PREVIEW_CHARS)
    return wanted
