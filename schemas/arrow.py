"""Arrow schemas of the records, written out explicitly (tests check they match the dataclasses)."""

from __future__ import annotations

import pyarrow as pa

_STR_LIST = pa.list_(pa.string())

_ITEM_BASE = [
    pa.field("record_id", pa.string(), nullable=False),
    pa.field("modality", pa.string(), nullable=False),
    pa.field("source_ids", _STR_LIST, nullable=False),
    pa.field("source_name", pa.string(), nullable=False),
    pa.field("licence", pa.string(), nullable=False),
    pa.field("patient", pa.string(), nullable=False),
    pa.field("study", pa.string(), nullable=False),
    pa.field("acquired_at", pa.string(), nullable=False),
    pa.field("content_sha256", pa.string(), nullable=False),
    pa.field("meta_json", pa.string(), nullable=False),
]

IMAGE_SCHEMA = pa.schema(
    [
        *_ITEM_BASE,
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("columns", pa.int64(), nullable=False),
        pa.field("frames", pa.int64(), nullable=False),
        pa.field("photometric", pa.string(), nullable=False),
        pa.field("bits_stored", pa.int64(), nullable=False),
        pa.field("dicom_modality", pa.string(), nullable=False),
        pa.field("body_part", pa.string(), nullable=False),
        pa.field("view_position", pa.string(), nullable=False),
        pa.field("pixel_steps", _STR_LIST, nullable=False),
    ]
)

VOLUME_SCHEMA = pa.schema(
    [
        *_ITEM_BASE,
        pa.field("shape", pa.list_(pa.int64()), nullable=False),
        pa.field("spacing_mm", pa.list_(pa.float64()), nullable=False),
        pa.field("affine", pa.list_(pa.float64()), nullable=False),
        pa.field("orientation", pa.string(), nullable=False),
        pa.field("source_format", pa.string(), nullable=False),
        pa.field("hounsfield", pa.bool_(), nullable=False),
    ]
)

ECG_SCHEMA = pa.schema(
    [
        *_ITEM_BASE,
        pa.field("sampling_rate_hz", pa.float64(), nullable=False),
        pa.field("n_samples", pa.int64(), nullable=False),
        pa.field("leads", _STR_LIST, nullable=False),
        pa.field("original_rate_hz", pa.float64(), nullable=False),
        pa.field("units", pa.string(), nullable=False),
        pa.field("qc_flags", _STR_LIST, nullable=False),
    ]
)

REPORT_SCHEMA = pa.schema(
    [
        *_ITEM_BASE,
        pa.field("text", pa.string(), nullable=False),
        pa.field("language", pa.string(), nullable=False),
        pa.field("report_type", pa.string(), nullable=False),
        pa.field("structured_json", pa.string(), nullable=False),
    ]
)

SERIES_SLICE_SCHEMA = pa.schema(
    [
        pa.field("series_key", pa.string(), nullable=False),
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("source_name", pa.string(), nullable=False),
        pa.field("licence", pa.string(), nullable=False),
        pa.field("patient", pa.string(), nullable=False),
        pa.field("study", pa.string(), nullable=False),
        pa.field("acquired_at", pa.string(), nullable=False),
        pa.field("position_mm", pa.list_(pa.float64()), nullable=False),
        pa.field("orientation", pa.list_(pa.float64()), nullable=False),
        pa.field("pixel_spacing_mm", pa.list_(pa.float64()), nullable=False),
        pa.field("rows", pa.int64(), nullable=False),
        pa.field("columns", pa.int64(), nullable=False),
        pa.field("is_localizer", pa.bool_(), nullable=False),
        pa.field("meta_json", pa.string(), nullable=False),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source_id", pa.string(), nullable=False),
        pa.field("source_name", pa.string(), nullable=False),
        pa.field("modality", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
    ]
)

SAMPLE_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("index_in_shard", pa.int64(), nullable=False),
        pa.field("patient", pa.string(), nullable=False),
        pa.field("study", pa.string(), nullable=False),
        pa.field("modalities", _STR_LIST, nullable=False),
        pa.field("modality_mask", pa.list_(pa.bool_()), nullable=False),
        pa.field("members", _STR_LIST, nullable=False),
        pa.field("member_sha256", _STR_LIST, nullable=False),
        pa.field("sample_sha256", pa.string(), nullable=False),
        pa.field("n_bytes", pa.int64(), nullable=False),
        pa.field("record_ids", _STR_LIST, nullable=False),
        pa.field("source_ids", _STR_LIST, nullable=False),
        pa.field("source_names", _STR_LIST, nullable=False),
        pa.field("licences", _STR_LIST, nullable=False),
    ]
)

SHARD_SCHEMA = pa.schema(
    [
        pa.field("shard", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("n_samples", pa.int64(), nullable=False),
        pa.field("n_bytes", pa.int64(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("first_key", pa.string(), nullable=False),
        pa.field("last_key", pa.string(), nullable=False),
    ]
)


def schema_for(cls: type) -> pa.Schema:
    """Return the Arrow schema of a record class from :mod:`schemas.records`."""
    from schemas import records as r

    return {
        r.ImageRecord: IMAGE_SCHEMA,
        r.VolumeRecord: VOLUME_SCHEMA,
        r.EcgRecord: ECG_SCHEMA,
        r.ReportRecord: REPORT_SCHEMA,
        r.SeriesSlice: SERIES_SLICE_SCHEMA,
        r.QuarantineRecord: QUARANTINE_SCHEMA,
        r.SampleRecord: SAMPLE_SCHEMA,
        r.ShardRecord: SHARD_SCHEMA,
    }[cls]


def to_table(records: list, cls: type) -> pa.Table:
    """Records → Arrow table (enum values as strings, payload fields dropped)."""
    from dataclasses import fields
    from enum import Enum

    schema = schema_for(cls)
    names = [f.name for f in fields(cls) if f.metadata.get("arrow", True)]
    cols: dict[str, list] = {n: [] for n in names}
    for rec in records:
        for n in names:
            v = getattr(rec, n)
            if isinstance(v, Enum):
                v = v.value
            elif isinstance(v, tuple):
                v = list(v)
            cols[n].append(v)
    return pa.table(cols, schema=schema)
