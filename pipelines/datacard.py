"""The data card of a build: one self-contained HTML page plus its JSON twin (``datacard.json``).

``write_datacard(build_dir)`` reads a finished build and writes ``datacard.html`` and
``datacard.json`` into it. The HTML has no external reference at all: CSS and JS are inline,
images are ``data:image/png;base64`` URIs, and a Content-Security-Policy forbids any load that
is not inline, so the page opens from disk, offline, in any browser.

Inputs (all written by ``pipelines.build``):

* ``manifest.parquet`` (``SampleRecord`` rows), ``shards.parquet``, ``quarantine.parquet``
  (``QuarantineRecord``), ``inputs.parquet`` (every input unit: source_id, file_id, source_name,
  kind, modality), ``stats.json`` and ``build.json`` (config, tool versions, demo flag);
* the card statistics of every shard: the ``card`` section of its stats JSON
  (``shards/{split}/{split}-NNNNNN.json``), computed by :func:`shard_card_stats` while the shard
  is written; a shard without one (built by an older version) has them computed from its tar's
  ``meta.json`` and ``report_{i}.txt``/``.json`` members. Besides that, only the gallery's
  samples (and kept images of the dedup clusters shown) are read from the tars;
* optionally ``dedup.parquet`` (``pipelines.dedup``), one row per record that fell into a
  near-duplicate cluster. Columns the card reads:

  ==============  =========  ==========================================================
  ``cluster_id``  string     the cluster
  ``record_id``   string     an item record id (``DecodedRecord.record_id``)
  ``kept``        bool       written to a shard (false: removed as duplicate/conflict)
  ``verdict``     string     ``representative`` (the keeper) | ``duplicate`` (dropped,
                             counted as deduplicated) | ``template`` (flagged, kept) |
                             ``conflict`` (quarantined); ``reason`` is read if absent
  ``source_ids``  list<str>  optional: the record's input units; with it, units of rows
                             not kept (and not quarantined) count as ``deduplicated`` in
                             the accounting table, else ``stats.json``'s count is used
  ``modality``, ``tier``, ``cosine``  optional, shown when present
  ``thumb_png``   binary     optional: a small PNG of the record; records not kept are
                             in no shard, so this is the only way the card can show them
  ==============  =========  ==========================================================

  The ``patient`` column is never shown. Without ``dedup.parquet`` (or with no rows) the card
  says "no dedup stage in this build" (or that the stage was disabled / clustered nothing,
  from ``stats.json``'s ``dedup`` entry).

Numbers: every number in a table cell of the HTML carries ``data-k`` (the JSON path of that
number in the twin, as a JSON array) and, where the shown text is rounded or humanised,
``data-v`` (the exact value), so a test can check the page against the twin and the twin
against the parquet files. Counts come from the parquet files; the accounting identity
(inputs = written + quarantined + deduplicated, per modality, in input units) is recomputed
here and compared with ``stats.json``.

Privacy: the card shows pseudonymous sample keys and keyed-hash source ids, never file paths
(the ``path`` of each configured source is dropped), patient pseudonyms, dates or header values;
quarantine messages are PHI-free by contract (``schemas.reasons``); report excerpts are the
de-identified report text as written to the shards. All text is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import statistics
import tarfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from tqdm import tqdm

from pipelines.manifest import BUILD, INPUTS, MANIFEST, QUARANTINE, SHARDS, STATS
from pipelines.writer import write_atomic
from schemas.contract import ECG_RATE_HZ, META_MEMBER, SHARDS_DIR, SPLITS
from schemas.labels import ASSERTIONS
from schemas.modality import SAMPLE_MODALITIES


class _LazyPlots:
    """``pipelines.datacard_plots``, imported on first use: matplotlib costs ~2 s of imports,
    which shard writers (they import this module for :func:`shard_card_stats`) never need."""

    def __getattr__(self, name: str):
        from pipelines import datacard_plots

        return getattr(datacard_plots, name)


plots = _LazyPlots()

log = logging.getLogger(__name__)

DATACARD_HTML = "datacard.html"
DATACARD_JSON = "datacard.json"
DEDUP = "dedup.parquet"
CARD_VERSION = "1"
NO_DEDUP_NOTE = "no dedup stage in this build"
#: dedup verdicts of a cluster's keeper; any other verdict on a kept record is a flag (e.g. template)
KEEPER_VERDICTS = ("representative", "")
#: the manifest columns the card counts with (hashes and ids are not needed)
MANIFEST_COLUMNS = (
    "split",
    "patient",
    "study",
    "modalities",
    "members",
    "n_bytes",
    "source_ids",
    "source_names",
    "licences",
)
#: keys of a per-item de-identification audit shown verbatim (descriptions, not values)
DEID_TEXT_KEYS = ("profile", "options", "table", "method", "date_shift", "hardening", "identity")
#: list-valued audit keys that name the attributes/fields an action touched (names, never values)
DEID_FIELD_KEYS = (
    "removed",
    "emptied",
    "dummied",
    "dates_shifted",
    "uid_replaced",
    "hardened_dates_shifted",
    "hardened_names_emptied",
    "hardened_uids_replaced",
    "not_carried_over",
)


@dataclass(frozen=True)
class DatacardConfig:
    """How much the card shows. Gallery counts are samples per modality; sizes in pixels/chars."""

    gallery_images: int = 6
    gallery_ecgs: int = 2
    gallery_volumes: int = 2
    gallery_reports: int = 4
    thumb_px: int = 256
    excerpt_chars: int = 700
    example_ids: int = 3
    top_entities: int = 20
    top_deid_fields: int = 10
    dedup_clusters: int = 12


@dataclass(frozen=True)
class DatacardResult:
    """What :func:`write_datacard` wrote."""

    html_path: Path
    json_path: Path
    html_bytes: int
    n_samples: int
    n_quarantined: int
    n_gallery_images: int
    identity_holds: bool
    seconds: float


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------


def _read(path: Path, columns: Sequence[str] | None = None) -> list[dict]:
    """Rows of a parquet file as dicts (only ``columns`` if given); ``[]`` if it does not exist."""
    if not path.exists():
        return []
    if columns is not None:
        columns = [c for c in columns if c in pq.read_schema(path).names]
    return pq.read_table(path, columns=columns).to_pylist()


def _counts(values: Iterable[Any]) -> dict[str, int]:
    """Counter → plain dict sorted by descending count, then key (deterministic)."""
    c = Counter(str(v) for v in values)
    return {k: c[k] for k in sorted(c, key=lambda k: (-c[k], k))}


def _summary(values: Sequence[float]) -> dict[str, float | int]:
    """n, min, median, mean, max of ``values`` (floats rounded to 3 decimals)."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return {"n": 0}
    r = lambda x: round(float(x), 3)  # noqa: E731
    return {
        "n": len(vals),
        "min": r(min(vals)),
        "median": r(statistics.median(vals)),
        "mean": r(statistics.fmean(vals)),
        "max": r(max(vals)),
    }


def _dims(values: Sequence[float]) -> str:
    return " x ".join(f"{float(v):g}" for v in values)


def _sanitise_config(cfg: Any) -> Any:
    """Drop every ``path`` entry (source folders) from the build config before showing it."""
    if isinstance(cfg, Mapping):
        return {k: _sanitise_config(v) for k, v in cfg.items() if k != "path"}
    if isinstance(cfg, list):
        return [_sanitise_config(v) for v in cfg]
    return cfg


# ---------------------------------------------------------------------------------------------
# numbers from the parquet manifests
# ---------------------------------------------------------------------------------------------


