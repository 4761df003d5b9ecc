"""Every number of the card's JSON twin: counts from the parquet manifests, distributions and
de-identification audits from the merged shard statistics, the label reliability table."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
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
    read_arrow,
    release_arrow,
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


#: rows per batch where the card streams a parquet file (larger batches cost RSS, not time)
BATCH_ROWS = 8192


def _table(path: Path, columns: Sequence[str]) -> pa.Table:
    return read_arrow(path, columns)


def _batches(path: Path, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """A parquet file's ``columns`` in batches of :data:`BATCH_ROWS` rows."""
    return arrow_batches(path, columns, BATCH_ROWS)


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


def _unique_flat(lists: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The distinct values of a list column (nulls dropped)."""
    return pc.unique(pc.drop_null(pc.list_flatten(lists)))


def collect_counts(build_dir: Path, cfg: DatacardConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    """All table numbers of the card that come from the parquet files (and stats/build json),
    computed with Arrow over column projections and batches: memory grows with the distinct
    values (patients, source ids) as compact Arrow arrays, never with a Python object per row."""
    build_dir = Path(build_dir)
    for name in (MANIFEST, QUARANTINE, INPUTS):
        if not (build_dir / name).exists():
            raise FileNotFoundError(f"not a finished build (missing {name}): {build_dir}")
    shards = _read(build_dir / SHARDS)  # one row per shard
    stats = json.loads((build_dir / STATS).read_text()) if (build_dir / STATS).exists() else {}
    m = _manifest_counts(build_dir / MANIFEST)
    quarantine = _table(build_dir / QUARANTINE, QUARANTINE_COLUMNS)
    quarantined_ids = pc.unique(quarantine.column("source_id"))
    dedup_ids = _dedup_ids(build_dir / DEDUP)
    units = _input_counts(build_dir / INPUTS, m.pop("written_ids"), quarantined_ids, dedup_ids)
    n_quarantined_units, from_dedup = len(quarantined_ids), dedup_ids is not None
    del quarantined_ids, dedup_ids
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
        "quarantine": _quarantine_card(quarantine, n_quarantined_units, cfg),
        "dedup": _dedup_summary(build_dir / DEDUP, stats),
    }
    release_arrow()
    return out


def _manifest_counts(path: Path) -> dict[str, Any]:
    """The manifest's additive counts, streamed in batches, and its distinct written source ids."""
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
    for b in _batches(path, columns):
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
    out["written_ids"] = _unique_flat(_table(path, ["source_ids"]).column("source_ids"))
    return out


def _split_counts(
    path: Path, split_samples: Counter, shards: list[dict]
) -> tuple[dict[str, dict[str, int]], int, int]:
    """Per split: samples, patients, studies, shards, shard bytes; the patients, and how many
    are in several splits (distinct values counted in Arrow: a two-column projection)."""
    split_names = [s for s in SPLITS if split_samples.get(s)]
    split_names += sorted(set(split_samples) - set(split_names))
    patients, studies = {}, {}
    per_split: list[pa.Array] = []
    for col, into in (("patient", patients), ("study", studies)):
        t = read_arrow(path, ["split", col], read_dictionary=["split"])
        split, values = t.column("split"), t.column(col)
        keep = _nonempty(values)
        for s in split_names:
            distinct = pc.unique(values.filter(pc.and_(keep, pc.equal(split, s))))
            into[s] = len(distinct)
            if col == "patient":
                per_split.append(distinct)
        del t, split, values, keep
    if per_split:
        n_splits = pc.value_counts(pa.chunked_array(per_split, type=pa.string())).field("counts")
    else:
        n_splits = pa.array([], type=pa.int64())
    del per_split
    splits: dict[str, dict[str, int]] = {}
    for s in split_names:
        sh = [x for x in shards if x["split"] == s]
        splits[s] = {
            "samples": split_samples[s],
            "patients": patients[s],
            "studies": studies[s],
            "shards": len(sh),
            "shard_bytes": sum(x["n_bytes"] for x in sh),
        }
    return splits, len(n_splits), _count_true(pc.greater(n_splits, 1))


def _dedup_ids(path: Path) -> pa.Array | None:
    """Distinct source ids of the dedup rows not kept; ``None`` without ``dedup.parquet`` rows or
    its ``source_ids`` column (then ``stats.json``'s deduplicated counts are used)."""
    if not path.exists() or pq.ParquetFile(path).metadata.num_rows == 0:
        return None
    if "source_ids" not in arrow_columns(path, ["source_ids"]):
        return None
    t = _table(path, ["kept", "source_ids"])
    return _unique_flat(t.filter(pc.invert(t.column("kept"))).column("source_ids"))


def _input_counts(
    path: Path, written_ids: pa.Array, quarantined_ids: pa.Array, dedup_ids: pa.Array | None
) -> dict[str, Any]:
    """Input units: per modality and per source, how many units were written, quarantined (not
    written) or deduplicated (neither); units per kind; distinct files. One projection (source
    ids, and the low-cardinality columns dictionary-encoded), each id set looked up once."""
    small = ("source_name", "kind", "modality")
    t = read_arrow(path, ("source_id", *small), read_dictionary=small).unify_dictionaries()
    sid = t.column("source_id")
    written = pc.is_in(sid, value_set=written_ids)
    quarantined = pc.and_(pc.invert(written), pc.is_in(sid, value_set=quarantined_ids))
    fates = {"inputs": np.ones(t.num_rows, dtype=bool), "written": written, "quarantined": quarantined}
    if dedup_ids is not None:
        rest = pc.invert(pc.or_(written, quarantined))
        fates["deduplicated"] = pc.and_(rest, pc.is_in(sid, value_set=dedup_ids))
    del sid
    out: dict[str, Any] = {
        "input_units": t.num_rows,
        "per_modality": _sums_by(t.column("modality"), fates),
        "per_source": _sums_by(t.column("source_name"), fates),
        "kinds": Counter({k: c["inputs"] for k, c in _sums_by(t.column("kind"), fates).items()}),
    }
    del t, fates
    files = read_arrow(path, ["file_id"]).column("file_id")
    out["input_files"] = int(pc.count_distinct(files).as_py())
    return out


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


def _quarantine_card(quarantine: pa.Table, n_units: int, cfg: DatacardConfig) -> dict[str, Any]:
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
        "units": n_units,
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


def _dedup_verdicts(t: pa.Table) -> pa.ChunkedArray:
    """Each row's verdict (``verdict``, else ``reason`` for older builds, else ``""``)."""
    out = pa.chunked_array([pa.array([""] * t.num_rows, type=pa.string())]) if t.num_rows else None
    for col in ("reason", "verdict"):  # verdict wins where it is non-empty
        if col in t.column_names:
            v = pc.cast(t.column(col), pa.string())
            out = v if out is None else pc.if_else(_nonempty(v), v, out)
    return out if out is not None else pa.chunked_array([], type=pa.string())


def _dedup_summary(path: Path, stats: dict) -> dict[str, Any]:
    """Cluster counts from ``dedup.parquet`` (in Arrow), or the honest note that there are none."""
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
    t = _table(path, ("cluster_id", "kept", "verdict", "reason", "modality", "tier")).combine_chunks()
    kept = t.column("kept")
    verdicts = _dedup_verdicts(t)
    n_per_cluster = pc.value_counts(t.column("cluster_id")).field("counts")
    size_counts = Counter({int(k): v for k, v in _value_counts(n_per_cluster).items()})
    by_modality: dict[str, dict[str, int]] = {}
    if "modality" in t.column_names:
        modality = t.column("modality")
        for m in sorted(str(v) for v in pc.unique(modality.filter(_nonempty(modality))).to_pylist()):
            mt = t.filter(pc.equal(modality, m))
            k = _count_true(mt.column("kept"))
            by_modality[m] = {
                "records": mt.num_rows,
                "clusters": int(pc.count_distinct(mt.column("cluster_id")).as_py()),
                "kept": k,
                "not_kept": mt.num_rows - k,
            }
    n_kept = _count_true(kept)
    keeper = pc.is_in(verdicts, value_set=pa.array(KEEPER_VERDICTS, type=pa.string()))
    tiers = (
        _value_counts(t.column("tier").filter(_nonempty(t.column("tier"))))
        if "tier" in t.column_names
        else {}
    )
    return {
        "present": True,
        "note": "",
        "records": t.num_rows,
        "clusters": len(n_per_cluster),
        "clusters_with_several": _count_true(pc.greater(n_per_cluster, 1)),
        "kept": n_kept,
        "not_kept": t.num_rows - n_kept,
        "flagged_kept": _count_true(pc.and_(kept, pc.invert(keeper))),
        "verdicts": _by_count(_value_counts(pc.if_else(_nonempty(verdicts), verdicts, "(none)"))),
        "tiers": _by_count(tiers),
        "by_modality": by_modality,
        "cluster_sizes": {str(k): size_counts[k] for k in sorted(size_counts)},
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
    from workers.label_model import MODEL_DIR

    path = path or MODEL_DIR / RELIABILITY_FILE
    if not path.exists():
        return {"present": False}
    return {"present": True, **json.loads(path.read_text(encoding="utf-8"))}
