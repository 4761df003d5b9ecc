"""Every number of the card's JSON twin: counts from the parquet manifests, distributions and
de-identification audits from the merged shard statistics, the label reliability table."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.datacard.common import (
    DEDUP,
    DEFAULT_CONFIG,
    KEEPER_VERDICTS,
    MANIFEST_COLUMNS,
    NO_DEDUP_NOTE,
    DatacardConfig,
    _by_count,
    _counts,
    _read,
    _summary,
    _verdict,
)
from pipelines.datacard.shard_stats import Scan
from pipelines.manifest import INPUTS, MANIFEST, QUARANTINE, SHARDS, STATS
from schemas.contract import SPLITS
from schemas.labels import ASSERTIONS
from schemas.modality import SAMPLE_MODALITIES


def _sanitise_config(cfg: Any) -> Any:
    """Drop every ``path`` entry (source folders) from the build config before showing it."""
    if isinstance(cfg, Mapping):
        return {k: _sanitise_config(v) for k, v in cfg.items() if k != "path"}
    if isinstance(cfg, list):
        return [_sanitise_config(v) for v in cfg]
    return cfg


def collect_counts(build_dir: Path, cfg: DatacardConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    """All table numbers of the card that come from the parquet files (and stats/build json)."""
    build_dir = Path(build_dir)
    for name in (MANIFEST, QUARANTINE, INPUTS):
        if not (build_dir / name).exists():
            raise FileNotFoundError(f"not a finished build (missing {name}): {build_dir}")
    samples = _read(build_dir / MANIFEST, MANIFEST_COLUMNS)
    shards = _read(build_dir / SHARDS)
    quarantine = _read(build_dir / QUARANTINE)
    inputs = _read(build_dir / INPUTS)
    stats = json.loads((build_dir / STATS).read_text()) if (build_dir / STATS).exists() else {}
    dedup_rows = _read(
        build_dir / DEDUP,
        ("cluster_id", "record_id", "kept", "verdict", "reason", "source_ids", "modality", "tier"),
    )
    splits, seen = _split_counts(samples, shards)
    written_ids = {sid for r in samples for sid in r["source_ids"]}
    quarantined_ids = {q["source_id"] for q in quarantine}
    dedup_ids: set[str] | None = None
    if dedup_rows and "source_ids" in dedup_rows[0]:
        dedup_ids = {sid for d in dedup_rows if not d["kept"] for sid in (d["source_ids"] or [])}
    totals = {
        "samples": len(samples),
        "shards": len(shards),
        "shard_bytes": sum(x["n_bytes"] for x in shards),
        "sample_bytes": sum(r["n_bytes"] for r in samples),
        "input_units": len(inputs),
        "input_files": len({u["file_id"] for u in inputs}),
        "quarantine_records": len(quarantine),
        "patients": len(seen),
        "patients_in_several_splits": sum(1 for c in seen.values() if c > 1),
        "samples_without_patient": sum(1 for r in samples if not r["patient"]),
    }
    return {
        "totals": totals,
        "splits": splits,
        "modalities": _modality_counts(samples),
        "modality_combinations": _counts("+".join(r["modalities"]) for r in samples),
        "sources": _source_counts(samples, inputs, written_ids, quarantined_ids),
        "licences": {
            lic: {"samples": sum(lic in r["licences"] for r in samples)}
            for lic in sorted({lic for r in samples for lic in r["licences"]})
        },
        "inputs_by_kind": _counts(u["kind"] for u in inputs),
        "accounting": _accounting(inputs, written_ids, quarantined_ids, dedup_ids, stats),
        "quarantine": _quarantine_card(quarantine, quarantined_ids, cfg),
        "dedup": _dedup_summary(dedup_rows, stats),
    }


def _split_counts(samples: list[dict], shards: list[dict]) -> tuple[dict[str, dict[str, int]], Counter]:
    """Per split: samples, patients, studies, shards, shard bytes; and each patient's split count."""
    splits: dict[str, dict[str, int]] = {}
    split_names = [s for s in SPLITS if any(r["split"] == s for r in samples)]
    split_names += sorted({r["split"] for r in samples} - set(split_names))
    patients_by_split: dict[str, set[str]] = defaultdict(set)
    for r in samples:
        if r["patient"]:
            patients_by_split[r["split"]].add(r["patient"])
    for s in split_names:
        rows = [r for r in samples if r["split"] == s]
        sh = [x for x in shards if x["split"] == s]
        splits[s] = {
            "samples": len(rows),
            "patients": len(patients_by_split[s]),
            "studies": len({r["study"] for r in rows if r["study"]}),
            "shards": len(sh),
            "shard_bytes": sum(x["n_bytes"] for x in sh),
        }
    return splits, Counter(p for ps in patients_by_split.values() for p in ps)


def _modality_counts(samples: list[dict]) -> dict[str, dict[str, int]]:
    modalities: dict[str, dict[str, int]] = {}
    for m in SAMPLE_MODALITIES:
        with_m = [r for r in samples if m.value in r["modalities"]]
        items = sum(
            1
            for r in with_m
            for name in r["members"]
            if name.startswith(f"{m.value}_") and name.split(".", 1)[-1] in ("png", "npy", "txt")
        )  # one main member per item: image png, volume/ecg npy, report txt (raw.npy is a second one)
        modalities[m.value] = {"samples": len(with_m), "items": items}
    return modalities