def collect_counts(build_dir: Path, cfg: DatacardConfig = DatacardConfig()) -> dict[str, Any]:
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

    # splits
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
    seen: Counter = Counter(p for ps in patients_by_split.values() for p in ps)

    # modalities
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

    # sources and licences
    written_ids = {sid for r in samples for sid in r["source_ids"]}
    quarantined_ids = {q["source_id"] for q in quarantine}
    dedup_ids: set[str] | None = None
    if dedup_rows and "source_ids" in dedup_rows[0]:
        dedup_ids = {sid for d in dedup_rows if not d["kept"] for sid in (d["source_ids"] or [])}
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
    licences = {
        lic: {"samples": sum(lic in r["licences"] for r in samples)}
        for lic in sorted({lic for r in samples for lic in r["licences"]})
    }

    accounting = _accounting(inputs, written_ids, quarantined_ids, dedup_ids, stats)

    # quarantine
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
    quarantine_card = {
        "records": len(quarantine),
        "units": len(quarantined_ids),
        "by_reason": by_reason,
        "by_source": _counts(q["source_name"] for q in quarantine),
        "by_stage": _counts(q["stage"] for q in quarantine),
    }

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
        "modalities": modalities,
        "modality_combinations": _counts("+".join(r["modalities"]) for r in samples),
        "sources": sources,
        "licences": licences,
        "inputs_by_kind": _counts(u["kind"] for u in inputs),
        "accounting": accounting,
        "quarantine": quarantine_card,
        "dedup": _dedup_summary(dedup_rows, stats),
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


def _verdict(row: Mapping[str, Any]) -> str:
    """A dedup row's verdict (``verdict`` column; ``reason`` accepted for older builds)."""
    return str(row.get("verdict") or row.get("reason") or "")


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


# ---------------------------------------------------------------------------------------------
# per-shard card statistics: computed by the shard writer (or, for older builds, from the tar)
# ---------------------------------------------------------------------------------------------

#: key of the card section in a per-shard stats JSON (``shards/{split}/{split}-NNNNNN.json``)
CARD_STATS_KEY = "card"
#: layout version of that section; a section of another version is ignored (recomputed from the tar)
CARD_STATS_VERSION = 1
#: characters of report text shown for a report in a dedup cluster
DEDUP_PREVIEW_CHARS = 200
#: characters of each report's text kept in the card statistics (the gallery excerpt or the dedup
#: preview, whichever is longer); one more is kept, so the card knows whether the text was cut
KEEP_CHARS = max(DatacardConfig.excerpt_chars, DEDUP_PREVIEW_CHARS)


def is_card_member(member: str) -> bool:
    """Whether :func:`shard_card_stats` reads this member (``meta.json``, ``report_{i}.txt``/``.json``):
    a writer may hand over only these and drop the payloads early."""
    return member == META_MEMBER or (member.startswith("report_") and member.endswith((".txt", ".json")))


def _findings(data: bytes) -> list[dict]:
    """The structured findings of a ``report_{i}.json`` member (``[]`` if unreadable)."""
    try:
        found = json.loads(data).get("findings") or []
        return [f for f in found if isinstance(f, dict)]
    except (ValueError, AttributeError, TypeError):
        return []


def _card_counts() -> dict[str, Any]:
    """An empty ``counts`` block of the card statistics (see :func:`shard_card_stats`)."""
    return {
        "items": {},
        "conventions": {},
        "image": {
            "rows": [],
            "columns": [],
            "pixel_spacing_mm": {},
            "photometric": {},
            "dicom_modality": {},
            "multi_frame": 0,
            "pixel_steps": {},
        },
        "volume": {"shape": {}, "spacing_mm": {}, "orientation": {}, "source_format": {}, "hounsfield": 0},
        "ecg": {
            "source_duration_s": [],
            "duration_not_recorded": 0,
            "original_rate_hz": {},
            "stored": {},
            "with_qc_flags": 0,
            "qc_flags": {},
        },
        "report": {"languages": {}, "report_types": {}, "entities": {}},
        "deid": {},
    }


def _bump(counter: dict, key: Any, n: int = 1) -> None:
    key = str(key)
    counter[key] = counter.get(key, 0) + n


def _item_counts(c: dict[str, Any], it: dict) -> None:
    """Add one ``meta.json`` item to the ``counts`` block ``c``."""
    modality = it.get("modality", "")
    _bump(c["items"], modality)
    if modality == "image":
        im = c["image"]
        im["rows"].append(it.get("rows", 0))
        im["columns"].append(it.get("columns", 0))
        _bump(im["pixel_spacing_mm"], _pixel_spacing(it))
        _bump(im["photometric"], it.get("photometric", ""))
        _bump(im["dicom_modality"], it.get("dicom_modality", "") or "(none)")
        im["multi_frame"] += int(int(it.get("frames", 1) or 1) > 1)
        for s in it.get("pixel_steps", []):
            _bump(im["pixel_steps"], s)
    elif modality == "volume":
        v = c["volume"]
        _bump(v["shape"], _dims(it.get("shape", [])))
        _bump(v["spacing_mm"], _dims(it.get("spacing_mm", [])))
        _bump(v["orientation"], it.get("orientation", ""))
        _bump(v["source_format"], it.get("source_format", ""))
        v["hounsfield"] += int(bool(it.get("hounsfield")))
    elif modality == "ecg":
        e = c["ecg"]
        d = (it.get("meta") or {}).get("source_duration_s")
        if isinstance(d, int | float):
            e["source_duration_s"].append(float(d))
        else:
            e["duration_not_recorded"] += 1
        _bump(e["original_rate_hz"], f"{float(it.get('original_rate_hz', 0)):g}")
        _bump(
            e["stored"],
            f"{len(it.get('leads', []))} leads x {it.get('n_samples', 0)} @ {float(it.get('sampling_rate_hz', 0)):g} Hz",
        )
        flags = it.get("qc_flags", [])
        e["with_qc_flags"] += int(bool(flags))
        for f in flags:
            _bump(e["qc_flags"], f.split(":", 1)[0])
    elif modality == "report":
        r = c["report"]
        _bump(r["languages"], it.get("language", "") or "(unknown)")
        _bump(r["report_types"], it.get("report_type", "") or "(unknown)")
    deid = (it.get("meta") or {}).get("deid")
    if not isinstance(deid, dict):
        return
    d = c["deid"].setdefault(str(modality), {"audited": 0, "descriptions": {}, "fields": {}})
    d["audited"] += 1
    for k in DEID_TEXT_KEYS:
        v = deid.get(k)
        if isinstance(v, str) and v:
            _bump(d["descriptions"].setdefault(k, {}), v)
        elif isinstance(v, list) and v and all(isinstance(x, str) for x in v):
            _bump(d["descriptions"].setdefault(k, {}), "; ".join(v))
    for k in DEID_FIELD_KEYS:
        v = deid.get(k)
        if isinstance(v, list | dict) and v:
            fields_ = d["fields"].setdefault(k, {})
            for x in v:
                _bump(fields_, x)


