"""Entry points: :func:`build_card` (the JSON twin and the page of a finished build) and
:func:`write_datacard` (both written atomically into the build)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from pipelines.datacard.collect import (
    _sanitise_config,
    collect_counts,
    deid_profile,
    distributions,
    label_reliability,
)
from pipelines.datacard.common import (
    CARD_VERSION,
    DATACARD_HTML,
    DEDUP,
    DEFAULT_CONFIG,
    DatacardConfig,
    DatacardResult,
    _read,
)
from pipelines.datacard.gallery import (
    dedup_members,
    dedup_shown,
    gallery_members,
    read_members,
    select_gallery,
)
from pipelines.datacard.render import render_html
from pipelines.datacard.shard_stats import DEDUP_PREVIEW_CHARS, scan_shards
from pipelines.datacard.view import dedup_view, gallery_view, plots
from pipelines.manifest import BUILD, SHARDS
from pipelines.writer import write_atomic
from schemas.labels import ASSERTIONS

log = logging.getLogger(__name__)


def build_card(
    build_dir: Path, cfg: DatacardConfig = DEFAULT_CONFIG, quiet: bool = True, shards_url: str = ""
) -> tuple[dict, str]:
    """Compute the JSON twin and the HTML page of a finished build (nothing is written)."""
    build_dir = Path(build_dir)
    card: dict[str, Any] = {"card_version": CARD_VERSION}
    card.update(collect_counts(build_dir, cfg))
    info = json.loads((build_dir / BUILD).read_text()) if (build_dir / BUILD).exists() else {}
    card["build"] = {
        "demo_build": bool(info.get("demo_build", False)),
        "demo_note": info.get("demo_note", ""),
        "versions": info.get("versions", {}),
        "config": _sanitise_config(info.get("config", {})),
    }
    shard_names = [r["shard"] for r in _read(build_dir / SHARDS)]
    shown = dedup_shown(build_dir / DEDUP, cfg)  # first: the scan indexes only these records
    records = frozenset(r["record_id"] for cluster in shown for r in cluster)
    scan = scan_shards(build_dir, shard_names, max(cfg.excerpt_chars, DEDUP_PREVIEW_CHARS), quiet, records)
    card["scanned_samples"] = scan.n_samples
    dists, raw = distributions(scan, cfg)
    card["distributions"] = dists
    card["deid"] = deid_profile(scan, cfg)
    card["conventions"] = {k: sorted(c) for k, c in sorted(scan.counts["conventions"].items())}
    g = scan.counts.get("generated_text") or {}
    card["generated_text"] = {
        "samples": int(g.get("samples", 0)),
        "captions": int(g.get("items", 0)),
        "methods": {k: int(v) for k, v in sorted((g.get("methods") or {}).items())},
    }
    if g.get("llm_rewrite"):  # captions of tables with caption.llm_rewrite (pipelines.caption_guard)
        rw = g["llm_rewrite"]
        card["generated_text"]["llm_rewrite"] = {
            "rewritten": int(rw.get("rewritten", 0)),
            "rejected": int(rw.get("rejected", 0)),
            "reject_reasons": {k: int(v) for k, v in sorted((g.get("llm_reject_reasons") or {}).items())},
        }
    card["label_reliability"] = label_reliability()
    keys = select_gallery(scan, cfg)
    wanted = gallery_members(scan, keys, cfg)
    for shard, names in dedup_members(scan, shown).items():
        wanted[shard] |= names
    data = read_members(
        build_dir, wanted, shards_url
    )  # the only tar reads when every shard has card statistics
    gallery, gallery_summary, n_gallery = gallery_view(scan, keys, data, cfg, quiet)
    card["gallery"] = gallery_summary
    clusters, clusters_summary = dedup_view(shown, scan, data, cfg)
    if card["dedup"]["present"]:
        card["dedup"]["largest_clusters"] = clusters_summary
    figures: dict[str, bytes] = {}
    if len(raw["image_sizes"]):
        figures["image_sizes"] = plots.scatter_sizes(raw["image_sizes"], "image size (stored)")
    if len(raw["ecg_durations"]):
        figures["ecg_durations"] = plots.histogram(raw["ecg_durations"], "ECG source duration", "seconds")
    if len(raw["report_lengths"]):
        figures["report_lengths"] = plots.histogram(raw["report_lengths"], "report length", "characters")
    if dists["report"]["top_entities"]:
        figures["entities"] = plots.entity_bars(dists["report"]["top_entities"], ASSERTIONS, "top entities")
    card["figures"] = sorted(figures)
    card["gallery_images"] = n_gallery
    return card, render_html(card, gallery, clusters, figures)


def write_datacard(
    build_dir: Path,
    *,
    html_path: Path | None = None,
    json_path: Path | None = None,
    cfg: DatacardConfig = DEFAULT_CONFIG,
    quiet: bool = True,
    shards_url: str = "",
) -> DatacardResult:
    """Write ``datacard.html`` and ``datacard.json`` (default: into ``build_dir``), atomically.

    ``shards_url``: where the shards are when ``build_dir`` is the work folder of a build into
    object storage (``URL/shards``): the gallery's few members are read from there."""
    t0 = time.perf_counter()
    build_dir = Path(build_dir)
    html_path = Path(html_path) if html_path else build_dir / DATACARD_HTML
    json_path = Path(json_path) if json_path else html_path.with_suffix(".json")
    card, page = build_card(build_dir, cfg, quiet, shards_url)
    data = page.encode("utf-8")
    write_atomic(json_path, json.dumps(card, indent=1, ensure_ascii=False).encode("utf-8") + b"\n")
    write_atomic(html_path, data)
    res = DatacardResult(
        html_path=html_path,
        json_path=json_path,
        html_bytes=len(data),
        n_samples=card["totals"]["samples"],
        n_quarantined=card["accounting"]["total"]["quarantined"],
        n_gallery_images=card["gallery_images"],
        identity_holds=card["accounting"]["identity_holds"],
        seconds=time.perf_counter() - t0,
    )
    log.info(
        "data card: %d samples, %d gallery images, %.1fs", res.n_samples, res.n_gallery_images, res.seconds
    )
    return res
