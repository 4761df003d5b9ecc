"""Fuzz the DICOM path (``workers.dicom.decode`` and what it delegates to: ECG waveform, SR).

Seeds are real files from ``shared/data`` (CT/MR/CR slices, a JPEG 2000 CT slice, a 12-lead
waveform, a Basic Text SR, a DICOMDIR) plus real files re-encoded with pydicom (implicit VR,
big endian, deflated). Mutations: truncation, byte flips/inserts/deletes/duplicates, wrong
element and item lengths, huge declared sizes (Rows/Columns/frames/bits), bogus transfer syntax
UIDs, deeply nested sequences, odd values of pixel/geometry/charset/date/UID attributes,
replaced pixel data, gzip wrapping. Every case must be decoded or quarantined (``harness``).
"""

from __future__ import annotations

import io
import struct
from functools import cache

import numpy as np
import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.filewriter import dcmwrite
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from schemas.records import InputKind
from tests.fuzz.harness import EXAMPLES, CaseDir, fuzz_ctx, fuzz_settings, reached, run_case
from tests.fuzz.mutate import (
    FRAC,
    apply_byte_op,
    byte_op,
    dicom_layout,
    gzip_bytes,
    nested_sequence,
    put_element,
    set_element,
    set_length,
    set_transfer_syntax,
)

CT_SERIES = (
    "dicom/ct/totalsegmentator_siemens_ct_series/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016573"
)
#: (name, relative path in shared/data, re-encoding or None); repeated names weight the draw
SEEDS = (
    ("ct_small", "dicom/ct/CT_small.dcm", None),
    ("mr_small", "dicom/mr/MR_small.dcm", None),
    ("cr_mono1", "dicom/dicomdir_sample/77654033/CR1/6154", None),
    ("ct_head", "dicom/dicomdir_sample/77654033/CT2/17106", None),
    ("ct_j2k", CT_SERIES, None),
    ("ecg_waveform", "ecg/dicom_waveform/waveform_ecg.dcm", None),
    ("sr_text", "reports/dicom_sr/reportsi.dcm", None),
    ("dicomdir", "dicom/dicomdir_sample/DICOMDIR_full_tree_reference", None),
    ("ct_implicit", "dicom/ct/CT_small.dcm", "implicit"),
    ("mr_big_endian", "dicom/mr/MR_small.dcm", "big_endian"),
    ("cr_deflated", "dicom/dicomdir_sample/77654033/CR2/6247", "deflated"),
)
SEED_WEIGHTS = (3, 2, 3, 2, 2, 1, 1, 1, 2, 2, 2)
if EXAMPLES >= 5000:  # nightly: the large multi-frame and JPEG 2000 lossy files too
    SEEDS += (
        ("enhanced_ct", "dicom/ct/eCT_Supplemental.dcm", None),
        ("cxr_j2k_lossy", "dicom/cxr/RG1_J2KI.dcm", None),
    )
    SEED_WEIGHTS += (1, 1)

TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.100",
    "1.2.3.4.5.6.7.8.9",
    "",
    "not-a-uid",
    "1.2.840.10008.1.2.1" + ".0" * 30,
)

US = ("US", (0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 31, 32, 33, 64, 255, 256, 4096, 32767, 32768, 65535))
IS = ("IS", ("0", "-1", "1", "2", "3", "12", "99999999", "2147483648", "abc", "1.5", "", " 3 ", "1\\2"))
DS = (
    "DS",
    ("NaN", "inf", "-inf", "0", "-1", "1e308", "-1e308", "1e-308", "abc", "", "1\\2\\3", "1\\0\\0\\0\\1\\0")
    + ("0\\0\\0\\0\\0\\0", "1\\1\\1\\1\\1\\1", "0.5\\0.5", "-3\\2", "1" * 16, "1\\NaN\\3", "1e5\\-1e5"),
)
PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR", "YBR_ICT")
CS_PHOTO = ("CS", PHOTOMETRIC + ("YBR_RCT", "HSV", "ARGB", "", "X" * 16))
_SOP = "1.2.840.10008.5.1.4.1.1."
UI_SOP = (
    "UI",
    tuple(_SOP + s for s in ("2", "4", "1", "1.1", "7", "6.1", "9.1.1", "9.1.2", "88.11", "88.33"))
    + tuple(_SOP + s for s in ("66.4", "481.2", "11.1", "2.1", "4.1", "128", "104.1"))
    + ("1.2.840.10008.1.3.10", "", "garbage", "1.2.3", "1." * 40),
)
UI_ANY = ("UI", ("", "1.2.3", "garbage\\x", "1." * 40, "2.25.1234567890123456789012345678901234567890"))
CS_MODALITY = ("CS", ("CT", "MR", "CR", "DX", "US", "SC", "ECG", "SR", "PT", "OT", "", "ct", "X" * 16))
CS_CHARSET = (
    "CS",
    ("ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 87", "GB18030", "ISO_IR 100\\ISO 2022 IR 149", "bogus", ""),
)
CS_YESNO = ("CS", ("YES", "NO", "", "yes", "MAYBE"))
DATES = ("DA", ("00010101", "99991231", "20231345", "2023-01-01", "", "abc", "19000101", "1", "20240229"))
TIMES = ("TM", ("250000", "000000.000000", "", "12", "ab:cd", "235959.999999999", "-1"))
DTIMES = ("DT", ("00010101000000", "99991231235959.999999+1400", "2023", "", "xyz", "20230101-2500"))
NAMES = (
    "PN",
    (b"", b"Doe^John", b"\xff\xfe\xfd", b"A" * 4000, b"=\x1b$B;3ED\x1b(B^=", b"^^^^^^^^", b"\x00" * 8),
)
AGE = ("AS", ("120Y", "999D", "abc", "", "089Y", "000D"))
LO_TEXT = ("LO", (b"", b"\xc3\x28", b"x" * 64, b"Contact 555-867-5309", b"\x00\x01\x02"))