def shard_card_stats(samples: list[tuple[str, dict[str, bytes]]], keep_chars: int = KEEP_CHARS) -> dict:
    """Everything the data card needs from one shard, computed from its samples as written.

    ``samples``: the shard's samples in order, ``(key, {member name: bytes})`` with member names
    as in the tar without the key (``meta.json``, ``image_0.png``, ``report_0.txt``, ...). Only
    ``meta.json`` and the ``report_{i}.txt``/``.json`` members are read (payloads may be left
    out). The result is JSON-serialisable, holds no payload bytes, and is stored by the shard
    writer under ``"card"`` (:data:`CARD_STATS_KEY`) in the shard's stats JSON; the card merges
    the sections of all shards (``_Scan.add``) and reads only the gallery's few members from the
    tars. Layout (version :data:`CARD_STATS_VERSION`):

    * ``version``, ``keep_chars``;
    * ``samples``: columns, one entry per sample with a ``meta.json``, in shard order: ``key``,
      ``split``, ``modalities``, ``items`` (``[member_prefix, record_id]`` per item, in meta
      order) and ``reports`` (``{prefix: [chars, words, findings, head]}`` per report item:
      text length in characters and words, number of structured findings, and the first
      ``keep_chars + 1`` characters of the de-identified text);
    * ``counts``: additive totals and value lists (merged by adding numbers, concatenating
      lists): items per modality, convention values, the distribution counters of images,
      volumes, ECGs and reports (entities: label → assertion → count), and per modality the
      de-identification audits (descriptions in force and touched field names, never values).
    """
    c = _card_counts()
    cols: dict[str, list] = {"key": [], "split": [], "modalities": [], "items": [], "reports": []}
    for key, members in samples:
        raw = members.get(META_MEMBER)
        if raw is None:
            continue
        meta = json.loads(raw)
        items = meta.get("items", [])
        reports: dict[str, list] = {}
        for it in items:
            _item_counts(c, it)
            prefix = it.get("member_prefix", "")
            if not prefix.startswith("report_"):
                continue
            found = _findings(members[f"{prefix}.json"]) if f"{prefix}.json" in members else []
            for f in found:
                ent = c["report"]["entities"].setdefault(str(f.get("label", "")), {})
                _bump(ent, f.get("assertion", ""))
            if f"{prefix}.txt" in members:
                text = members[f"{prefix}.txt"].decode("utf-8", "replace")
                reports[prefix] = [len(text), len(text.split()), len(found), text[: keep_chars + 1]]
            else:
                reports[prefix] = [0, 0, len(found), ""]
        for k, v in sorted(meta.get("conventions", {}).items()):
            _bump(c["conventions"].setdefault(k, {}), v)
        cols["key"].append(key)
        cols["split"].append(meta.get("split", ""))
        cols["modalities"].append(list(meta.get("modalities", [])))
        cols["items"].append([[it.get("member_prefix", ""), it.get("record_id", "")] for it in items])
        cols["reports"].append(reports)
    return {"version": CARD_STATS_VERSION, "keep_chars": keep_chars, "samples": cols, "counts": c}


def _add_counts(into: dict, part: Mapping) -> None:
    """Merge one ``counts`` block into another: numbers add, lists concatenate, dicts recurse."""
    for k, v in part.items():
        if isinstance(v, Mapping):
            _add_counts(into.setdefault(k, {}), v)
        elif isinstance(v, list):
            into.setdefault(k, []).extend(v)
        else:
            into[k] = into.get(k, 0) + v


def _tar_samples(path: Path) -> list[tuple[str, dict[str, bytes]]]:
    """The samples of a shard tar with only the members :func:`shard_card_stats` reads."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            if not member.isfile() or "." not in member.name:
                continue
            key, suffix = member.name.split(".", 1)
            if is_card_member(suffix):
                samples.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    return list(samples.items())


def _shard_card_section(build_dir: Path, shard: str) -> dict | None:
    """The ``card`` section of a shard's stats JSON, or ``None`` (no JSON, older build, other version)."""
    path = (build_dir / SHARDS_DIR / shard).with_suffix(".json")
    try:
        section = json.loads(path.read_text()).get(CARD_STATS_KEY)
    except (OSError, ValueError, AttributeError):
        return None
    if (
        isinstance(section, dict)
        and section.get("version") == CARD_STATS_VERSION
        and isinstance(section.get("samples"), dict)
        and isinstance(section.get("counts"), dict)
    ):
        return section
    return None


@dataclass
class _Scan:
    """The card statistics of all shards, merged (payloads are read only for the gallery)."""

    #: key → {shard, split, modalities, prefixes, reports: {prefix: [chars, words, findings, head]}}
    samples: dict[str, dict] = field(default_factory=dict)
    record_index: dict[str, tuple[str, str]] = field(default_factory=dict)  # record → (key, prefix)
    counts: dict[str, Any] = field(default_factory=_card_counts)
    from_tars: int = 0  # shards whose statistics were computed from the tar (no card section)

    def add(self, shard: str, part: Mapping[str, Any]) -> None:
        cols = part["samples"]
        for key, split, mods, items, reports in zip(
            cols["key"], cols["split"], cols["modalities"], cols["items"], cols["reports"], strict=True
        ):
            self.samples[key] = {
                "shard": shard,
                "split": split,
                "modalities": list(mods),
                "prefixes": [p for p, _ in items],
                "reports": reports,
            }
            for prefix, record_id in items:
                self.record_index[record_id] = (key, prefix)
        _add_counts(self.counts, part["counts"])

    def report(self, key: str, prefix: str) -> tuple[int, int, int, str]:
        """(chars, words, findings, head) of one report item (zeros if it has no members)."""
        chars, words, n_found, head = self.samples[key]["reports"].get(prefix, (0, 0, 0, ""))
        return int(chars), int(words), int(n_found), str(head)


def _scan_shards(build_dir: Path, shard_names: list[str], keep_chars: int, quiet: bool) -> _Scan:
    """Merge the card statistics of every shard: the ``card`` section of its stats JSON, else
    (a build by an older version) :func:`shard_card_stats` over its tar's meta and report members."""
    scan = _Scan()
    for name in tqdm(shard_names, desc="datacard: scan", unit="shard", disable=quiet, leave=False):
        part = _shard_card_section(build_dir, name)
        if part is None:
            part = shard_card_stats(_tar_samples(build_dir / SHARDS_DIR / name), keep_chars)
            scan.from_tars += 1
        scan.add(name, part)
    if scan.from_tars:
        log.info(
            "data card: %d of %d shards had no card statistics (read from the tar)",
            scan.from_tars,
            len(shard_names),
        )
    return scan


def _pixel_spacing(it: dict) -> str:
    dicom = (it.get("meta") or {}).get("dicom") or {}
    for k in ("PixelSpacing", "ImagerPixelSpacing"):
        v = dicom.get(k)
        if isinstance(v, list) and len(v) >= 2:
            return _dims(v[:2])
    return "not recorded"


def _by_count(counter: Mapping[str, int]) -> dict[str, int]:
    """A merged counter sorted like :func:`_counts` (descending count, then key)."""
    return {k: int(counter[k]) for k in sorted(counter, key=lambda k: (-counter[k], k))}


def _distributions(scan: _Scan, cfg: DatacardConfig) -> tuple[dict[str, Any], dict[str, Any]]:
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


def _deid_profile(scan: _Scan, cfg: DatacardConfig) -> dict[str, Any]:
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


# ---------------------------------------------------------------------------------------------
# gallery
# ---------------------------------------------------------------------------------------------


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


def _select_gallery(scan: _Scan, cfg: DatacardConfig) -> list[str]:
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


def _want_text(scan: _Scan, wanted: dict[str, set[str]], key: str, prefix: str, chars: int) -> None:
    """Ask for a report's text member if the head kept in the statistics is shorter than needed."""
    n_chars, _, _, head = scan.report(key, prefix)
    if len(head) < min(n_chars, chars + 1):
        wanted[scan.samples[key]["shard"]].add(f"{key}.{prefix}.txt")