def _source_counts(
    samples: list[dict], inputs: list[dict], written_ids: set[str], quarantined_ids: set[str]
) -> dict[str, dict[str, int]]:
    source_names = sorted(
        {u["source_name"] for u in inputs} | {n for r in samples for n in r["source_names"]}
    )
    sources: dict[str, dict[str, int]] = {}
    for name in source_names:
        units = [u for u in inputs if u["source_name"] == name]
        sources[name] = {
            "samples": sum(name in r["source_names"] for r in samples),
            "input_units": len(units),
            "written_units": sum(u["source_id"] in written_ids for u in units),
            "quarantined_units": sum(
                u["source_id"] not in written_ids and u["source_id"] in quarantined_ids for u in units
            ),
        }
    return sources


def _quarantine_card(
    quarantine: list[dict], quarantined_ids: set[str], cfg: DatacardConfig
) -> dict[str, Any]:
    by_reason: dict[str, dict[str, Any]] = {}
    reason_counts = Counter(q["reason"] for q in quarantine)
    for reason in sorted(reason_counts, key=lambda k: (-reason_counts[k], k)):
        qs = [q for q in quarantine if q["reason"] == reason]
        ids = sorted({q["source_id"] for q in qs})
        by_reason[reason] = {
            "records": len(qs),
            "units": len(ids),
            "by_modality": _counts(q["modality"] for q in qs),
            "stages": sorted({q["stage"] for q in qs}),
            "examples": ids[: cfg.example_ids],
            "example_message": sorted(q["message"] for q in qs)[0],
        }
    return {
        "records": len(quarantine),
        "units": len(quarantined_ids),
        "by_reason": by_reason,
        "by_source": _counts(q["source_name"] for q in quarantine),
        "by_stage": _counts(q["stage"] for q in quarantine),
    }


def _accounting(
    inputs: list[dict],
    written_ids: set[str],
    quarantined_ids: set[str],
    dedup_ids: set[str] | None,
    stats: dict,
) -> dict[str, Any]:
    """Per-modality unit accounting; a unit is written, else quarantined, else deduplicated."""
    stats_pm = stats.get("per_modality", {})
    per: dict[str, Counter] = defaultdict(Counter)
    for u in inputs:
        c = per[u["modality"]]
        c["inputs"] += 1
        sid = u["source_id"]
        if sid in written_ids:
            c["written"] += 1
        elif sid in quarantined_ids:
            c["quarantined"] += 1
        elif dedup_ids is not None and sid in dedup_ids:
            c["deduplicated"] += 1
    rows: dict[str, dict[str, Any]] = {}
    for m in sorted(per):
        c = per[m]
        dedup = (
            c["deduplicated"] if dedup_ids is not None else int(stats_pm.get(m, {}).get("deduplicated", 0))
        )
        unaccounted = c["inputs"] - c["written"] - c["quarantined"] - dedup
        rows[m] = {
            "inputs": c["inputs"],
            "written": c["written"],
            "quarantined": c["quarantined"],
            "deduplicated": dedup,
            "unaccounted": unaccounted,
            "holds": unaccounted == 0,
        }
    keys = ("inputs", "written", "quarantined", "deduplicated", "unaccounted")
    total = {k: sum(r[k] for r in rows.values()) for k in keys}
    total["holds"] = all(r["holds"] for r in rows.values())
    agrees = all(
        {k: int(stats_pm.get(m, {}).get(k, -1)) for k in keys[:4]} == {k: rows[m][k] for k in keys[:4]}
        for m in rows
    ) and set(stats_pm) == set(rows)
    return {
        "per_modality": rows,
        "total": total,
        "identity_holds": bool(total["holds"]),
        "stats_json_agrees": bool(agrees) if stats_pm else False,
        "deduplicated_from": "dedup.parquet" if dedup_ids is not None else "stats.json",
    }


def _dedup_summary(rows: list[dict], stats: dict) -> dict[str, Any]:
    """Cluster counts from ``dedup.parquet`` rows, or the honest note that there are none."""
    if not rows:
        dd = stats.get("dedup")
        if isinstance(dd, Mapping) and dd.get("enabled") is False:
            note = "dedup stage disabled in this build's configuration"
        elif dd or any(int(v.get("deduplicated", 0)) for v in stats.get("per_modality", {}).values()):
            note = "stats.json reports a dedup stage, but it clustered nothing (no dedup.parquet rows)"
        else:
            note = NO_DEDUP_NOTE
        return {"present": False, "note": note}
    clusters: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        clusters[r["cluster_id"]].append(r)
    sizes = Counter(len(v) for v in clusters.values())
    by_modality: dict[str, dict[str, int]] = {}
    for m in sorted({str(r.get("modality", "")) for r in rows if r.get("modality")}):
        mr = [r for r in rows if r.get("modality") == m]
        by_modality[m] = {
            "records": len(mr),
            "clusters": len({r["cluster_id"] for r in mr}),
            "kept": sum(1 for r in mr if r["kept"]),
            "not_kept": sum(1 for r in mr if not r["kept"]),
        }
    return {
        "present": True,
        "note": "",
        "records": len(rows),
        "clusters": len(clusters),
        "clusters_with_several": sum(1 for v in clusters.values() if len(v) > 1),
        "kept": sum(1 for r in rows if r["kept"]),
        "not_kept": sum(1 for r in rows if not r["kept"]),
        "flagged_kept": sum(1 for r in rows if r["kept"] and _verdict(r) not in KEEPER_VERDICTS),
        "verdicts": _counts(_verdict(r) or "(none)" for r in rows),
        "tiers": _counts(r["tier"] for r in rows if r.get("tier")),
        "by_modality": by_modality,
        "cluster_sizes": {str(k): sizes[k] for k in sorted(sizes)},
    }


