"""Every number of the card's JSON twin: counts from the parquet manifests, distributions and
de-identification audits from the merged shard statistics, the label reliability table."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.datacard.common import (
    DEDUP,
    DEFAULT_CONFIG,
    KEEPER_VERDICTS,
    NO_DEDUP_NOTE,
    QUARANTINE_COLUMNS,
    DatacardConfig,
    _by_count,
    _read,
    _summary,
    arrow_batches,
    arrow_columns,
    distinct_count,
    in_range,
    key_ranges,
    read_arrow,
    release_arrow,
    rows_in_range,
)
from pipelines.datacard.shard_stats import Scan
from pipelines.manifest import INPUTS, MANIFEST, QUARANTINE, SHARDS, STATS
from schemas.contract import SPLITS
from schemas.labels import ASSERTIONS
from schemas.modality import SAMPLE_MODALITIES


def _sanitise_config(cfg: Any) -> Any:
    """Drop every path-like entry from the build config before showing it: source folders
    (``path``), table files (``labels_path``) and the folder layouts that identity is read from
    (``path_regex``), whose literal parts can name sites or people."""
    if isinstance(cfg, Mapping):
        return {k: _sanitise_config(v) for k, v in cfg.items() if "path" not in k}
    if isinstance(cfg, list):
        return [_sanitise_config(v) for v in cfg]
    return cfg


def _value_counts(values: pa.Array | pa.ChunkedArray) -> Counter:
    """Arrow ``value_counts`` as a Counter of ``str(value)`` (what :func:`_counts` counts)."""
    vc = pc.value_counts(values)
    out: Counter = Counter()
    for v, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True):
        out[str(v)] += int(n)
    return out


def _nonempty(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Mask of the values that are neither null nor ``""`` (Python truthiness of a string)."""
    return pc.fill_null(pc.not_equal(values, ""), False)


def _count_true(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)


def _rows_with(lists: pa.Array | pa.ChunkedArray) -> Counter:
    """For a list column: each value → number of rows whose list holds it (once per row).
    One pass per distinct value (modalities, licences, source names: a handful)."""
    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    flat, rows = pc.list_flatten(lists), pc.list_parent_indices(lists)
    out: Counter = Counter()
    for v in pc.unique(flat).to_pylist():
        hit = pc.equal(flat, v) if v is not None else pc.is_null(flat)
        out[str(v)] += int(pc.count_distinct(rows.filter(hit)).as_py())
    return out


def _sums_by(keys: pa.Array | pa.ChunkedArray, masks: Mapping[str, Any]) -> dict[str, Counter]:
    """``{str(key): {name: rows of that key where masks[name] holds}}`` (numpy bincount over the
    keys' dictionary codes; no per-row Python objects). Keys seen in no row are left out."""
    if not pa.types.is_dictionary(keys.type):
        keys = pc.dictionary_encode(keys)
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks() if keys.num_chunks else pa.array([], type=keys.type)
    codes = keys.indices.to_numpy(zero_copy_only=False)
    labels = [str(v) for v in keys.dictionary.to_pylist()]
    out: dict[str, Counter] = {}
    for name, mask in masks.items():
        hits = np.bincount(codes, weights=np.asarray(mask, dtype=np.float64), minlength=len(labels))
        rows = np.bincount(codes, minlength=len(labels))
        for k, n, r in zip(labels, hits.tolist(), rows.tolist(), strict=True):
            if r:
                out.setdefault(k, Counter())[name] += int(n)
    return out


def _flat_in_range(
    path: Path, column: str, lo: str | None, hi: str | None, not_kept: bool = False
) -> pa.Array:
    """Distinct values in ``[lo, hi)`` of a list column (``not_kept``: of the rows not kept)."""
    parts = []
    for b in arrow_batches(path, [column, "kept"] if not_kept else [column]):
        lists = b.column(column)
        if not_kept:
            lists = lists.filter(pc.invert(b.column("kept")))
        flat = pc.drop_null(pc.list_flatten(lists))
        mask = in_range(flat, lo, hi)
        parts.append(pc.unique(flat if mask is None else flat.filter(mask)))
    return pc.unique(pa.chunked_array(parts, type=pa.string()))


