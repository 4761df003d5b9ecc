"""Fuzz the NIfTI path (``workers.volume.nifti.decode_nifti``).

Seeds are the real volumes of ``shared/data/nifti``: the 4-D fMRI file as is, and crops of the
TotalSegmentator CT and of the 4-D example re-saved by nibabel as NIfTI-1 (``.nii``, ``.nii.gz``,
big endian) and NIfTI-2. Mutations: any header field (element-wise, by nibabel's own header
dtype, so offsets and byte order are right for both versions) set to edge values — dims (zero,
negative, > 7, huge), datatype/bitpix (unknown, RGB, complex), vox_offset (0, inside the
header, huge, NaN), scl_slope/scl_inter (NaN, inf, 0), pixdim, qform/sform codes and matrices —
header extensions with bad sizes, generic byte edits, and edits of the gzip stream itself.
"""

from __future__ import annotations

import gzip
import io
import struct
from functools import cache

import nibabel as nib
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from schemas.records import InputKind
from tests.fuzz.harness import EXAMPLES, CaseDir, fuzz_ctx, fuzz_settings, reached, run_case
from tests.fuzz.mutate import apply_byte_op, byte_op

#: name → (relative path, how it is re-encoded); repeated names in the draw weight it
SEEDS = {
    "functional": ("nifti/nibabel_functional.nii", None),
    "ct_crop": ("nifti/totalsegmentator_example_ct.nii.gz", "crop"),
    "ct_crop_gz": ("nifti/totalsegmentator_example_ct.nii.gz", "crop_gz"),
    "fmri4d_nifti2": ("nifti/nibabel_example4d.nii.gz", "nifti2"),
    "functional_big_endian": ("nifti/nibabel_functional.nii", "big_endian"),
}
SEED_DRAW = [
    "functional",
    "functional",
    "ct_crop",
    "ct_crop",
    "ct_crop_gz",
    "fmri4d_nifti2",
    "functional_big_endian",
]
INTS = (0, 1, -1, 2, 3, 4, 7, 8, 9, 16, 255, 256, 348, 352, 540, 544, 32767, -32768, 2**31 - 1, -(2**31))
FLOATS = (
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    2.0,
    352.0,
    1e9,
    1e38,
    -1e38,
    1e-38,
    float("nan"),
    float("inf"),
    float("-inf"),
)
DATATYPES = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 3, 9999, -1)
#: fields drawn more often (they steer allocation, reading and orientation)
HOT = (
    "dim",
    "datatype",
    "bitpix",
    "vox_offset",
    "scl_slope",
    "scl_inter",
    "pixdim",
    "qform_code",
    "sform_code",
)


@cache
def seed_file(shared_data, name: str) -> bytes:
    rel, how = SEEDS[name]
    path = shared_data / rel
    if how is None:
        return path.read_bytes()
    img = nib.load(path)
    if how in ("crop", "crop_gz"):
        out = img.slicer[50:74, 40:60, 40:56]
        out = nib.Nifti1Image(np.asanyarray(out.dataobj), out.affine, out.header)
    elif how == "nifti2":
        small = img.slicer[40:60, 30:50, 4:20, :]
        out = nib.Nifti2Image(np.asanyarray(small.dataobj), small.affine)
    else:  # big endian: nibabel writes the header's byte order
        hdr = img.header.as_byteswapped(">")
        out = nib.Nifti1Image(np.asanyarray(img.dataobj).astype(">i2"), img.affine, hdr)
    raw = out.to_bytes()
    return gzip.compress(raw, mtime=0) if how == "crop_gz" else raw


def suffix(name: str) -> str:
    return ".nii.gz" if name.endswith("_gz") else ".nii"


def _header_layout(raw: bytes):
    """(header dtype, byte order) of an intact NIfTI-1/2 header."""
    for order in ("<", ">"):
        size = struct.unpack(order + "i", raw[:4])[0]
        if size == 348:
            return nib.nifti1.header_dtype.newbyteorder(order), order
        if size == 540:
            return nib.nifti2.header_dtype.newbyteorder(order), order
    raise ValueError("not a NIfTI seed")


def set_field(raw: bytes, layout, field_index: int, element: int, choice: int, hot: bool) -> bytes:
    """Set one element of one header field to an edge value (``layout``: the seed's header
    dtype and byte order, see :func:`_header_layout`)."""
    dtype, _ = layout
    # sizeof_hdr and magic last: small indices are drawn most often, and these two turn the
    # file into "not NIfTI" for discovery rather than exercising the decoder
    names = (
        HOT if hot else [n for n in dtype.names if n not in ("sizeof_hdr", "magic")] + ["sizeof_hdr", "magic"]
    )
    name = names[field_index % len(names)]
    ftype, offset = dtype.fields[name][:2]
    base, count = (ftype.subdtype[0], ftype.subdtype[1][0]) if ftype.subdtype else (ftype, 1)
    offset += (element % count) * base.itemsize
    if base.kind in "iu":
        pool = DATATYPES if name == "datatype" else INTS
        value = pool[choice % len(pool)]
        info = np.iinfo(base)
        encoded = np.array(min(max(value, info.min), info.max), dtype=base).tobytes()
    elif base.kind == "f":
        with np.errstate(over="ignore"):
            encoded = np.array(FLOATS[choice % len(FLOATS)], dtype=base).tobytes()
    else:  # strings (magic, descrip, ...): garbage, empty, or another version's magic
        pool = (b"", b"n+1\0", b"ni1\0", b"n+2\0\r\n\x1a\n", b"\xff" * 8, b"Patient QZX 555-0101")
        encoded = pool[choice % len(pool)].ljust(base.itemsize, b"\0")[: base.itemsize]
    return raw[:offset] + encoded + raw[offset + len(encoded) :]


