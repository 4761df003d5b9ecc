"""JPEG and PNG image files → corpus images (the worker for ``InputKind.IMAGE_FILE``).

The same members as a DICOM image (``schemas.contract``): ``png`` (8-bit model-ready rendition,
longest side ``ImageConfig.rendition_size``) and ``raw.npy`` (the stored values, lossless).

Conventions, recorded in ``meta["pixel"]`` and ``meta["image_file"]``:

* modes: 8-bit grey (``L``) → uint8 (rows, cols); 16-bit grey (``I;16``, ``I`` within 0-65535)
  → uint16 (rows, cols); bilevel (``1``) → uint8 0/255; colour (``RGB``, ``RGBA``, ``P``,
  ``CMYK``, ``YCbCr``) → uint8 (rows, cols, 3) RGB; an alpha channel is dropped (``LA``, ``RGBA``);
* the rendition of a grey image: 8-bit as stored; 16-bit scaled linearly from its min/max
  (the DICOM pipeline's fallback when there is no VOI LUT: ``voi_lut:minmax``). Photometric is
  ``MONOCHROME2`` (grey) or ``RGB``; there is no Modality LUT and no inversion;
* orientation: an EXIF Orientation tag is applied (``exif_transpose``), as a viewer shows it;
* metadata: nothing of the file's metadata travels on. The payload is re-encoded from pixels,
  so EXIF, XMP, ICC profiles, JPEG comments and PNG text chunks (``tEXt``/``zTXt``/``iTXt``) are
  dropped; ``meta["image_file"]["stripped"]`` names the kinds that were present, never values.
  Text burned into the pixels is not detected (DICOM's ``BurnedInAnnotation`` has no
  counterpart here): use a metadata-table filter when a dataset marks such images.

Identity: an image file has no patient, study or time of its own. They come from a metadata
table joined by path (``pipelines.tables``); without one the image is a sample of its own.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import NamedTuple

import numpy as np

from schemas.canonical import canonical_json
from schemas.modality import Modality
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import DecodedRecord, ImageRecord, InputItem
from workers.context import WorkerContext

log = logging.getLogger(__name__)

IMAGE_FILE_CONVENTION = "1"
_FORMATS = {"JPEG": "jpeg", "PNG": "png"}
#: ``Image.info`` keys that are metadata (names recorded when stripped; values never read out)
_INFO_KINDS = {
    "exif": "exif",
    "icc_profile": "icc_profile",
    "xmp": "xmp",
    "XML:com.adobe.xmp": "xmp",
    "comment": "comment",
    "photoshop": "photoshop",
    "adobe": "adobe",
    "dpi": "dpi",
    "jfif": "jfif",
    "progression": None,
    "progressive": None,
    "gamma": "gamma",
    "srgb": "srgb",
    "chromaticity": "chromaticity",
    "transparency": "transparency",
}


def _pil():
    """Pillow, imported here: a missing package raises ImportError, which stops the build
    (``pipelines.decode``) instead of quarantining every image."""
    from PIL import Image, ImageOps

    return Image, ImageOps


def _stripped(im) -> list[str]:
    """Kinds of metadata present in the file (names only)."""
    kinds: set[str] = set()
    for key in im.info:
        if key in _INFO_KINDS:
            kind = _INFO_KINDS[key]
        elif str(key).startswith("jfif"):
            kind = "jfif"
        else:
            kind = "png_text" if im.format == "PNG" else "other"
        if kind:
            kinds.add(kind)
    if getattr(im, "text", None):  # PNG tEXt/zTXt/iTXt chunks (also after the image data)
        kinds.add("png_text")
    if im.format == "JPEG" and getattr(im, "applist", None):
        kinds.update("app_segments" for _ in im.applist[:1])
    return sorted(kinds)


def _to_arrays(im) -> tuple[np.ndarray, np.ndarray, str, int, list[str], dict]:
    """(stored, 8-bit rendition, photometric, bits, steps, info) of a loaded Pillow image."""
    mode = im.mode
    steps: list[str] = []
    info: dict = {"source_mode": mode}
    if mode in ("LA", "PA", "RGBA") or (mode == "P" and "transparency" in im.info):
        steps.append("alpha_dropped")
    if mode in ("L", "LA", "1"):
        arr = np.asarray(im.convert("L"), dtype=np.uint8)
        bits = 1 if mode == "1" else 8
        steps.append("voi_lut:none")
        return arr, arr, "MONOCHROME2", bits, steps, info
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        if arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() > 65535)):
            raise QuarantineError(ReasonCode.UNSUPPORTED_FORMAT, f"grey values outside 16 bits (mode {mode})")
        stored = arr.astype(np.uint16)
        lo, hi = (float(stored.min()), float(stored.max())) if stored.size else (0.0, 1.0)
        span = hi - lo if hi > lo else 1.0
        scaled = (stored.astype(np.float64) - lo) * (255.0 / span)
        rendition = np.clip(np.floor(scaled + 0.5), 0, 255).astype(np.uint8)
        steps.append("voi_lut:minmax")
        info["window_minmax"] = [lo, hi]
        return stored, rendition, "MONOCHROME2", 16, steps, info
    if mode in ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr"):
        if mode not in ("RGB", "RGBA"):
            steps.append(f"color:{mode}->RGB")
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        return arr, arr, "RGB", 8, steps, info
    raise QuarantineError(ReasonCode.UNSUPPORTED_FORMAT, f"image mode {mode} is not supported")


class _Decoded(NamedTuple):
    """A decoded image file before rendition: what :func:`_to_arrays` gives, plus its source."""

    fmt: str  # Pillow format name, "JPEG" or "PNG"
    stripped: list[str]  # kinds of metadata dropped (names only)
    orientation: int  # EXIF orientation applied (1: none)
    stored: np.ndarray  # (rows, columns[, 3]) as stored: uint8, or uint16 for 16-bit grey
    rendition: np.ndarray  # (rows, columns[, 3]) uint8
    photometric: str
    bits: int
    steps: list[str]
    info: dict


def decode_image_file(item: InputItem, ctx: WorkerContext) -> list[DecodedRecord]:
    """Decode one JPEG/PNG file into an :class:`ImageRecord` (identity empty until joined).

    Raises :class:`QuarantineError`: ``image_file_corrupt`` (truncated or undecodable),
    ``unsupported_format`` (another format or mode), ``limit_exceeded`` (pixel limit,
    decompression bomb).
    """
    from workers.dicom.pixels import array_sha256, encode_npy, encode_png, resize_longest

    dec = _decode_file(item.path, ctx)
    stored, steps = dec.stored, dec.steps
    if stored.size == 0:
        raise QuarantineError(ReasonCode.IMAGE_FILE_CORRUPT, "image has no pixels")
    if dec.orientation != 1:
        steps.insert(0, f"exif_orientation:{dec.orientation}")
    png_img = resize_longest(dec.rendition, ctx.image.rendition_size)
    return [
        ImageRecord(
            record_id=ctx.pseudo.record_id((item.source_id,)),
            modality=Modality.IMAGE,
            source_ids=(item.source_id,),
            source_name=item.source_name,
            licence=item.licence,
            patient="",
            study="",
            acquired_at="",
            content_sha256=array_sha256(stored),
            meta_json=canonical_json(_image_meta(dec, png_img.shape)),
            rows=int(stored.shape[0]),
            columns=int(stored.shape[1]),
            frames=1,
            photometric=dec.photometric,
            bits_stored=dec.bits,
            dicom_modality="",
            body_part="",
            view_position="",
            pixel_steps=tuple(steps),
            payload=(("png", encode_png(png_img)), ("raw.npy", encode_npy(stored))),
        )
    ]


def _decode_file(path: str, ctx: WorkerContext) -> _Decoded:
    """Read, open, check (format, pixel limit, decompression bomb), load, EXIF-orient and convert
    the file; every read or decoding failure becomes a :class:`QuarantineError`."""
    Image, ImageOps = _pil()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        raise QuarantineError(ReasonCode.UNREADABLE_FILE, "file could not be read") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            fmt = im.format
            if fmt not in _FORMATS:
                raise QuarantineError(ReasonCode.UNSUPPORTED_FORMAT, f"image format {fmt} is not JPEG or PNG")
            w, h = im.size
            if w * h > ctx.limits.max_pixels:
                raise QuarantineError(ReasonCode.LIMIT_EXCEEDED, "image larger than limits.max_pixels")
            im.load()
            stripped = _stripped(im)
            orientation = int(im.getexif().get(0x0112, 1) or 1) if fmt == "JPEG" else 1
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
            return _Decoded(fmt, stripped, orientation, *_to_arrays(im))
    except QuarantineError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise QuarantineError(
            ReasonCode.LIMIT_EXCEEDED, "image exceeds the decompression-bomb limit"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError) as exc:
        raise QuarantineError(
            ReasonCode.IMAGE_FILE_CORRUPT, f"image does not decode ({type(exc).__name__})"
        ) from None


def _image_meta(dec: _Decoded, rendition_shape: tuple[int, ...]) -> dict:
    """The record's meta: source format, what was stripped, and the pixel pipeline (stored and
    rendition shapes, steps, bits)."""
    return {
        "source_format": _FORMATS[dec.fmt],
        "image_file": {
            "convention": IMAGE_FILE_CONVENTION,
            "format": _FORMATS[dec.fmt],
            "stripped": dec.stripped,
            "burned_in_text": "not checked",
        },
        "pixel": {
            "pipeline": "exif orientation > grey: 8-bit as stored, 16-bit min/max to 8-bit; colour: RGB",
            "steps": dec.steps,
            "stored_dtype": dec.stored.dtype.str,
            "stored_shape": list(dec.stored.shape),
            "stored_photometric": dec.photometric,
            "bits": dec.bits,
            "rendition_frame": 0,
            "rendition_shape": list(rendition_shape),
            "rendition_resample": "lanczos",
            **dec.info,
        },
    }