def collect_counts(build_dir: Path, cfg: DatacardConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    """All table numbers of the card that come from the parquet files (and stats/build json),
    computed with Arrow over batches and column projections, never a Python object per row.
    Distinct counts and id lookups (source ids, file ids, patients, studies, clusters) run in
    passes over ranges of the key values (``common.key_ranges``), so their hash sets hold at
    most about ``PASS_ROWS`` values whatever the corpus size; ``quarantine.parquet`` is read
    whole (as Arrow: one row per quarantined record)."""
    build_dir = Path(build_dir)
    for name in (MANIFEST, QUARANTINE, INPUTS):
        if not (build_dir / name).exists():
            raise FileNotFoundError(f"not a finished build (missing {name}): {build_dir}")
    shards = _read(build_dir / SHARDS)  # one row per shard
    stats = json.loads((build_dir / STATS).read_text()) if (build_dir / STATS).exists() else {}
    m = _manifest_counts(build_dir / MANIFEST)
    release_arrow()
    quarantine = read_arrow(build_dir / QUARANTINE, QUARANTINE_COLUMNS)
    from_dedup = _dedup_has_source_ids(build_dir / DEDUP)
    units = _input_counts(build_dir, quarantine, from_dedup)
    release_arrow()
    splits, n_patients, n_several = _split_counts(build_dir / MANIFEST, m["split_samples"], shards)
    release_arrow()
    totals = {
        "samples": m["samples"],
        "shards": len(shards),
        "shard_bytes": sum(x["n_bytes"] for x in shards),
        "sample_bytes": m["sample_bytes"],
        "input_units": units["input_units"],
        "input_files": units["input_files"],
        "quarantine_records": quarantine.num_rows,
        "patients": n_patients,
        "patients_in_several_splits": n_several,
        "samples_without_patient": m["samples_without_patient"],
    }
    out = {
        "totals": totals,
        "splits": splits,
        "modalities": m["modalities"],
        "modality_combinations": _by_count(m["combinations"]),
        "sources": _source_counts(m["source_samples"], units["per_source"]),
        "licences": {lic: {"samples": m["licences"][lic]} for lic in sorted(m["licences"])},
        "inputs_by_kind": _by_count(units["kinds"]),
        "accounting": _accounting(units["per_modality"], from_dedup, stats),
        "quarantine": _quarantine_card(quarantine, cfg),
        "dedup": _dedup_summary(build_dir / DEDUP, stats),
    }
    release_arrow()
    return out


def _manifest_counts(path: Path) -> dict[str, Any]:
    """The manifest's additive counts, streamed in batches."""
    out: dict[str, Any] = {
        "samples": 0,
        "sample_bytes": 0,
        "samples_without_patient": 0,
        "split_samples": Counter(),
        "combinations": Counter(),
        "licences": Counter(),
        "source_samples": Counter(),
    }
    with_modality: Counter = Counter()
    items: Counter = Counter()
    columns = ("split", "patient", "n_bytes", "modalities", "members", "source_names", "licences")
    for b in arrow_batches(path, columns):
        out["samples"] += b.num_rows
        out["sample_bytes"] += int(pc.sum(b.column("n_bytes")).as_py() or 0)
        out["samples_without_patient"] += b.num_rows - _count_true(_nonempty(b.column("patient")))
        out["split_samples"] += _value_counts(b.column("split"))
        mods = b.column("modalities")
        out["combinations"] += _value_counts(pc.binary_join(mods, "+"))
        with_modality += _rows_with(mods)
        members = pc.list_flatten(b.column("members"))
        for mod in SAMPLE_MODALITIES:  # one main member per item: image png, volume/ecg npy, report txt
            pattern = rf"^{re.escape(mod.value)}_[^.]*\.(png|npy|txt)$"  # (raw.npy is a second one)
            items[mod.value] += _count_true(pc.match_substring_regex(members, pattern))
        out["licences"] += _rows_with(b.column("licences"))
        out["source_samples"] += _rows_with(b.column("source_names"))
    out["modalities"] = {
        mod.value: {"samples": with_modality[mod.value], "items": items[mod.value]}
        for mod in SAMPLE_MODALITIES
    }
    return out


def _split_counts(
    path: Path, split_samples: Counter, shards: list[dict]
) -> tuple[dict[str, dict[str, int]], int, int]:
    """Per split: samples, patients, studies, shards, shard bytes; the patients, and how many
    are in several splits (distinct values counted in Arrow, in passes over value ranges)."""
    split_names = [s for s in SPLITS if split_samples.get(s)]
    split_names += sorted(set(split_samples) - set(split_names))
    counts: dict[str, Counter] = {"patient": Counter(), "study": Counter()}
    n_patients = n_several = 0
    for col, into in counts.items():
        for lo, hi in key_ranges(path, col):
            t = rows_in_range(path, ["split", col], col, lo, hi, read_dictionary=["split"])
            t = t.filter(_nonempty(t.column(col)))
            per_split = []
            for s in split_names:
                distinct = pc.unique(t.column(col).filter(pc.equal(t.column("split"), s)))
                into[s] += len(distinct)
                per_split.append(distinct)
            if col == "patient" and per_split:
                n_splits = pc.value_counts(pa.chunked_array(per_split, type=pa.string())).field("counts")
                n_patients += len(n_splits)
                n_several += _count_true(pc.greater(n_splits, 1))
            del t, per_split
    splits: dict[str, dict[str, int]] = {}
    for s in split_names:
        sh = [x for x in shards if x["split"] == s]
        splits[s] = {
            "samples": split_samples[s],
            "patients": counts["patient"][s],
            "studies": counts["study"][s],
            "shards": len(sh),
            "shard_bytes": sum(x["n_bytes"] for x in sh),
        }
    return splits, n_patients, n_several


def _dedup_has_source_ids(path: Path) -> bool:
    """Whether ``dedup.parquet`` has rows and a ``source_ids`` column (else ``stats.json``'s
    deduplicated counts are used)."""
    if not path.exists() or pq.ParquetFile(path).metadata.num_rows == 0:
        return False
    return bool(arrow_columns(path, ["source_ids"]))


def _input_counts(build_dir: Path, quarantine: pa.Table, from_dedup: bool) -> dict[str, Any]:
    """Input units: per modality and per source, how many units were written, quarantined (not
    written) or deduplicated (neither); units per kind; distinct files. In passes over ranges of
    the source ids: in each, the written, quarantined and deduplicated ids of that range are
    looked up once (Arrow hash sets of at most about PASS_ROWS ids)."""
    path = build_dir / INPUTS
    small = ("source_name", "kind", "modality")
    per_modality: dict[str, Counter] = {}
    per_source: dict[str, Counter] = {}
    kinds: Counter = Counter()
    n_units = 0
    quarantined_all = quarantine.column("source_id")
    for lo, hi in key_ranges(path, "source_id"):
        mask = in_range(quarantined_all, lo, hi)
        quarantined_ids = pc.unique(quarantined_all if mask is None else quarantined_all.filter(mask))
        written_ids = _flat_in_range(build_dir / MANIFEST, "source_ids", lo, hi)
        t = rows_in_range(path, ("source_id", *small), "source_id", lo, hi, read_dictionary=small)
        sid = t.column("source_id")
        written = pc.is_in(sid, value_set=written_ids)
        del written_ids
        quarantined = pc.and_(pc.invert(written), pc.is_in(sid, value_set=quarantined_ids))
        fates = {"inputs": np.ones(t.num_rows, dtype=bool), "written": written, "quarantined": quarantined}
        if from_dedup:
            dedup_ids = _flat_in_range(build_dir / DEDUP, "source_ids", lo, hi, not_kept=True)
            rest = pc.invert(pc.or_(written, quarantined))
            fates["deduplicated"] = pc.and_(rest, pc.is_in(sid, value_set=dedup_ids))
            del dedup_ids
        n_units += t.num_rows
        for col, into in (("modality", per_modality), ("source_name", per_source)):
            for k, c in _sums_by(t.column(col), fates).items():
                into.setdefault(k, Counter()).update(c)
        kinds.update({k: c["inputs"] for k, c in _sums_by(t.column("kind"), fates).items()})
        del t, sid, fates
        release_arrow()
    return {
        "input_units": n_units,
        "input_files": distinct_count(path, "file_id"),
        "per_modality": per_modality,
        "per_source": per_source,
        "kinds": kinds,
    }


def _source_counts(source_samples: Counter, per_source: Mapping[str, Counter]) -> dict[str, dict[str, int]]:
    sources: dict[str, dict[str, int]] = {}
    for name in sorted(set(per_source) | set(source_samples)):
        c = per_source.get(name, Counter())
        sources[name] = {
            "samples": source_samples[name],
            "input_units": c["inputs"],
            "written_units": c["written"],
            "quarantined_units": c["quarantined"],
        }
    return sources


def _quarantine_card(quarantine: pa.Table, cfg: DatacardConfig) -> dict[str, Any]:
    by_reason: dict[str, dict[str, Any]] = {}
    reason_counts = _value_counts(quarantine.column("reason"))
    for reason in sorted(reason_counts, key=lambda k: (-reason_counts[k], k)):
        qs = quarantine.filter(pc.equal(quarantine.column("reason"), reason))
        ids = pc.unique(qs.column("source_id"))
        by_reason[reason] = {
            "records": qs.num_rows,
            "units": len(ids),
            "by_modality": _by_count(_value_counts(qs.column("modality"))),
            "stages": sorted(str(x) for x in pc.unique(qs.column("stage")).to_pylist()),
            "examples": pc.array_take(ids, pc.array_sort_indices(ids)).slice(0, cfg.example_ids).to_pylist(),
            "example_message": pc.min(qs.column("message")).as_py(),
        }
    return {
        "records": quarantine.num_rows,
        "units": len(pc.unique(quarantine.column("source_id"))),
        "by_reason": by_reason,
        "by_source": _by_count(_value_counts(quarantine.column("source_name"))),
        "by_stage": _by_count(_value_counts(quarantine.column("stage"))),
    }


def _accounting(per: Mapping[str, Counter], from_dedup: bool, stats: dict) -> dict[str, Any]:
    """Per-modality unit accounting; a unit is written, else quarantined, else deduplicated."""
    stats_pm = stats.get("per_modality", {})
    rows: dict[str, dict[str, Any]] = {}
    for m in sorted(per):
        c = per[m]
        dedup = c["deduplicated"] if from_dedup else int(stats_pm.get(m, {}).get("deduplicated", 0))
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
        "deduplicated_from": "dedup.parquet" if from_dedup else "stats.json",
    }