#: (tag, (VR, values)) of attributes whose values steer the decoder
ATTRIBUTES = (
    (0x00280010, US),  # Rows
    (0x00280011, US),  # Columns
    (0x00280100, US),  # BitsAllocated
    (0x00280101, US),  # BitsStored
    (0x00280102, US),  # HighBit
    (0x00280103, US),  # PixelRepresentation
    (0x00280002, US),  # SamplesPerPixel
    (0x00280006, US),  # PlanarConfiguration
    (0x00280008, IS),  # NumberOfFrames
    (0x00280004, CS_PHOTO),
    (0x00281052, DS),  # RescaleIntercept
    (0x00281053, DS),  # RescaleSlope
    (0x00281050, DS),  # WindowCenter
    (0x00281051, DS),  # WindowWidth
    (0x00280030, DS),  # PixelSpacing
    (0x00200032, DS),  # ImagePositionPatient
    (0x00200037, DS),  # ImageOrientationPatient
    (0x00180050, DS),  # SliceThickness
    (0x00080016, UI_SOP),  # SOPClassUID
    (0x0020000E, UI_ANY),  # SeriesInstanceUID
    (0x0020000D, UI_ANY),  # StudyInstanceUID
    (0x00080060, CS_MODALITY),
    (0x00080005, CS_CHARSET),
    (0x00280301, CS_YESNO),  # BurnedInAnnotation
    (0x00080020, DATES),  # StudyDate
    (0x00100030, DATES),  # PatientBirthDate
    (0x00080023, DATES),  # ContentDate
    (0x00080030, TIMES),  # StudyTime
    (0x0008002A, DTIMES),  # AcquisitionDateTime
    (0x00100010, NAMES),  # PatientName
    (0x00100020, LO_TEXT),  # PatientID
    (0x00101010, AGE),  # PatientAge
    (0x00181030, LO_TEXT),  # ProtocolName
)


def _encode_value(vr: str, value, little: bool) -> bytes:
    if vr == "US":
        return struct.pack("<H" if little else ">H", value)
    raw = value if isinstance(value, bytes) else value.encode("latin-1")
    if len(raw) % 2:
        raw += b"\0" if vr == "UI" else b" "
    return raw