def add_extension(raw: bytes, layout, esize_choice: int, ecode: int, shift_offset: bool) -> bytes:
    """Set the extension flag and insert one extension (maybe with a lying ``esize``)."""
    dtype, order = layout
    hsize = dtype.itemsize
    esizes = (16, 32, 8, 0, 15, -16, 2**31 - 1, 1 << 20)
    esize = esizes[esize_choice % len(esizes)]
    body = b"(0010,0010) PatientName QZX^Fuzz".ljust(24, b"\0")
    ext = struct.pack(order + "ii", esize, ecode) + body
    out = raw[:hsize] + b"\x01\0\0\0" + ext + raw[hsize + 4 :]
    if shift_offset:
        ftype, offset = dtype.fields["vox_offset"][:2]
        current = np.frombuffer(raw, dtype=ftype, count=1, offset=offset)[0]
        moved = np.array(current + len(ext), dtype=ftype).tobytes()
        out = out[:offset] + moved + out[offset + len(moved) :]
    return out


field_op = st.tuples(
    st.just("field"), st.integers(0, 63), st.integers(0, 7), st.integers(0, 63), st.booleans()
)
extension_op = st.tuples(
    st.just("extension"), st.integers(0, 7), st.sampled_from([0, 2, 4, 6, 40, -1]), st.booleans()
)
nifti_cases = st.tuples(
    st.sampled_from(SEED_DRAW),
    st.lists(st.one_of(field_op, field_op, extension_op), max_size=4),
    st.lists(byte_op, max_size=2),
    st.sampled_from(["inner", "inner", "inner", "stream"]),  # gzip seeds: edit the payload or the stream
    st.integers(0, 3),  # 0: byte edits may touch sizeof_hdr (the first 8 bytes) too
)


def mutate_nifti(shared_data, case) -> bytes:
    name, header_ops, byte_ops, where, touch_start = case
    data = seed_file(shared_data, name)
    gz = name.endswith("_gz")
    raw = gzip.decompress(data) if gz else data
    layout = _header_layout(raw)
    for op in header_ops:
        if op[0] == "field":
            raw = set_field(raw, layout, *op[1:])
        else:
            raw = add_extension(raw, layout, *op[1:])
    if gz and where == "stream":
        data = gzip.compress(raw, mtime=0)
        for op in byte_ops:
            data = apply_byte_op(data, op)
        return data
    keep = 0 if touch_start == 0 else 8
    head, body = raw[:keep], raw[keep:]
    for op in byte_ops:
        body = apply_byte_op(body, op)
    raw = head + body
    return gzip.compress(raw, mtime=0) if gz else raw


def test_seeds_decode_unmutated(shared_data, tmp_path):
    """Control: every seed (re-encodings included) decodes to volume records."""
    ctx = fuzz_ctx()
    for name in SEEDS:
        with CaseDir(tmp_path) as case:
            (case.folder / f"vol{suffix(name)}").write_bytes(seed_file(shared_data, name))
            ((item, out),) = run_case("nifti-seeds", case.folder, ctx)
        assert out and all(type(r).__name__ == "VolumeRecord" for r in out), (name, out)


def test_fuzz_nifti(shared_data, tmp_path):
    """Mutated real NIfTI files: decoded or quarantined, never a crash, never a hang."""
    ctx = fuzz_ctx()
    before = reached("nifti", InputKind.NIFTI)

    @fuzz_settings(reach=0.65)
    @given(case=nifti_cases)
    def one_case(case):
        data = mutate_nifti(shared_data, case)
        with CaseDir(tmp_path) as d:
            (d.folder / f"scan_QzxFuzz{suffix(case[0])}").write_bytes(data)
            run_case("nifti", d.folder, ctx)

    one_case()
    assert reached("nifti", InputKind.NIFTI) - before >= EXAMPLES


def test_header_edits_change_the_outcome(shared_data, tmp_path):
    """The mutators reach the decoder: a huge dim is a limit, a bad datatype a header error."""
    ctx = fuzz_ctx()
    raw = seed_file(shared_data, "ct_crop")
    dtype, _ = _header_layout(raw)
    dims = list(np.frombuffer(raw, dtype="<i2", count=8, offset=40))
    dims[1:4] = [32767, 32767, 32767]
    huge = raw[:40] + np.array(dims, dtype="<i2").tobytes() + raw[56:]
    with CaseDir(tmp_path) as d:
        (d.folder / "huge.nii").write_bytes(huge)
        ((_, out),) = run_case("nifti-controls", d.folder, ctx)
    assert [r.reason.value for r in out] == ["limit_exceeded"]
    bad = set_field(raw, (dtype, "<"), HOT.index("datatype"), 0, DATATYPES.index(9999), True)
    with CaseDir(tmp_path) as d:
        (d.folder / "bad.nii").write_bytes(bad)
        ((_, out),) = run_case("nifti-controls", d.folder, ctx)
    assert [r.reason.value for r in out] == ["volume_header_invalid"]
    assert io.BytesIO(raw).read(4) == struct.pack("<i", 348) and dtype.itemsize == 348