def _dedup_verdicts(t: pa.Table | pa.RecordBatch) -> pa.Array:
    """Each row's verdict (``verdict``, else ``reason`` for older builds, else ``""``)."""
    out = pa.array([""] * t.num_rows, type=pa.string())
    for col in ("reason", "verdict"):  # verdict wins where it is non-empty
        if col in t.schema.names:
            v = pc.cast(t.column(col), pa.string())
            out = pc.if_else(_nonempty(v), v, out)
    return out


def _dedup_summary(path: Path, stats: dict) -> dict[str, Any]:
    """Cluster counts from ``dedup.parquet`` (in Arrow: additive counts in batches, cluster sizes
    in passes over ranges of the cluster ids), or the honest note that there are none."""
    n_rows = pq.ParquetFile(path).metadata.num_rows if path.exists() else 0
    if not n_rows:
        dd = stats.get("dedup")
        if isinstance(dd, Mapping) and dd.get("enabled") is False:
            note = "dedup stage disabled in this build's configuration"
        elif dd or any(int(v.get("deduplicated", 0)) for v in stats.get("per_modality", {}).values()):
            note = "stats.json reports a dedup stage, but it clustered nothing (no dedup.parquet rows)"
        else:
            note = NO_DEDUP_NOTE
        return {"present": False, "note": note}
    c: Counter = Counter()
    verdicts: Counter = Counter()
    tiers: Counter = Counter()
    by_modality: dict[str, Counter] = {}
    keeper = pa.array(KEEPER_VERDICTS, type=pa.string())
    for b in arrow_batches(path, ("kept", "verdict", "reason", "modality", "tier")):
        kept = b.column("kept")
        v = _dedup_verdicts(b)
        c["records"] += b.num_rows
        c["kept"] += _count_true(kept)
        c["flagged_kept"] += _count_true(pc.and_(kept, pc.invert(pc.is_in(v, value_set=keeper))))
        verdicts.update(_value_counts(pc.if_else(_nonempty(v), v, "(none)")))
        if "tier" in b.schema.names:
            tiers.update(_value_counts(b.column("tier").filter(_nonempty(b.column("tier")))))
        if "modality" in b.schema.names:
            mask = _nonempty(b.column("modality"))
            modality, kept_m = b.column("modality").filter(mask), kept.filter(mask)
            rows = {"records": np.ones(len(modality), dtype=bool), "kept": kept_m}
            for k, n in _sums_by(modality, rows).items():
                by_modality.setdefault(k, Counter()).update(n)
    sizes: Counter = Counter()
    for lo, hi in key_ranges(path, "cluster_id"):
        t = rows_in_range(path, ("cluster_id", "modality"), "cluster_id", lo, hi)
        sizes.update(int(n) for n in pc.value_counts(t.column("cluster_id")).field("counts").to_numpy())
        if "modality" in t.column_names:
            for m in by_modality:
                ids = t.column("cluster_id").filter(pc.equal(t.column("modality"), m))
                by_modality[m]["clusters"] += int(pc.count_distinct(ids).as_py())
        del t
    return {
        "present": True,
        "note": "",
        "records": c["records"],
        "clusters": sum(sizes.values()),
        "clusters_with_several": sum(n for k, n in sizes.items() if k > 1),
        "kept": c["kept"],
        "not_kept": c["records"] - c["kept"],
        "flagged_kept": c["flagged_kept"],
        "verdicts": _by_count(verdicts),
        "tiers": _by_count(tiers),
        "by_modality": {
            m: {
                "records": by_modality[m]["records"],
                "clusters": by_modality[m]["clusters"],
                "kept": by_modality[m]["kept"],
                "not_kept": by_modality[m]["records"] - by_modality[m]["kept"],
            }
            for m in sorted(by_modality)
        },
        "cluster_sizes": {str(k): sizes[k] for k in sorted(sizes)},
    }


def distributions(scan: Scan, cfg: DatacardConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Distribution numbers (JSON) and the raw value lists the plots need."""
    c = scan.counts
    n_items = c["items"]
    raw: dict[str, Any] = {}
    out: dict[str, Any] = {}
    im = c["image"]
    raw["image_sizes"] = np.column_stack([im["columns"], im["rows"]]).reshape(-1, 2)
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
    raw["ecg_durations"] = np.asarray(ecg["source_duration_s"], dtype=np.float64)
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
    lengths = np.asarray(rep["chars"], dtype=np.float64)
    words = np.asarray(rep["words"], dtype=np.float64)
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
    from workers.report.label_model import MODEL_DIR

    path = path or MODEL_DIR / RELIABILITY_FILE
    if not path.exists():
        return {"present": False}
    return {"present": True, **json.loads(path.read_text(encoding="utf-8"))}