def _report_text(scan: _Scan, data: Mapping[str, bytes], key: str, prefix: str) -> str:
    """A report's text: the member if it was read, else the head kept in the statistics."""
    member = f"{key}.{prefix}.txt"
    if member in data:
        return data[member].decode("utf-8", "replace")
    return scan.report(key, prefix)[3]


def _gallery_members(scan: _Scan, keys: list[str], cfg: DatacardConfig) -> dict[str, set[str]]:
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


def _read_members(build_dir: Path, wanted: Mapping[str, set[str]]) -> dict[str, bytes]:
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


def _highlight(text: str, findings: list[dict], limit: int) -> tuple[str, int]:
    """HTML of ``text[:limit]`` with each finding's evidence wrapped in ``<mark>``; all escaped."""
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
    parts, pos = [], 0
    for s, e, f in spans:
        parts.append(html.escape(excerpt[pos:s]))
        a = str(f.get("assertion", ""))
        tip = f"{f.get('label', '')} ({a}" + (f", {f['section']}" if f.get("section") else "") + ")"
        parts.append(
            f'<mark class="as-{html.escape(a)}" title="{html.escape(tip)}">{html.escape(excerpt[s:e])}</mark>'
        )
        pos = e
    parts.append(html.escape(excerpt[pos:]))
    if len(text) > limit:
        parts.append('<span class="more">…</span>')
    return "".join(parts), len(spans)


def _img(png: bytes, alt: str, cls: str = "", role: str = "gallery") -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return (
        f'<img class="{cls}" data-role="{role}" alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'
    )


def _render_gallery(
    scan: _Scan, keys: list[str], data: Mapping[str, bytes], cfg: DatacardConfig, quiet: bool
) -> tuple[str, list[dict], int]:
    """HTML of the gallery, its JSON summary and the number of images in it (``data``: the
    members named by :func:`_gallery_members`)."""
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
                    f'<figure class="thumb">{_img(thumb, f"{p} of sample {key}")}'
                    f"<figcaption>{html.escape(p)}: {html.escape(cap)}</figcaption></figure>"
                )
                n_images += 1
            elif p.startswith("ecg_") and f"{key}.{p}.npy" in data:
                arr = np.load(io.BytesIO(data[f"{key}.{p}.npy"]))
                rate = float(it.get("sampling_rate_hz", ECG_RATE_HZ) or ECG_RATE_HZ)
                png = plots.ecg_figure(arr, rate)
                flags = ", ".join(it.get("qc_flags", [])) or "none"
                cap = (
                    f"{p}: 25 mm/s, 10 mm/mV · stored at {rate:g} Hz (source {float(it.get('original_rate_hz', 0)):g} Hz)"
                    f" · QC flags: {flags}"
                )
                blocks.append(
                    f'<figure class="wide">{_img(png, f"{p} of sample {key}")}'
                    f"<figcaption>{html.escape(cap)}</figcaption></figure>"
                )
                n_images += 1
            elif p.startswith("volume_") and f"{key}.{p}.npy" in data:
                arr = np.load(io.BytesIO(data[f"{key}.{p}.npy"]))
                png = plots.volume_figure(arr, it.get("spacing_mm", (1, 1, 1)), bool(it.get("hounsfield")))
                cap = (
                    f"{p}: {_dims(arr.shape)} voxels · spacing {_dims(it.get('spacing_mm', []))} mm · "
                    f"{it.get('orientation', '')} · from {it.get('source_format', '')}"
                )
                blocks.append(
                    f'<figure class="wide">{_img(png, f"{p} of sample {key}")}'
                    f"<figcaption>{html.escape(cap)}</figcaption></figure>"
                )
                n_images += 1
            elif p.startswith("report_"):
                text = _report_text(scan, data, key, p)
                findings = _findings(data[f"{key}.{p}.json"]) if f"{key}.{p}.json" in data else []
                body, n_marked = _highlight(text, findings, cfg.excerpt_chars)
                chips = "".join(
                    f'<span class="chip as-{html.escape(str(f.get("assertion", "")))}">'
                    f"{html.escape(str(f.get('label', '')))} · {html.escape(str(f.get('assertion', '')))}</span>"
                    for f in findings
                )
                cap = (
                    f"{p}: {it.get('report_type', '')} · language {it.get('language', '') or '?'} · "
                    f"{scan.report(key, p)[0]} chars · {len(findings)} findings ({n_marked} located in the excerpt)"
                )
                blocks.append(
                    f'<div class="report"><div class="cap">{html.escape(cap)}</div>'
                    f'<p class="rtext">{body}</p><div class="chips">{chips}</div></div>'
                )
        cards.append(
            f'<article class="sample {"wide" if any(p.startswith(("ecg_", "volume_")) for p in s["prefixes"]) else ""}"><header><code>{html.escape(key)}</code> '
            f'<span class="pill">{html.escape(s["split"])}</span> '
            f'<span class="mods">{html.escape(" + ".join(s["modalities"]))}</span></header>'
            + "".join(blocks)
            + "</article>"
        )
        summary.append(
            {
                "key": key,
                "split": s["split"],
                "modalities": s["modalities"],
                "items": list(s["prefixes"]),
            }
        )
    return "".join(cards), summary, n_images


def _dedup_shown(rows: list[dict], cfg: DatacardConfig) -> list[list[dict]]:
    """The largest clusters (several records each), largest first: the rows of each."""
    clusters: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        clusters[r["cluster_id"]].append(r)
    multi = sorted((c for c in clusters if len(clusters[c]) > 1), key=lambda c: (-len(clusters[c]), c))
    return [clusters[c] for c in multi[: cfg.dedup_clusters]]


def _dedup_members(scan: _Scan, shown: list[list[dict]]) -> dict[str, set[str]]:
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


def _render_dedup_clusters(
    shown: list[list[dict]], scan: _Scan, data: Mapping[str, bytes], cfg: DatacardConfig
) -> tuple[str, list[dict]]:
    """Side by side, the members of the largest clusters: thumbnails/excerpts of what was kept
    (read from the shards) and of what was not (only if ``dedup.parquet`` carries ``thumb_png``)."""
    out, summary = [], []
    for cluster in shown:
        c = cluster[0]["cluster_id"]
        members = sorted(
            cluster, key=lambda r: (not r["kept"], _verdict(r) not in KEEPER_VERDICTS, r["record_id"])
        )
        tiles = []
        keeper_visual = ""
        for r in members:
            key, prefix = scan.record_index.get(r["record_id"], ("", ""))
            thumb = r.get("thumb_png")
            if not thumb and key and f"{key}.{prefix}.png" in data:
                thumb = data[f"{key}.{prefix}.png"]
            if thumb:
                png = plots.thumbnail_png(bytes(thumb), cfg.thumb_px // 2)[0]
                visual = _img(png, f"record {r['record_id']}", role="dedup")
            elif key and prefix.startswith("report_"):
                text = _report_text(scan, data, key, prefix)[:DEDUP_PREVIEW_CHARS]
                visual = f'<p class="rtext small">{_e(text)}</p>'
            elif not r["kept"] and r.get("tier") == "exact" and keeper_visual:
                # exact tier = equal decoded-content hash: the keeper's rendition *is* this content
                visual = keeper_visual + '<p class="muted small">identical decoded content</p>'
            else:
                visual = '<p class="muted small">(no preview stored)</p>'
            if r["kept"] and not keeper_visual:
                keeper_visual = visual
            status = "kept" if r["kept"] else "not kept"
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
                f'<div class="dup {"kept" if r["kept"] else "dropped"}">{visual}<div class="small"><b>{status}</b> '
                f"<code>{_e(r['record_id'])}</code><br>{_e(detail)}</div></div>"
            )
        mod = members[0].get("modality") or ""
        out.append(
            f'<div class="cluster"><div class="small">cluster <code>{_e(c)}</code> · {_e(mod)} · '
            f'{len(members)} records</div><div class="duprow">{"".join(tiles)}</div></div>'
        )
        summary.append(
            {
                "cluster_id": c,
                "kept": [r["record_id"] for r in members if r["kept"]],
                "not_kept": [r["record_id"] for r in members if not r["kept"]],
                "verdicts": _counts(_verdict(r) for r in members),
            }
        )
    return "".join(out), summary


