"""A linked sample group's WebDataset members (the contract in ``schemas.contract``): names and ``meta.json``."""

from __future__ import annotations

import json
from dataclasses import fields

from pipelines.link import SampleGroup
from schemas.canonical import canonical_bytes
from schemas.contract import (
    ECG_LEADS,
    ECG_RATE_HZ,
    ECG_SECONDS,
    ECG_UNITS,
    member_name,
)
from schemas.modality import EXTRA_MODALITIES, SAMPLE_MODALITIES, Modality, modality_mask
from schemas.report_schema import REPORT_SCHEMA_VERSION
from workers.deid.pseudonym import Pseudonymizer

SAMPLE_META_VERSION = "1"

CONVENTIONS = {
    "image": "pixel pipeline: Modality LUT -> VOI LUT -> MONOCHROME1 inversion; png is 8-bit model-ready, "
    "raw.npy holds stored values after the Modality LUT",
    "volume": "int16 (X, Y, Z) voxels in RAS orientation; HU for CT; affine maps voxels to mm",
    "ecg": f"float16 ({len(ECG_LEADS)}, {ECG_RATE_HZ * ECG_SECONDS}) in {ECG_UNITS} at {ECG_RATE_HZ} Hz, "
    f"lead order {','.join(ECG_LEADS)}",
    "report": f"de-identified UTF-8 text; json follows structured-report schema {REPORT_SCHEMA_VERSION}",
    "dates": "shifted by one per-patient offset (PS3.15 retain longitudinal temporal info, modified dates)",
}
#: conventions recorded only in samples that hold such items (older corpora keep their meta.json)
EXTRA_CONVENTIONS = {
    "image_file": "JPEG/PNG: EXIF orientation applied, metadata (EXIF, ICC, comments, PNG text) dropped; "
    "grey 8-bit as stored, 16-bit min/max to 8-bit; colour as RGB; raw.npy holds the decoded values",
    "labs": "labs_{i}.npy float32 (3, n_items): value (item unit, NaN missing), percentile under the "
    "train split's empirical CDF (missing: train mean percentile), missing (1/0); "
    "labs_{i}.json: item ids, names, units, times, missingness",
    "anchor": "one sample per anchor row (admission); per modality the earliest item in its window",
}


def _record_summary(rec) -> dict:
    out = {}
    for f in fields(rec):
        if not f.metadata.get("arrow", True) or f.name in (
            "meta_json",
            "source_ids",
            "text",
            "structured_json",
        ):
            continue
        v = getattr(rec, f.name)
        out[f.name] = v.value if hasattr(v, "value") else (list(v) if isinstance(v, tuple) else v)
    out["meta"] = json.loads(rec.meta_json) if rec.meta_json else {}
    return out


def sample_key(group: SampleGroup, pseudo: Pseudonymizer) -> str:
    """Dot-free key: a keyed hash of the (pseudonymous) group key."""
    return pseudo.token("sample", group.group_key, 24)


def sample_meta(group: SampleGroup, split: str, pseudo: Pseudonymizer, demo_build: bool) -> tuple[str, bytes]:
    """The sample key and its ``meta.json`` bytes (conventions, per-item meta; no payload needed)."""
    key = sample_key(group, pseudo)
    items_meta = []
    extra: set[str] = set()
    present = set()
    counters: dict[str, int] = {}
    for rec in group.records:  # already sorted by (modality, time, record_id)
        i = counters.get(rec.modality.value, 0)
        counters[rec.modality.value] = i + 1
        present.add(rec.modality)
        summary = _record_summary(rec)
        summary["member_prefix"] = f"{rec.modality.value}_{i}"
        items_meta.append(summary)
        if summary["meta"].get("source_format") in ("jpeg", "png"):
            extra.add("image_file")
        if rec.modality is Modality.LABS:
            extra.add("labs")
    if group.link_rule.startswith("anchor:"):
        extra.add("anchor")
    order = SAMPLE_MODALITIES + EXTRA_MODALITIES
    meta = {
        "meta_version": SAMPLE_META_VERSION,
        "key": key,
        "split": split,
        "patient": group.patient,
        "study": group.study,
        "modalities": [m.value for m in order if m in present],
        "modality_mask": list(modality_mask(present, extended=group.extended)),
        "patient_conflict": group.patient_conflict,
        "items": items_meta,
        "conventions": CONVENTIONS | {k: EXTRA_CONVENTIONS[k] for k in sorted(extra)},
        "demo_build": demo_build,
    }
    return key, canonical_bytes(meta)


def member_names(group: SampleGroup) -> list[tuple[str, object, int]]:
    """``(member name, record, payload index)`` for every payload part of the group's records."""
    out = []
    counters: dict[str, int] = {}
    for rec in group.records:
        i = counters.get(rec.modality.value, 0)
        counters[rec.modality.value] = i + 1
        parts = rec.payload_refs or rec.payload
        for j, part in enumerate(parts):
            out.append((member_name(rec.modality, i, part[0]), rec, j))
    return out
