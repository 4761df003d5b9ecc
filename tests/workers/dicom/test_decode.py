"""decode_dicom on real files: shared sample data, pydicom's own test files, and broken inputs.

Pixel values are checked against pydicom's own functions (``pixel_array``,
``apply_modality_lut``, ``apply_voi_lut``) on the same files. Shared helpers for the other
``tests/workers/dicom`` modules live here.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from schemas import (
    EcgRecord,
    ImageRecord,
    InputItem,
    InputKind,
    QuarantineError,
    QuarantineRecord,
    ReasonCode,
    SeriesSlice,
    VolumeRecord,
)
from schemas.canonical import canonical_json
from schemas.contract import MODALITY_SUFFIXES
from schemas.modality import Modality
from workers.config import ImageConfig, LimitsConfig
from workers.context import WorkerContext
from workers.deid.pseudonym import Pseudonymizer
from workers.dicom.decode import decode_dicom
from workers.dicom.series import assemble_series

SECRET = "test-secret-0123456789"


# ------------------------------------------------------------------------------------------
# shared helpers (imported by the other tests/workers/dicom modules)
# ------------------------------------------------------------------------------------------
def make_ctx(**kwargs) -> WorkerContext:
    return WorkerContext(pseudo=Pseudonymizer(SECRET), **kwargs)


def item_for(path: Path | str, ctx: WorkerContext, rel: str | None = None) -> InputItem:
    p = Path(path)
    return InputItem(
        source_id=ctx.pseudo.source_id(rel or p.name),
        path=str(p),
        kind=InputKind.DICOM,
        source_name="test-dicom",
        licence="MIT",
        size_bytes=p.stat().st_size,
    )


def decode(path: Path | str, ctx: WorkerContext, rel: str | None = None):
    return decode_dicom(item_for(path, ctx, rel), ctx)


def reason_of(path: Path | str, ctx: WorkerContext) -> ReasonCode:
    with pytest.raises(QuarantineError) as exc:
        decode(path, ctx)
    return exc.value.reason


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def load_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def payload(rec, suffix: str) -> bytes:
    return dict(rec.payload)[suffix]


def pydicom_file(name: str) -> str:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom test file {name} not available offline")
    return str(path)


def decode_tree(root: Path, ctx: WorkerContext, shared_root: Path):
    """Decode every file under ``root``; assemble the slices per series. Returns outcomes by path."""
    outcomes: dict[str, object] = {}
    slices: dict[str, list[SeriesSlice]] = defaultdict(list)
    for p in sorted(x for x in root.rglob("*") if x.is_file()):
        rel = str(p.relative_to(shared_root))
        try:
            recs = decode(p, ctx, rel)
        except QuarantineError as exc:
            outcomes[rel] = exc.reason
            continue
        outcomes[rel] = recs
        for r in recs:
            if isinstance(r, SeriesSlice):
                slices[r.series_key].append(r)
    assembled = {key: assemble_series(group, ctx) for key, group in slices.items()}
    return outcomes, assembled


# ------------------------------------------------------------------------------------------
# the shared sample data: every file becomes a record or a specific quarantine
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared_tree(shared_data):
    ctx = make_ctx()
    outcomes, assembled = decode_tree(shared_data / "dicom", ctx, shared_data)
    return ctx, outcomes, assembled


def _source_index(assembled) -> dict[str, list]:
    by_source: dict[str, list] = defaultdict(list)
    for recs in assembled.values():
        for r in recs:
            ids = (r.source_id,) if isinstance(r, QuarantineRecord) else r.source_ids
            for sid in ids:
                by_source[sid].append(r)
    return by_source


def test_every_shared_dicom_file_is_a_record_or_specific_quarantine(shared_data, shared_tree):
    ctx, outcomes, assembled = shared_tree
    files = sorted(str(p.relative_to(shared_data)) for p in (shared_data / "dicom").rglob("*") if p.is_file())
    assert sorted(outcomes) == files and len(files) == 32
    by_source = _source_index(assembled)
    for rel, outcome in outcomes.items():
        if isinstance(outcome, ReasonCode):
            assert outcome not in (ReasonCode.DECODER_ERROR, ReasonCode.UNSUPPORTED_FORMAT), rel
            continue
        assert outcome, rel
        for r in outcome:
            if isinstance(r, SeriesSlice):
                # accounted for exactly once after series assembly
                assert len(by_source[r.source_id]) == 1, rel
            else:
                assert isinstance(r, ImageRecord | VolumeRecord), rel

    def expect(rel: str):
        return outcomes[rel]

    assert expect("dicom/dicomdir_sample/DICOMDIR_full_tree_reference") == ReasonCode.DICOM_DIRECTORY
    for cr in ("CR1/6154", "CR2/6247", "CR3/6278"):
        (rec,) = expect(f"dicom/dicomdir_sample/77654033/{cr}")
        assert isinstance(rec, ImageRecord) and rec.photometric == "MONOCHROME1"
        assert rec.pixel_steps[-1] == "monochrome1_inversion"
    (ect,) = expect("dicom/ct/eCT_Supplemental.dcm")
    assert isinstance(ect, ImageRecord) and ect.frames == 2
    assert load_npy(payload(ect, "raw.npy")).shape == (2, 512, 512)
    (cxr,) = expect("dicom/cxr/RG1_J2KI.dcm")
    assert isinstance(cxr, ImageRecord) and (cxr.rows, cxr.columns) == (1955, 1841)
    for rel in ("dicom/ct/CT_small.dcm", "dicom/mr/MR_small.dcm"):
        (s,) = expect(rel)
        assert isinstance(s, SeriesSlice)
        (img,) = by_source[s.source_id]
        assert isinstance(img, ImageRecord)  # a lone slice is still a valid image

    # the 4 GE head slices of the DICOMDIR tree: 3 contiguous ones become a volume, the far one is a gap
    ct2 = [o[0] for rel, o in outcomes.items() if "/CT2/" in rel]
    (series,) = {s.series_key for s in ct2}
    kinds = sorted(type(r).__name__ for r in assembled[series])
    assert kinds == ["QuarantineRecord", "VolumeRecord"]
    (q,) = [r for r in assembled[series] if isinstance(r, QuarantineRecord)]
    assert q.reason == ReasonCode.SERIES_INCONSISTENT and "gap" in q.message


def test_record_contract_fields(shared_tree):
    ctx, outcomes, assembled = shared_tree
    records = [r for o in outcomes.values() if isinstance(o, list) for r in o if isinstance(r, ImageRecord)]
    records += [r for recs in assembled.values() for r in recs if isinstance(r, ImageRecord | VolumeRecord)]
    assert records
    for r in records:
        assert r.record_id == ctx.pseudo.token("record", "|".join(r.source_ids))
        assert tuple(s for s, _ in r.payload) == MODALITY_SUFFIXES[r.modality]
        meta = json.loads(r.meta_json)
        assert r.meta_json == canonical_json(meta)
        assert meta["deid"]["profile"].startswith("PS3.15 Annex E Basic")
        if r.modality == Modality.IMAGE:
            raw = load_npy(payload(r, "raw.npy"))
            from workers.dicom.pixels import array_sha256

            assert r.content_sha256 == array_sha256(raw)
            png = load_png(payload(r, "png"))
            assert png.dtype == np.uint8 and max(png.shape[:2]) == ctx.image.rendition_size
            assert list(png.shape) == meta["pixel"]["rendition_shape"]


def test_waveform_ecg_is_delegated(shared_data):
    ctx = make_ctx()
    path = shared_data / "ecg" / "dicom_waveform" / "waveform_ecg.dcm"
    try:
        recs = decode(path, ctx)
    except QuarantineError as exc:  # the ECG decoder's own verdict, never an imaging one
        assert exc.reason.value.startswith("ecg_"), exc.reason
        return
    assert recs and all(isinstance(r, EcgRecord) for r in recs)


def test_text_sr_is_delegated_or_unsupported(shared_data):
    ctx = make_ctx()
    path = shared_data / "reports" / "dicom_sr" / "reportsi.dcm"
    try:
        import workers.report.sr  # noqa: F401
    except ModuleNotFoundError:
        assert reason_of(path, ctx) == ReasonCode.DICOM_UNSUPPORTED_SOP
        return
    try:
        recs = decode(path, ctx)
    except QuarantineError as exc:
        assert exc.reason.value.startswith(("report_", "dicom_")), exc.reason
        return
    assert all(r.modality == Modality.REPORT for r in recs)


# ------------------------------------------------------------------------------------------
# pixel values against pydicom's own functions
# ------------------------------------------------------------------------------------------
def _expected_modality(ds: pydicom.Dataset) -> np.ndarray:
    return apply_modality_lut(ds.pixel_array, ds)


def test_monochrome1_chest_cr_has_bright_bones(shared_data):
    """RG1 (Philips CR, MONOCHROME1, JPEG 2000): rendition = inverted VOI output, exactly."""
    path = shared_data / "dicom" / "cxr" / "RG1_J2KI.dcm"
    ds = pydicom.dcmread(path)
    ctx = make_ctx(image=ImageConfig(rendition_size=max(ds.Rows, ds.Columns)))  # no resize
    (rec,) = decode(path, ctx)
    assert rec.pixel_steps == ("voi_lut:window", "monochrome1_inversion")
    raw = load_npy(payload(rec, "raw.npy"))
    np.testing.assert_array_equal(raw, _expected_modality(ds))
    # expected rendition from pydicom: window → [0, 2**BitsStored - 1], inverted, scaled to 8 bit
    y_max = 2**ds.BitsStored - 1
    windowed = apply_voi_lut(_expected_modality(ds), ds)
    expected = np.clip(np.floor((y_max - windowed) * 255.0 / y_max + 0.5), 0, 255).astype(np.uint8)
    png = load_png(payload(rec, "png"))
    np.testing.assert_array_equal(png, expected)
    # anatomy: the spine/mediastinum (central strip) is brighter than the lungs (left/right thirds)
    rows, cols = png.shape
    band = png[rows // 3 : 2 * rows // 3]
    centre = band[:, cols // 2 - cols // 20 : cols // 2 + cols // 20].mean()
    lungs = np.concatenate(
        [band[:, cols // 6 : cols // 3], band[:, 2 * cols // 3 : 5 * cols // 6]], axis=1
    ).mean()
    assert centre > lungs + 30


def test_modality_and_voi_lut_sequences_match_pydicom():
    """mlut_18: Modality LUT Sequence; vlut_04: VOI LUT Sequence (pydicom's reference files)."""
    for name, step in (("mlut_18.dcm", "modality_lut:lut_sequence"), ("vlut_04.dcm", "voi_lut:lut_sequence")):
        path = pydicom_file(name)
        ds = pydicom.dcmread(path)
        # secondary capture: burned-in by rule, allowed here to test the pixel pipeline
        ctx = make_ctx(image=ImageConfig(rendition_size=max(ds.Rows, ds.Columns), allow_burned_in=True))
        (rec,) = decode(path, ctx)
        assert step in rec.pixel_steps
        raw = load_npy(payload(rec, "raw.npy"))
        np.testing.assert_array_equal(raw, _expected_modality(ds))
        if name == "vlut_04.dcm":
            lut = np.asarray(ds.VOILUTSequence[0].LUTData)
            voi = apply_voi_lut(raw, ds).astype(np.float64)
            expected = np.clip(np.floor((voi - lut.min()) * 255.0 / (lut.max() - lut.min()) + 0.5), 0, 255)
            np.testing.assert_array_equal(load_png(payload(rec, "png")), expected.astype(np.uint8))


def test_cr_rescale_window_and_inversion_match_pydicom(shared_data):
    path = shared_data / "dicom" / "dicomdir_sample" / "77654033" / "CR1" / "6154"
    ds = pydicom.dcmread(path)
    ctx = make_ctx(image=ImageConfig(rendition_size=max(ds.Rows, ds.Columns)))
    (rec,) = decode(path, ctx)
    assert rec.pixel_steps == ("modality_lut:rescale", "voi_lut:window", "monochrome1_inversion")
    hu = _expected_modality(ds)
    np.testing.assert_array_equal(load_npy(payload(rec, "raw.npy")), hu)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    lo, hi = sorted((intercept, (2**ds.BitsStored - 1) * slope + intercept))
    windowed = apply_voi_lut(hu, ds)
    expected = np.clip(np.floor((hi + lo - windowed - lo) * 255.0 / (hi - lo) + 0.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(load_png(payload(rec, "png")), expected)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_bigendian.dcm",  # explicit VR big endian
        "MR_small_implicit.dcm",  # implicit VR little endian
        "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
        "MR_small_RLE.dcm",  # RLE lossless
    ],
)
def test_lossless_syntaxes_equal_the_uncompressed_reference(name):
    """Each encoding of MR_small decodes to the same HU as the explicit VR LE original."""
    ctx = make_ctx()
    (ref,) = decode(pydicom_file("MR_small.dcm"), ctx)
    (other,) = decode(pydicom_file(name), ctx)
    assert isinstance(other, SeriesSlice)
    assert other.pixels == ref.pixels
    ds = pydicom.dcmread(pydicom_file(name))
    np.testing.assert_array_equal(np.frombuffer(other.pixels, "<i2").reshape(64, 64), _expected_modality(ds))


@pytest.mark.parametrize(
    ("name", "photometric", "frames"),
    [
        ("image_dfl.dcm", "MONOCHROME2", 1),  # deflated explicit VR LE
        ("JPGExtended.dcm", "MONOCHROME2", 1),  # JPEG extended (12-bit, process 2/4)
        ("JPEG-LL.dcm", "MONOCHROME2", 1),  # JPEG lossless
        ("JPEG2000.dcm", "MONOCHROME2", 1),  # JPEG 2000
        ("emri_small_jpeg_2k_lossless.dcm", "MONOCHROME2", 10),  # multi-frame MR, J2K lossless
        ("SC_rgb_jpeg_dcmtk.dcm", "YBR_FULL", 1),  # JPEG baseline colour
        ("SC_ybr_full_422_uncompressed.dcm", "YBR_FULL_422", 1),
        ("SC_rgb.dcm", "RGB", 1),
        ("SC_rgb_rle.dcm", "RGB", 1),
        ("color3d_jpeg_baseline.dcm", "YBR_FULL_422", 120),  # US cine, JPEG baseline 4:2:2
        ("OBXXXX1A.dcm", "PALETTE COLOR", 1),
    ],
)
def test_transfer_syntaxes_and_colour_against_pydicom(name, photometric, frames):
    path = pydicom_file(name)
    ctx = make_ctx(image=ImageConfig(allow_burned_in=True))  # SC/US files are burned-in by rule
    (rec,) = decode(path, ctx)
    assert isinstance(rec, ImageRecord)
    assert (rec.photometric, rec.frames) == (photometric, frames)
    ds = pydicom.dcmread(path)
    raw = load_npy(payload(rec, "raw.npy"))
    reference = ds.pixel_array  # pydicom converts YBR to RGB, as the raw member does
    if photometric.startswith(("MONO",)):
        reference = apply_modality_lut(reference, ds)
    np.testing.assert_array_equal(raw, reference)
    png = load_png(payload(rec, "png"))
    is_colour = photometric not in ("MONOCHROME1", "MONOCHROME2")
    assert png.ndim == (3 if is_colour else 2)
    if is_colour and photometric != "PALETTE COLOR" and ds.BitsStored == 8 and frames == 1:
        big = make_ctx(image=ImageConfig(allow_burned_in=True, rendition_size=max(ds.Rows, ds.Columns)))
        (full,) = decode(path, big)
        np.testing.assert_array_equal(load_png(payload(full, "png")), reference)


def test_non_ascii_character_sets_decode_and_names_do_not_leak():
    files = [
        p
        for p in get_charset_files("chr*.dcm")
        if "PixelData" in pydicom.dcmread(p, stop_before_pixels=False)
    ]
    assert len(files) >= 10
    ctx = make_ctx(image=ImageConfig(allow_burned_in=True))  # the charset files are secondary captures
    for path in files:
        ds = pydicom.dcmread(path)
        (rec,) = decode(path, ctx)
        name = str(ds.PatientName)
        assert name
        for part in name.replace("=", "^").split("^"):
            if len(part) >= 2:
                assert part not in rec.meta_json and json.dumps(part)[1:-1] not in rec.meta_json
        assert rec.patient == ctx.pseudo.patient(str(ds.PatientID).strip()) or not str(ds.PatientID).strip()


# ------------------------------------------------------------------------------------------
# bad input: specific reasons, never a generic error
# ------------------------------------------------------------------------------------------
def test_gzip_and_no_extension(tmp_path, shared_data):
    ctx = make_ctx()
    src = shared_data / "dicom" / "ct" / "CT_small.dcm"
    gz = tmp_path / "ct_small_no_ext"
    gz.write_bytes(gzip.compress(src.read_bytes(), mtime=0))
    (a,) = decode(src, ctx)
    (b,) = decode(gz, ctx)
    assert a.pixels == b.pixels and a.series_key == b.series_key
    broken = tmp_path / "broken.gz"
    broken.write_bytes(gzip.compress(src.read_bytes(), mtime=0)[:-200])
    assert reason_of(broken, ctx) == ReasonCode.DICOM_TRUNCATED


def test_deflate_bomb_is_a_limit(tmp_path):
    ds = pydicom.dcmread(pydicom_file("image_dfl.dcm"))
    ds.add_new(0x00091010, "OB", bytes(20_000_000))  # 20 MB of zeros deflate to ~20 kB
    out = tmp_path / "bomb.dcm"
    ds.save_as(out)
    assert out.stat().st_size < 1_000_000
    small = make_ctx(limits=LimitsConfig(max_file_bytes=5_000_000), image=ImageConfig(allow_burned_in=True))
    assert reason_of(out, small) == ReasonCode.LIMIT_EXCEEDED
    (rec,) = decode(pydicom_file("image_dfl.dcm"), small)  # the real deflated file is fine
    assert isinstance(rec, ImageRecord)


def test_truncated_and_corrupt_files(tmp_path, shared_data):
    ctx = make_ctx()
    assert reason_of(pydicom_file("MR_truncated.dcm"), ctx) == ReasonCode.DICOM_TRUNCATED
    data = (shared_data / "dicom" / "cxr" / "RG1_J2KI.dcm").read_bytes()
    for frac in (0.3, 0.9):
        cut = tmp_path / f"cut_{frac}"
        cut.write_bytes(data[: int(len(data) * frac)])
        assert reason_of(cut, ctx) == ReasonCode.DICOM_TRUNCATED
    native = (shared_data / "dicom" / "ct" / "CT_small.dcm").read_bytes()
    cut = tmp_path / "ct_cut"
    cut.write_bytes(native[: len(native) - 5000])
    assert reason_of(cut, ctx) == ReasonCode.DICOM_TRUNCATED
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(bytes(range(256)) * 64)
    assert reason_of(garbage, ctx) == ReasonCode.DICOM_CORRUPT
    assert reason_of(pydicom_file("no_meta.dcm"), ctx) == ReasonCode.DICOM_CORRUPT
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert reason_of(empty, ctx) == ReasonCode.EMPTY_FILE


def test_corrupt_codestream_is_a_pixel_decode_error(tmp_path, shared_data):
    ctx = make_ctx()
    ds = pydicom.dcmread(shared_data / "dicom" / "cxr" / "RG1_J2KI.dcm")
    from pydicom.encaps import encapsulate, generate_frames

    (frame,) = list(generate_frames(ds.PixelData, number_of_frames=1))
    # a wiped main header (SIZ marker) and a codestream cut to a tenth: the file itself is whole
    for label, bad in (("header", frame[:4] + bytes(60) + frame[64:]), ("short", frame[: len(frame) // 10])):
        ds.PixelData = encapsulate([bytes(bad)])
        out = tmp_path / f"bad_j2k_{label}.dcm"
        ds.save_as(out)
        assert reason_of(out, ctx) == ReasonCode.DICOM_PIXEL_DECODE


def test_unsupported_sops_and_no_pixels(tmp_path):
    ctx = make_ctx()
    assert reason_of(pydicom_file("rtplan.dcm"), ctx) == ReasonCode.DICOM_UNSUPPORTED_SOP
    assert reason_of(pydicom_file("liver.dcm"), ctx) == ReasonCode.DICOM_UNSUPPORTED_SOP  # segmentation
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    del ds.PixelData
    out = tmp_path / "no_pixels.dcm"
    ds.save_as(out)
    assert reason_of(out, ctx) == ReasonCode.DICOM_NO_PIXELS


def test_filters_burned_in_and_limits(shared_data):
    cxr = shared_data / "dicom" / "cxr" / "RG1_J2KI.dcm"
    keep_ct = make_ctx(image=ImageConfig(keep_modalities=("CT",)))
    with pytest.raises(QuarantineError) as exc:
        decode(cxr, keep_ct)
    assert exc.value.reason == ReasonCode.FILTERED_OUT and "modality CR" in exc.value.message
    keep_chest = make_ctx(image=ImageConfig(keep_modalities=("CR", "DX"), keep_body_parts=("CHEST",)))
    (rec,) = decode(cxr, keep_chest)
    assert rec.body_part == "CHEST"
    # the CR cervical spine images are not chest: filtered out by body part
    spine = shared_data / "dicom" / "dicomdir_sample" / "77654033" / "CR1" / "6154"
    assert reason_of(spine, keep_chest) == ReasonCode.FILTERED_OUT
    views = make_ctx(image=ImageConfig(keep_views=("PA", "AP")))
    assert reason_of(spine, views) == ReasonCode.FILTERED_OUT  # no ViewPosition PA/AP
    # burned-in: US and secondary capture unless allowed
    assert reason_of(pydicom_file("OBXXXX1A.dcm"), make_ctx()) == ReasonCode.DICOM_BURNED_IN
    assert reason_of(pydicom_file("SC_rgb.dcm"), make_ctx()) == ReasonCode.DICOM_BURNED_IN
    # limits before decoding
    small = make_ctx(limits=LimitsConfig(max_pixels=1000))
    assert reason_of(cxr, small) == ReasonCode.LIMIT_EXCEEDED


def test_burned_in_annotation_flag(tmp_path, shared_data):
    ds = pydicom.dcmread(shared_data / "dicom" / "dicomdir_sample" / "77654033" / "CR1" / "6154")
    ds.BurnedInAnnotation = "YES"
    out = tmp_path / "burned.dcm"
    ds.save_as(out)
    assert reason_of(out, make_ctx()) == ReasonCode.DICOM_BURNED_IN
    (rec,) = decode(out, make_ctx(image=ImageConfig(allow_burned_in=True)))
    assert isinstance(rec, ImageRecord)


def test_decoding_is_deterministic(shared_data, tmp_path):
    path = shared_data / "dicom" / "dicomdir_sample" / "77654033" / "CR2" / "6247"
    copy = tmp_path / "elsewhere"
    shutil.copy(path, copy)
    a = decode(path, make_ctx(), "same/rel")
    b = decode(copy, make_ctx(), "same/rel")
    assert [dataclasses.astuple(r) for r in a] == [dataclasses.astuple(r) for r in b]
