"""Minimal reproductions of the bugs the fuzz suite found, one per bug, on the real seed files.

Each was an exception other than ``QuarantineError`` (a crash of a strict build), a hang, a
lost input or an unbounded allocation before its fix. They run in milliseconds, so they stay
in the quick suite whatever cases a future Hypothesis version draws.
"""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pydicom
import pytest

from schemas.records import InputItem, InputKind
from tests.fuzz.harness import CaseDir, check_accounted, fuzz_ctx, run_case
from tests.fuzz.mutate import dicom_layout, nested_sequence, put_element, set_element
from tests.fuzz.test_fuzz_dicom import seed_file

CT_SMALL = "dicom/ct/CT_small.dcm"
CR_16 = "dicom/dicomdir_sample/77654033/CR1/6154"


def outcome(shared_data, tmp_path, files: dict[str, bytes]) -> list[str]:
    """Write ``files`` into a case folder, discover + decode strictly, return the outcomes."""
    with CaseDir(tmp_path) as d:
        for name, data in files.items():
            (d.folder / name).write_bytes(data)
        results = run_case("regressions", d.folder, fuzz_ctx())
    return [r.reason.value if hasattr(r, "reason") else type(r).__name__ for _, out in results for r in out]


def _dicom_with(shared_data, rel: str, **attrs) -> bytes:
    ds = pydicom.dcmread(shared_data / rel)
    for kw, value in attrs.items():
        setattr(ds, kw, value)
    from io import BytesIO

    buf = BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


# --- DICOM ------------------------------------------------------------------------------------


@pytest.mark.parametrize("undefined", [True, False])
def test_dicom_sequences_nested_deeper_than_32_levels(shared_data, tmp_path, undefined):
    """Was: RecursionError in the de-identifier's deepcopy at ~140 levels."""
    data = (shared_data / CT_SMALL).read_bytes()
    for depth, expected in ((32, "SeriesSlice"), (33, "dicom_corrupt"), (150, "dicom_corrupt")):
        seq = nested_sequence(0x0040A730, depth, undefined, implicit=False, little=True)
        mutated = put_element(data, dicom_layout(data), 0x0040A730, seq)
        assert outcome(shared_data, tmp_path, {"nested.dcm": mutated}) == [expected], depth


def test_dicom_date_in_year_one(shared_data, tmp_path):
    """Was: OverflowError shifting 0001-01-01 back by the patient's offset (identity and de-id)."""
    data = _dicom_with(
        shared_data, CT_SMALL, StudyDate="00010101", AcquisitionDate="00010101", ContentDate="00010101"
    )
    with CaseDir(tmp_path) as d:
        (d.folder / "ct.dcm").write_bytes(data)
        ((_, (rec,)),) = run_case("regressions", d.folder, fuzz_ctx())
    assert type(rec).__name__ == "SeriesSlice" and rec.acquired_at == ""
    assert "00010101" not in rec.meta_json  # an unshiftable date is emptied, not kept


def test_dicom_rows_smaller_than_the_pixel_data(shared_data, tmp_path):
    """Was: TypeError in Pillow (pydicom returned 16 'excess' frames of 1 x 16 for Rows=1)."""
    assert outcome(shared_data, tmp_path, {"cr": _dicom_with(shared_data, CR_16, Rows=1)}) == [
        "dicom_corrupt"
    ]


@pytest.mark.parametrize("slope", ["1\\2\\3", "", "NaN"])
def test_dicom_rescale_slope_not_a_single_finite_number(shared_data, tmp_path, slope):
    """Was: ValueError (broadcast) / TypeError (None) in the Modality LUT."""
    data = _dicom_with(shared_data, CT_SMALL)
    layout = dicom_layout(data)
    mutated = set_element(data, layout, 0x00281053, "DS", slope.encode().ljust(len(slope) + len(slope) % 2))
    assert outcome(shared_data, tmp_path, {"ct.dcm": mutated}) == ["dicom_corrupt"]


@pytest.mark.parametrize("rel,kind", [(CT_SMALL, "SeriesSlice"), (CR_16, "ImageRecord")])
def test_dicom_window_center_not_a_number(shared_data, tmp_path, rel, kind):
    """Was: ValueError storing a CT slice's render attributes; the window is now ignored and
    the rendition falls back to the min/max of the image."""
    data = _dicom_with(shared_data, rel)
    mutated = set_element(data, dicom_layout(data), 0x00281050, "DS", b"abc ")
    with CaseDir(tmp_path) as d:
        (d.folder / "img").write_bytes(mutated)
        ((_, (rec,)),) = run_case("regressions", d.folder, fuzz_ctx())
    assert type(rec).__name__ == kind
    assert "WindowCenter" not in json.loads(rec.meta_json).get("render", {})


