"""Building the records DICOM decoders return: metadata from the de-identified dataset only.

``dicom_meta`` reads a fixed allow-list of technical attributes (no free text, no identifiers)
from the *de-identified* dataset; ``image_record`` and ``volume_record`` assemble the frozen
records of ``schemas.records`` with the project's conventions (record_id from source ids,
content hash of the decoded array, canonical JSON metadata, deterministic payload bytes).
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from schemas import ImageRecord, InputItem, Modality, VolumeRecord
from schemas.canonical import canonical_json
from workers.dicom.pixels import array_sha256, encode_npy, encode_png, resize_longest

PIXEL_PIPELINE = "modality_lut > voi_lut > monochrome1_inversion"

#: technical attributes copied into meta.json (values are codes/numbers, never identifiers)
_META_KEYWORDS: tuple[str, ...] = (
    "Modality",
    "SOPClassUID",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PixelSpacing",
    "ImagerPixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "RescaleType",
    "ImageType",
    "BodyPartExamined",
    "ViewPosition",
    "Laterality",
    "ImageLaterality",
    "PatientPosition",
    "PresentationLUTShape",
    "BurnedInAnnotation",
    "LossyImageCompression",
    "LossyImageCompressionRatio",
    "Manufacturer",
    "ManufacturerModelName",
    "KVP",
    "ConvolutionKernel",
    "SpecificCharacterSet",
    "PatientIdentityRemoved",
    "LongitudinalTemporalInformationModified",
)


def _jsonable(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if hasattr(value, "__iter__"):
        return [_jsonable(v) for v in value]
    try:
        f = float(value)  # DSfloat, IS
        return int(f) if f.is_integer() and "IS" in type(value).__name__ else f
    except (TypeError, ValueError):
        return str(value)


def dicom_meta(clean: Dataset) -> dict:
    """Allow-listed technical attributes of the *de-identified* dataset, JSON-ready."""
    out: dict = {}
    for kw in _META_KEYWORDS:
        elem = clean.get(kw)
        if elem is None:
            continue
        value = clean[kw].value
        if value in (None, ""):
            continue
        if kw == "SOPClassUID":
            out["SOPClass"] = UID(str(value)).name
            continue
        out[kw] = _jsonable(value)
    meta = getattr(clean, "file_meta", None)
    if meta is not None and meta.get("TransferSyntaxUID"):
        out["TransferSyntax"] = UID(str(meta.TransferSyntaxUID)).name
    return out


def image_record(
    *,
    item_source_ids: tuple[str, ...],
    source_name: str,
    licence: str,
    patient: str,
    study: str,
    acquired_at: str,
    stored: np.ndarray,
    rendition: np.ndarray,
    steps: tuple[str, ...],
    photometric: str,
    frames: int,
    rendition_frame: int,
    dicom: dict,
    pixel_info: dict,
    deid_audit: dict,
    rendition_size: int,
    ctx,
    extra_meta: dict | None = None,
) -> ImageRecord:
    """An :class:`ImageRecord` with ``png`` (8-bit, longest side ``rendition_size``) and ``raw.npy``."""
    png_img = resize_longest(rendition, rendition_size)
    meta = {
        "source_format": "dicom",
        "dicom": dicom,
        "pixel": {
            "pipeline": PIXEL_PIPELINE,
            "steps": list(steps),
            "stored_dtype": stored.dtype.str,
            "stored_shape": list(stored.shape),
            "stored_photometric": photometric,
            "rendition_frame": rendition_frame,
            "rendition_shape": list(png_img.shape),
            "rendition_resample": "lanczos",
            **pixel_info,
        },
        "deid": deid_audit,
    }
    if extra_meta:
        meta.update(extra_meta)
    rows, cols = (stored.shape[-3], stored.shape[-2]) if photometric == "RGB" else stored.shape[-2:]
    return ImageRecord(
        record_id=ctx.pseudo.record_id(item_source_ids),
        modality=Modality.IMAGE,
        source_ids=item_source_ids,
        source_name=source_name,
        licence=licence,
        patient=patient,
        study=study,
        acquired_at=acquired_at,
        content_sha256=array_sha256(stored),
        meta_json=canonical_json(meta),
        rows=int(rows),
        columns=int(cols),
        frames=int(frames),
        photometric=str(dicom.get("PhotometricInterpretation", photometric)),
        bits_stored=int(dicom.get("BitsStored", 0) or 0),
        dicom_modality=str(dicom.get("Modality", "")),
        body_part=str(dicom.get("BodyPartExamined", "")),
        view_position=str(dicom.get("ViewPosition", "")),
        pixel_steps=tuple(steps),
        payload=(("png", encode_png(png_img)), ("raw.npy", encode_npy(stored))),
    )


def volume_record(
    *,
    source_ids: tuple[str, ...],
    source_name: str,
    licence: str,
    patient: str,
    study: str,
    acquired_at: str,
    volume: np.ndarray,
    affine: np.ndarray,
    spacing: tuple[float, ...],
    source_format: str,
    hounsfield: bool,
    meta: dict,
    ctx,
) -> VolumeRecord:
    """A :class:`VolumeRecord` (int16 (X, Y, Z) in RAS, payload ``npy``)."""
    return VolumeRecord(
        record_id=ctx.pseudo.record_id(source_ids),
        modality=Modality.VOLUME,
        source_ids=source_ids,
        source_name=source_name,
        licence=licence,
        patient=patient,
        study=study,
        acquired_at=acquired_at,
        content_sha256=array_sha256(volume),
        meta_json=canonical_json(meta),
        shape=tuple(int(s) for s in volume.shape),
        spacing_mm=tuple(round(float(s), 6) for s in spacing),
        affine=tuple(round(float(v), 6) for v in np.asarray(affine, dtype=np.float64).ravel()),
        orientation="RAS",
        source_format=source_format,
        hounsfield=hounsfield,
        payload=(("npy", encode_npy(volume)),),
    )


def item_ids(item: InputItem) -> tuple[str, ...]:
    return (item.source_id,)
