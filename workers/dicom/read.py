"""Reading DICOM files the way PACS exports hold them, with bad input mapped to reason codes.

Handles: Part 10 files with and without preamble/file meta (``force``), implicit/explicit VR,
little and big endian, deflated transfer syntax (pydicom inflates it), gzip-wrapped files
(``.dcm.gz`` or no extension: detected by magic bytes, inflated under the file-size limit),
files without extension. Truncation is detected from pydicom's own signals (short element
values, "End of file reached" warnings, an empty dataset after the file meta).

Every failure raises :class:`schemas.QuarantineError` with a PHI-free message.
"""

from __future__ import annotations

import gzip
import io
import logging
import warnings
import zlib
from pathlib import Path

import pydicom
from pydicom.datadict import dictionary_has_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble

from schemas import QuarantineError, ReasonCode
from workers.dicom.pixels import RATIO_FLOOR_BYTES

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
DEFLATED = "1.2.840.10008.1.2.1.99"
_CHUNK = 1 << 20
#: deepest sequence nesting accepted (real objects, SR content trees included, stay far below);
#: deeper input would exhaust the recursion of pydicom's copy/walk code downstream
MAX_SEQUENCE_DEPTH = 32


def inflate_limit(compressed_bytes: int, max_bytes: int, max_ratio: float) -> int:
    """Most bytes a compressed stream of ``compressed_bytes`` may inflate to: ``max_bytes``, and
    ``max_ratio`` x its size once past :data:`~workers.dicom.pixels.RATIO_FLOOR_BYTES`."""
    by_ratio = max(float(RATIO_FLOOR_BYTES), max_ratio * compressed_bytes)
    return int(min(float(max_bytes), by_ratio))


def _read_bytes(path: str, max_bytes: int, max_ratio: float = float("inf")) -> bytes:
    """File content, gunzipped if gzip-wrapped; LIMIT_EXCEEDED past ``max_bytes`` (or past the
    decompression ratio limit, for a gzip wrapper)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise QuarantineError(ReasonCode.LIMIT_EXCEEDED, "file larger than max_file_bytes")
        with p.open("rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise QuarantineError(
            ReasonCode.UNREADABLE_FILE, f"cannot read file ({type(exc).__name__})"
        ) from None
    if not data:
        raise QuarantineError(ReasonCode.EMPTY_FILE, "empty file")
    if data[:2] == GZIP_MAGIC:
        limit = inflate_limit(len(data), max_bytes, max_ratio)
        out = io.BytesIO()
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                while True:
                    chunk = gz.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    if out.tell() > limit:
                        raise QuarantineError(
                            ReasonCode.LIMIT_EXCEEDED,
                            "gzip content exceeds max_file_bytes or max_decompression_ratio",
                        )
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            reason = ReasonCode.DICOM_TRUNCATED if isinstance(exc, EOFError) else ReasonCode.DICOM_CORRUPT
            raise QuarantineError(reason, f"broken gzip wrapper ({type(exc).__name__})") from None
        data = out.getvalue()
        if not data:
            raise QuarantineError(ReasonCode.EMPTY_FILE, "empty gzip content")
    return data


def _short_element(ds: Dataset) -> RawDataElement | None:
    """A raw (not yet parsed) element holding fewer bytes than its declared length, if any."""
    for elem in ds._dict.values():
        if isinstance(elem, RawDataElement) and elem.value is not None and elem.length != 0xFFFFFFFF:
            if len(elem.value) < elem.length:
                return elem
    return None


def _check_deflate_bomb(data: bytes, max_bytes: int, max_ratio: float = float("inf")) -> None:
    """A Deflated Explicit VR LE dataset must not inflate past ``max_bytes`` nor past the ratio
    limit (pydicom inflates it in one unbounded call, so the size is counted here first, by a
    streaming inflater whose output is discarded: memory stays O(chunk))."""
    if DEFLATED.encode() not in data[:4096]:
        return
    fp = io.BytesIO(data)
    try:
        read_preamble(fp, True)
        meta = _read_file_meta_info(fp)
        ts = str(meta.get("TransferSyntaxUID", ""))
    except Exception:  # a garbled file meta: pydicom cannot inflate what it cannot identify either
        return
    if ts != DEFLATED:
        return
    src = memoryview(data)[fp.tell() :]
    limit = inflate_limit(len(src), max_bytes, max_ratio)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        for start in range(0, len(src), _CHUNK):
            pending = bytes(src[start : start + _CHUNK])
            while pending:
                total += len(inflater.decompress(pending, _CHUNK))
                pending = inflater.unconsumed_tail
                if total > limit:
                    raise QuarantineError(
                        ReasonCode.LIMIT_EXCEEDED,
                        "deflated dataset exceeds max_file_bytes or max_decompression_ratio",
                    )
            if inflater.eof:
                break
    except zlib.error:
        raise QuarantineError(ReasonCode.DICOM_CORRUPT, "deflated dataset does not inflate") from None


def parse_dicom_bytes(data: bytes, *, stop_before_pixels: bool = False) -> Dataset:
    """Parse DICOM bytes with pydicom (``force=True``), mapping failures to reason codes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=stop_before_pixels)
        except (EOFError, zlib.error) as exc:
            raise QuarantineError(
                ReasonCode.DICOM_TRUNCATED, f"file ends early ({type(exc).__name__})"
            ) from None
        except (
            InvalidDicomError,
            ValueError,
            KeyError,
            TypeError,
            OverflowError,
            NotImplementedError,
        ) as exc:
            raise QuarantineError(
                ReasonCode.DICOM_CORRUPT, f"unparseable DICOM ({type(exc).__name__})"
            ) from None
        except Exception as exc:  # pydicom raises many types on garbage; none of them is our bug
            raise QuarantineError(
                ReasonCode.DICOM_CORRUPT, f"unparseable DICOM ({type(exc).__name__})"
            ) from None
    messages = [str(w.message) for w in caught]
    if any("End of file" in m or "end of file" in m for m in messages):
        raise QuarantineError(ReasonCode.DICOM_TRUNCATED, "file ends inside an element or sequence")
    has_meta = bool(getattr(ds, "file_meta", None))
    if len(ds._dict) == 0:
        if has_meta:
            raise QuarantineError(ReasonCode.DICOM_TRUNCATED, "file meta present but no dataset follows")
        raise QuarantineError(ReasonCode.DICOM_CORRUPT, "no DICOM elements found")
    short = _short_element(ds)
    if short is not None:
        # a known attribute cut short is a truncated file; an unknown tag with an absurd length
        # is what ``force=True`` makes of bytes that are not DICOM at all
        if dictionary_has_tag(short.tag) or short.tag == 0x7FE00010:
            raise QuarantineError(ReasonCode.DICOM_TRUNCATED, "an element value is shorter than its length")
        raise QuarantineError(ReasonCode.DICOM_CORRUPT, "unparseable element (unknown tag, bad length)")
    try:
        keys = list(ds.keys())
    except Exception:  # pragma: no cover - defensive
        raise QuarantineError(ReasonCode.DICOM_CORRUPT, "unreadable element list") from None
    # ``force=True`` accepts any bytes; a real object has at least one element from groups
    # 0008-0028 or a DICOMDIR record sequence.
    if not has_meta and not any(0x0008 <= k.group <= 0x7FE0 for k in keys):
        raise QuarantineError(ReasonCode.DICOM_CORRUPT, "no DICOM attributes found")
    _convert_all(ds)
    if has_meta:
        _convert_all(ds.file_meta)
    return ds


