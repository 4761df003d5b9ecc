"""Decode one DICOM file into records: the pipeline's entry point for ``InputKind.DICOM``.

Dispatch (by SOP Class UID, falling back to the file meta's Media Storage SOP Class UID):

- DICOMDIR → ``DICOM_DIRECTORY`` (an index: accounted for, not an image).
- ECG waveform SOP classes → ``workers.ecg.dicom.decode_dicom_ecg(ds, item, ctx)``.
- Text SR SOP classes (Basic/Enhanced/Comprehensive) → ``workers.report.sr.decode_dicom_sr``.
- Other objects without pixel data, presentation states, segmentations, RT dose →
  ``DICOM_UNSUPPORTED_SOP`` (or ``DICOM_NO_PIXELS``/``DICOM_TRUNCATED`` for an image without
  pixel data).
- CT/MR single-frame slices with ImagePositionPatient, ImageOrientationPatient and
  PixelSpacing → :class:`SeriesSlice` (``workers.dicom.series.assemble_series`` groups them).
- Enhanced multi-frame CT/MR with per-frame plane positions → a ``VolumeRecord`` when the
  frames are a uniformly spaced stack of at least ``ctx.volume.min_slices``; otherwise, like
  every other image, an :class:`ImageRecord` (all frames kept in ``raw.npy``).

Before pixels are decoded: de-identification (PS3.15, ``workers.deid.dicom``), the
modality/body part/view filters (``FILTERED_OUT``), burned-in annotation rules
(``DICOM_BURNED_IN`` unless ``ctx.image.allow_burned_in``) and the pixel limit
(``LIMIT_EXCEEDED``). All metadata written comes from the de-identified dataset.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from pydicom.dataset import Dataset

from schemas import InputItem, QuarantineError, ReasonCode, SeriesSlice
from schemas.canonical import canonical_json
from schemas.records import DecodedRecord as _DecodedRecord
from workers.deid.dicom import deidentify
from workers.dicom.identity import dicom_identity
from workers.dicom.pixels import (
    apply_modality,
    check_pixel_header,
    decode_pixels,
    frame_view,
    has_pixels,
    n_frames,
    render_attrs,
    run_pixel_pipeline,
)
from workers.dicom.read import is_dicomdir, read_dicom, sop_class_uid
from workers.dicom.records import dicom_meta, image_record
from workers.ids import normalise_id

log = logging.getLogger(__name__)

_SOP = "1.2.840.10008.5.1.4.1.1."
ECG_SOP_CLASSES = frozenset(_SOP + s for s in ("9.1.1", "9.1.2", "9.1.3", "9.1.4"))
SR_SOP_CLASSES = frozenset(_SOP + s for s in ("88.11", "88.22", "88.33"))
#: SOP classes whose pixel data is not an image for the corpus (labels, dose grids)
NON_IMAGE_PIXEL_SOP_CLASSES = frozenset(_SOP + s for s in ("66.4", "481.2"))
SECONDARY_CAPTURE_PREFIX = _SOP + "7"
ULTRASOUND_SOP_CLASSES = frozenset(_SOP + s for s in ("3", "3.1", "6", "6.1", "6.2"))
#: modalities whose images commonly carry burned-in text (PS3.15 E.3.1 "Clean Pixel Data")
BURNED_IN_MODALITIES = frozenset({"US", "SC"})
VOLUME_MODALITIES = frozenset({"CT", "MR"})
ENHANCED_VOLUME_SOP_CLASSES = frozenset(_SOP + s for s in ("2.1", "2.2", "4.1", "4.3", "4.4"))


def _canon(value: object) -> str:
    return str(value or "").strip().upper()


def _check_filters(clean: Dataset, ctx) -> None:
    """Modality / body part / view filters from ``ctx.image`` (empty tuple keeps all)."""
    cfg = ctx.image
    checks = (
        ("Modality", cfg.keep_modalities, "modality"),
        ("BodyPartExamined", cfg.keep_body_parts, "body part"),
        ("ViewPosition", cfg.keep_views, "view"),
    )
    for kw, keep, label in checks:
        if not keep:
            continue
        value = _canon(clean.get(kw, ""))
        if value not in {_canon(k) for k in keep}:
            shown = "".join(ch for ch in value if ch.isalnum() or ch in " _-")[:16] or "(empty)"
            raise QuarantineError(ReasonCode.FILTERED_OUT, f"{label} {shown} not in the keep list")


def _check_burned_in(clean: Dataset, sop: str, ctx) -> None:
    if ctx.image.allow_burned_in:
        return
    if _canon(clean.get("BurnedInAnnotation", "")) == "YES":
        raise QuarantineError(ReasonCode.DICOM_BURNED_IN, "Burned In Annotation is YES")
    modality = _canon(clean.get("Modality", ""))
    if modality in BURNED_IN_MODALITIES:
        raise QuarantineError(ReasonCode.DICOM_BURNED_IN, f"modality {modality} commonly has burned-in text")
    if sop.startswith(SECONDARY_CAPTURE_PREFIX) and (
        sop == SECONDARY_CAPTURE_PREFIX or sop[len(SECONDARY_CAPTURE_PREFIX)] == "."
    ):
        raise QuarantineError(ReasonCode.DICOM_BURNED_IN, "secondary capture commonly has burned-in text")
    if sop in ULTRASOUND_SOP_CLASSES:
        raise QuarantineError(ReasonCode.DICOM_BURNED_IN, "ultrasound commonly has burned-in text")


def _no_pixels(ds: Dataset, sop: str, raw_has_pixel_tag: bool, ends_mid_element=None) -> QuarantineError:
    looks_like_image = "Image Storage" in _sop_name(sop) or "Rows" in ds
    if looks_like_image:
        if raw_has_pixel_tag:
            return QuarantineError(ReasonCode.DICOM_TRUNCATED, "pixel data element cut off")
        if ends_mid_element is not None and ends_mid_element():
            return QuarantineError(ReasonCode.DICOM_TRUNCATED, "file ends inside a data element (cut off)")
        return QuarantineError(ReasonCode.DICOM_NO_PIXELS, "image object without pixel data")
    return QuarantineError(
        ReasonCode.DICOM_UNSUPPORTED_SOP, f"non-image SOP class {_sop_name(sop) or 'unknown'}"
    )


def _sop_name(sop: str) -> str:
    from pydicom.uid import UID

    try:
        name = UID(sop).name if sop else ""
    except Exception:
        return ""
    return "" if name == sop else name


def _raw_has_pixel_tag(path: str) -> bool:
    """Whether the file bytes contain a Pixel Data tag (LE or BE), for truncation diagnosis."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return False
    if data[:2] == b"\x1f\x8b":
        return False
    return b"\xe0\x7f\x10\x00" in data or b"\x7f\xe0\x00\x10" in data


