"""Per-shard card statistics: computed by the shard writer (or, for older builds, from the tar).

:func:`shard_card_stats` runs in the shard writer over the samples it writes and is stored in the
shard's stats JSON; :func:`scan_shards` merges the sections of all shards into a :class:`Scan`.

The sections are mergeable aggregates, so the card's memory does not grow with the corpus:
counters, numeric value arrays (one number per item: a few bytes per item, held as numpy
arrays once merged), a bounded set of gallery candidates (per candidate list and split, the
first :data:`GALLERY_CANDIDATES` samples in the gallery's order: most modalities first, then
sample key, a keyed hash) and the record index (record id → sample key and member prefix),
of which the merge keeps only the records of the dedup clusters the card shows.
"""

from __future__ import annotations

import json
import logging
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from pipelines.datacard.common import DEID_FIELD_KEYS, DEID_TEXT_KEYS, DatacardConfig, _dims
from schemas.contract import META_MEMBER, SHARDS_DIR

log = logging.getLogger(__name__)

#: key of the card section in a per-shard stats JSON (``shards/{split}/{split}-NNNNNN.json``)
CARD_STATS_KEY = "card"
#: layout version of that section; a section of another version is ignored (recomputed from the tar)
CARD_STATS_VERSION = 2
#: characters of report text shown for a report in a dedup cluster
DEDUP_PREVIEW_CHARS = 200
#: characters of each report's text kept in the card statistics (the gallery excerpt or the dedup
#: preview, whichever is longer); one more is kept, so the card knows whether the text was cut
KEEP_CHARS = max(DatacardConfig.excerpt_chars, DEDUP_PREVIEW_CHARS)
#: gallery candidates kept per candidate list and split, per shard and after the merge: the
#: gallery's picks of a modality are those of a scan of every sample as long as the samples it
#: asks for (with the ones picked before it) are at most this many
GALLERY_CANDIDATES = 32
#: the candidate lists: samples with an item of the modality; ``report_findings``: samples with
#: a report that has structured findings (the gallery prefers those)
GALLERY_LISTS = ("ecg", "volume", "image", "report", "report_findings")


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
        "report": {"languages": {}, "report_types": {}, "entities": {}, "chars": [], "words": []},
        "deid": {},
        "generated_text": {"samples": 0, "items": 0, "methods": {}},
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


def _gallery_order(info: Mapping[str, Mapping[str, Any]]):
    """The gallery's order of sample keys: most modalities first, then key."""
    return lambda k: (-len(info[k]["modalities"]), k)


def _top(keys: list[str], info: Mapping[str, Mapping[str, Any]], k: int) -> list[str]:
    """``keys`` in the gallery's order, only the first ``k`` of each split (duplicates dropped)."""
    out: list[str] = []
    per_split: dict[str, int] = {}
    for key in sorted(set(keys), key=_gallery_order(info)):
        split = str(info[key]["split"])
        if per_split.get(split, 0) < k:
            out.append(key)
            per_split[split] = per_split.get(split, 0) + 1
    return out


def shard_card_stats(
    samples: list[tuple[str, dict[str, bytes]]],
    keep_chars: int = KEEP_CHARS,
    candidates: int = GALLERY_CANDIDATES,
) -> dict:
    """Everything the data card needs from one shard, computed from its samples as written.

    ``samples``: the shard's samples in order, ``(key, {member name: bytes})`` with member names
    as in the tar without the key (``meta.json``, ``image_0.png``, ``report_0.txt``, ...). Only
    ``meta.json`` and the ``report_{i}.txt``/``.json`` members are read (payloads may be left
    out). The result is JSON-serialisable, holds no payload bytes, and is stored by the shard
    writer under ``"card"`` (:data:`CARD_STATS_KEY`) in the shard's stats JSON; the card merges
    the sections of all shards (``Scan.add``) and reads only the gallery's few members from the
    tars. Layout (version :data:`CARD_STATS_VERSION`):

    * ``version``, ``keep_chars``, ``n_samples`` (samples with a ``meta.json``);
    * ``counts``: additive totals and value lists (merged by adding numbers, concatenating
      lists): items per modality, convention values, the distribution counters of images,
      volumes, ECGs and reports (entities: label → assertion → count; ``chars``/``words``: the
      length of each report item), per modality the de-identification audits
      (descriptions in force and touched field names, never values), and ``generated_text``:
      samples with generated captions, captions, samples per method (``pipelines.captions``);
    * ``gallery``: per candidate list (:data:`GALLERY_LISTS`) the sample keys of the candidates,
      per split the first ``candidates`` in the gallery's order (most modalities, then key);
    * ``samples``: the candidates only, ``key → {split, modalities, prefixes, reports}`` with
      ``reports`` ``{prefix: [chars, words, findings, head]}`` per report item (``head``: the
      first ``keep_chars + 1`` characters of the de-identified text);
    * ``records``: columns ``record_id``, ``key``, ``prefix``, ``report`` (``[chars, words,
      findings, head]`` of a report item with a head of ``min(keep_chars, DEDUP_PREVIEW_CHARS)
      + 1`` characters, else ``null``), one entry per item: the dedup clusters shown find their
      samples here.
    """
    c = _card_counts()
    info: dict[str, dict] = {}
    lists: dict[str, list[str]] = {name: [] for name in GALLERY_LISTS}
    records: dict[str, list] = {"record_id": [], "key": [], "prefix": [], "report": []}
    for key, members in samples:
        raw = members.get(META_MEMBER)
        if raw is None:
            continue
        meta = json.loads(raw)
        items = meta.get("items", [])
        reports = _count_items(c, records, key, members, items, keep_chars)
        _count_sample(c, meta)
        prefixes = [it.get("member_prefix", "") for it in items]
        info[key] = {
            "split": meta.get("split", ""),
            "modalities": list(meta.get("modalities", [])),
            "prefixes": prefixes,
            "reports": reports,
        }
        for m in GALLERY_LISTS[:4]:
            if any(p.startswith(m + "_") for p in prefixes):
                lists[m].append(key)
        if any(r[2] for r in reports.values()):
            lists["report_findings"].append(key)
    gallery = {name: _top(keys, info, candidates) for name, keys in lists.items()}
    keep = sorted({k for keys in gallery.values() for k in keys})
    return {
        "version": CARD_STATS_VERSION,
        "keep_chars": keep_chars,
        "n_samples": len(info),
        "counts": c,
        "gallery": gallery,
        "samples": {k: info[k] for k in keep},
        "records": records,
    }


