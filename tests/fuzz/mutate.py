"""Mutation operators: generic byte edits and DICOM wire-level edits, as Hypothesis strategies.

Operations are small tuples that do not depend on the seed file (positions are fractions in
1/65536 of the length, element choices are indices taken modulo the count), so a failing case
prints readably, shrinks well and replays on any seed.
"""

from __future__ import annotations

import gzip
import io
import struct
from dataclasses import dataclass

from hypothesis import strategies as st
from pydicom.filereader import _read_file_meta_info, data_element_generator, read_preamble
from pydicom.filewriter import write_file_meta_info

FRAC = st.integers(0, 65535)
INTERESTING_U32 = (0, 1, 2, 3, 0x7F, 0x80, 0xFF, 0x100, 0xFFFE, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000)
INTERESTING_U32 += (0xFFFFFFFE, 0xFFFFFFFF)


def _pos(frac: int, n: int) -> int:
    return frac * n // 65536 if n else 0


# ---------------------------------------------------------------------------------------------
# generic byte operations

byte_op = st.one_of(
    st.tuples(st.just("truncate"), FRAC),
    st.tuples(st.just("flip"), FRAC, st.integers(1, 255), st.integers(1, 8)),
    st.tuples(st.just("insert"), FRAC, st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("delete"), FRAC, st.integers(1, 4096)),
    st.tuples(st.just("duplicate"), FRAC, st.integers(1, 4096)),
    st.tuples(st.just("fill"), FRAC, st.integers(1, 1024), st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x20])),
    st.tuples(st.just("u32"), FRAC, st.sampled_from(INTERESTING_U32), st.booleans()),
)


def apply_byte_op(data: bytes, op: tuple) -> bytes:
    """Apply one generic operation (see ``byte_op``)."""
    kind, frac = op[0], op[1]
    n = len(data)
    p = _pos(frac, n)
    if kind == "truncate":
        return data[:p]
    if kind == "flip":
        _, _, xor, count = op
        buf = bytearray(data)
        for i in range(p, min(n, p + count)):
            buf[i] ^= xor
        return bytes(buf)
    if kind == "insert":
        return data[:p] + op[2] + data[p:]
    if kind == "delete":
        return data[:p] + data[p + op[2] :]
    if kind == "duplicate":
        return data[: p + op[2]] + data[p : p + op[2]] + data[p + op[2] :]
    if kind == "fill":
        _, _, count, value = op
        return data[:p] + bytes([value]) * min(count, n - p) + data[p + count :]
    if kind == "u32":
        _, _, value, little = op
        return data[:p] + struct.pack("<I" if little else ">I", value) + data[p + 4 :]
    raise ValueError(kind)


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# ---------------------------------------------------------------------------------------------
# DICOM wire level

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


@dataclass(frozen=True)
class Element:
    """Where one element sits in the file: header start, length field, value start/length."""

    tag: int
    vr: bytes
    start: int
    len_off: int
    len_size: int
    value_off: int
    length: int


@dataclass(frozen=True)
class DicomLayout:
    """Top-level layout of a Part 10 file (file meta and dataset elements, item headers)."""

    meta_start: int
    meta_end: int
    implicit: bool
    little: bool
    meta: tuple[Element, ...]
    elements: tuple[Element, ...]
    items: tuple[int, ...]  # offsets of item/delimiter tags anywhere in the dataset


def _element_at(data: bytes, pos: int, implicit: bool, little: bool) -> Element:
    e = "<" if little else ">"
    group, elem = struct.unpack(e + "HH", data[pos : pos + 4])
    tag = group << 16 | elem
    if implicit or tag in (ITEM, ITEM_END, SEQ_END):
        (length,) = struct.unpack(e + "I", data[pos + 4 : pos + 8])
        return Element(tag, b"", pos, pos + 4, 4, pos + 8, length)
    vr = data[pos + 4 : pos + 6]
    if vr in _LONG_VRS:
        (length,) = struct.unpack(e + "I", data[pos + 8 : pos + 12])
        return Element(tag, vr, pos, pos + 8, 4, pos + 12, length)
    (length,) = struct.unpack(e + "H", data[pos + 6 : pos + 8])
    return Element(tag, vr, pos, pos + 6, 2, pos + 8, length)


def _walk(data: bytes, start: int, implicit: bool, little: bool) -> list[Element]:
    fp = io.BytesIO(data)
    fp.seek(start)
    gen = data_element_generator(fp, implicit, little)
    out = []
    while True:
        pos = fp.tell()
        try:
            next(gen)
        except StopIteration:
            break
        out.append(_element_at(data, pos, implicit, little))
    return out