def _ends_mid_element(path: str) -> bool:
    """True when the dataset's element stream stops before the end of the file: the bytes left
    over are a partial element (a file cut inside an element header or value)."""
    import io

    from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble

    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":
            return False
        f = io.BytesIO(raw)
        read_preamble(f, True)
        meta = _read_file_meta_info(f)
        ts = str(meta.get("TransferSyntaxUID", "1.2.840.10008.1.2.1"))
        implicit = ts == "1.2.840.10008.1.2"
        little = ts != "1.2.840.10008.1.2.2"
        end = f.tell()
        for _ in data_element_generator(f, implicit, little, defer_size=1024):
            end = f.tell()
        return 0 < len(raw) - end
    except Exception:  # noqa: BLE001 - a diagnosis helper: unparseable means "not this case"
        return False


def _series_key(ds: Dataset, item: InputItem, ctx) -> str:
    """Keyed token of SeriesInstanceUID; a stable fallback when the UID is missing."""
    uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    if uid:
        return ctx.pseudo.token("series", uid)
    parts = [
        "no-series-uid",
        normalise_id(ds.get("PatientID", "") or ""),
        str(ds.get("StudyInstanceUID", "") or ""),
        str(ds.get("FrameOfReferenceUID", "") or ""),
        str(ds.get("SeriesNumber", "") or ""),
        str(ds.get("Modality", "") or ""),
        str(ds.get("SeriesDescription", "") or ""),
    ]
    if not parts[3]:
        parts.append(os.path.dirname(item.path))
    return ctx.pseudo.token("series", "|".join(parts))


def _float_list(value: object, n: int) -> tuple[float, ...] | None:
    try:
        vals = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return vals if len(vals) == n and all(np.isfinite(vals)) else None


def _slice_geometry(ds: Dataset) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] | None:
    ipp = _float_list(ds.get("ImagePositionPatient"), 3)
    iop = _float_list(ds.get("ImageOrientationPatient"), 6)
    ps = _float_list(ds.get("PixelSpacing"), 2)
    if ipp is None or iop is None or ps is None or min(ps) <= 0:
        return None
    if np.linalg.norm(np.cross(iop[:3], iop[3:])) < 0.5:
        return None
    return ipp, iop, ps


def _to_int16(arr: np.ndarray) -> tuple[np.ndarray, str]:
    """Cast Modality-LUT output to int16; report whether it was exact, rounded or clipped."""
    if arr.dtype == np.int16:
        return arr, "exact"
    status = "exact"
    values = arr
    if not np.issubdtype(arr.dtype, np.integer):
        rounded = np.rint(arr)
        if not np.array_equal(rounded, arr):
            status = "rounded"
        values = rounded
    lo, hi = float(values.min()), float(values.max())
    if lo < -32768 or hi > 32767:
        status = "clipped"
    return np.clip(values, -32768, 32767).astype(np.int16), status