def test_dicom_unknown_vr(shared_data, tmp_path):
    """Was: NotImplementedError ('Unknown Value Representation') raised lazily inside de-id."""
    data = bytearray((shared_data / CT_SMALL).read_bytes())
    el = next(e for e in dicom_layout(bytes(data)).elements if e.vr == b"LO")
    data[el.start + 4 : el.start + 6] = b"MO"
    assert outcome(shared_data, tmp_path, {"ct.dcm": bytes(data)}) == ["dicom_corrupt"]


def test_dicom_unknown_vr_in_the_file_meta(shared_data, tmp_path):
    """Was: NotImplementedError raised when de-identification copied the file meta elements."""
    data = bytearray((shared_data / CR_16).read_bytes())
    el = next(e for e in dicom_layout(bytes(data)).meta if e.tag == 0x00020012)  # Implementation Class UID
    data[el.start + 4 : el.start + 6] = b"TI"
    assert outcome(shared_data, tmp_path, {"cr": bytes(data)}) == ["dicom_corrupt"]


def test_dicom_deflated_file_with_a_garbled_transfer_syntax_element(shared_data, tmp_path):
    """Was: NotImplementedError from the deflate-bomb check reading the file meta."""
    data = bytearray(seed_file(shared_data, "cr_deflated"))
    el = next(e for e in dicom_layout(bytes(data)).meta if e.tag == 0x00020010)
    data[el.start + 4 : el.start + 6] = b"TI"
    assert outcome(shared_data, tmp_path, {"cr": bytes(data)}) == ["dicom_corrupt"]


def test_dicom_colour_photometric_on_a_grey_image(shared_data, tmp_path):
    """Was: IndexError building the record of a 1-sample image labelled RGB."""
    data = _dicom_with(shared_data, CR_16, PhotometricInterpretation="RGB")
    assert outcome(shared_data, tmp_path, {"cr": data}) == ["dicom_corrupt"]


def test_dicom_palette_color_without_lookup_table(shared_data, tmp_path):
    """Was: ValueError 'No suitable Palette Color Lookup Table Module found'."""
    data = _dicom_with(shared_data, CR_16, PhotometricInterpretation="PALETTE COLOR")
    assert outcome(shared_data, tmp_path, {"cr": data}) == ["dicom_corrupt"]


# --- NIfTI ------------------------------------------------------------------------------------


def _nifti_field(raw: bytes, name: str, value, index: int = 0) -> bytes:
    import nibabel as nib

    dtype = nib.nifti1.header_dtype if struct.unpack("<i", raw[:4])[0] == 348 else nib.nifti2.header_dtype
    ftype, offset = dtype.fields[name][:2]
    base = ftype.subdtype[0] if ftype.subdtype else ftype
    offset += index * base.itemsize
    encoded = np.array(value, dtype=base).tobytes()
    return raw[:offset] + encoded + raw[offset + len(encoded) :]


@pytest.mark.parametrize(
    "name,value,index,expected",
    [
        ("vox_offset", float("inf"), 0, "volume_header_invalid"),  # was OverflowError in nibabel
        ("vox_offset", 1e30, 0, "volume_data_corrupt"),  # was OverflowError in numpy.memmap
        ("scl_slope", 1e38, 0, "volume_values_implausible"),  # was non-finite JSON (float32 overflow)
        ("pixdim", float("nan"), 4, "VolumeRecord"),  # time step NaN: was non-finite JSON in meta
    ],
)
def test_nifti_header_values(shared_data, tmp_path, name, value, index, expected):
    raw = (shared_data / "nifti/nibabel_functional.nii").read_bytes()
    assert outcome(shared_data, tmp_path, {"f.nii": _nifti_field(raw, name, value, index)}) == [expected]


def test_nifti2_unknown_units_code(shared_data, tmp_path):
    """Was: KeyError from nibabel's get_xyzt_units for a code NIfTI does not define."""
    import nibabel as nib

    img = nib.load(shared_data / "nifti/nibabel_functional.nii")
    raw = nib.Nifti2Image(np.asanyarray(img.dataobj), img.affine).to_bytes()
    assert outcome(shared_data, tmp_path, {"f.nii": _nifti_field(raw, "xyzt_units", 64)}) == [
        "volume_header_invalid"
    ]


# --- WFDB -------------------------------------------------------------------------------------


def _wfdb(shared_data, first_line: str | None = None, extra_lines: list[str] | None = None):
    src = shared_data / "ecg/wfdb/ptbxl_100hz"
    lines = (src / "00001_lr.hea").read_text().splitlines()
    if first_line is not None:
        lines[0] = first_line
    if extra_lines is not None:
        lines[1:] = extra_lines
    return {
        "00001_lr.hea": ("\n".join(lines) + "\n").encode(),
        "00001_lr.dat": (src / "00001_lr.dat").read_bytes(),
    }


