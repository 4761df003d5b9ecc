"""Frozen, typed records that flow through a build.

Conventions (every record):
- IDs are pseudonymous: ``patient`` and ``study`` are keyed hashes (never raw MRNs/UIDs).
- ``acquired_at`` is ISO 8601 *after* the per-patient date shift, ``""`` when unknown.
- ``source_ids`` name the input units (files, table rows) a record came from; they are keyed
  hashes of relative paths, so they carry no PHI but can be re-derived by ``medcorpus locate``.
- ``payload`` holds the encoded member bytes (``(suffix, bytes)`` pairs, e.g. ``("png", b"...")``);
  it is excluded from the Arrow schemas (field metadata ``arrow=False``). In a build the decode
  worker moves it to the blob store (``pipelines.blobs``) at once: the record that travels on is
  a *header* with ``payload == ()`` and ``payload_refs`` = ``(suffix, sha256, size)`` triples.
- ``meta_json`` is canonical JSON (sorted keys) with the conventions and audit of this item.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from schemas.modality import Modality
from schemas.reasons import ReasonCode

NO_ARROW = {"arrow": False}


class InputKind(str, Enum):
    """What discovery found a file to be, by content (magic bytes / header), not by extension."""

    DICOM = "dicom"
    WFDB = "wfdb"  # a WFDB header (.hea); its signal files are companions
    NIFTI = "nifti"
    REPORT_TABLE = "report_table"  # CSV/TSV/JSONL export, one report per row
    REPORT_TEXT = "report_text"  # one plain-text report per file
    IMAGE_FILE = "image_file"  # a JPEG or PNG image (identity from a metadata table)
    EMPTY = "empty"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class InputItem:
    """One discovered input file. ``path`` lives in memory only; it is never written out."""

    source_id: str
    path: str
    kind: InputKind
    source_name: str
    licence: str
    size_bytes: int
    companions: tuple[str, ...] = ()
    #: a report table decoded in parts (one decode task each): ``(first row, end row, start
    #: char, end char)``; rows are 0-based data-row indices (end exclusive), chars are offsets
    #: into the decoded, newline-normalised text (``0, 0`` for a JSON array: rows only).
    #: ``()``: the whole file.
    row_range: tuple[int, int, int, int] = ()


def row_source_id(file_id: str, row: int) -> str:
    """Source id of data row ``row`` (0-based, blank rows skipped) of the report table ``file_id``."""
    return f"{file_id}-r{row:06d}"


@dataclass(frozen=True)
class _ItemBase:
    record_id: str
    modality: Modality
    source_ids: tuple[str, ...]
    source_name: str
    licence: str
    patient: str
    study: str
    acquired_at: str
    content_sha256: str
    meta_json: str


@dataclass(frozen=True)
class ImageRecord(_ItemBase):
    """A 2D image. Payload: ``png`` (8-bit model-ready rendition) and ``raw.npy`` (stored values).

    Pixel pipeline, in order: Modality LUT → VOI LUT → MONOCHROME1 inversion; the steps applied
    are listed in ``pixel_steps``. ``rows``/``columns`` are of the stored image, in pixels.
    """

    rows: int
    columns: int
    frames: int
    photometric: str
    bits_stored: int
    dicom_modality: str
    body_part: str
    view_position: str
    pixel_steps: tuple[str, ...]
    payload: tuple[tuple[str, bytes], ...] = field(default=(), metadata=NO_ARROW, repr=False)
    #: where the payload lives once stored (``(suffix, sha256, size)``; the payload is then ``()``)
    payload_refs: tuple[tuple[str, str, int], ...] = field(default=(), metadata=NO_ARROW, repr=False)


@dataclass(frozen=True)
class VolumeRecord(_ItemBase):
    """A 3D volume. Payload: ``npy`` int16 array of shape ``shape`` in (X, Y, Z) voxel order.

    ``orientation`` is the axis code of the stored array (``"RAS"`` after canonicalisation);
    ``affine`` is the 4x4 voxel→world (mm) matrix, row-major; ``spacing_mm`` is per axis.
    CT values are Hounsfield units when ``hounsfield`` is true.
    """

    shape: tuple[int, ...]
    spacing_mm: tuple[float, ...]
    affine: tuple[float, ...]
    orientation: str
    source_format: str
    hounsfield: bool
    payload: tuple[tuple[str, bytes], ...] = field(default=(), metadata=NO_ARROW, repr=False)
    #: where the payload lives once stored (``(suffix, sha256, size)``; the payload is then ``()``)
    payload_refs: tuple[tuple[str, str, int], ...] = field(default=(), metadata=NO_ARROW, repr=False)


@dataclass(frozen=True)
class EcgRecord(_ItemBase):
    """An ECG. Payload: ``npy`` float16 array (len(leads), n_samples) in ``units`` (mV).

    Leads are in the canonical order I, II, III, aVR, aVL, aVF, V1–V6 (missing ones NaN and
    flagged). ``sampling_rate_hz`` is the corpus rate (500 Hz); ``original_rate_hz`` the source's.
    """

    sampling_rate_hz: float
    n_samples: int
    leads: tuple[str, ...]
    original_rate_hz: float
    units: str
    qc_flags: tuple[str, ...]
    payload: tuple[tuple[str, bytes], ...] = field(default=(), metadata=NO_ARROW, repr=False)
    #: where the payload lives once stored (``(suffix, sha256, size)``; the payload is then ``()``)
    payload_refs: tuple[tuple[str, str, int], ...] = field(default=(), metadata=NO_ARROW, repr=False)


@dataclass(frozen=True)
class ReportRecord(_ItemBase):
    """A de-identified free-text report with its structured form (``schemas.report_schema``)."""

    text: str
    language: str
    report_type: str
    structured_json: str
    payload: tuple[tuple[str, bytes], ...] = field(default=(), metadata=NO_ARROW, repr=False)
    #: where the payload lives once stored (``(suffix, sha256, size)``; the payload is then ``()``)
    payload_refs: tuple[tuple[str, str, int], ...] = field(default=(), metadata=NO_ARROW, repr=False)


@dataclass(frozen=True)
class LabsRecord(_ItemBase):
    """Laboratory values around an anchor (one admission): the earliest value per lab item.

    Built by the anchor linker from lab-event headers, not decoded from one file, so
    ``source_ids`` is ``()`` (the lab table's rows are counted in the link report instead).
    Only the items found in the window, sorted by id: ``item_ids[i]``, ``units[i]``,
    ``values[i]`` and ``times[i]`` (shifted ISO 8601). The payload (``npy`` and ``json``, dense
    over the build's item list, with names) is written after the split, once the train split's
    percentiles are known.
    """

    anchor: str
    item_ids: tuple[str, ...]
    units: tuple[str, ...]
    values: tuple[float, ...]
    times: tuple[str, ...]
    payload: tuple[tuple[str, bytes], ...] = field(default=(), metadata=NO_ARROW, repr=False)
    #: where the payload lives once stored (``(suffix, sha256, size)``; the payload is then ``()``)
    payload_refs: tuple[tuple[str, str, int], ...] = field(default=(), metadata=NO_ARROW, repr=False)


@dataclass(frozen=True)
class SeriesSlice:
    """One decoded slice of a CT/MR series, waiting to be grouped into a :class:`VolumeRecord`.

    ``position_mm`` is ImagePositionPatient (LPS, mm); ``orientation`` is the 6 direction cosines
    of ImageOrientationPatient; ``pixel_spacing_mm`` is (row, column) spacing. ``pixels`` holds
    the Modality-LUT-applied values (HU for CT) as little-endian int16 bytes, rows x columns.
    """

    series_key: str
    source_id: str
    source_name: str
    licence: str
    patient: str
    study: str
    acquired_at: str
    position_mm: tuple[float, float, float]
    orientation: tuple[float, ...]
    pixel_spacing_mm: tuple[float, float]
    rows: int
    columns: int
    is_localizer: bool
    meta_json: str
    pixels: bytes = field(default=b"", metadata=NO_ARROW, repr=False)
    pixels_ref: str = field(default="", metadata=NO_ARROW, repr=False)  # sha256 of ``pixels`` once stored


@dataclass(frozen=True)
class QuarantineRecord:
    """An input unit (file or table row) that did not become part of a sample, and why.

    ``message`` is human-readable and PHI-free; ``stage`` is the step that rejected it.
    """

    source_id: str
    source_name: str
    modality: Modality
    stage: str
    reason: ReasonCode
    message: str


@dataclass(frozen=True)
class SampleRecord:
    """One row of the sample manifest: a written WebDataset sample."""

    key: str
    split: str
    shard: str
    index_in_shard: int
    patient: str
    study: str
    modalities: tuple[str, ...]
    modality_mask: tuple[bool, ...]
    members: tuple[str, ...]
    member_sha256: tuple[str, ...]
    sample_sha256: str
    n_bytes: int
    record_ids: tuple[str, ...]
    source_ids: tuple[str, ...]
    source_names: tuple[str, ...]
    licences: tuple[str, ...]


@dataclass(frozen=True)
class ShardRecord:
    """One row of the shard manifest."""

    shard: str
    split: str
    n_samples: int
    n_bytes: int
    sha256: str
    first_key: str
    last_key: str


ItemRecord = ImageRecord | VolumeRecord | EcgRecord | ReportRecord | LabsRecord
DecodedRecord = ItemRecord | SeriesSlice | QuarantineRecord