def _count_items(
    c: dict[str, Any],
    records: dict[str, list],
    key: str,
    members: Mapping[str, bytes],
    items: list[dict],
    keep_chars: int,
) -> dict[str, list]:
    """Count one sample's items into ``c`` and append one ``records`` entry per item (a report
    item's with a head of ``min(keep_chars, DEDUP_PREVIEW_CHARS) + 1`` characters).

    Returns the sample's report items, ``{prefix: [chars, words, findings, head]}``."""
    preview = min(keep_chars, DEDUP_PREVIEW_CHARS) + 1
    reports: dict[str, list] = {}
    for it in items:
        _item_counts(c, it)
        prefix = it.get("member_prefix", "")
        rep = None
        if prefix.startswith("report_"):
            reports[prefix] = _report_counts(c, members, prefix, keep_chars)
            rep = [*reports[prefix][:3], reports[prefix][3][:preview]]
        records["record_id"].append(it.get("record_id", ""))
        records["key"].append(key)
        records["prefix"].append(prefix)
        records["report"].append(rep)
    return reports


def _report_counts(c: dict[str, Any], members: Mapping[str, bytes], prefix: str, keep_chars: int) -> list:
    """Count a report item's entities (label → assertion) and length into ``c``; returns
    ``[chars, words, findings, head]`` (head: the first ``keep_chars + 1`` characters)."""
    found = _findings(members[f"{prefix}.json"]) if f"{prefix}.json" in members else []
    for f in found:
        ent = c["report"]["entities"].setdefault(str(f.get("label", "")), {})
        _bump(ent, f.get("assertion", ""))
    if f"{prefix}.txt" in members:
        text = members[f"{prefix}.txt"].decode("utf-8", "replace")
        entry = [len(text), len(text.split()), len(found), text[: keep_chars + 1]]
    else:
        entry = [0, 0, len(found), ""]
    c["report"]["chars"].append(entry[0])
    c["report"]["words"].append(entry[1])
    return entry


def _count_sample(c: dict[str, Any], meta: dict) -> None:
    """Count a sample's conventions and its generated captions (``pipelines.captions``: report
    members that are not items) into ``c``."""
    for k, v in sorted(meta.get("conventions", {}).items()):
        _bump(c["conventions"].setdefault(k, {}), v)
    generated = [g for g in meta.get("generated_text", []) if isinstance(g, dict)]
    if generated:
        g = c["generated_text"]
        g["samples"] += 1
        g["items"] += len(generated)
        for method in sorted({str(x.get("method", "")) for x in generated}):
            _bump(g["methods"], method)
        for x in generated:  # caption.llm_rewrite: counted only where a table asked for it
            state = x.get("llm_rewrite")
            if state is True or state == "rejected":
                _bump(g.setdefault("llm_rewrite", {}), "rewritten" if state is True else "rejected")
            if state == "rejected":
                _bump(g.setdefault("llm_reject_reasons", {}), x.get("llm_reject_reason", ""))


def _add_counts(into: dict, part: Mapping) -> None:
    """Merge one ``counts`` block into another: numbers add, dicts recurse, and a value list is
    appended as one numpy array (:meth:`Scan.finish` joins them)."""
    for k, v in part.items():
        if isinstance(v, Mapping):
            _add_counts(into.setdefault(k, {}), v)
        elif isinstance(v, list):
            into.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
        else:
            into[k] = into.get(k, 0) + v


