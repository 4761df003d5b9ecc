"""The DICOM pixel pipeline: decode → Modality LUT → VOI LUT → MONOCHROME1 inversion → 8-bit.

Conventions (PS3.3 C.11, PS3.4 N.2.1.1; pydicom's ``apply_modality_lut``/``apply_voi_lut``):

- ``stored``: the decoded values *after the Modality LUT* (Rescale Slope/Intercept or Modality
  LUT Sequence), lossless: integer dtype when every value is an integer (int16 when it fits,
  else int32), float32/float64 otherwise. Shape (rows, cols), (frames, rows, cols), or with a
  trailing 3 for colour (RGB; YBR_* is converted to RGB by pydicom's decoders).
- ``rendition``: uint8, one frame (the middle one of a multi-frame object), (rows, cols) grey or
  (rows, cols, 3) RGB: VOI LUT Sequence if present, else Window Center/Width (first pair), else
  the min/max of the frame; then inversion for MONOCHROME1 so that bright = dense (bones white).
- ``steps``: the operations applied, in order, for the sample metadata.

Enhanced multi-frame objects carry the Modality LUT and VOI per frame in the functional groups
(Pixel Value Transformation, Frame VOI LUT): these are read per frame (shared, then per-frame).
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, convert_color_space
from pydicom.pixels.utils import get_nr_frames
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from schemas import QuarantineError, ReasonCode

log = logging.getLogger(__name__)

PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_MODALITY_KWS = ("RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence")
_VOI_KWS = ("WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence", "WindowCenterWidthExplanation")
_PIXEL_KWS = ("BitsStored", "BitsAllocated", "PixelRepresentation", "PhotometricInterpretation", "HighBit")


@dataclass(frozen=True)
class PixelResult:
    """Output of :func:`run_pixel_pipeline` (see module docstring for conventions)."""

    stored: np.ndarray
    rendition: np.ndarray
    steps: tuple[str, ...]
    photometric: str  # of ``stored`` (after colour conversion), e.g. MONOCHROME1, RGB
    frames: int
    rendition_frame: int
    info: dict = field(default_factory=dict)


def has_pixels(ds: Dataset) -> bool:
    return any(kw in ds for kw in PIXEL_TAGS)


def n_frames(ds: Dataset) -> int:
    """Number of frames (``NumberOfFrames``, 1 when absent or invalid)."""
    try:
        return max(1, int(get_nr_frames(ds, warn=False)))
    except Exception:
        return 1


def pixel_count(ds: Dataset) -> int:
    """rows x columns x frames x samples, from the header only (no decoding)."""
    rows = int(ds.get("Rows", 0) or 0)
    cols = int(ds.get("Columns", 0) or 0)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    return rows * cols * n_frames(ds) * spp


def check_pixel_header(ds: Dataset, max_pixels: int, max_ratio: float = float("inf")) -> None:
    """Quarantine before decoding: missing geometry, more pixels than ``max_pixels``, or (for
    compressed pixel data) a decompression bomb (see :func:`check_compressed_pixels`)."""
    rows = int(ds.get("Rows", 0) or 0)
    cols = int(ds.get("Columns", 0) or 0)
    if rows <= 0 or cols <= 0:
        raise QuarantineError(ReasonCode.DICOM_CORRUPT, "image without valid Rows/Columns")
    if "BitsAllocated" not in ds or "PhotometricInterpretation" not in ds:
        raise QuarantineError(ReasonCode.DICOM_CORRUPT, "image pixel module incomplete")
    if pixel_count(ds) > max_pixels:
        raise QuarantineError(ReasonCode.LIMIT_EXCEEDED, "pixel count exceeds max_pixels")
    check_compressed_pixels(ds, max_pixels, max_ratio)


#: decoded sizes up to this many bytes skip the ratio limit: small uniform images (blank
#: frames, masks) legitimately compress far beyond any ratio and cost little memory
RATIO_FLOOR_BYTES = 16 << 20
_J2K_SYNTAXES = frozenset("1.2.840.10008.1.2.4." + s for s in ("90", "91", "92", "93", "201", "202", "203"))
_JPEG_SYNTAXES = frozenset("1.2.840.10008.1.2.4." + s for s in ("50", "51", "57", "70", "80", "81"))


def expected_pixel_bytes(ds: Dataset) -> int:
    """Bytes of the decoded pixel data the header declares (rows x columns x frames x samples
    x bytes per sample; 1-bit data packed 8 per byte)."""
    bits = int(ds.get("BitsAllocated", 8) or 8)
    if bits == 1:
        return (pixel_count(ds) + 7) // 8
    return pixel_count(ds) * max(1, (bits + 7) // 8)


def _is_compressed(ts: str) -> bool:
    from pydicom.uid import UID

    try:
        return bool(UID(ts).is_compressed)
    except ValueError:  # not a transfer syntax UID at all: decode_pixels names the problem
        return False


def check_compressed_pixels(ds: Dataset, max_pixels: int, max_ratio: float) -> None:
    """Decompression-bomb checks on encapsulated pixel data, before any decoder runs.

    - ratio: declared decoded bytes / compressed bytes above ``max_ratio`` is LIMIT_EXCEEDED
      (once the decoded size passes :data:`RATIO_FLOOR_BYTES`);
    - JPEG 2000 / JPEG codestreams: decoders allocate what each frame's *codestream* declares,
      so a frame declaring more than ``max_pixels`` is LIMIT_EXCEEDED and one whose size
      differs from Rows/Columns is DICOM_PIXEL_DECODE.
    """
    ts = _transfer_syntax(ds)
    if "PixelData" not in ds or not _is_compressed(ts):
        return
    try:
        data = ds.PixelData
    except Exception:  # pydicom raises many types on a garbled element
        raise QuarantineError(ReasonCode.DICOM_CORRUPT, "pixel data element unreadable") from None
    compressed = len(data or b"")
    expected = expected_pixel_bytes(ds)
    if expected > RATIO_FLOOR_BYTES and expected > max_ratio * max(compressed, 1):
        raise QuarantineError(
            ReasonCode.LIMIT_EXCEEDED, "decompression ratio exceeds limits.max_decompression_ratio"
        )
    if ts not in _J2K_SYNTAXES and ts not in _JPEG_SYNTAXES:
        return
    from pydicom.encaps import generate_frames

    rows, cols = int(ds.Rows), int(ds.Columns)
    try:
        frames = list(generate_frames(data, number_of_frames=n_frames(ds)))
    except Exception:  # pydicom raises ValueError/struct errors on broken fragment tables
        raise QuarantineError(ReasonCode.DICOM_PIXEL_DECODE, "encapsulated frames unreadable") from None
    for frame in frames:
        size = _codestream_size(bytes(frame), ts in _J2K_SYNTAXES)
        if size is None:
            continue  # unparseable header: the decoder itself reports the broken codestream
        c_rows, c_cols, c_spp = size
        if c_rows * c_cols * max(c_spp, 1) > max_pixels:
            raise QuarantineError(ReasonCode.LIMIT_EXCEEDED, "codestream declares more than max_pixels")
        if (c_rows, c_cols) != (rows, cols) and c_rows:
            raise QuarantineError(
                ReasonCode.DICOM_PIXEL_DECODE, "codestream image size differs from Rows/Columns"
            )


def _codestream_size(frame: bytes, j2k: bool) -> tuple[int, int, int] | None:
    """(rows, columns, components) a JPEG 2000 or JPEG codestream declares, None if unreadable."""
    try:
        if j2k:
            import openjpeg

            p = openjpeg.get_parameters(frame)
            return int(p["rows"]), int(p["columns"]), int(p["samples_per_pixel"])
        from pydicom.pixels.utils import _get_jpg_parameters

        p = _get_jpg_parameters(frame)
        return (int(p["height"]), int(p["width"]), int(p["components"])) if p else None
    except Exception:  # header parsers raise on garbage; the decoder will say what is wrong
        return None


def _transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
    if ts:
        return ts
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if little is False:
        return ExplicitVRBigEndian
    return ImplicitVRLittleEndian if implicit in (True, None) else ExplicitVRLittleEndian


def decode_pixels(ds: Dataset) -> tuple[np.ndarray, str]:
    """Decode all frames with pydicom. Returns (array, photometric of the array).

    Truncated native pixel data → DICOM_TRUNCATED; any decoder failure → DICOM_PIXEL_DECODE.
    """
    from pydicom.pixels import get_decoder

    ts = _transfer_syntax(ds)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise QuarantineError(ReasonCode.DICOM_PIXEL_DECODE, "no decoder for the transfer syntax") from None
    if not decoder.is_available:
        raise QuarantineError(ReasonCode.DICOM_PIXEL_DECODE, "decoder plugin for the transfer syntax missing")
    try:
        arr, meta = decoder.as_array(ds)
    except ValueError as exc:
        text = str(exc)
        if "less than expected" in text or "doesn't match the expected" in text or "truncated" in text:
            raise QuarantineError(
                ReasonCode.DICOM_TRUNCATED, "pixel data shorter than the image size"
            ) from None
        raise QuarantineError(
            ReasonCode.DICOM_PIXEL_DECODE, f"pixel decoding failed ({type(exc).__name__})"
        ) from None
    except Exception as exc:  # plugins raise RuntimeError, OSError, struct.error, ... on bad codestreams
        raise QuarantineError(
            ReasonCode.DICOM_PIXEL_DECODE, f"pixel decoding failed ({type(exc).__name__})"
        ) from None
    photometric = str(meta.get("photometric_interpretation", ds.get("PhotometricInterpretation", "")))
    frames = n_frames(ds)
    rows, cols = int(ds.Rows), int(ds.Columns)
    shape = (rows, cols) if frames == 1 else (frames, rows, cols)
    if arr.shape[: len(shape)] != shape or arr.ndim not in (len(shape), len(shape) + 1):
        raise QuarantineError(
            ReasonCode.DICOM_CORRUPT, "pixel data does not match Rows/Columns/Number of Frames"
        )
    return arr, photometric


def _fg_item(ds: Dataset, frame: int, seq_kw: str) -> Dataset | None:
    """Functional group macro item for ``frame``: per-frame first, then shared."""
    for groups_kw, index in (
        ("PerFrameFunctionalGroupsSequence", frame),
        ("SharedFunctionalGroupsSequence", 0),
    ):
        groups = ds.get(groups_kw)
        if groups and len(groups) > index:
            seq = groups[index].get(seq_kw)
            if seq:
                return seq[0]
    return None


def frame_view(ds: Dataset, frame: int = 0) -> Dataset:
    """A small Dataset with the pixel, Modality LUT and VOI attributes that apply to ``frame``.

    For enhanced multi-frame objects the values come from the Pixel Value Transformation and
    Frame VOI LUT functional groups; top-level values are used otherwise.
    """
    view = Dataset()
    for kw in _PIXEL_KWS + _MODALITY_KWS + _VOI_KWS:
        if kw in ds:
            view[kw] = ds[kw]
    for seq_kw, kws in (
        ("PixelValueTransformationSequence", _MODALITY_KWS),
        ("FrameVOILUTSequence", _VOI_KWS),
    ):
        item = _fg_item(ds, frame, seq_kw)
        if item is not None:
            for kw in kws:
                if kw in item:
                    view[kw] = item[kw]
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        view.file_meta = meta
    view.set_original_encoding(*getattr(ds, "original_encoding", (False, True)))
    return view


def _compact(arr: np.ndarray) -> np.ndarray:
    """Smallest lossless dtype for modality-LUT output (ints stay ints, floats stay exact)."""
    if np.issubdtype(arr.dtype, np.integer) or arr.size == 0:
        return arr
    if not np.all(np.isfinite(arr)):
        return arr.astype(np.float64)
    rounded = np.rint(arr)
    if np.array_equal(rounded, arr):
        lo, hi = float(arr.min()), float(arr.max())
        if -32768 <= lo and hi <= 32767:
            return rounded.astype(np.int16)
        if -(2**31) <= lo and hi <= 2**31 - 1:
            return rounded.astype(np.int32)
    as32 = arr.astype(np.float32)
    return as32 if np.array_equal(as32.astype(np.float64), arr) else arr.astype(np.float64)


def _has_modality_lut(view: Dataset) -> str:
    if view.get("ModalityLUTSequence"):
        return "modality_lut:lut_sequence"
    if "RescaleSlope" in view and "RescaleIntercept" in view:
        return "modality_lut:rescale"
    return ""


def apply_modality(arr: np.ndarray, ds: Dataset) -> tuple[np.ndarray, str]:
    """Modality LUT over all frames (per frame for enhanced objects). Returns (array, step)."""
    frames = n_frames(ds)
    views = (
        [frame_view(ds, i) for i in range(frames)]
        if "PerFrameFunctionalGroupsSequence" in ds
        else [frame_view(ds)]
    )
    step = _has_modality_lut(views[0])
    if not step:
        return arr, ""
    for v in views:
        _check_rescale(v)
    keys = {
        (
            str(v.get("RescaleSlope", "")),
            str(v.get("RescaleIntercept", "")),
            bool(v.get("ModalityLUTSequence")),
        )
        for v in views
    }
    try:
        if len(keys) == 1 or arr.ndim == 2:
            out = apply_modality_lut(arr, views[0])
        else:
            out = np.stack([apply_modality_lut(arr[i], views[i]) for i in range(arr.shape[0])])
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as exc:  # malformed LUT
        raise QuarantineError(
            ReasonCode.DICOM_CORRUPT, f"Modality LUT unusable ({type(exc).__name__})"
        ) from None
    return _compact(np.asarray(out)), step


def _check_rescale(view: Dataset) -> None:
    """Rescale Slope/Intercept must be single finite numbers (else no Modality LUT can apply)."""
    for kw in ("RescaleSlope", "RescaleIntercept"):
        if kw not in view:
            continue
        elem = view[kw]
        try:
            ok = elem.VM == 1 and elem.value is not None and np.isfinite(float(elem.value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise QuarantineError(ReasonCode.DICOM_CORRUPT, f"{kw} is not a single finite number")


def _voi_range(view: Dataset) -> tuple[float, float]:
    """Output range of pydicom's windowing for ``view`` (mirrors ``apply_windowing``)."""
    if view.get("ModalityLUTSequence"):
        y_min, y_max = 0.0, float(2 ** int(view.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    else:
        bits = int(view.get("BitsStored", 16) or 16)
        if int(view.get("PixelRepresentation", 0) or 0) == 0:
            y_min, y_max = 0.0, float(2**bits - 1)
        else:
            y_min, y_max = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
        if "RescaleSlope" in view and "RescaleIntercept" in view:
            slope, intercept = float(view.RescaleSlope), float(view.RescaleIntercept)
            y_min, y_max = y_min * slope + intercept, y_max * slope + intercept
    return (min(y_min, y_max), max(y_min, y_max))


def apply_voi(frame: np.ndarray, view: Dataset) -> tuple[np.ndarray, float, float, str]:
    """VOI LUT on one modality-LUT'd frame. Returns (values, out_min, out_max, step)."""
    has_lut = bool(view.get("VOILUTSequence")) and all(
        view.VOILUTSequence[0].get(k) is not None for k in ("LUTDescriptor", "LUTData")
    )
    has_window = view.get("WindowCenter") is not None and view.get("WindowWidth") is not None
    if has_lut:
        src = frame if np.issubdtype(frame.dtype, np.integer) else np.rint(frame).astype(np.int64)
        try:
            out = apply_voi_lut(src, view, prefer_lut=True)
            lut = np.asarray(view.VOILUTSequence[0].LUTData)
            lo, hi = (float(lut.min()), float(lut.max())) if lut.size else (0.0, 1.0)
            return out.astype(np.float64), lo, hi, "voi_lut:lut_sequence"
        except Exception:
            log.debug("VOI LUT Sequence unusable; falling back")
    if has_window:
        try:
            out = apply_voi_lut(frame, view, prefer_lut=False)
            lo, hi = _voi_range(view)
            return out.astype(np.float64), lo, hi, "voi_lut:window"
        except (ValueError, TypeError, IndexError):
            log.debug("window unusable; falling back to min/max")
    values = frame.astype(np.float64)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    return values, lo, hi, "voi_lut:minmax"


def to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear map [lo, hi] → [0, 255], clipped, rounded half up."""
    span = hi - lo if hi > lo else 1.0
    scaled = (values.astype(np.float64) - lo) * (255.0 / span)
    return np.clip(np.floor(scaled + 0.5), 0, 255).astype(np.uint8)


def run_pixel_pipeline(ds: Dataset, max_pixels: int, max_ratio: float = float("inf")) -> PixelResult:
    """Decode ``ds`` (the dataset as read) and produce stored values + an 8-bit rendition."""
    check_pixel_header(ds, max_pixels, max_ratio)
    arr, photometric = decode_pixels(ds)
    frames = n_frames(ds)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    mid = frames // 2 if frames > 1 else 0
    steps: list[str] = []
    info: dict = {"decoded_photometric": photometric}

    if photometric == "PALETTE COLOR":
        try:
            rgb = apply_color_lut(arr[mid] if frames > 1 else arr, ds)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise QuarantineError(
                ReasonCode.DICOM_CORRUPT, f"palette color lookup table unusable ({type(exc).__name__})"
            ) from None
        bits = 16 if rgb.dtype == np.uint16 else 8
        rendition = to_uint8(rgb, 0, 2**bits - 1)
        steps.append("palette_color_lut")
        return PixelResult(arr, rendition, tuple(steps), photometric, frames, mid, info)

    if spp == 3 or photometric in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"):
        if spp != 3 or arr.ndim < 3 or arr.shape[-1] != 3:
            raise QuarantineError(
                ReasonCode.DICOM_CORRUPT, "colour photometric interpretation without 3 samples per pixel"
            )
        if photometric.startswith("YBR"):
            arr = convert_color_space(arr, photometric, "RGB")
            steps.append(f"color:{photometric}->RGB")
            photometric = "RGB"
        elif str(ds.get("PhotometricInterpretation", "")) != photometric:
            steps.append(f"color:{ds.get('PhotometricInterpretation', '')}->RGB")
        one = arr[mid] if frames > 1 else arr
        bits = int(ds.get("BitsStored", 8) or 8)
        rendition = to_uint8(one, 0, 2**bits - 1)
        return PixelResult(arr, rendition, tuple(steps), photometric, frames, mid, info)

    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise QuarantineError(ReasonCode.DICOM_PIXEL_DECODE, "unsupported photometric interpretation")

    stored, step = apply_modality(arr, ds)
    if step:
        steps.append(step)
    one = stored[mid] if frames > 1 else stored
    rendition, render_steps, render_info = render_grey(one, frame_view(ds, mid), photometric)
    info.update(render_info)
    return PixelResult(stored, rendition, tuple(steps) + render_steps, photometric, frames, mid, info)


def render_grey(
    frame: np.ndarray, view: Dataset, photometric: str
) -> tuple[np.ndarray, tuple[str, ...], dict]:
    """VOI LUT → MONOCHROME1 inversion → uint8 on one modality-LUT'd frame.

    ``view`` carries the VOI attributes (and BitsStored/PixelRepresentation/Rescale*, which
    fix the windowing output range). Returns (uint8 image, steps, info).
    """
    values, lo, hi, voi_step = apply_voi(frame, view)
    steps = [voi_step]
    info: dict = {}
    if voi_step == "voi_lut:window":
        wc, ww = view["WindowCenter"], view["WindowWidth"]
        info["window"] = [
            float(wc.value if wc.VM == 1 else wc.value[0]),
            float(ww.value if ww.VM == 1 else ww.value[0]),
        ]
        info["voi_function"] = str(view.get("VOILUTFunction", "LINEAR") or "LINEAR")
    if photometric == "MONOCHROME1":
        values = (hi + lo) - values
        steps.append("monochrome1_inversion")
    return to_uint8(values, lo, hi), tuple(steps), info


def resize_longest(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 (rows, cols) or (rows, cols, 3) image so its longest side is ``size``.

    Pillow LANCZOS (deterministic); aspect ratio kept, each side at least 1 pixel.
    """
    rows, cols = img.shape[:2]
    if size <= 0 or max(rows, cols) == size:
        return img
    scale = size / max(rows, cols)
    new = (max(1, round(cols * scale)), max(1, round(rows * scale)))
    pil = Image.fromarray(img)
    return np.asarray(pil.resize(new, Image.Resampling.LANCZOS))


def encode_png(img: np.ndarray) -> bytes:
    """Deterministic PNG bytes of a uint8 grey or RGB image (no timestamps, fixed zlib level)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def encode_npy(arr: np.ndarray) -> bytes:
    """``np.save`` bytes (no pickle) of a C-contiguous copy of ``arr``."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def array_sha256(arr: np.ndarray) -> str:
    """sha256 of decoded content: ``dtype.str|shape|`` header + C-order bytes."""
    a = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def render_attrs(view: Dataset) -> dict:
    """JSON-serialisable copy of the attributes :func:`render_grey` needs (no PHI: numbers/codes)."""
    out: dict = {}
    for kw in ("BitsStored", "PixelRepresentation", "PhotometricInterpretation", "VOILUTFunction"):
        if kw in view and view[kw].value not in (None, ""):
            value = view[kw].value
            out[kw] = int(value) if kw in ("BitsStored", "PixelRepresentation") else str(value)
    for kw in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        elem = view[kw] if kw in view else None
        if elem is not None and elem.value is not None and elem.value != "":
            vals = elem.value if elem.VM > 1 else [elem.value]
            try:
                nums = [float(v) for v in vals]
            except (TypeError, ValueError):
                continue  # not numbers (e.g. a garbled window): rendering falls back to min/max
            if all(np.isfinite(nums)):
                out[kw] = nums
    try:
        if view.get("ModalityLUTSequence"):
            out["ModalityLUTBits"] = int(view.ModalityLUTSequence[0].LUTDescriptor[2])
        seq = view.get("VOILUTSequence")
        if seq and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None:
            out["VOILUTDescriptor"] = [int(v) for v in seq[0].LUTDescriptor]
            out["VOILUTData"] = [int(v) for v in np.asarray(seq[0].LUTData).ravel()]
    except (TypeError, ValueError, IndexError, AttributeError):  # malformed LUT items: not rendered
        out.pop("ModalityLUTBits", None)
        out.pop("VOILUTDescriptor", None)
        out.pop("VOILUTData", None)
    return out


def view_from_attrs(attrs: dict) -> Dataset:
    """Inverse of :func:`render_attrs` (the Modality LUT is *not* re-applied by rendering)."""
    from pydicom.sequence import Sequence

    view = Dataset()
    for kw in ("BitsStored", "PixelRepresentation", "PhotometricInterpretation", "VOILUTFunction"):
        if kw in attrs:
            setattr(view, kw, attrs[kw])
    for kw in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        if kw in attrs:
            vals = [f"{v:.10g}" for v in attrs[kw]]
            setattr(view, kw, vals if len(vals) > 1 else vals[0])
    if "ModalityLUTBits" in attrs:
        item = Dataset()
        item.LUTDescriptor = [0, 0, attrs["ModalityLUTBits"]]
        view.ModalityLUTSequence = Sequence([item])
    if "VOILUTDescriptor" in attrs:
        item = Dataset()
        item.LUTDescriptor = attrs["VOILUTDescriptor"]
        item.LUTData = attrs["VOILUTData"]
        item["LUTData"].VR = "US"
        view.VOILUTSequence = Sequence([item])
    view.set_original_encoding(False, True)
    return view
