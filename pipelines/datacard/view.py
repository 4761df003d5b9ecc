"""The card's numbers shaped for the page: tables of typed cells, distribution blocks, gallery
and dedup views. No HTML here: ``templates/datacard.html.j2`` renders what these return.

A table is ``{"headers", "numeric", "rows", "total"}``; ``numeric`` holds the indices of the
columns whose first row holds a number (right-aligned headers). A cell is a dict of one kind:

* ``{"num": path, "v": value}`` a number tied to its JSON path in the twin (``"bytes": True``:
  shown humanised, exact value in ``data-v``); ``{"dash": True}`` no number;
* ``{"text": s}``, ``{"key": s}`` (a label), ``{"code": s}``, ``{"codes": [s, ...]}``,
  ``{"small": s}``, ``{"check": bool}`` (the accounting identity of a row).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from pipelines.datacard.common import KEEPER_VERDICTS, DatacardConfig, _counts, _dims, _verdict
from pipelines.datacard.gallery import report_text
from pipelines.datacard.shard_stats import DEDUP_PREVIEW_CHARS, Scan, _findings
from schemas.contract import ECG_RATE_HZ, META_MEMBER
from schemas.labels import ASSERTIONS


class _LazyPlots:
    """``pipelines.datacard.plots``, imported on first use: matplotlib costs ~2 s of imports,
    which shard writers (they import the package for ``shard_card_stats``) never need."""

    def __getattr__(self, name: str):
        from pipelines.datacard import plots as _plots

        return getattr(_plots, name)


plots = _LazyPlots()

DASH = {"dash": True}


def num(path: Sequence[Any], value: Any, *, human_bytes: bool = False) -> dict:
    return {"num": list(path), "v": value, "bytes": human_bytes}


def table(
    headers: Sequence[str], rows: Sequence[Sequence[dict]], total: Sequence[dict] | None = None
) -> dict:
    first = rows[0] if rows else []
    numeric = [i for i, c in enumerate(first) if "num" in c or "dash" in c]
    return {"headers": list(headers), "numeric": numeric, "rows": list(rows), "total": total}


def counter_table(
    label: str, path: Sequence[Any], counts: Mapping[str, int], value_label: str = "count"
) -> dict | None:
    """Label → count table (``None`` for an empty counter: the page says "none")."""
    if not counts:
        return None
    return table([label, value_label], [[{"key": k}, num([*path, k], v)] for k, v in counts.items()])


def summary_table(rows: Sequence[tuple[str, Sequence[Any], Mapping[str, Any]]]) -> dict:
    stats = ("n", "min", "median", "mean", "max")
    body = [
        [{"text": label}, *(num([*path, st], s[st]) if st in s else DASH for st in stats)]
        for label, path, s in rows
    ]
    return table(["", *stats], body)


# ---------------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------------


def count_tables(card: Mapping[str, Any]) -> dict[str, Any]:
    t, sp = card["totals"], card["splits"]
    splits = table(
        ["split", "samples", "patients", "studies", "shards", "shard bytes"],
        [
            [{"text": s}]
            + [num(["splits", s, k], v[k]) for k in ("samples", "patients", "studies", "shards")]
            + [num(["splits", s, "shard_bytes"], v["shard_bytes"], human_bytes=True)]
            for s, v in sp.items()
        ],
        total=[
            {"text": "total"},
            num(["totals", "samples"], t["samples"]),
            num(["totals", "patients"], t["patients"]),
            DASH,
            num(["totals", "shards"], t["shards"]),
            num(["totals", "shard_bytes"], t["shard_bytes"], human_bytes=True),
        ],
    )
    sources = table(
        ["source", "samples", "input units", "written", "quarantined"],
        [
            [{"text": s}]
            + [
                num(["sources", s, k], v[k])
                for k in ("samples", "input_units", "written_units", "quarantined_units")
            ]
            for s, v in card["sources"].items()
        ],
    )
    modalities = table(
        ["modality", "samples with it", "items"],
        [
            [
                {"text": m},
                num(["modalities", m, "samples"], v["samples"]),
                num(["modalities", m, "items"], v["items"]),
            ]
            for m, v in card["modalities"].items()
        ],
    )
    licences = table(
        ["licence", "samples"],
        [
            [{"text": lic}, num(["licences", lic, "samples"], v["samples"])]
            for lic, v in card["licences"].items()
        ],
    )
    return {
        "splits": splits,
        "sources": sources,
        "modalities": modalities,
        "combinations": counter_table(
            "modalities", ["modality_combinations"], card["modality_combinations"], "samples"
        ),
        "licences": licences,
        "kinds": counter_table("kind", ["inputs_by_kind"], card["inputs_by_kind"], "input units"),
    }


ACCOUNTING_KEYS = ("inputs", "written", "quarantined", "deduplicated", "unaccounted")


def accounting_table(acc: Mapping[str, Any]) -> dict:
    keys = ACCOUNTING_KEYS
    rows = [
        [{"text": m}, *(num(["accounting", "per_modality", m, k], r[k]) for k in keys), {"check": r["holds"]}]
        for m, r in acc["per_modality"].items()
    ]
    total = [
        {"text": "total"},
        *(num(["accounting", "total", k], acc["total"][k]) for k in keys),
        {"check": acc["identity_holds"]},
    ]
    return table(["modality", *keys, "identity"], rows, total=total)


def quarantine_tables(q: Mapping[str, Any]) -> dict[str, Any]:
    rows = [
        [
            {"code": reason},
            num(["quarantine", "by_reason", reason, "records"], v["records"]),
            num(["quarantine", "by_reason", reason, "units"], v["units"]),
            {"text": ", ".join(f"{m} {c}" for m, c in v["by_modality"].items())},
            {"text": ", ".join(v["stages"])},
            {"codes": list(v["examples"])},
            {"small": v["example_message"]},
        ]
        for reason, v in q["by_reason"].items()
    ]
    total = [
        {"text": "total"},
        num(["quarantine", "records"], q["records"]),
        num(["quarantine", "units"], q["units"]),
        *({"text": ""} for _ in range(4)),
    ]
    headers = [
        "reason",
        "records",
        "input units",
        "by modality",
        "stage",
        "example source ids",
        "example message",
    ]
    return {
        "by_reason": table(headers, rows, total=total) if rows else None,
        "by_source": counter_table("source", ["quarantine", "by_source"], q["by_source"], "records"),
        "by_stage": counter_table("stage", ["quarantine", "by_stage"], q["by_stage"], "records"),
    }


DEDUP_KEYS = ("records", "clusters", "clusters_with_several", "kept", "not_kept", "flagged_kept")


def dedup_tables(d: Mapping[str, Any]) -> dict[str, Any]:
    if not d["present"]:
        return {}
    mod_rows = [
        [
            {"text": m},
            *(num(["dedup", "by_modality", m, k], v[k]) for k in ("records", "clusters", "kept", "not_kept")),
        ]
        for m, v in d["by_modality"].items()
    ]
    return {
        "summary": table(
            [k.replace("_", " ") for k in DEDUP_KEYS], [[num(["dedup", k], d[k]) for k in DEDUP_KEYS]]
        ),
        "verdicts": counter_table("verdict", ["dedup", "verdicts"], d["verdicts"], "records"),
        "by_modality": (
            table(["modality", "records", "clusters", "kept", "not kept"], mod_rows) if mod_rows else None
        ),
        "tiers": counter_table("tier", ["dedup", "tiers"], d["tiers"], "records"),
        "sizes": counter_table("records", ["dedup", "cluster_sizes"], d["cluster_sizes"], "clusters"),
    }


#: per modality column of the distributions section: title, figure, summary rows, counter tables
#: ``(key, heading, label[, value label])``; ``"qc"`` is the ECG QC note
DISTRIBUTION_BLOCKS: tuple[tuple[str, str, str, tuple, tuple], ...] = (
    (
        "image",
        "Images",
        "image_sizes",
        (("rows (px)", "rows"), ("columns (px)", "columns")),
        (
            ("pixel_spacing_mm", "Pixel spacing (mm)", "row x column"),
            ("dicom_modality", "DICOM modality", "modality"),
            ("photometric", "Photometric interpretation (stored)", "photometric"),
            ("pixel_steps", "Pixel pipeline steps", "step", "images"),
        ),
    ),
    (
        "volume",
        "Volumes",
        "",
        (),
        (
            ("shape", "", "shape (X x Y x Z)"),
            ("spacing_mm", "Spacing (mm)", "spacing"),
            ("orientation", "Orientation", "axes"),
            ("source_format", "Source format", "format"),
        ),
    ),
    (
        "ecg",
        "ECGs",
        "ecg_durations",
        (("source duration (s)", "source_duration_s"),),
        (
            ("stored", "Stored as", "layout"),
            ("original_rate_hz", "Source sampling rate (Hz)", "Hz"),
            "qc",
            ("qc_flags", "", "flag", "leads/records"),
        ),
    ),
    (
        "report",
        "Reports",
        "report_lengths",
        (("length (characters)", "length_chars"), ("length (words)", "length_words")),
        (("languages", "Languages", "language"), ("report_types", "Report types", "type")),
    ),
)


def distribution_blocks(ds: Mapping[str, Any]) -> list[dict]:
    blocks = []
    for modality, title, figure, summaries, tables in DISTRIBUTION_BLOCKS:
        d = ds[modality]
        parts = []
        for t in tables:
            if t == "qc":
                parts.append({"qc": num(["distributions", "ecg", "with_qc_flags"], d["with_qc_flags"])})
                continue
            key, heading, label, *value_label = t
            path = ["distributions", modality, key]
            parts.append({"heading": heading, "table": counter_table(label, path, d[key], *value_label)})
        blocks.append(
            {
                "title": title,
                "items": num(["distributions", modality, "items"], d["items"]),
                "figure": figure,
                "summary": (
                    summary_table([(lab, ["distributions", modality, key], d[key]) for lab, key in summaries])
                    if summaries
                    else None
                ),
                "parts": parts,
            }
        )
    return blocks


def entity_table(rp: Mapping[str, Any]) -> dict | None:
    rows = [
        [{"text": r["label"]}]
        + [num(["distributions", "report", "top_entities", i, a], r[a]) for a in (*ASSERTIONS, "total")]
        for i, r in enumerate(rp["top_entities"])
    ]
    return table(["label", *ASSERTIONS, "total"], rows) if rows else None


def reliability_tables(rel: Mapping[str, Any]) -> list[dict]:
    """One table per gold set: support, precision, recall, F1 and a trust level per label."""
    out = []
    for name, st in sorted(rel.get("sets", {}).items()):
        base = ["label_reliability", "sets", name]
        rows = [
            [{"key": lab}]
            + [num([*base, "labels", lab, k], v[k]) for k in ("support", "precision", "recall", "f1")]
            + [{"text": v.get("trust", "")}]
            for lab, v in sorted(st["labels"].items(), key=lambda kv: (-kv[1]["support"], kv[0]))
        ]
        total = [
            {"text": "micro"},
            DASH,
            *(num([*base, "micro", k], st["micro"][k]) for k in ("precision", "recall", "f1")),
            {"text": ""},
        ]
        out.append(
            {
                "name": name,
                "split": st["split"],
                "structurer": st["structurer"],
                "reports": num([*base, "reports"], st["reports"]),
                "table": table(["label", "support", "precision", "recall", "F1", "trust"], rows, total),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# gallery and dedup clusters
# ---------------------------------------------------------------------------------------------


def highlight(text: str, findings: list[dict], limit: int) -> tuple[list[tuple[str, dict | None]], bool, int]:
    """``text[:limit]`` cut into segments, each finding's evidence its own segment (with the
    finding: the page marks it); whether the text was cut; how many findings were located."""
    excerpt = text[:limit]
    lower = excerpt.lower()
    spans: list[tuple[int, int, dict]] = []
    for f in findings:
        ev = str(f.get("evidence") or "").strip()
        if not ev:
            continue
        start = lower.find(ev.lower())
        while start >= 0 and any(s < start + len(ev) and start < e for s, e, _ in spans):
            start = lower.find(ev.lower(), start + 1)
        if start >= 0:
            spans.append((start, start + len(ev), f))
    spans.sort(key=lambda s: s[0])
    segments: list[tuple[str, dict | None]] = []
    pos = 0
    for s, e, f in spans:
        a = str(f.get("assertion", ""))
        tip = f"{f.get('label', '')} ({a}" + (f", {f['section']}" if f.get("section") else "") + ")"
        segments += [(excerpt[pos:s], None), (excerpt[s:e], {"assertion": a, "title": tip})]
        pos = e
    segments.append((excerpt[pos:], None))
    return segments, len(text) > limit, len(spans)


def _image(png: bytes, alt: str, role: str = "gallery") -> dict:
    return {"png": png, "alt": alt, "role": role}


def gallery_view(
    scan: Scan, keys: list[str], data: Mapping[str, bytes], cfg: DatacardConfig, quiet: bool
) -> tuple[list[dict], list[dict], int]:
    """The gallery's samples for the page, their JSON summary and the number of images (``data``:
    the members named by :func:`pipelines.datacard.gallery.gallery_members`)."""
    info = scan.samples
    cards, summary, n_images = [], [], 0
    for key in tqdm(keys, desc="datacard: gallery", unit="sample", disable=quiet, leave=False):
        s = info[key]
        meta = json.loads(data[f"{key}.{META_MEMBER}"]) if f"{key}.{META_MEMBER}" in data else {}
        blocks = []
        for it in meta.get("items", []):  # in member order (meta.json lists items as written)
            p = it.get("member_prefix", "")
            if p.startswith("image_") and f"{key}.{p}.png" in data:
                thumb, _ = plots.thumbnail_png(data[f"{key}.{p}.png"], cfg.thumb_px)
                cap = (
                    f"{it.get('dicom_modality', '')} {it.get('body_part', '')} {it.get('view_position', '')}".strip()
                    + f" · {it.get('columns', '?')}x{it.get('rows', '?')} px · {it.get('photometric', '')}"
                )
                blocks.append(
                    {
                        "kind": "thumb",
                        "image": _image(thumb, f"{p} of sample {key}"),
                        "caption": f"{p}: {cap}",
                    }
                )
                n_images += 1
            elif p.startswith("ecg_") and f"{key}.{p}.npy" in data:
                arr = np.load(io.BytesIO(data[f"{key}.{p}.npy"]))
                rate = float(it.get("sampling_rate_hz", ECG_RATE_HZ) or ECG_RATE_HZ)
                flags = ", ".join(it.get("qc_flags", [])) or "none"
                cap = (
                    f"{p}: 25 mm/s, 10 mm/mV · stored at {rate:g} Hz (source {float(it.get('original_rate_hz', 0)):g} Hz)"
                    f" · QC flags: {flags}"
                )
                png = plots.ecg_figure(arr, rate)
                blocks.append({"kind": "wide", "image": _image(png, f"{p} of sample {key}"), "caption": cap})
                n_images += 1
            elif p.startswith("volume_") and f"{key}.{p}.npy" in data:
                arr = np.load(io.BytesIO(data[f"{key}.{p}.npy"]))
                png = plots.volume_figure(arr, it.get("spacing_mm", (1, 1, 1)), bool(it.get("hounsfield")))
                cap = (
                    f"{p}: {_dims(arr.shape)} voxels · spacing {_dims(it.get('spacing_mm', []))} mm · "
                    f"{it.get('orientation', '')} · from {it.get('source_format', '')}"
                )
                blocks.append({"kind": "wide", "image": _image(png, f"{p} of sample {key}"), "caption": cap})
                n_images += 1
            elif p.startswith("report_"):
                text = report_text(scan, data, key, p)
                findings = _findings(data[f"{key}.{p}.json"]) if f"{key}.{p}.json" in data else []
                segments, cut, n_marked = highlight(text, findings, cfg.excerpt_chars)
                cap = (
                    f"{p}: {it.get('report_type', '')} · language {it.get('language', '') or '?'} · "
                    f"{scan.report(key, p)[0]} chars · {len(findings)} findings ({n_marked} located in the excerpt)"
                )
                chips = [(str(f.get("label", "")), str(f.get("assertion", ""))) for f in findings]
                blocks.append(
                    {"kind": "report", "caption": cap, "segments": segments, "cut": cut, "chips": chips}
                )
        cards.append(
            {
                "key": key,
                "split": s["split"],
                "modalities": " + ".join(s["modalities"]),
                "wide": any(p.startswith(("ecg_", "volume_")) for p in s["prefixes"]),
                "blocks": blocks,
            }
        )
        summary.append(
            {"key": key, "split": s["split"], "modalities": s["modalities"], "items": list(s["prefixes"])}
        )
    return cards, summary, n_images


def dedup_view(
    shown: list[list[dict]], scan: Scan, data: Mapping[str, bytes], cfg: DatacardConfig
) -> tuple[list[dict], list[dict]]:
    """The members of the largest clusters side by side: thumbnails/excerpts of what was kept
    (read from the shards). A record not kept is in no shard: an exact-tier copy shows the
    keeper's rendition (same decoded content), any other says that no preview is stored."""
    out, summary = [], []
    for cluster in shown:
        members = sorted(
            cluster, key=lambda r: (not r["kept"], _verdict(r) not in KEEPER_VERDICTS, r["record_id"])
        )
        tiles = []
        keeper_visual: dict | None = None
        for r in members:
            key, prefix, _ = scan.record(r["record_id"])
            if key and f"{key}.{prefix}.png" in data:
                png = plots.thumbnail_png(data[f"{key}.{prefix}.png"], cfg.thumb_px // 2)[0]
                visual = {"image": _image(png, f"record {r['record_id']}", role="dedup")}
            elif key and prefix.startswith("report_"):
                visual = {"text": report_text(scan, data, key, prefix)[:DEDUP_PREVIEW_CHARS]}
            elif not r["kept"] and r.get("tier") == "exact" and keeper_visual:
                visual = {**keeper_visual, "identical": True}
            else:
                visual = {"none": True}
            if r["kept"] and not keeper_visual:
                keeper_visual = visual
            detail = " · ".join(
                x
                for x in (
                    _verdict(r),
                    str(r.get("tier") or ""),
                    f"cosine {float(r['cosine']):.3f}" if r.get("cosine") is not None else "",
                )
                if x
            )
            tiles.append(
                {"kept": bool(r["kept"]), "visual": visual, "record_id": r["record_id"], "detail": detail}
            )
        out.append(
            {
                "cluster_id": cluster[0]["cluster_id"],
                "modality": members[0].get("modality") or "",
                "n": len(members),
                "tiles": tiles,
            }
        )
        summary.append(
            {
                "cluster_id": cluster[0]["cluster_id"],
                "kept": [r["record_id"] for r in members if r["kept"]],
                "not_kept": [r["record_id"] for r in members if not r["kept"]],
                "verdicts": _counts(_verdict(r) for r in members),
            }
        )
    return out, summary
