"""Discover inputs by content (magic bytes, headers), not by extension.

Real exports often have no extensions (DICOM files named ``6154``), so every file is sniffed:
DICOM preamble ``DICM`` (also inside gzip, or a bare dataset starting with a group 0002/0008
tag), JPEG (SOI marker) and PNG (signature) images, NIfTI-1/2 header (``sizeof_hdr`` 348/540
in either byte order, also gzipped), a WFDB record line whose name matches the file, CSV/TSV/JSONL
tables, and plain text. WFDB signal files (``.dat``, ``.mat``, …) are claimed by their header as
companions, not separate inputs.
Order is deterministic: sources in config order, files sorted by relative POSIX path.

Discovery works folder by folder, so an engine can spread it over workers: :func:`list_folders`
walks a source once (no sniffing), :func:`discover_folder` lists one folder once and finds a
WFDB header's companions by record name in a dict: linear in the number of files.
:func:`discover` is the two composed.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import logging
import os
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from pipelines.config import SourceConfig
from schemas.records import InputItem, InputKind
from workers.deid.pseudonym import Pseudonymizer

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
        head = f.read(n)
        if head[:2] == b"\x1f\x8b":  # gzip: sniff the decompressed start of up to 64 kB compressed
            return _gunzip_head(head + f.read(max(0, 64 * 1024 - n)), n)
    return head


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


_LINE_CONTROLS = str.maketrans("", "", "\r\n\t")


def _as_text(head: bytes) -> str | None:
    if not head or b"\x00" in head:
        return None
    for enc in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = head.decode(enc)
        except UnicodeDecodeError:
            continue
        if text.translate(_LINE_CONTROLS).isprintable():  # the common case, at C speed
            return text
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
    if head[:3] == b"\xff\xd8\xff" or head[:8] == b"\x89PNG\r\n\x1a\n":  # JPEG SOI / PNG signature
        return InputKind.IMAGE_FILE
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


def _stem(name: str) -> str:
    """WFDB record name of a file name: everything before the first dot."""
    return name.split(".")[0]


def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
    parts = rel.split("/")
    return any(fnmatch.fnmatch(p, pat) for p in parts for pat in patterns)


def _name_excluded(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, pat) for pat in patterns)


def _source_base(root: Path, src: SourceConfig) -> Path:
    base = (root / src.path).resolve()
    if not base.is_dir():
        raise FileNotFoundError(f"source {src.name!r}: folder not found: {src.path}")
    return base


def _rel_folder(rel_folder: str) -> str:
    """Normalise a folder path relative to a source base: ``""`` (or ``"."``) is the base itself."""
    parts = [p for p in rel_folder.split("/") if p not in ("", ".")]
    if rel_folder.startswith("/") or ".." in parts:
        raise ValueError(f"folder must be relative to the source folder: {rel_folder!r}")
    return "/".join(parts)


#: (resolved base, exclude patterns) of each source before the one being discovered
_Earlier = list[tuple[Path, tuple[str, ...]]]


def _earlier(root: Path, sources: tuple[SourceConfig, ...], index: int) -> _Earlier:
    return [((root / s.path).resolve(), s.exclude) for s in sources[:index]]


def _owner_patterns(earlier: _Earlier, folder: Path) -> list[tuple[str, ...]]:
    """Exclude patterns of the earlier sources whose file lists include ``folder``'s files.

    A file directly in ``folder`` belongs to an earlier source when ``folder`` lies under that
    source's base, in a subfolder its patterns do not exclude, and the file name itself is not
    excluded (checked by the caller against the returned patterns).
    """
    owners: list[tuple[str, ...]] = []
    for base, exclude in earlier:
        if not folder.is_relative_to(base):
            continue
        rel = folder.relative_to(base).as_posix()
        if rel == "." or not _excluded(rel, exclude):
            owners.append(exclude)
    return owners


def _earlier_owns(name: str, owners: list[tuple[str, ...]]) -> bool:
    return any(not _name_excluded(name, pats) for pats in owners)


def _scandir(folder: Path) -> list[os.DirEntry]:
    """One listing of ``folder``, sorted by name."""
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def list_folders(root: Path, sources: tuple[SourceConfig, ...], index: int) -> list[str]:
    """Folders holding input files of source ``index``, as sorted POSIX paths relative to its base.

    The source base itself is ``""``. A folder is listed when it directly holds at least one
    regular (non-symlink) file that the source is not told to exclude and that no earlier
    source lists; symlinked folders are not followed and an excluded folder is skipped with
    everything below it. Each folder then goes to :func:`discover_folder`, e.g. in a worker.
    """
    src = sources[index]
    base = _source_base(root, src)
    earlier = _earlier(root, sources, index)
    found: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        folder = base / rel if rel else base
        try:
            entries = _scandir(folder)
        except PermissionError as e:
            log.warning("source %r: cannot list %s: %s", src.name, rel or ".", e.strerror)
            continue
        owners = _owner_patterns(earlier, folder)
        has_file = False
        for e in entries:
            if _name_excluded(e.name, src.exclude):
                continue
            if e.is_dir(follow_symlinks=False):
                stack.append(f"{rel}/{e.name}" if rel else e.name)
            elif not has_file and e.is_file(follow_symlinks=False):
                has_file = not _earlier_owns(e.name, owners)
        if has_file:
            found.append(rel)
    return sorted(found)


def _claim_companions(
    header: str,
    folder: Path,
    is_file: set[str],
    same_record: Callable[[str], list[str]],
    claimed: set[str],
    companions: dict[str, tuple[str, ...]],
) -> None:
    """Record the files WFDB header ``header`` owns: its record's other files and, for a
    multi-segment master, its segments' headers and signals (``companions``, ``claimed``)."""
    comp = same_record(header)
    p = folder / header
    if _is_multisegment(p):  # segment headers (and their signals) belong to the master
        from workers.ecg.wfdb import segment_headers

        for seg in map(Path, segment_headers(str(p))):
            # WFDB segment names hold no "/": a segment lies beside its master
            if seg.parent == folder and seg.name in is_file and seg != p:
                comp += [seg.name, *same_record(seg.name)]
    companions[header] = tuple(str(folder / q) for q in sorted(set(comp)))
    claimed.update(comp)


