"""Frozen configs of the workers. ``pipelines.config`` composes them from the YAML file."""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.config_coerce import BYTE_SIZE


@dataclass(frozen=True)
class ImageConfig:
    """2D image options. ``rendition_size`` is the longest side of the 8-bit PNG, in pixels."""

    rendition_size: int = 512
    keep_modalities: tuple[str, ...] = ()  # DICOM Modality values to keep; empty keeps all
    keep_body_parts: tuple[str, ...] = ()  # BodyPartExamined values to keep; empty keeps all
    keep_views: tuple[str, ...] = ()  # ViewPosition values to keep; empty keeps all
    allow_burned_in: bool = False


@dataclass(frozen=True)
class VolumeConfig:
    """Volume options. ``target_spacing_mm`` of ``()`` keeps the native spacing.

    ``slice_reduction_ncc`` (NIfTI; 0 = off): the "Less is More" reduction, keeping slice 0 and
    then a Z slice only when its correlation (NCC) with the last kept slice is below this value
    (e.g. 0.98); the kept original indices are in ``meta.slice_reduction.kept``.
    """

    target_spacing_mm: tuple[float, ...] = ()
    four_d_policy: str = "first"  # first | all | quarantine
    min_slices: int = 3
    slice_reduction_ncc: float = 0.0


@dataclass(frozen=True)
class EcgConfig:
    """ECG conventions: rate in Hz, window in seconds, what to do with < 12 leads."""

    rate_hz: int = 500
    seconds: float = 10.0
    partial_leads: str = "flag"  # flag | quarantine
    study_id_pattern: str = r"(\d+)"  # regex on the record name giving the study/link id


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns of a report table hold what. Empty string: not present.

    ``text_join``: how several ``text`` columns make one report: ``sections`` (each non-empty
    column under its upper-cased name as a heading) or ``lines`` (the non-empty values in
    column order, one per line, no headings: MIMIC-IV-ECG's ``report_0`` ... ``report_17``).
    """

    report_id: str = ""
    patient_id: str = ""
    study_id: str = ""
    timestamp: str = ""
    text: tuple[str, ...] = ("text",)
    report_type: str = "radiology"
    text_join: str = "sections"


@dataclass(frozen=True)
class ReportConfig:
    """Report ingest and structuring options.

    ``path_regex`` (plain-text reports, one file per report): a regular expression searched
    (``re.search``) on the file's path, POSIX separators; its named groups are the report's
    columns, picked by ``columns`` (``patient_id``, ``study_id``, ``timestamp``, ``report_id``;
    unset ones by the table auto names, e.g. ``subject_id``, ``study_id``). MIMIC-CXR:
    ``p(?P<subject_id>\\d+)/s(?P<study_id>\\d+)\\.txt$``. A file whose path does not match is
    quarantined ``no_metadata``; header lines (``Patient ID:``, ...) fill only what the path
    does not give.

    Report tables only: ``measurements`` (column → unit) are numeric columns copied into each
    row's report metadata as ``{"value": number | null, "unit": unit}``; a blank value, one
    listed in ``measurement_missing`` (a "not measured" code such as MIMIC-IV-ECG's ``29999``)
    or one that is not a finite number is ``null``. ``fields``: columns copied as text (codes
    such as a filter setting, never free text).
    """

    columns: ColumnMapping = field(default_factory=ColumnMapping)
    structurer: str = "rules"  # rules | llm
    path_regex: str = ""
    measurements: dict = field(default_factory=dict)
    measurement_missing: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class LimitsConfig:
    """Per-item resource limits; exceeding one quarantines the item (reason limit_exceeded)."""

    max_pixels: int = 200_000_000
    max_ecg_samples: int = 50_000_000
    max_text_chars: int = 200_000
    max_file_bytes: int = field(default=4_000_000_000, metadata=BYTE_SIZE)
    max_decompression_ratio: float = 200.0  # decoded bytes / file bytes (JPEG 2000, deflate bombs)
    item_timeout_s: float = 300.0  # wall-clock seconds per input item; 0 disables
    #: a report table of more data rows is decoded as row-range parts of this many rows, one
    #: task each (and one ``item_timeout_s`` each); 0: one task per table
    table_rows_per_task: int = 5000