def _temporal(clean: Dataset) -> dict:
    out = {}
    for kw in (
        "TemporalPositionIdentifier",
        "AcquisitionNumber",
        "EchoNumbers",
        "TriggerTime",
        "InstanceNumber",
    ):
        v = clean.get(kw)
        if v not in (None, ""):
            out[kw] = str(v)
    return out


def _make_slice(ds: Dataset, clean: Dataset, item: InputItem, ctx, identity, geometry, audit) -> SeriesSlice:
    ipp, iop, ps = geometry
    check_pixel_header(ds, ctx.limits.max_pixels, ctx.limits.max_decompression_ratio)
    arr, photometric = decode_pixels(ds)
    if arr.ndim != 2:
        raise QuarantineError(ReasonCode.DICOM_CORRUPT, "slice pixel data is not 2D")
    hu, step = apply_modality(arr, ds)
    hu16, cast = _to_int16(hu)
    image_type = [str(v).upper() for v in (clean.get("ImageType") or [])]
    meta = {
        "source_format": "dicom",
        "dicom": dicom_meta(clean),
        "modality_steps": [step] if step else [],
        "render": render_attrs(frame_view(ds)),
        "int16_cast": cast,
        "temporal": _temporal(clean),
        "deid": audit,
    }
    patient, study, acquired_at = identity
    return SeriesSlice(
        series_key=_series_key(ds, item, ctx),
        source_id=item.source_id,
        source_name=item.source_name,
        licence=item.licence,
        patient=patient,
        study=study,
        acquired_at=acquired_at,
        position_mm=ipp,  # type: ignore[arg-type]
        orientation=iop,
        pixel_spacing_mm=ps,  # type: ignore[arg-type]
        rows=int(hu16.shape[0]),
        columns=int(hu16.shape[1]),
        is_localizer="LOCALIZER" in image_type,
        meta_json=canonical_json(meta),
        pixels=np.ascontiguousarray(hu16, dtype="<i2").tobytes(),
    )


def _multiframe_geometry(ds: Dataset, frames: int):
    """Per-frame (positions, orientation, pixel spacing) of an enhanced object, or None."""
    from workers.dicom.pixels import _fg_item

    positions = []
    orientation = None
    spacing = None
    for i in range(frames):
        pos_item = _fg_item(ds, i, "PlanePositionSequence")
        ori_item = _fg_item(ds, i, "PlaneOrientationSequence")
        pm_item = _fg_item(ds, i, "PixelMeasuresSequence")
        if pos_item is None or ori_item is None or pm_item is None:
            return None
        ipp = _float_list(pos_item.get("ImagePositionPatient"), 3)
        iop = _float_list(ori_item.get("ImageOrientationPatient"), 6)
        ps = _float_list(pm_item.get("PixelSpacing"), 2)
        if ipp is None or iop is None or ps is None:
            return None
        if orientation is not None and (
            not np.allclose(iop, orientation, atol=1e-3) or not np.allclose(ps, spacing)
        ):
            return None
        orientation, spacing = iop, ps
        positions.append(ipp)
    return np.array(positions), orientation, spacing


def _multiframe_volume(ds, clean, item, ctx, identity, audit, result) -> list[_DecodedRecord] | None:
    """Enhanced CT/MR frames as one volume when they form a uniform stack, else None."""
    from workers.dicom.records import volume_record
    from workers.dicom.series import slice_normal, stack_to_ras, uniform_runs

    frames = result.frames
    if frames < max(2, ctx.volume.min_slices) or result.stored.ndim != 3:
        return None
    geom = _multiframe_geometry(ds, frames)
    if geom is None:
        return None
    positions, orientation, spacing = geom
    proj = positions @ slice_normal(orientation)
    order = np.argsort(proj, kind="stable")
    sorted_proj = proj[order]
    if np.any(np.diff(sorted_proj) < 0.01) or len(uniform_runs(sorted_proj)) != 1:
        return None
    vol16, cast = _to_int16(result.stored[order])
    vol, affine, vspacing = stack_to_ras(vol16, orientation, spacing, positions[order])
    dicom = dicom_meta(clean)
    hounsfield = dicom.get("Modality") == "CT" and str(dicom.get("RescaleType", "") or "HU") == "HU"
    meta = {
        "source_format": "dicom-multiframe",
        "dicom": dicom,
        "volume": {
            "array_axes": "X,Y,Z (RAS, canonical)",
            "affine": "RAS voxel->world mm (DICOM LPS converted as nibabel/MONAI do)",
            "slice_order": "PlanePositionSequence ImagePositionPatient projected on the slice normal",
            "n_slices": frames,
            "values": "HU (Modality LUT applied)" if hounsfield else "Modality LUT output",
            "dtype": "int16",
            "int16_cast": cast,
            "modality_steps": [s for s in result.steps if s.startswith("modality_lut")],
        },
        "deid": audit,
    }
    patient, study, acquired_at = identity
    return [
        volume_record(
            source_ids=(item.source_id,),
            source_name=item.source_name,
            licence=item.licence,
            patient=patient,
            study=study,
            acquired_at=acquired_at,
            volume=vol,
            affine=affine,
            spacing=vspacing,
            source_format="dicom-multiframe",
            hounsfield=hounsfield,
            meta=meta,
            ctx=ctx,
        )
    ]