@cache
def seed_file(shared_data, name: str) -> bytes:
    """The seed's bytes (real file, or the real file re-encoded by pydicom)."""
    rel, how = next((r, h) for n, r, h in SEEDS if n == name)
    path = shared_data / rel
    if how is None:
        return path.read_bytes()
    ds = pydicom.dcmread(path)
    buf = io.BytesIO()
    if how == "implicit":
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(buf, enforce_file_format=True)
    elif how == "deflated":
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(buf, enforce_file_format=True)
    else:  # big endian: pydicom writes pixel bytes as given, so swap them first
        arr = ds.pixel_array
        ds.PixelData = arr.astype(arr.dtype.newbyteorder(">")).tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        dcmwrite(buf, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    return buf.getvalue()


@cache
def seed_layout(shared_data, name: str):
    return dicom_layout(seed_file(shared_data, name))


attr_op = st.tuples(
    st.just("attr"), st.integers(0, len(ATTRIBUTES) - 1), st.integers(0, 63), st.integers(0, 65535)
)
length_op = st.tuples(
    st.just("length"),
    st.integers(0, 1 << 16),
    st.integers(0, 63),
    st.sampled_from(["meta", "dataset", "item"]),
)
ts_op = st.tuples(st.just("transfer_syntax"), st.sampled_from(TRANSFER_SYNTAXES))
nest_op = st.tuples(
    st.just("nest"),
    st.sampled_from([0x00081120, 0x0040A730, 0x00400275, 0x00091010]),
    st.integers(1, 400),
    st.booleans(),
)
pixel_op = st.tuples(
    st.just("pixels"), st.sampled_from(["empty", "cut", "extend", "random"]), FRAC, st.binary(max_size=64)
)
#: structure-aware edits first (they need the intact seed layout), then generic byte edits
dicom_cases = st.tuples(
    st.sampled_from([n for (n, _, _), w in zip(SEEDS, SEED_WEIGHTS, strict=True) for _ in range(w)]),
    st.lists(st.one_of(attr_op, length_op, ts_op, nest_op, pixel_op), max_size=3),
    st.lists(byte_op, max_size=3),
    st.integers(0, 9),  # 0: gzip-wrap the result
    st.integers(0, 3),  # 0: byte edits may touch the preamble and "DICM" magic too
)


def _apply_structural(data: bytes, layout, op: tuple) -> bytes:
    kind = op[0]
    if kind == "attr":
        _, index, choice, raw_us = op
        tag, (vr, values) = ATTRIBUTES[index]
        value = values[choice % len(values)] if choice < 60 or vr != "US" else raw_us
        return set_element(data, layout, tag, vr, _encode_value(vr, value, layout.little))
    if kind == "length":
        _, index, choice, which = op
        return set_length(data, layout, index, choice, which)
    if kind == "transfer_syntax":
        return set_transfer_syntax(data, layout, op[1])
    if kind == "nest":
        _, tag, depth, undefined = op
        if tag == 0x00091010:  # private: add its creator first
            data = set_element(data, layout, 0x00090010, "LO", b"FUZZ CREATOR")
            layout = dicom_layout_or_none(data) or layout
        seq = nested_sequence(tag, depth, undefined, layout.implicit, layout.little)
        return put_element(data, layout, tag, seq)
    if kind == "pixels":
        _, how, frac, extra = op
        pix = next((el for el in layout.elements if el.tag == 0x7FE00010), None)
        if pix is None or pix.length == 0xFFFFFFFF:
            return data
        old = data[pix.value_off : pix.value_off + pix.length]
        new = {
            "empty": b"",
            "cut": old[: frac * len(old) // 65536],
            "extend": old + extra * (1 + frac % 64),
            "random": np.random.default_rng(frac).integers(0, 256, len(old), dtype=np.uint8).tobytes(),
        }[how]
        if len(new) % 2:
            new += b"\0"
        return set_element(data, layout, 0x7FE00010, pix.vr.decode() or "OW", new)
    raise ValueError(kind)


def dicom_layout_or_none(data: bytes):
    try:
        return dicom_layout(data)
    except Exception:  # noqa: BLE001 - a mutated file need not parse
        return None


def mutate_dicom(shared_data, case) -> bytes:
    name, structural, byte_ops, wrap, touch_magic = case
    data = seed_file(shared_data, name)
    layout = seed_layout(shared_data, name)
    for op in structural:
        data = _apply_structural(data, layout, op)
        layout = dicom_layout_or_none(data)
        if layout is None:
            break
    keep = 0 if touch_magic == 0 else min(132, len(data))
    head, body = data[:keep], data[keep:]
    for op in byte_ops:
        body = apply_byte_op(body, op)
    data = head + body
    return gzip_bytes(data) if wrap == 0 else data


def test_seeds_decode_unmutated(shared_data, tmp_path):
    """Control: every seed (re-encodings included) decodes to records, not quarantine."""
    ctx = fuzz_ctx()
    for name, _, _ in SEEDS:
        with CaseDir(tmp_path) as case:
            (case.folder / name).write_bytes(seed_file(shared_data, name))
            ((item, out),) = run_case("dicom-seeds", case.folder, ctx)
        reasons = [getattr(r, "reason", None) for r in out]
        expected_quarantine = {"dicomdir": "dicom_directory"}
        if name in expected_quarantine:
            assert [r.value for r in reasons] == [expected_quarantine[name]]
        else:
            assert reasons == [None] * len(out), (name, reasons)


def test_fuzz_dicom(shared_data, tmp_path):
    """Mutated real DICOM files: decoded or quarantined, never a crash, never a hang."""
    ctx = fuzz_ctx()
    before = reached("dicom", InputKind.DICOM)

    @fuzz_settings(reach=0.8)
    @given(case=dicom_cases)
    def one_case(case):
        data = mutate_dicom(shared_data, case)
        with CaseDir(tmp_path) as d:
            (d.folder / "image_QzxFuzz.dcm").write_bytes(data)
            run_case("dicom", d.folder, ctx)

    one_case()
    assert reached("dicom", InputKind.DICOM) - before >= EXAMPLES


@pytest.mark.parametrize("depth", [64, 400, 2000])
def test_deeply_nested_sequences_are_quarantined_or_decoded(shared_data, tmp_path, depth):
    """Nesting depth beyond any real object (the recursion limit of a naive walker)."""
    name = "ct_small"
    data = seed_file(shared_data, name)
    for undefined in (True, False):
        mutated = _apply_structural(
            data, seed_layout(shared_data, name), ("nest", 0x0040A730, depth, undefined)
        )
        with CaseDir(tmp_path) as d:
            (d.folder / "nested.dcm").write_bytes(mutated)
            ((_, out),) = run_case("dicom-nesting", d.folder, fuzz_ctx())
        assert out