# ---------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------

CSS = """
:root{--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--bg:#f6f7f9;--card:#fff;--accent:#3b6ea8;
--present:#1b7f3b;--negated:#b3261e;--uncertain:#b26a00;--historical:#5b5bd6;--family:#7a4e9c}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
.top{background:#14213d;color:#fff;padding:22px 32px 16px}.top h1{margin:0;font-size:24px}
.top .sub{color:#c9d3e6;margin-top:4px}.demo{background:#fff4e5;color:#7a4b00;border:1px solid #f0c36d;
padding:8px 12px;border-radius:6px;margin-top:12px;display:inline-block}
nav{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid var(--line);padding:8px 32px}
nav a{margin-right:16px;color:var(--accent);text-decoration:none;font-weight:600}
main{padding:8px 32px 40px;max-width:1400px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:18px 0}
h2{margin:0 0 12px;font-size:19px}h3{margin:18px 0 8px;font-size:15px}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(128px,1fr));gap:12px}
.kpi{border:1px solid var(--line);border-radius:8px;padding:10px 14px}.kpi .v{font-size:22px;font-weight:700;white-space:nowrap}
.kpi .l{color:var(--muted);font-size:12px}.ok{color:var(--present)}.bad{color:var(--negated)}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(350px,1fr));gap:18px 26px;align-items:start}\n.grid.wide{grid-template-columns:repeat(auto-fill,minmax(520px,1fr))}.tw{overflow-x:auto}.gallery{display:flex;flex-wrap:wrap;gap:0 14px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{padding:4px 8px;border-bottom:1px solid var(--line);
text-align:left;vertical-align:top}th{background:#f9fafb;cursor:pointer;user-select:none;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr.total td{font-weight:700;border-top:2px solid #c8ccd4}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f2f4f7;padding:1px 4px;border-radius:4px}
.muted{color:var(--muted)}.small{font-size:12px}.note{color:var(--muted);margin:6px 0}
.sample{border:1px solid var(--line);border-radius:8px;padding:10px 12px;margin:12px 0;flex:1 1 250px;max-width:calc(50% - 7px)}\n.sample.wide{flex:1 1 560px}
.sample header{margin-bottom:8px}.pill{background:#eef2f7;border-radius:10px;padding:1px 8px;font-size:12px}
.mods{color:var(--muted);font-size:12px}figure{margin:6px 8px 10px 0;display:inline-block;vertical-align:top}
figure.wide{display:block;margin-right:0}figure.wide img{width:100%;height:auto}figure.thumb img{background:#000;max-width:100%;height:auto}
figcaption{font-size:12px;color:var(--muted);max-width:1100px}
.report{border-left:3px solid var(--accent);padding:4px 10px;margin:6px 0;background:#fafbfc}
.report .cap{font-size:12px;color:var(--muted)}.rtext{white-space:pre-wrap;margin:6px 0}
mark{background:none;border-bottom:2px solid;padding:0 1px}mark.as-present{color:var(--present)}
mark.as-negated{color:var(--negated);text-decoration:line-through}mark.as-uncertain{color:var(--uncertain)}
mark.as-historical{color:var(--historical)}mark.as-family{color:var(--family)}
.chip{display:inline-block;font-size:11px;border-radius:10px;padding:1px 8px;margin:2px 4px 2px 0;color:#fff;background:#888}
.chip.as-present{background:var(--present)}.chip.as-negated{background:var(--negated)}.chip.as-uncertain{background:var(--uncertain)}
.chip.as-historical{background:var(--historical)}.chip.as-family{background:var(--family)}
.plots img{max-width:100%;height:auto}.duprow{display:flex;gap:10px;flex-wrap:wrap}
.dup{border:1px solid var(--line);border-radius:6px;padding:6px;width:170px}.dup.dropped{opacity:.75;border-style:dashed}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:10px;overflow:auto;font-size:12px;max-height:420px}
details summary{cursor:pointer;color:var(--accent);font-weight:600}
footer{color:var(--muted);font-size:12px;padding:0 32px 30px}
"""

