"""Discover inputs by content (magic bytes, headers), not by extension.

Real exports often have no extensions (DICOM files named ``6154``), so every file is sniffed:
DICOM preamble ``DICM`` (also inside gzip, or a bare dataset starting with a group 0002/0008
tag), NIfTI-1/2 header (``sizeof_hdr`` 348/540 in either byte order, also gzipped), a WFDB
record line whose name matches the file, CSV/TSV/JSONL tables, and plain text. WFDB signal
files (``.dat``, ``.mat``, …) are claimed by their header as companions, not separate inputs.
Order is deterministic: sources in config order, files sorted by relative POSIX path.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import logging
import re
import struct
import zlib
from pathlib import Path

from pipelines.config import SourceConfig
from schemas.records import InputItem, InputKind
from workers.pseudonym import Pseudonymizer

log = logging.getLogger(__name__)

_SNIFF_BYTES = 8192
_WFDB_RECORD_LINE = re.compile(r"^(?P<name>[^\s/]+)(?:/(?P<nseg>\d+))?\s+(?P<nsig>\d+)(?:\s|$)")


def _gunzip_head(comp: bytes, n: int) -> bytes:
    """As much of the decompressed start (up to ``n`` bytes) as decodes before any error."""
    d = zlib.decompressobj(wbits=31)
    out = bytearray()
    for i in range(0, len(comp), 256):
        try:
            out += d.decompress(comp[i : i + 256], n - len(out))
        except zlib.error:
            break
        if len(out) >= n or d.eof:
            break
    return bytes(out)


def _read_head(path: Path, n: int = _SNIFF_BYTES) -> bytes:
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    if head[:2] == b"\x1f\x8b":  # gzip: sniff the decompressed start
        return _gunzip_head(head, n)
    return head[:n]


#: fallback for compressed files whose stream is too damaged to sniff: the decoder then
#: reports the corruption with its own reason code instead of "unsupported format"
_GZ_SUFFIX_KINDS = {".nii.gz": InputKind.NIFTI, ".dcm.gz": InputKind.DICOM}


def _is_dicom(head: bytes) -> bool:
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) >= 8:  # no preamble: a dataset that starts with a group 0002 or 0008 element
        group, elem = struct.unpack("<HH", head[:4])
        if group in (0x0002, 0x0008) and elem < 0x0200:
            vr = head[4:6]
            explicit = vr.isalpha() and vr.isupper()
            implicit_len = struct.unpack("<I", head[4:8])[0]
            return explicit or implicit_len < 1 << 16
    return False


def _is_nifti(head: bytes) -> bool:
    if len(head) < 348:
        return False
    for fmt in ("<i", ">i"):
        size = struct.unpack(fmt, head[:4])[0]
        if size == 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
            return True
        if size == 540 and head[4:8] in (b"n+2\x00", b"ni2\x00"):
            return True
    return False


def _as_text(head: bytes) -> str | None:
    if not head or b"\x00" in head:
        return None
    for enc in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = head.decode(enc)
        except UnicodeDecodeError:
            continue
        printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
        return text if printable >= 0.95 * len(text) else None
    return None


def _wfdb_record_line(text: str) -> re.Match | None:
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        return _WFDB_RECORD_LINE.match(line)
    return None


def _wfdb_record_name(text: str) -> str | None:
    m = _wfdb_record_line(text)
    return m.group("name") if m else None


def _is_multisegment(path: Path) -> bool:
    m = _wfdb_record_line(_as_text(_read_head(path)) or "")
    return bool(m and m.group("nseg"))


def _is_table(text: str) -> bool:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return False
    first = lines[0].strip()
    if first.startswith("{"):
        try:
            return isinstance(json.loads(first), dict)
        except (ValueError, RecursionError):  # bad JSON, a huge integer, absurd nesting
            return True  # a JSON-lines export whose first row is broken: the table decoder says so
    if len(lines) < 2:
        return False
    try:
        dialect = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",\t;|")
    except csv.Error:
        return False
    header = next(csv.reader(io.StringIO(lines[0]), dialect))
    return len(header) >= 2


def sniff(path: Path) -> InputKind:
    """Classify one file by its content."""
    if path.stat().st_size == 0:
        return InputKind.EMPTY
    head = _read_head(path)
    if not head:  # an unreadable gzip stream
        name = path.name.lower()
        return next((k for suf, k in _GZ_SUFFIX_KINDS.items() if name.endswith(suf)), InputKind.UNKNOWN)
    if _is_dicom(head):
        return InputKind.DICOM
    if _is_nifti(head):
        return InputKind.NIFTI
    text = _as_text(head)
    if text is None:
        return InputKind.UNKNOWN
    name = _wfdb_record_name(text)
    if name is not None and name == path.name.split(".")[0]:
        return InputKind.WFDB
    if path.suffix.lower() == ".hea":  # a WFDB header with a garbled record line: let wfdb say why
        return InputKind.WFDB
    if text.lstrip().startswith("[") and path.suffix.lower() == ".json":  # a JSON-array export
        return InputKind.REPORT_TABLE
    if _is_table(text):
        return InputKind.REPORT_TABLE
    return InputKind.REPORT_TEXT


def _same_record(hea: Path) -> list[Path]:
    """Files beside a WFDB header with the same record name (signals, annotations)."""
    stem = hea.name.split(".")[0]
    return sorted(
        q for q in hea.parent.iterdir() if q != hea and q.is_file() and q.name.split(".")[0] == stem
    )


def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    parts = rel.split("/")
    return any(fnmatch.fnmatch(p, pat) for p in parts for pat in patterns)


def discover(root: Path, sources: tuple[SourceConfig, ...], pseudo: Pseudonymizer) -> list[InputItem]:
    """List the input items of every source under ``root``, classified by content.

    Source IDs are keyed hashes of ``"{source name}/{relative path}"``: stable, PHI-free.
    A file claimed by several sources belongs to the first.
    """
    items: list[InputItem] = []
    seen: set[Path] = set()
    for src in sources:
        base = (root / src.path).resolve()
        if not base.is_dir():
            raise FileNotFoundError(f"source {src.name!r}: folder not found: {src.path}")
        files = sorted(
            (p for p in base.rglob("*") if p.is_file() and not p.is_symlink()),
            key=lambda p: p.relative_to(base).as_posix(),
        )
        files = [p for p in files if not _excluded(p.relative_to(base).as_posix(), src.exclude)]
        files = [p for p in files if p.resolve() not in seen]
        kinds = {p: sniff(p) for p in files}
        # WFDB headers claim their signal/annotation files (same folder, same record name)
        claimed: set[Path] = set()
        companions: dict[Path, tuple[str, ...]] = {}
        for p, kind in kinds.items():
            if kind is InputKind.WFDB:
                comp = _same_record(p)
                if _is_multisegment(p):  # segment headers (and their signals) belong to the master
                    from workers.ecg_wfdb import segment_headers

                    for seg in map(Path, segment_headers(str(p))):
                        if seg.is_file() and seg != p:  # a header naming itself stays the record
                            comp += [seg, *_same_record(seg)]
                companions[p] = tuple(str(q) for q in sorted(set(comp)))
                claimed.update(comp)
        for p in files:
            if p in claimed:
                seen.add(p.resolve())
                continue
            rel = p.relative_to(base).as_posix()
            items.append(
                InputItem(
                    source_id=pseudo.source_id(f"{src.name}/{rel}"),
                    path=str(p),
                    kind=kinds[p],
                    source_name=src.name,
                    licence=src.licence,
                    size_bytes=p.stat().st_size,
                    companions=companions.get(p, ()),
                )
            )
            seen.add(p.resolve())
    log.info("discovered %d input files", len(items))
    return items