def _folder_items(
    src: SourceConfig, base: Path, earlier: _Earlier, rel: str, pseudo: Pseudonymizer
) -> list[tuple[str, InputItem]]:
    """(relative path, item) pairs of the files directly in ``base/rel``, sorted by name."""
    folder = base / rel if rel else base
    entries = _scandir(folder)
    owners = _owner_patterns(earlier, folder)
    # every file (symlinks followed) by record name: a header finds its companions in O(1)
    by_stem: dict[str, list[str]] = {}
    files = [e for e in entries if e.is_file()]
    for e in files:
        by_stem.setdefault(_stem(e.name), []).append(e.name)
    is_file = {e.name for e in files}
    names = [
        e.name
        for e in files
        if e.is_file(follow_symlinks=False)
        and not _name_excluded(e.name, src.exclude)
        and not _earlier_owns(e.name, owners)
    ]

    def same_record(name: str) -> list[str]:
        return [q for q in by_stem.get(_stem(name), ()) if q != name]

    # WFDB headers claim their signal/annotation files (same folder, same record name). ``.hea``
    # files are sniffed first, so the files they claim (the signal files: most of an ECG
    # export's bytes) are never opened here; every other file is sniffed after.
    claimed: set[str] = set()
    companions: dict[str, tuple[str, ...]] = {}
    kinds: dict[str, InputKind] = {}
    for first in (True, False):
        batch = [
            n for n in names if n not in kinds and n not in claimed and n.lower().endswith(".hea") == first
        ]
        kinds.update((n, sniff(folder / n)) for n in batch)
        for n in batch:
            if kinds[n] is InputKind.WFDB:
                _claim_companions(n, folder, is_file, same_record, claimed, companions)
    out: list[tuple[str, InputItem]] = []
    for n in names:
        if n in claimed:
            continue
        p = folder / n
        rel_path = f"{rel}/{n}" if rel else n
        item = InputItem(
            source_id=pseudo.source_id(f"{src.name}/{rel_path}"),
            path=str(p),
            kind=kinds[n],
            source_name=src.name,
            licence=src.licence,
            size_bytes=p.stat().st_size,
            companions=companions.get(n, ()),
        )
        out.append((rel_path, item))
    return out


def discover_folder(
    root: Path, sources: tuple[SourceConfig, ...], index: int, rel_folder: str, pseudo: Pseudonymizer
) -> list[InputItem]:
    """The input items of source ``index`` whose files lie directly in ``rel_folder``.

    ``rel_folder`` is relative to the source base (``""`` or ``"."``: the base itself), as
    :func:`list_folders` returns it. The folder is listed once; items are sorted by name, and
    files an earlier source lists or a WFDB header claims are left out, as in :func:`discover`.
    """
    src = sources[index]
    base = _source_base(root, src)
    rel = _rel_folder(rel_folder)
    if rel and (_excluded(rel, src.exclude) or (base / rel).resolve() != base / rel):
        return []  # an excluded folder, or one reached through a symlink: not walked either
    pairs = _folder_items(src, base, _earlier(root, sources, index), rel, pseudo)
    return [item for _, item in pairs]


def discover(root: Path, sources: tuple[SourceConfig, ...], pseudo: Pseudonymizer) -> list[InputItem]:
    """List the input items of every source under ``root``, classified by content.

    Source IDs are keyed hashes of ``"{source name}/{relative path}"``: stable, PHI-free.
    A file claimed by several sources belongs to the first. Equal to :func:`discover_folder`
    over :func:`list_folders` for each source, each source's items sorted by relative path.
    """
    items: list[InputItem] = []
    for index, src in enumerate(sources):
        folders = list_folders(root, sources, index)
        base, earlier = _source_base(root, src), _earlier(root, sources, index)
        pairs = [pair for rel in folders for pair in _folder_items(src, base, earlier, rel, pseudo)]
        pairs.sort(key=lambda pair: pair[0])  # "a-b" < "a/c": not folder by folder
        items += [item for _, item in pairs]
    log.info("discovered %d input files", len(items))
    return items