def _join_lists(counts: dict) -> None:
    """Each value list of a merged ``counts`` block (a list of numpy arrays) as one array."""
    for k, v in counts.items():
        if isinstance(v, dict):
            _join_lists(v)
        elif isinstance(v, list):
            counts[k] = np.concatenate(v) if v else np.zeros(0, dtype=np.float64)


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
        and all(isinstance(section.get(k), dict) for k in ("counts", "gallery", "samples", "records"))
    ):
        return section
    return None


@dataclass
class Scan:
    """The card statistics of all shards, merged: counters, value arrays and bounded candidate
    sets only, nothing per sample (payloads are read only for the gallery)."""

    #: gallery candidates: key → {shard, split, modalities, prefixes, reports: {prefix: [chars,
    #: words, findings, head]}}; at most len(GALLERY_LISTS) x splits x GALLERY_CANDIDATES entries
    samples: dict[str, dict] = field(default_factory=dict)
    #: candidate list → keys in the gallery's order, per split the first GALLERY_CANDIDATES
    gallery: dict[str, list[str]] = field(default_factory=dict)
    #: the records to index (those of the dedup clusters shown); others are not kept
    wanted_records: frozenset[str] = frozenset()
    record_index: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # → (key, prefix, shard)
    previews: dict[tuple[str, str], list] = field(default_factory=dict)  # (key, prefix) → report entry
    counts: dict[str, Any] = field(default_factory=_card_counts)
    n_samples: int = 0
    from_tars: int = 0  # shards whose statistics were computed from the tar (no card section)

    def add(self, shard: str, part: Mapping[str, Any]) -> None:
        self.n_samples += int(part["n_samples"])
        for key, info in part["samples"].items():
            self.samples[key] = {"shard": shard, **info}
        for name in GALLERY_LISTS:
            keys = self.gallery.get(name, []) + list(part["gallery"].get(name, []))
            self.gallery[name] = _top(keys, self.samples, GALLERY_CANDIDATES)
        live = {k for keys in self.gallery.values() for k in keys}
        self.samples = {k: v for k, v in self.samples.items() if k in live}
        if self.wanted_records:
            recs = part["records"]
            for record_id, key, prefix, rep in zip(
                recs["record_id"], recs["key"], recs["prefix"], recs["report"], strict=True
            ):
                if record_id in self.wanted_records:
                    self.record_index[record_id] = (key, prefix, shard)
                    if rep is not None:
                        self.previews[(key, prefix)] = list(rep)
        _add_counts(self.counts, part["counts"])

    def finish(self) -> Scan:
        """Join the merged value lists into one numpy array each (after the last :meth:`add`)."""
        _join_lists(self.counts)
        return self

    def record(self, record_id: str) -> tuple[str, str, str]:
        """(key, prefix, shard) of an indexed record (empty strings if it is in no shard)."""
        return self.record_index.get(record_id, ("", "", ""))

    def report(self, key: str, prefix: str) -> tuple[int, int, int, str]:
        """(chars, words, findings, head) of one report item (zeros if it has no members): a
        gallery candidate's head, else an indexed record's (shorter) preview head."""
        rep = self.samples[key]["reports"].get(prefix) if key in self.samples else None
        if rep is None:
            rep = self.previews.get((key, prefix), (0, 0, 0, ""))
        chars, words, n_found, head = rep
        return int(chars), int(words), int(n_found), str(head)


def scan_shards(
    build_dir: Path,
    shard_names: list[str],
    keep_chars: int,
    quiet: bool,
    records: frozenset[str] = frozenset(),
) -> Scan:
    """Merge the card statistics of every shard: the ``card`` section of its stats JSON, else
    (a build by an older version) :func:`shard_card_stats` over its tar's meta and report members.
    ``records``: the record ids to index (the dedup clusters shown)."""
    scan = Scan(wanted_records=frozenset(records))
    for name in tqdm(shard_names, desc="datacard: scan", unit="shard", disable=quiet, leave=False):
        part = _shard_card_section(build_dir, name)
        if part is None:
            part = shard_card_stats(_tar_samples(build_dir / SHARDS_DIR / name), keep_chars)
            scan.from_tars += 1
        scan.add(name, part)
        del part
    if scan.from_tars:
        log.info(
            "data card: %d of %d shards had no card statistics (read from the tar)",
            scan.from_tars,
            len(shard_names),
        )
    return scan.finish()


def _pixel_spacing(it: dict) -> str:
    dicom = (it.get("meta") or {}).get("dicom") or {}
    for k in ("PixelSpacing", "ImagerPixelSpacing"):
        v = dicom.get(k)
        if isinstance(v, list) and len(v) >= 2:
            return _dims(v[:2])
    return "not recorded"