def _convert_all(ds: Dataset) -> None:
    """Convert every raw element now (pydicom converts lazily, so a garbled element would
    otherwise raise deep inside de-identification), walking sequences without recursion.
    Unconvertible elements and nesting deeper than :data:`MAX_SEQUENCE_DEPTH` are DICOM_CORRUPT."""
    stack = [(ds, 0)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_SEQUENCE_DEPTH:
            raise QuarantineError(
                ReasonCode.DICOM_CORRUPT, f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels"
            )
        for tag in list(current._dict):
            try:
                elem = current[tag]
            except Exception as exc:  # pydicom raises many types on a garbled element
                raise QuarantineError(
                    ReasonCode.DICOM_CORRUPT, f"unparseable element ({type(exc).__name__})"
                ) from None
            if elem.VR == "SQ":
                stack.extend((item, depth + 1) for item in elem.value or [] if isinstance(item, Dataset))


def read_dicom(
    path: str, max_file_bytes: int, *, stop_before_pixels: bool = False, max_ratio: float = float("inf")
) -> Dataset:
    """Read one DICOM file (gzip-wrapped or not). Raises QuarantineError on bad input.

    ``max_ratio``: decompression ratio limit of a gzip wrapper or a deflated dataset.
    """
    data = _read_bytes(path, max_file_bytes, max_ratio)
    _check_deflate_bomb(data, max_file_bytes, max_ratio)
    return parse_dicom_bytes(data, stop_before_pixels=stop_before_pixels)


def sop_class_uid(ds: Dataset) -> str:
    """SOP Class UID, falling back to the file meta's Media Storage SOP Class UID."""
    value = str(ds.get("SOPClassUID", "") or "").strip()
    if not value:
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            value = str(meta.get("MediaStorageSOPClassUID", "") or "").strip()
    return value


def is_dicomdir(ds: Dataset) -> bool:
    """True for a DICOMDIR (Media Storage Directory): an index of files, not an image."""
    return sop_class_uid(ds) == MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds


def transfer_syntax(ds: Dataset) -> str:
    meta = getattr(ds, "file_meta", None)
    return str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