def distributions(scan: Scan, cfg: DatacardConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Distribution numbers (JSON) and the raw value lists the plots need."""
    c = scan.counts
    n_items = c["items"]
    raw: dict[str, Any] = {}
    out: dict[str, Any] = {}
    im = c["image"]
    raw["image_sizes"] = [(int(x), int(y)) for x, y in zip(im["columns"], im["rows"], strict=True)]
    out["image"] = {
        "items": int(n_items.get("image", 0)),
        "rows": _summary(im["rows"]),
        "columns": _summary(im["columns"]),
        "pixel_spacing_mm": _by_count(im["pixel_spacing_mm"]),
        "photometric": _by_count(im["photometric"]),
        "dicom_modality": _by_count(im["dicom_modality"]),
        "multi_frame": im["multi_frame"],
        "pixel_steps": _by_count(im["pixel_steps"]),
    }
    vol = c["volume"]
    out["volume"] = {
        "items": int(n_items.get("volume", 0)),
        "shape": _by_count(vol["shape"]),
        "spacing_mm": _by_count(vol["spacing_mm"]),
        "orientation": _by_count(vol["orientation"]),
        "source_format": _by_count(vol["source_format"]),
        "hounsfield": vol["hounsfield"],
    }
    ecg = c["ecg"]
    raw["ecg_durations"] = [float(d) for d in ecg["source_duration_s"]]
    out["ecg"] = {
        "items": int(n_items.get("ecg", 0)),
        "source_duration_s": _summary(raw["ecg_durations"]),
        "duration_not_recorded": ecg["duration_not_recorded"],
        "original_rate_hz": _by_count(ecg["original_rate_hz"]),
        "stored": _by_count(ecg["stored"]),
        "with_qc_flags": ecg["with_qc_flags"],
        "qc_flags": _by_count(ecg["qc_flags"]),
    }
    rep = c["report"]
    lengths, words = [], []
    for key, info in scan.samples.items():
        for prefix in info["prefixes"]:
            if prefix.startswith("report_"):
                n_chars, n_words, _, _ = scan.report(key, prefix)
                lengths.append(n_chars)
                words.append(n_words)
    entities: dict[str, dict[str, int]] = rep["entities"]
    raw["report_lengths"] = lengths
    total = {k: sum(v.values()) for k, v in entities.items()}
    top = sorted(entities, key=lambda k: (-total[k], k))[: cfg.top_entities]
    out["report"] = {
        "items": int(n_items.get("report", 0)),
        "length_chars": _summary(lengths),
        "length_words": _summary(words),
        "languages": _by_count(rep["languages"]),
        "report_types": _by_count(rep["report_types"]),
        "findings": sum(total.values()),
        "distinct_labels": len(entities),
        "top_entities": [
            {"label": k, **{a: int(entities[k].get(a, 0)) for a in ASSERTIONS}, "total": total[k]}
            for k in top
        ],
    }
    return out, raw


def deid_profile(scan: Scan, cfg: DatacardConfig) -> dict[str, Any]:
    """Per modality: the de-identification descriptions in force and the fields most often touched."""
    out: dict[str, Any] = {}
    for modality in [m.value for m in SAMPLE_MODALITIES]:
        n_items = int(scan.counts["items"].get(modality, 0))
        if not n_items:
            continue
        d = scan.counts["deid"].get(modality) or {"audited": 0, "descriptions": {}, "fields": {}}
        out[modality] = {
            "items": n_items,
            "audited": d["audited"],
            "descriptions": {k: _by_count(c) for k, c in sorted(d["descriptions"].items())},
            "fields": {
                k: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[: cfg.top_deid_fields])
                for k, c in sorted(d["fields"].items())
                if c
            },
        }
    return out


def label_reliability(path: Path | None = None) -> dict[str, Any]:
    """The report labeller's per-label precision/recall from its last evaluation
    (``medcorpus eval-labels --reliability``, shipped next to the label model)."""
    from pipelines.eval_labels import RELIABILITY_FILE
    from workers.label_model import MODEL_DIR

    path = path or MODEL_DIR / RELIABILITY_FILE
    if not path.exists():
        return {"present": False}
    return {"present": True, **json.loads(path.read_text(encoding="utf-8"))}