def _delegate(module: str, func: str, ds: Dataset, item: InputItem, ctx) -> list[_DecodedRecord]:
    """Call another decoder (imported lazily: ECG/SR decoders live in their own modules)."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise QuarantineError(
            ReasonCode.DICOM_UNSUPPORTED_SOP, f"no decoder installed for this SOP class ({module})"
        ) from None
    return getattr(mod, func)(ds, item, ctx)


def decode_dataset(ds: Dataset, item: InputItem, ctx) -> list[_DecodedRecord]:
    """Decode an already-read dataset (see module docstring). Raises QuarantineError."""
    if is_dicomdir(ds):
        raise QuarantineError(ReasonCode.DICOM_DIRECTORY, "DICOMDIR index file (not an image)")
    sop = sop_class_uid(ds)
    if sop in ECG_SOP_CLASSES:
        return _delegate("workers.ecg.dicom", "decode_dicom_ecg", ds, item, ctx)
    if sop in SR_SOP_CLASSES:
        return _delegate("workers.report.sr", "decode_dicom_sr", ds, item, ctx)
    if sop in NON_IMAGE_PIXEL_SOP_CLASSES or "Presentation State" in _sop_name(sop):
        raise QuarantineError(ReasonCode.DICOM_UNSUPPORTED_SOP, f"non-image SOP class {_sop_name(sop)}")
    if not has_pixels(ds):
        raise _no_pixels(ds, sop, _raw_has_pixel_tag(item.path), lambda: _ends_mid_element(item.path))

    identity = dicom_identity(ds, ctx.pseudo)
    clean, audit = deidentify(ds, ctx)
    _check_filters(clean, ctx)
    _check_burned_in(clean, sop, ctx)
    check_pixel_header(ds, ctx.limits.max_pixels, ctx.limits.max_decompression_ratio)

    modality = _canon(clean.get("Modality", ""))
    frames = n_frames(ds)
    if modality in VOLUME_MODALITIES and frames == 1:
        geometry = _slice_geometry(ds)
        if geometry is not None:
            return [_make_slice(ds, clean, item, ctx, identity, geometry, audit)]

    result = run_pixel_pipeline(ds, ctx.limits.max_pixels, ctx.limits.max_decompression_ratio)
    if frames > 1 and modality in VOLUME_MODALITIES:
        vol = _multiframe_volume(ds, clean, item, ctx, identity, audit, result)
        if vol is not None:
            return vol
    patient, study, acquired_at = identity
    return [
        image_record(
            item_source_ids=(item.source_id,),
            source_name=item.source_name,
            licence=item.licence,
            patient=patient,
            study=study,
            acquired_at=acquired_at,
            stored=result.stored,
            rendition=result.rendition,
            steps=result.steps,
            photometric=result.photometric,
            frames=result.frames,
            rendition_frame=result.rendition_frame,
            dicom=dicom_meta(clean),
            pixel_info=result.info,
            deid_audit=audit,
            rendition_size=ctx.image.rendition_size,
            ctx=ctx,
        )
    ]


def decode_dicom(item: InputItem, ctx) -> list[_DecodedRecord]:
    """Decode one DICOM input file into records (the worker contract's decoder signature).

    Returns ``[ImageRecord]``, ``[SeriesSlice]``, ``[VolumeRecord]`` or what the ECG/SR
    decoders return; raises :class:`QuarantineError` with the most specific reason for bad
    input (``DICOM_DIRECTORY``, ``DICOM_TRUNCATED``, ``DICOM_CORRUPT``, ``DICOM_PIXEL_DECODE``,
    ``DICOM_NO_PIXELS``, ``DICOM_UNSUPPORTED_SOP``, ``DICOM_BURNED_IN``, ``FILTERED_OUT``,
    ``LIMIT_EXCEEDED``, ...).
    """
    ds = read_dicom(item.path, ctx.limits.max_file_bytes, max_ratio=ctx.limits.max_decompression_ratio)
    return decode_dataset(ds, item, ctx)
