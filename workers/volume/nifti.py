"""NIfTI-1/NIfTI-2 volumes (``.nii``, ``.nii.gz``, ``.hdr/.img`` pairs, either endianness) → VolumeRecords.

Steps, in order (recorded in ``meta["steps"]``):

1. ``nibabel.load``; the header must give 3-D (or 4-D) data with positive voxel sizes and a
   finite, invertible affine (nibabel's choice: sform if ``sform_code`` > 0, else qform, else the
   pixdim fallback, which is flagged ``orientation_reliable: false``).
2. 4-D series per ``VolumeConfig.four_d_policy``: ``first`` (volume 0 only; only it is read),
   ``all`` (one record per volume; ``source_ids = (f"{source_id}-v{t:06d}",)``), ``quarantine``
   (``volume_unsupported_dims``). A 4th axis of length 1 is a 3-D volume.
3. Values through ``dataobj`` (``scl_slope``/``scl_inter`` applied by nibabel).
4. Reorientation with ``nibabel.as_closest_canonical``: the array axes are permuted/flipped so
   that axis 0, 1, 2 point to R, A, S; the stored affine is the affine of the *stored* array and
   ``nibabel.aff2axcodes`` of it is ``("R", "A", "S")``.
5. Optional resampling to ``VolumeConfig.target_spacing_mm`` (default ``()``: off) with
   ``nibabel.processing.resample_to_output`` (trilinear, outside value −1024 HU for CT, 0 else).
6. Value convention. A volume is treated as CT (Hounsfield units) when its values are integral
   and it holds air (min ≤ −500) or its description says CT, unless the description names a
   non-CT acquisition (MR, fMRI, BOLD, DWI, phase, PET, SPM/FSL outputs, ...). CT is stored as **int16 HU**,
   after a plausibility check (finite, inside the int16 range, and at least half the voxels in
   [−1024, 3071] HU) that otherwise quarantines with ``volume_values_implausible``. Other volumes
   keep their **native dtype** in little-endian byte order, except float64 (and scaled integer
   data, which nibabel returns as float64) → float32, and bool → uint8. Non-finite values
   (NaN/Inf) quarantine any volume (``volume_values_implausible``).
7. Slice redundancy along Z (``workers.volume.redundancy.slice_redundancy``) into meta.
8. Optional "Less is More" slice reduction (``VolumeConfig.slice_reduction_ncc`` > 0): only the
   slices :func:`workers.volume.redundancy.select_distinct_slices` keeps are stored; their
   original Z indices are ``meta["slice_reduction"]["kept"]``, and the affine and spacing still
   describe the original slice grid (stored slice k is original slice ``kept[k]``).

Payload ``("npy", array (X, Y, Z))``; ``VolumeRecord.orientation == "RAS"``. NIfTI carries no
patient or study identity: ``patient``, ``study`` and ``acquired_at`` are ``""``. Free-text header
fields (``descrip``, ``aux_file``, ``intent_name``, ``db_name``) and header extensions (which can
hold a whole DICOM header) are never carried over; the audit lists which were present by name.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import zlib

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import io_orientation
from nibabel.spatialimages import HeaderDataError

from schemas.canonical import canonical_json
from schemas.modality import Modality
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import DecodedRecord, InputItem, VolumeRecord
from workers.context import WorkerContext
from workers.ecg.convention import array_sha256, npy_bytes
from workers.volume.redundancy import METHOD as REDUNDANCY_METHOD
from workers.volume.redundancy import select_distinct_slices, slice_redundancy

log = logging.getLogger(__name__)

HU_RANGE = (-1024.0, 3071.0)
HU_AIR_MAX = -500.0
HU_MIN_FRACTION_IN_RANGE = 0.5
CT_OUTSIDE_VALUE = -1024.0
_READ_ERRORS = (
    EOFError,
    OSError,
    ValueError,
    zlib.error,
    gzip.BadGzipFile,
    HeaderDataError,
    MemoryError,
    OverflowError,
)
_TEXT_FIELDS = ("descrip", "aux_file", "intent_name", "db_name")
#: words in ``descrip`` that rule out CT (MR phase maps and PET can hold air-like negative values)
_NOT_CT_WORDS = {
    "mr",
    "mri",
    "fmri",
    "bold",
    "epi",
    "dwi",
    "dti",
    "flair",
    "t1",
    "t2",
    "phase",
    "pet",
    "spm",
    "fsl",
}


def _r(x: float, nd: int = 6) -> float:
    return round(float(x), nd)


def _affine_list(a: np.ndarray) -> list[float]:
    return [_r(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def _load(path: str):
    try:
        img = nib.load(path)
    except ImageFileError:
        raise QuarantineError(ReasonCode.VOLUME_HEADER_INVALID, "not a readable NIfTI header") from None
    except (EOFError, zlib.error, gzip.BadGzipFile):
        raise QuarantineError(
            ReasonCode.VOLUME_DATA_CORRUPT, "compressed stream is truncated or corrupt"
        ) from None
    except (HeaderDataError, ValueError, OSError, OverflowError) as exc:  # e.g. vox_offset inf/huge
        raise QuarantineError(
            ReasonCode.VOLUME_HEADER_INVALID, f"NIfTI header cannot be parsed ({type(exc).__name__})"
        ) from None
    if not isinstance(img, (nib.Nifti1Pair, nib.Nifti2Pair)):
        raise QuarantineError(ReasonCode.UNSUPPORTED_FORMAT, "not a NIfTI-1/NIfTI-2 image")
    return img


def _container(img, path: str) -> str:
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        return "hdr/img pair"
    return "nii.gz" if path.lower().endswith(".gz") else "nii"


def _source_meta(img, path: str) -> dict:
    hdr = img.header
    sform_code, qform_code = int(hdr["sform_code"]), int(hdr["qform_code"])
    slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    try:
        units = hdr.get_xyzt_units()
    except KeyError:  # a units code NIfTI does not define
        raise QuarantineError(ReasonCode.VOLUME_HEADER_INVALID, "unknown xyzt_units code") from None
    return {
        "format": "nifti2" if isinstance(hdr, nib.Nifti2Header) else "nifti1",
        "container": _container(img, path),
        "endianness": "big" if hdr.endianness == ">" else "little",
        "shape": [int(n) for n in img.shape],
        "zooms": [_r(z) if np.isfinite(z) else None for z in hdr.get_zooms()],  # 4th (time) may be NaN
        "dtype": str(np.dtype(hdr.get_data_dtype()).newbyteorder("=")),
        "affine": _affine_list(img.affine),
        "axcodes": "".join(str(c) for c in nib.aff2axcodes(img.affine)),
        "sform_code": sform_code,
        "qform_code": qform_code,
        "affine_from": "sform" if sform_code > 0 else "qform" if qform_code > 0 else "pixdim_fallback",
        "scl_slope": _r(slope) if slope is not None and np.isfinite(slope) else None,
        "scl_inter": _r(inter) if inter is not None and np.isfinite(inter) else None,
        "xyzt_units": [str(u) for u in units],
        "intent_code": int(hdr["intent_code"]),
    }


def _check_header(img, ctx: WorkerContext) -> None:
    shape = tuple(int(n) for n in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if any(n <= 0 for n in shape):
        raise QuarantineError(ReasonCode.VOLUME_HEADER_INVALID, "a dimension of the data is zero")
    if len(shape) not in (3, 4):
        raise QuarantineError(
            ReasonCode.VOLUME_UNSUPPORTED_DIMS, f"{len(shape)}-D data is not a 3-D/4-D volume"
        )
    if min(shape[:3]) < max(1, ctx.volume.min_slices):
        raise QuarantineError(
            ReasonCode.VOLUME_UNSUPPORTED_DIMS, f"an axis has fewer than {ctx.volume.min_slices} voxels"
        )
    n_vox = int(np.prod(shape[:3], dtype=np.int64))
    if n_vox > ctx.limits.max_pixels:
        raise QuarantineError(ReasonCode.LIMIT_EXCEEDED, "volume exceeds the voxel limit")
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=np.float64)
    aff = np.asarray(img.affine, dtype=np.float64)
    if not (np.all(np.isfinite(zooms)) and np.all(zooms > 0)):
        raise QuarantineError(ReasonCode.VOLUME_HEADER_INVALID, "voxel sizes are not positive")
    if not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) < 1e-12:
        raise QuarantineError(ReasonCode.VOLUME_HEADER_INVALID, "affine is not finite and invertible")
    if np.isnan(io_orientation(aff)).any():
        raise QuarantineError(
            ReasonCode.VOLUME_HEADER_INVALID, "affine gives an axis no anatomical direction"
        )
    dt = np.dtype(img.header.get_data_dtype())
    if dt.fields is not None or dt.kind == "c":
        raise QuarantineError(ReasonCode.UNSUPPORTED_FORMAT, "RGB/complex NIfTI data is not a scalar volume")


#: decoded sizes up to this many bytes skip the decompression-ratio limit (small uniform
#: volumes such as masks legitimately compress beyond any ratio and cost little memory)
RATIO_FLOOR_BYTES = 16 << 20


def _check_limits(img, path: str, ctx: WorkerContext) -> None:
    """Voxels to be read (all volumes of a 4-D series under policy ``all``) against
    ``limits.max_pixels``, and stored bytes against ``limits.max_decompression_ratio`` x the
    size of a gzip file: both before nibabel allocates anything."""
    shape = tuple(int(n) for n in img.shape)
    n_read = int(np.prod(shape[:3], dtype=np.int64))
    if len(shape) == 4 and ctx.volume.four_d_policy == "all":
        n_read *= shape[3]
    if n_read > ctx.limits.max_pixels:
        raise QuarantineError(ReasonCode.LIMIT_EXCEEDED, "voxels to read exceed the voxel limit")
    stored = n_read * np.dtype(img.header.get_data_dtype()).itemsize
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        size = os.path.getsize(path)
    except OSError:
        raise QuarantineError(ReasonCode.UNREADABLE_FILE, "volume file not readable") from None
    if gz and stored > RATIO_FLOOR_BYTES and stored > ctx.limits.max_decompression_ratio * max(size, 1):
        raise QuarantineError(
            ReasonCode.LIMIT_EXCEEDED, "decompression ratio exceeds limits.max_decompression_ratio"
        )


def _classify_ct(data: np.ndarray, descrip: str) -> tuple[bool, str]:
    """(is CT in HU, evidence). CT: integral values and air present, or a CT description."""
    if data.dtype.kind == "f" and not np.array_equal(data, np.round(data)):
        integral = False
    else:
        integral = True
    vmin = float(data.min())
    words = set(re.findall(r"[a-z0-9]+", descrip.lower()))
    says_ct = "ct" in words
    if words & _NOT_CT_WORDS and not says_ct:
        return False, "description names a non-CT acquisition"
    if integral and vmin <= HU_AIR_MAX:
        return True, f"integral values with air (min <= {HU_AIR_MAX:g})"
    if says_ct:
        return True, "description names CT"
    return False, "no air-valued voxels and no CT description"


def _hu_int16(data: np.ndarray) -> tuple[np.ndarray, bool]:
    """CT values → int16 HU after the plausibility check; returns (array, rounded)."""
    vmin, vmax = float(data.min()), float(data.max())
    info = np.iinfo(np.int16)
    if vmin < info.min or vmax > info.max:
        raise QuarantineError(
            ReasonCode.VOLUME_VALUES_IMPLAUSIBLE, "CT values outside the int16 Hounsfield range"
        )
    in_range = np.count_nonzero((data >= HU_RANGE[0]) & (data <= HU_RANGE[1])) / data.size
    if in_range < HU_MIN_FRACTION_IN_RANGE:
        raise QuarantineError(
            ReasonCode.VOLUME_VALUES_IMPLAUSIBLE,
            "most CT values lie outside the Hounsfield range [-1024, 3071]",
        )
    rounded = data.dtype.kind == "f" and not np.array_equal(data, np.round(data))
    return np.rint(data).astype(np.int16) if rounded else data.astype(np.int16), bool(rounded)


def _native(data: np.ndarray) -> tuple[np.ndarray, str]:
    """Non-CT values in their native dtype, little-endian; float64 → float32, bool → uint8."""
    if data.dtype == np.bool_:
        return data.astype(np.uint8), "bool → uint8"
    if data.dtype.kind == "f" and data.dtype.itemsize > 4:
        return data.astype(np.float32), "float64 → float32"
    return data.astype(data.dtype.newbyteorder("<"), copy=False), "native dtype kept"


def _resample(arr: np.ndarray, affine: np.ndarray, target: tuple[float, ...], is_ct: bool):
    from nibabel.processing import resample_to_output

    spacing = tuple(float(s) for s in target)
    if len(spacing) == 1:
        spacing = spacing * 3
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError("VolumeConfig.target_spacing_mm must have 1 or 3 positive values")
    src = nib.Nifti1Image(arr.astype(np.float32), affine)
    out = resample_to_output(
        src, voxel_sizes=spacing, order=1, mode="constant", cval=CT_OUTSIDE_VALUE if is_ct else 0.0
    )
    return np.asanyarray(out.dataobj), out.affine, spacing


def decode_nifti(item: InputItem, ctx: WorkerContext) -> list[DecodedRecord]:
    """Decode a NIfTI file into VolumeRecord(s): RAS, HU int16 for CT, see the module docstring."""
    policy = ctx.volume.four_d_policy
    if policy not in ("first", "all", "quarantine"):
        raise ValueError(f"unknown VolumeConfig.four_d_policy {policy!r}")
    img = _load(item.path)
    _check_header(img, ctx)
    _check_limits(img, item.path, ctx)
    source = _source_meta(img, item.path)
    descrip, dropped_text, dropped_ext = _header_text(img.header)

    is_4d = len(img.shape) == 4 and img.shape[3] > 1
    n_volumes = int(img.shape[3]) if is_4d else 1
    if is_4d and policy == "quarantine":
        raise QuarantineError(ReasonCode.VOLUME_UNSUPPORTED_DIMS, "4-D series (policy: quarantine)")
    data, affine, steps = _read_ras(img, policy, is_4d, source)

    indices = list(range(n_volumes)) if (is_4d and policy == "all") else [0]
    records: list[DecodedRecord] = []
    for t in indices:
        vol = np.asarray(data[..., t])
        is_ct, evidence = _classify_ct(vol, descrip)
        vol_steps = list(steps)
        vol_affine = affine
        spacing_target = None
        if ctx.volume.target_spacing_mm:
            vol, vol_affine, spacing_target = _resample(vol, affine, ctx.volume.target_spacing_mm, is_ct)
            vol_steps.append(f"nibabel.processing.resample_to_output {list(spacing_target)} mm (order 1)")
        vol, rounded, cast = _apply_dtype_rule(vol, is_ct, vol_steps)
        redundancy = slice_redundancy(vol, axis=2)
        vol, reduction = _reduce_slices(vol, ctx.volume.slice_reduction_ncc, vol_steps)
        vol = np.ascontiguousarray(vol)
        axcodes = "".join(str(c) for c in nib.aff2axcodes(vol_affine))
        source_ids = (f"{item.source_id}-v{t:06d}",) if len(indices) > 1 else (item.source_id,)
        meta = {
            "modality": Modality.VOLUME.value,
            "source": source,
            "steps": vol_steps,
            "volume": {
                "orientation": axcodes,
                "layout": "(X, Y, Z), array axes → R, A, S",
                "dtype": str(vol.dtype),
                "byte_order": "little",
                "hounsfield": is_ct,
                "hounsfield_evidence": evidence,
                "hu_rounded": rounded,
                "value_range": [_r(vol.min()), _r(vol.max())],
                "orientation_reliable": source["affine_from"] != "pixdim_fallback",
                "dtype_rule": cast,
                "resampled_to_mm": list(spacing_target) if spacing_target else None,
                "four_d": {"policy": policy, "n_volumes": n_volumes, "index": t} if is_4d else None,
            },
            "redundancy": redundancy,
            "slice_reduction": reduction,
            "deid": {
                "identity": "NIfTI has no patient/study identity: patient, study and time left empty",
                "text_fields_dropped": dropped_text,
                "extensions_dropped_codes": dropped_ext,
            },
        }
        records.append(_volume_record(item, ctx, source_ids, vol, vol_affine, axcodes, is_ct, meta))
    return records


def _header_text(hdr) -> tuple[str, list[str], list[str]]:
    """The header's ``descrip`` (for the CT check; never stored), the names of the non-empty free
    text fields and the codes of the extensions, all of which are dropped."""
    descrip = bytes(hdr["descrip"].item() or b"").split(b"\x00")[0].decode("latin-1", "replace")
    dropped_text = [f for f in _TEXT_FIELDS if f in hdr and bytes(hdr[f].item() or b"").strip(b"\x00 ")]
    dropped_ext = sorted({str(ext.get_code()) for ext in hdr.extensions})
    return descrip, dropped_text, dropped_ext


def _read_ras(img, policy: str, is_4d: bool, source: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Voxels reoriented to RAS, (X, Y, Z, T) with T = 1 unless 4-D under policy ``all``, scaling
    applied; the 4x4 voxel → mm affine; the processing steps so far."""
    steps = ["nibabel.load"]
    try:
        if len(img.shape) == 4:
            img = img.slicer[..., 0:1] if (policy == "first" or not is_4d) else img
        canonical = nib.as_closest_canonical(img)
        data = np.asanyarray(canonical.dataobj)
    except QuarantineError:
        raise
    except _READ_ERRORS as exc:
        raise QuarantineError(
            ReasonCode.VOLUME_DATA_CORRUPT, f"voxel data cannot be read ({type(exc).__name__})"
        ) from None
    if source["scl_slope"] is not None and (
        source["scl_slope"] != 1.0 or (source["scl_inter"] or 0.0) != 0.0
    ):
        steps.append("scl_slope/scl_inter applied")
    steps.append(f"nibabel.as_closest_canonical ({source['axcodes']} → RAS)")
    if data.ndim == 3:
        data = data[..., None]
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise QuarantineError(ReasonCode.VOLUME_VALUES_IMPLAUSIBLE, "volume has NaN or infinite values")
    affine = np.asarray(canonical.affine, dtype=np.float64)
    return data, affine, steps