# Sort a table by a header click (numbers by data-v or their text); no other behaviour.
JS = """
(function(){
  function val(td){if(!td)return '';var v=td.getAttribute('data-v');var t=v!==null?v:td.textContent.replace(/,/g,'');
    var f=parseFloat(t);return isNaN(f)||!/^-?[0-9.]+$/.test(t.trim())?td.textContent.toLowerCase():f;}
  document.querySelectorAll('table.sortable th').forEach(function(th,i){
    th.addEventListener('click',function(){
      var tb=th.closest('table').tBodies[0];var rows=Array.prototype.slice.call(tb.rows).filter(function(r){return !r.classList.contains('total');});
      var asc=th.getAttribute('data-asc')!=='1';th.setAttribute('data-asc',asc?'1':'0');
      rows.sort(function(a,b){var x=val(a.cells[i]),y=val(b.cells[i]);return (x>y?1:x<y?-1:0)*(asc?1:-1);});
      var tot=tb.querySelector('tr.total');rows.forEach(function(r){tb.insertBefore(r,tot);});
    });
  });
})();
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        s = f"{v:,.3f}".rstrip("0").rstrip(".")
        return s if s not in ("", "-0") else "0"
    return str(v)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return str(n)


def _n(path: Sequence[Any], value: Any, *, human_bytes: bool = False, tag: str = "td", cls: str = "n") -> str:
    """A number cell tied to its JSON path (``data-k``); ``data-v`` holds the exact value if rounded."""
    k = _e(json.dumps(list(path), ensure_ascii=False))
    if human_bytes:
        return (
            f'<{tag} class="{cls}" data-k="{k}" data-v="{int(value)}">{_e(_human_bytes(int(value)))}</{tag}>'
        )
    return f'<{tag} class="{cls}" data-k="{k}">{_e(_fmt(value))}</{tag}>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], total: Sequence[str] | None = None) -> str:
    """A sortable table; a column is right-aligned when its first row holds a number cell."""
    first = rows[0] if rows else []
    numeric = {i for i, cell in enumerate(first) if cell.startswith('<td class="n')}
    th = "".join(f'<th class="{"n" if i in numeric else ""}">{_e(h)}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    if total:
        body += '<tr class="total">' + "".join(total) + "</tr>"
    return f'<div class="tw"><table class="sortable"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def _counter_table(
    label: str, path: Sequence[Any], counts: Mapping[str, int], value_label: str = "count"
) -> str:
    if not counts:
        return '<p class="muted">none</p>'
    rows = [[f'<td class="k">{_e(k)}</td>', _n([*path, k], v)] for k, v in counts.items()]  # k: a label
    return _table([label, value_label], rows)


def _summary_table(rows: Sequence[tuple[str, Sequence[Any], Mapping[str, Any]]]) -> str:
    stats = ("n", "min", "median", "mean", "max")
    body = []
    for label, path, s in rows:
        cells = [f"<td>{_e(label)}</td>"]
        for st in stats:
            cells.append(_n([*path, st], s[st]) if st in s else '<td class="n muted">–</td>')
        body.append(cells)
    return _table(["", *stats], body)


def label_reliability(path: Path | None = None) -> dict[str, Any]:
    """The report labeller's per-label precision/recall from its last evaluation
    (``medcorpus eval-labels --reliability``, shipped next to the label model)."""
    from pipelines.eval_labels import RELIABILITY_FILE
    from workers.label_model import MODEL_DIR

    path = path or MODEL_DIR / RELIABILITY_FILE
    if not path.exists():
        return {"present": False}
    return {"present": True, **json.loads(path.read_text(encoding="utf-8"))}


def _render_reliability(rel: Mapping[str, Any]) -> str:
    """One table per gold set: support, precision, recall, F1 and a trust level per label."""
    if not rel.get("present"):
        return '<p class="muted">no label evaluation shipped with this version</p>'
    models = ", ".join(f"{k} {v}" for k, v in sorted(rel.get("label_models", {}).items()))
    parts = [
        f"<p>Precision and recall of the structured-report labels against human gold labels "
        f"(<code>medcorpus eval-labels</code>, {_e(rel.get('generated') or 'undated')}; rules "
        f"{_e(rel.get('rules_version', '?'))}; label models {_e(models or 'none')}). A label marked "
        f"&ldquo;too few examples&rdquo; had fewer than 20 gold positives; treat it as unvalidated.</p>"
    ]
    for name, st in sorted(rel.get("sets", {}).items()):
        base = ["label_reliability", "sets", name]
        rows = [
            [f'<td class="k">{_e(lab)}</td>']
            + [_n([*base, "labels", lab, k], v[k]) for k in ("support", "precision", "recall", "f1")]
            + [f"<td>{_e(v.get('trust', ''))}</td>"]
            for lab, v in sorted(st["labels"].items(), key=lambda kv: (-kv[1]["support"], kv[0]))
        ]
        total = [
            "<td>micro</td>",
            '<td class="n muted">–</td>',
            *(_n([*base, "micro", k], st["micro"][k]) for k in ("precision", "recall", "f1")),
            "<td></td>",
        ]
        parts.append(
            f"<h3>{_e(name)} ({_e(st['split'])} split, structurer {_e(st['structurer'])}, "
            f"{_n([*base, 'reports'], st['reports'], tag='span')} reports)</h3>"
            + _table(["label", "support", "precision", "recall", "F1", "trust"], rows, total)
        )
    return "".join(parts)


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{_e(title)}</h2>{body}</section>'


def render_html(
    card: dict[str, Any], gallery_html: str, dedup_html: str, figures: Mapping[str, bytes]
) -> str:
    """The self-contained HTML page of ``card`` (the JSON twin) plus its rendered images."""
    t, acc = card["totals"], card["accounting"]
    build = card["build"]
    kpis = [
        ("samples", ["totals", "samples"], t["samples"]),
        ("shards", ["totals", "shards"], t["shards"]),
        ("input units", ["totals", "input_units"], t["input_units"]),
        ("quarantined units", ["accounting", "total", "quarantined"], acc["total"]["quarantined"]),
        ("patients", ["totals", "patients"], t["patients"]),
        ("patients in 2+ splits", ["totals", "patients_in_several_splits"], t["patients_in_several_splits"]),
    ]
    kpi_html = "".join(
        '<div class="kpi">' + _n(p, v, tag="div", cls="n v") + f'<div class="l">{_e(lab)}</div></div>'
        for lab, p, v in kpis
    )
    ident = acc["identity_holds"]
    kpi_html += (
        f'<div class="kpi"><div class="v {"ok" if ident else "bad"}">{"holds" if ident else "BROKEN"}</div>'
        f'<div class="l">accounting identity</div></div>'
    )
    kpi_html += (
        f'<div class="kpi"><div class="v" data-k="{_e(json.dumps(["totals", "shard_bytes"]))}" '
        f'data-v="{t["shard_bytes"]}">{_e(_human_bytes(t["shard_bytes"]))}</div><div class="l">in shards</div></div>'
    )
    overview = f'<div class="kpis">{kpi_html}</div>'

    # counts
    sp = card["splits"]
    split_rows = [
        [f"<td>{_e(s)}</td>"]
        + [_n(["splits", s, k], v[k]) for k in ("samples", "patients", "studies", "shards")]
        + [_n(["splits", s, "shard_bytes"], v["shard_bytes"], human_bytes=True)]
        for s, v in sp.items()
    ]
    split_total = [
        "<td>total</td>",
        _n(["totals", "samples"], t["samples"]),
        _n(["totals", "patients"], t["patients"]),
        '<td class="n muted">–</td>',
        _n(["totals", "shards"], t["shards"]),
        _n(["totals", "shard_bytes"], t["shard_bytes"], human_bytes=True),
    ]
    mod_rows = [
        [
            f"<td>{_e(m)}</td>",
            _n(["modalities", m, "samples"], v["samples"]),
            _n(["modalities", m, "items"], v["items"]),
        ]
        for m, v in card["modalities"].items()
    ]
    src_rows = [
        [f"<td>{_e(s)}</td>"]
        + [
            _n(["sources", s, k], v[k])
            for k in ("samples", "input_units", "written_units", "quarantined_units")
        ]
        for s, v in card["sources"].items()
    ]
    lic_rows = [
        [f"<td>{_e(lic)}</td>", _n(["licences", lic, "samples"], v["samples"])]
        for lic, v in card["licences"].items()
    ]
    counts = (
        '<div class="grid wide">'
        f"<div><h3>Per split</h3>{_table(['split', 'samples', 'patients', 'studies', 'shards', 'shard bytes'], split_rows, total=split_total)}"
        f'<p class="note">{_n(["totals", "samples_without_patient"], t["samples_without_patient"], tag="span")} samples carry no patient pseudonym (their inputs named none); '
        "split assignment is by patient, so no patient appears in two splits.</p></div>"
        f"<div><h3>Per source</h3>{_table(['source', 'samples', 'input units', 'written', 'quarantined'], src_rows)}</div>"
        '</div><div class="grid">'
        f"<div><h3>Per modality</h3>{_table(['modality', 'samples with it', 'items'], mod_rows)}</div>"
        f"<div><h3>Modality combinations</h3>{_counter_table('modalities', ['modality_combinations'], card['modality_combinations'], 'samples')}</div>"
        f"<div><h3>Per licence</h3>{_table(['licence', 'samples'], lic_rows)}"
        f"<h3>Input files by detected kind</h3>{_counter_table('kind', ['inputs_by_kind'], card['inputs_by_kind'], 'input units')}</div>"
        "</div>"
    )

    # accounting
    keys = ("inputs", "written", "quarantined", "deduplicated", "unaccounted")
    acc_rows = [
        [f"<td>{_e(m)}</td>"]
        + [_n(["accounting", "per_modality", m, k], r[k]) for k in keys]
        + [f'<td class="{"ok" if r["holds"] else "bad"}">{"✓" if r["holds"] else "✗"}</td>']
        for m, r in acc["per_modality"].items()
    ]
    acc_total = (
        ["<td>total</td>"]
        + [_n(["accounting", "total", k], acc["total"][k]) for k in keys]
        + [f'<td class="{"ok" if ident else "bad"}">{"✓" if ident else "✗"}</td>']
    )
    agree = acc["stats_json_agrees"]
    accounting = (
        "<p>Every input unit (a file, a table row, a DICOM slice) ends up in exactly one place: "
        "<b>inputs = written + quarantined + deduplicated</b>, per modality.</p>"
        + _table(["modality", *keys, "identity"], acc_rows, total=acc_total)
        + f'<p class="note">Recomputed from inputs.parquet, manifest.parquet and quarantine.parquet; deduplicated '
        f"from {_e(acc['deduplicated_from'])}. stats.json written by the build "
        f'<b class="{"ok" if agree else "bad"}">{"agrees" if agree else "DISAGREES"}</b>.</p>'
    )

    # quarantine
    q = card["quarantine"]
    q_rows = [
        [
            f"<td><code>{_e(reason)}</code></td>",
            _n(["quarantine", "by_reason", reason, "records"], v["records"]),
            _n(["quarantine", "by_reason", reason, "units"], v["units"]),
            "<td>" + ", ".join(f"{_e(m)} {_e(c)}" for m, c in v["by_modality"].items()) + "</td>",
            f"<td>{_e(', '.join(v['stages']))}</td>",
            "<td>" + " ".join(f"<code>{_e(x)}</code>" for x in v["examples"]) + "</td>",
            f'<td class="small">{_e(v["example_message"])}</td>',
        ]
        for reason, v in q["by_reason"].items()
    ]
    q_total = [
        "<td>total</td>",
        _n(["quarantine", "records"], q["records"]),
        _n(["quarantine", "units"], q["units"]),
        "<td></td>",
        "<td></td>",
        "<td></td>",
        "<td></td>",
    ]
    quarantine = (
        (
            _table(
                [
                    "reason",
                    "records",
                    "input units",
                    "by modality",
                    "stage",
                    "example source ids",
                    "example message",
                ],
                q_rows,
                total=q_total,
            )
            if q_rows
            else '<p class="ok">Nothing was quarantined.</p>'
        )
        + '<p class="note">Source ids are keyed hashes of relative paths: they carry no PHI; '
        "<code>medcorpus locate</code> maps them back to files for whoever holds the secret. "
        "Messages are PHI-free by contract.</p>"
        + '<div class="grid">'
        + f"<div><h3>By source</h3>{_counter_table('source', ['quarantine', 'by_source'], q['by_source'], 'records')}</div>"
        + f"<div><h3>By stage</h3>{_counter_table('stage', ['quarantine', 'by_stage'], q['by_stage'], 'records')}</div></div>"
    )

    # dedup
    d = card["dedup"]
    if not d["present"]:
        dedup = f'<p class="muted"><b>{_e(d["note"])}</b>.</p>'
    else:
        dk = ("records", "clusters", "clusters_with_several", "kept", "not_kept", "flagged_kept")
        mod_rows = [
            [f"<td>{_e(m)}</td>"]
            + [_n(["dedup", "by_modality", m, k], v[k]) for k in ("records", "clusters", "kept", "not_kept")]
            for m, v in d["by_modality"].items()
        ]
        dedup = (
            "<p>Records in a near-duplicate cluster (exact content hash, or embedding LSH + cosine). "
            "A keeper is <i>representative</i>; same-patient copies are dropped (<i>duplicate</i>, counted as "
            "deduplicated); report clusters across patients are <i>templates</i>: flagged, kept; image/ECG/volume "
            "clusters across patients are <i>conflicts</i> (quarantined).</p>"
            + _table([k.replace("_", " ") for k in dk], [[_n(["dedup", k], d[k]) for k in dk]])
            + '<div class="grid">'
            + f"<div><h3>Verdicts</h3>{_counter_table('verdict', ['dedup', 'verdicts'], d['verdicts'], 'records')}</div>"
            + (
                f"<div><h3>Per modality</h3>{_table(['modality', 'records', 'clusters', 'kept', 'not kept'], mod_rows)}</div>"
                if mod_rows
                else ""
            )
            + f"<div><h3>Tiers</h3>{_counter_table('tier', ['dedup', 'tiers'], d['tiers'], 'records')}"
            + f"<h3>Cluster sizes</h3>{_counter_table('records', ['dedup', 'cluster_sizes'], d['cluster_sizes'], 'clusters')}</div></div>"
            + (f"<h3>Largest clusters</h3>{dedup_html}" if dedup_html else "")
        )

    # gallery
    legend = " ".join(f'<span class="chip as-{a}">{a}</span>' for a in ASSERTIONS)
    gallery = (
        f'<p class="note">A few samples, chosen deterministically (multimodal first, across splits). '
        f"Report entities are highlighted in the text by assertion: {legend}</p>"
        + (
            f'<div class="gallery">{gallery_html}</div>'
            if gallery_html
            else '<p class="muted">no samples</p>'
        )
    )

    # distributions
    ds = card["distributions"]
    fig = lambda name: (  # noqa: E731
        f'<div class="plots">{_img(figures[name], name, role="plot")}</div>' if name in figures else ""
    )
    rp = ds["report"]

    ent_rows = [
        [f"<td>{_e(r['label'])}</td>"]
        + [_n(["distributions", "report", "top_entities", i, a], r[a]) for a in (*ASSERTIONS, "total")]
        for i, r in enumerate(rp["top_entities"])
    ]

    def block(
        modality: str, title: str, figure: str, summaries: list[tuple[str, str]], tables: list[tuple]
    ) -> str:
        """One modality's column: count, figure, summary statistics and counter tables."""
        d = ds[modality]
        html_ = (
            f"<div><h3>{_e(title)} ({_n(['distributions', modality, 'items'], d['items'], tag='span')})</h3>"
        )
        html_ += fig(figure)
        if summaries:
            html_ += _summary_table(
                [(label, ["distributions", modality, key], d[key]) for label, key in summaries]
            )
        for t in tables:  # (key, heading, label[, value label]) of a counter table, or raw HTML
            if isinstance(t, str):
                html_ += t
                continue
            key, heading, label, *value_label = t
            html_ += (f"<h3>{_e(heading)}</h3>" if heading else "") + _counter_table(
                label, ["distributions", modality, key], d[key], *value_label
            )
        return html_ + "</div>"

    distributions = (
        '<div class="grid">'
        + block(
            "image",
            "Images",
            "image_sizes",
            [("rows (px)", "rows"), ("columns (px)", "columns")],
            [
                ("pixel_spacing_mm", "Pixel spacing (mm)", "row x column"),
                ("dicom_modality", "DICOM modality", "modality"),
                ("photometric", "Photometric interpretation (stored)", "photometric"),
                ("pixel_steps", "Pixel pipeline steps", "step", "images"),
            ],
        )
        + block(
            "volume",
            "Volumes",
            "",
            [],
            [
                ("shape", "", "shape (X x Y x Z)"),
                ("spacing_mm", "Spacing (mm)", "spacing"),
                ("orientation", "Orientation", "axes"),
                ("source_format", "Source format", "format"),
            ],
        )
        + block(
            "ecg",
            "ECGs",
            "ecg_durations",
            [("source duration (s)", "source_duration_s")],
            [
                ("stored", "Stored as", "layout"),
                ("original_rate_hz", "Source sampling rate (Hz)", "Hz"),
                f'<h3>QC flags</h3><p class="note">{_n(["distributions", "ecg", "with_qc_flags"], ds["ecg"]["with_qc_flags"], tag="span")} '
                "ECGs carry at least one flag.</p>",
                ("qc_flags", "", "flag", "leads/records"),
            ],
        )
        + block(
            "report",
            "Reports",
            "report_lengths",
            [("length (characters)", "length_chars"), ("length (words)", "length_words")],
            [("languages", "Languages", "language"), ("report_types", "Report types", "type")],
        )
        + "</div>"
        + f"<h3>Top entities by assertion ({_n(['distributions', 'report', 'findings'], rp['findings'], tag='span')} findings, "
        f"{_n(['distributions', 'report', 'distinct_labels'], rp['distinct_labels'], tag='span')} distinct labels)</h3>"
        + '<div class="grid"><div>'
        + fig("entities")
        + "</div><div>"
        + (
            _table(["label", *ASSERTIONS, "total"], ent_rows)
            if ent_rows
            else '<p class="muted">no findings</p>'
        )
        + "</div></div>"
    )

    # conventions and de-identification
    conv_rows = "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, vs in card["conventions"].items() for v in vs
    )
    deid_parts = []
    for m, v in card["deid"].items():
        desc = "".join(
            f"<tr><td>{_e(k)}</td><td>{_e(text)}</td>{_n(['deid', m, 'descriptions', k, text], c)}</tr>"
            for k, vals in v["descriptions"].items()
            for text, c in vals.items()
        )
        flds = "".join(
            f"<tr><td>{_e(k)}</td><td>"
            + ", ".join(f"<code>{_e(f)}</code> {_e(c)}" for f, c in fs.items())
            + "</td></tr>"
            for k, fs in v["fields"].items()
        )
        deid_parts.append(
            f"<h3>{_e(m)}: {_n(['deid', m, 'audited'], v['audited'], tag='span')} of "
            f"{_n(['deid', m, 'items'], v['items'], tag='span')} items carry an audit</h3>"
            + (
                f'<table><thead><tr><th>audit</th><th>in force</th><th class="n">items</th></tr></thead><tbody>{desc}</tbody></table>'
                if desc
                else ""
            )
            + (
                f'<h3 class="small">most often touched fields (names only; items)</h3><table><tbody>{flds}</tbody></table>'
                if flds
                else ""
            )
        )
    versions = "".join(
        f"<tr><td>{_e(k)}</td><td><code>{_e(v)}</code></td></tr>" for k, v in build["versions"].items()
    )
    deid = (
        f"<p>Demo build: <b>{'yes' if build['demo_build'] else 'no'}</b>. {_e(build.get('demo_note', ''))}</p>"
        f"<h3>Conventions recorded in every sample</h3><table><tbody>{conv_rows}</tbody></table>"
        + "".join(deid_parts)
        + f'<div class="grid"><div><h3>Tool versions</h3><table><tbody>{versions}</tbody></table></div>'
        f"<div><h3>Build configuration</h3><details><summary>show (source paths removed)</summary>"
        f"<pre>{_e(json.dumps(build['config'], indent=1, sort_keys=True, ensure_ascii=False))}</pre></details></div></div>"
    )

    demo_banner = (
        f'<div class="demo">{_e(build.get("demo_note") or "demo build")}</div>' if build["demo_build"] else ""
    )
    sections = [
        ("overview", "Overview", overview),
        ("gallery", "Sample gallery", gallery),
        ("counts", "What is in it", counts),
        ("accounting", "Accounting", accounting),
        ("quarantine", "What was thrown away, and why", quarantine),
        ("dedup", "Duplicates", dedup),
        ("distributions", "Distributions", distributions),
        ("deid", "Conventions, de-identification and tools", deid),
        ("labels", "Label reliability", _render_reliability(card.get("label_reliability", {}))),
    ]
    nav = "".join(f'<a href="#{sid}">{_e(title.split(",")[0])}</a>' for sid, title, _ in sections)
    version = build["versions"].get("medcorpus", "?")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>medcorpus data card</title><style>{CSS}</style></head><body>"
        f'<div class="top"><h1>medcorpus data card</h1><div class="sub">'
        f"{_n(['totals', 'samples'], t['samples'], tag='span')} samples in {_n(['totals', 'shards'], t['shards'], tag='span')} "
        f"shards from {_n(['totals', 'input_units'], t['input_units'], tag='span')} input units "
        f"· medcorpus {_e(version)} · card v{CARD_VERSION}</div>{demo_banner}</div>"
        f"<nav>{nav}</nav><main>"
        + "".join(_section(sid, title, body) for sid, title, body in sections)
        + "</main><footer>Generated by <code>medcorpus report</code> from the build's manifests and shards; "
        "the same numbers are in datacard.json.</footer>"
        f"<script>{JS}</script></body></html>\n"
    )


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------