def test_wfdb_absurd_sampling_rate(shared_data, tmp_path):
    """Was: OverflowError converting the window of a 1e308 Hz record to an int. Now the rate is
    implausible, or (when the record is long enough) the window exceeds the sample limit."""
    assert outcome(shared_data, tmp_path, _wfdb(shared_data, "00001_lr 12 1e308 1000")) == [
        "ecg_header_invalid"
    ]
    long = _wfdb(shared_data, "00001_lr 12 1e308 5000000000")
    assert outcome(shared_data, tmp_path, long) == ["limit_exceeded"]


def test_wfdb_base_date_in_year_one_with_a_patient(shared_data, tmp_path):
    """Was: OverflowError shifting a year-1 base date once a comment names the patient."""
    files = _wfdb(shared_data, "00001_lr 12 100 1000 12:00:00 01/01/0001")
    files["00001_lr.hea"] += b"# Patient ID: 123456\n"
    with CaseDir(tmp_path) as d:
        for name, data in files.items():
            (d.folder / name).write_bytes(data)
        ((_, (rec,)),) = run_case("regressions", d.folder, fuzz_ctx())
    assert type(rec).__name__ == "EcgRecord" and rec.patient and rec.acquired_at == ""
    assert json.loads(rec.meta_json)["deid"]["base_datetime"] == "dropped_out_of_range"


def test_wfdb_segment_that_is_itself_multisegment(shared_data, tmp_path):
    """Was: wfdb recursing ~1 s into RecursionError for a record naming itself as a segment.
    Decoded directly here; test_discovery_keeps_a_self_referencing_multisegment_header goes through discovery."""
    from pipelines.decode import DecodeTask, decode_item

    files = _wfdb(shared_data, "00001_lr/2 12 100 1000", ["00001_lr 1000", "~ 1000"])
    ctx = fuzz_ctx()
    with CaseDir(tmp_path) as d:
        for name, data in files.items():
            (d.folder / name).write_bytes(data)
        hea = d.folder / "00001_lr.hea"
        item = InputItem("f0123456789abcdef", str(hea), InputKind.WFDB, "fuzz", "test", hea.stat().st_size)
        out = decode_item(DecodeTask(item, ctx, strict=True, cache_dir=""))
    check_accounted(item, out, ctx)
    assert [r.reason.value for r in out] == ["ecg_header_invalid"]


# --- reports ----------------------------------------------------------------------------------


def test_jsonl_integer_beyond_the_conversion_limit(shared_data, tmp_path):
    """Was: ValueError (not JSONDecodeError) from json.loads on a 5000-digit integer."""
    lines = [json.dumps({"report": "Sinusrhythmus", "patient_id": "1"}), '{"report": ' + "1" * 5000 + "}"]
    lines.append(json.dumps({"report": "Vorhofflimmern", "patient_id": "2"}))
    files = {"r.jsonl": ("\n".join(lines) + "\n").encode()}
    assert outcome(shared_data, tmp_path, files) == ["ReportRecord", "report_unparseable", "ReportRecord"]


def test_json_lone_surrogate(shared_data, tmp_path):
    """Was: UnicodeEncodeError hashing/structuring text with a lone surrogate from a JSON escape."""
    files = {"r.jsonl": b'{"report": "Sinusrhythmus \\ud800 normales EKG", "patient_id": "\\udfff1"}\n'}
    with CaseDir(tmp_path) as d:
        (d.folder / "r.jsonl").write_bytes(files["r.jsonl"])
        ((_, (rec,)),) = run_case("regressions", d.folder, fuzz_ctx())
    assert type(rec).__name__ == "ReportRecord" and "?" in rec.text


# --- discovery (pipelines/discover.py) --------------------------------------------------------


def test_discovery_corrupt_gzip_stream(shared_data, tmp_path):
    data = bytearray(gzip.compress((shared_data / "nifti/nibabel_functional.nii").read_bytes(), mtime=0))
    data[18:18] = b"\0"  # one byte inserted into the deflate stream
    assert outcome(shared_data, tmp_path, {"f.nii.gz": bytes(data)}) == ["volume_data_corrupt"]


def test_discovery_first_jsonl_line_with_a_huge_integer(shared_data, tmp_path):
    files = {"r.jsonl": b'{"report": ' + b"1" * 5000 + b'}\n{"report": "Sinusrhythmus"}\n'}
    assert outcome(shared_data, tmp_path, files) == ["report_unparseable", "ReportRecord"]


def test_discovery_keeps_a_self_referencing_multisegment_header(shared_data, tmp_path):
    files = _wfdb(shared_data, "00001_lr/2 12 100 1000", ["00001_lr 1000", "~ 1000"])
    assert outcome(shared_data, tmp_path, files) == ["ecg_header_invalid"]


def test_discovery_first_jsonl_line_nested_deeply(shared_data, tmp_path):
    files = {
        "r.jsonl": b'{"report": ' + b"[" * 100_000 + b"]" * 100_000 + b'}\n{"report": "Sinusrhythmus"}\n'
    }
    assert outcome(shared_data, tmp_path, files) == ["report_unparseable", "ReportRecord"]