def _apply_dtype_rule(vol: np.ndarray, is_ct: bool, steps: list[str]) -> tuple[np.ndarray, bool, str]:
    """CT to int16 HU (rounded if needed), anything else to its native dtype rule; appends the step.

    Returns the volume, whether HU were rounded, and the rule's name."""
    rounded = False
    if is_ct:
        vol, rounded = _hu_int16(vol)
        steps.append("int16 HU" + (" (rounded)" if rounded else ""))
        cast = "int16 HU"
    else:
        vol, cast = _native(vol)
        if vol.dtype.kind == "f" and not np.all(np.isfinite(vol)):
            raise QuarantineError(ReasonCode.VOLUME_VALUES_IMPLAUSIBLE, "scaled values overflow float32")
        steps.append(cast)
    return vol, rounded, cast


def _reduce_slices(vol: np.ndarray, ncc: float, steps: list[str]) -> tuple[np.ndarray, dict | None]:
    """Keep only distinct Z slices (NCC threshold ``ncc``; 0 keeps all); appends the step.

    Returns the volume and the ``slice_reduction`` meta (``None`` when off)."""
    if not ncc > 0:
        return vol, None
    kept = select_distinct_slices(vol, axis=2, threshold=ncc)
    reduction = {
        "method": REDUNDANCY_METHOD,
        "ncc_threshold": ncc,
        "axis": 2,
        "n_slices": int(vol.shape[2]),
        "kept": kept,
        "grid": "affine and spacing describe the original slices; stored slice k is original kept[k]",
    }
    steps.append(f"slice reduction: {len(kept)} of {reduction['n_slices']} Z slices kept")
    return vol[:, :, kept], reduction


def _volume_record(
    item: InputItem,
    ctx: WorkerContext,
    source_ids: tuple[str, ...],
    vol: np.ndarray,
    affine: np.ndarray,
    axcodes: str,
    is_ct: bool,
    meta: dict,
) -> VolumeRecord:
    """The record of one (X, Y, Z) RAS volume; spacing (mm) from the affine's column norms."""
    spacing = tuple(_r(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
    return VolumeRecord(
        record_id=ctx.pseudo.record_id(source_ids),
        modality=Modality.VOLUME,
        source_ids=source_ids,
        source_name=item.source_name,
        licence=item.licence,
        patient="",
        study="",
        acquired_at="",
        content_sha256=array_sha256(vol),
        meta_json=canonical_json(meta),
        shape=tuple(int(n) for n in vol.shape),
        spacing_mm=spacing,
        affine=tuple(_affine_list(affine)),
        orientation=axcodes,
        source_format=meta["source"]["format"],
        hounsfield=is_ct,
        payload=(("npy", npy_bytes(vol)),),
    )