def dicom_layout(data: bytes) -> DicomLayout:
    """Layout of an intact Part 10 file (seeds only: they are parsed before being mutated)."""
    fp = io.BytesIO(data)
    read_preamble(fp, False)
    meta_start = fp.tell()
    meta = _read_file_meta_info(fp)
    meta_end = fp.tell()
    ts = str(meta.TransferSyntaxUID)
    implicit = ts == "1.2.840.10008.1.2"
    little = ts != "1.2.840.10008.1.2.2"
    deflated = ts == "1.2.840.10008.1.2.1.99"
    elements = () if deflated else tuple(_walk(data, meta_end, implicit, little))
    item_tag = struct.pack("<HH" if little else ">HH", 0xFFFE, 0xE000)
    items = []
    i = data.find(item_tag, meta_end)
    while i != -1 and not deflated:
        items.append(i)
        i = data.find(item_tag, i + 4)
    return DicomLayout(
        meta_start,
        meta_end,
        implicit,
        little,
        tuple(_walk(data, meta_start, False, True)),
        elements,
        tuple(items),
    )


def encode_element(tag: int, vr: str, value: bytes, implicit: bool, little: bool) -> bytes:
    """Element bytes (no padding added: odd lengths are a legitimate mutation)."""
    e = "<" if little else ">"
    head = struct.pack(e + "HH", tag >> 16, tag & 0xFFFF)
    if implicit:
        return head + struct.pack(e + "I", len(value)) + value
    if vr.encode() in _LONG_VRS:
        return head + vr.encode() + b"\0\0" + struct.pack(e + "I", len(value)) + value
    if len(value) > 0xFFFF:
        value = value[:0xFFFE]
    return head + vr.encode() + struct.pack(e + "H", len(value)) + value


def set_element(data: bytes, layout: DicomLayout, tag: int, vr: str, value: bytes) -> bytes:
    """Replace (or insert, in tag order) a top-level dataset element."""
    return put_element(data, layout, tag, encode_element(tag, vr, value, layout.implicit, layout.little))


def put_element(data: bytes, layout: DicomLayout, tag: int, raw: bytes) -> bytes:
    """Put the encoded element ``raw`` (tag ``tag``) at top level: replace or insert in tag order."""
    for i, el in enumerate(layout.elements):
        if el.tag == tag:
            if i + 1 < len(layout.elements):
                end = layout.elements[i + 1].start
            else:
                end = len(data) if el.length == 0xFFFFFFFF else el.value_off + el.length
            return data[: el.start] + raw + data[end:]
        if el.tag > tag:
            return data[: el.start] + raw + data[el.start :]
    return data + raw


def set_length(data: bytes, layout: DicomLayout, index: int, value_choice: int, which: str) -> bytes:
    """Overwrite the length field of one element (``which``: meta, dataset or item)."""
    if which == "item" and layout.items:
        off, size = layout.items[index % len(layout.items)] + 4, 4
        current = struct.unpack("<I" if layout.little else ">I", data[off : off + 4])[0]
        little = layout.little
    else:
        pool = layout.meta if which == "meta" or not layout.elements else layout.elements
        el = pool[index % len(pool)]
        off, size, current = el.len_off, el.len_size, el.length
        little = layout.little if pool is layout.elements else True
    choices = (0, 1, current - 1, current + 1, current * 2, current + 0x1000, *INTERESTING_U32)
    value = choices[value_choice % len(choices)] % (1 << (8 * size))
    fmt = ("<" if little else ">") + ("H" if size == 2 else "I")
    return data[:off] + struct.pack(fmt, value) + data[off + size :]


def set_transfer_syntax(data: bytes, layout: DicomLayout, uid: str) -> bytes:
    """Rewrite the file meta with another Transfer Syntax UID; the dataset bytes are kept."""
    fp = io.BytesIO(data)
    read_preamble(fp, False)
    meta = _read_file_meta_info(fp)
    meta.TransferSyntaxUID = uid
    out = io.BytesIO()
    out.write(data[: layout.meta_start])
    write_file_meta_info(out, meta, enforce_standard=False)
    return out.getvalue() + data[layout.meta_end :]


def nested_sequence(tag: int, depth: int, undefined: bool, implicit: bool, little: bool) -> bytes:
    """A sequence nested ``depth`` levels deep, each item holding a name and the next level."""
    e = "<" if little else ">"

    def tag_bytes(t: int) -> bytes:
        return struct.pack(e + "HH", t >> 16, t & 0xFFFF)

    name = encode_element(0x00100010, "PN", b"Nested^Fuzzname", implicit, little)
    inner = b""
    for level in range(depth):
        seq_tag = tag if level == depth - 1 else 0x00081120  # ReferencedPatientSequence inside
        item_body = name + inner
        if undefined:
            item = tag_bytes(ITEM) + b"\xff\xff\xff\xff" + item_body + tag_bytes(ITEM_END) + bytes(4)
            body = item + tag_bytes(SEQ_END) + bytes(4)
            length = b"\xff\xff\xff\xff"
        else:
            item = tag_bytes(ITEM) + struct.pack(e + "I", len(item_body)) + item_body
            body = item
            length = struct.pack(e + "I", len(body))
        vr = b"" if implicit else b"SQ\0\0"
        inner = tag_bytes(seq_tag) + vr + length + body
    return inner