def build_card(
    build_dir: Path, cfg: DatacardConfig = DatacardConfig(), quiet: bool = True
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
    scan = _scan_shards(build_dir, shard_names, max(cfg.excerpt_chars, DEDUP_PREVIEW_CHARS), quiet)
    card["scanned_samples"] = len(scan.samples)
    dists, raw = _distributions(scan, cfg)
    card["distributions"] = dists
    card["deid"] = _deid_profile(scan, cfg)
    card["conventions"] = {k: sorted(c) for k, c in sorted(scan.counts["conventions"].items())}
    card["label_reliability"] = label_reliability()
    keys = _select_gallery(scan, cfg)
    shown = _dedup_shown(_read(build_dir / DEDUP), cfg)
    wanted = _gallery_members(scan, keys, cfg)
    for shard, names in _dedup_members(scan, shown).items():
        wanted[shard] |= names
    data = _read_members(build_dir, wanted)  # the only tar reads when every shard has card statistics
    gallery_html, gallery_summary, n_gallery = _render_gallery(scan, keys, data, cfg, quiet)
    card["gallery"] = gallery_summary
    dedup_html, clusters = _render_dedup_clusters(shown, scan, data, cfg)
    if card["dedup"]["present"]:
        card["dedup"]["largest_clusters"] = clusters
    figures: dict[str, bytes] = {}
    if raw["image_sizes"]:
        figures["image_sizes"] = plots.scatter_sizes(raw["image_sizes"], "image size (stored)")
    if raw["ecg_durations"]:
        figures["ecg_durations"] = plots.histogram(raw["ecg_durations"], "ECG source duration", "seconds")
    if raw["report_lengths"]:
        figures["report_lengths"] = plots.histogram(raw["report_lengths"], "report length", "characters")
    if dists["report"]["top_entities"]:
        figures["entities"] = plots.entity_bars(dists["report"]["top_entities"], ASSERTIONS, "top entities")
    card["figures"] = sorted(figures)
    card["gallery_images"] = n_gallery
    return card, render_html(card, gallery_html, dedup_html, figures)


def write_datacard(
    build_dir: Path,
    *,
    html_path: Path | None = None,
    json_path: Path | None = None,
    cfg: DatacardConfig = DatacardConfig(),
    quiet: bool = True,
) -> DatacardResult:
    """Write ``datacard.html`` and ``datacard.json`` (default: into ``build_dir``), atomically."""
    t0 = time.perf_counter()
    build_dir = Path(build_dir)
    html_path = Path(html_path) if html_path else build_dir / DATACARD_HTML
    json_path = Path(json_path) if json_path else html_path.with_suffix(".json")
    card, page = build_card(build_dir, cfg, quiet)
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
