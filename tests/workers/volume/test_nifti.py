"""NIfTI decoding against nibabel on the real sample volumes (and variants written to tmp_path)."""

from __future__ import annotations

import gzip
import io
import json
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import InputItem, InputKind, VolumeRecord
from workers.config import VolumeConfig
from workers.context import WorkerContext
from workers.volume.nifti import decode_nifti
from workers.volume.redundancy import slice_redundancy

CT = "totalsegmentator_example_ct.nii.gz"


def item_for(path: Path, pseudo) -> InputItem:
    return InputItem(
        source_id=pseudo.source_id(path.name),
        path=str(path),
        kind=InputKind.NIFTI,
        source_name="test",
        licence="Apache-2.0",
        size_bytes=path.stat().st_size,
    )


def decode(path: Path, ctx) -> list[VolumeRecord]:
    records = decode_nifti(item_for(path, ctx.pseudo), ctx)
    assert records and all(isinstance(r, VolumeRecord) for r in records)
    return records


def array_of(rec: VolumeRecord) -> np.ndarray:
    return np.load(io.BytesIO(dict(rec.payload)["npy"]), allow_pickle=False)


def affine_of(rec: VolumeRecord) -> np.ndarray:
    return np.asarray(rec.affine, dtype=np.float64).reshape(4, 4)


def quarantine_reason(path: Path, ctx) -> ReasonCode:
    with pytest.raises(QuarantineError) as exc:
        decode_nifti(item_for(path, ctx.pseudo), ctx)
    return exc.value.reason


@pytest.fixture(scope="module")
def ct_img(request):
    return nib.load(request.getfixturevalue("shared_data") / "nifti" / CT)


@pytest.fixture(scope="module")
def ct_hu(ct_img) -> np.ndarray:
    return np.asanyarray(ct_img.dataobj)


# --- the real files ------------------------------------------------------------------------------


def test_every_nifti_file_becomes_ras_records(shared_data, ctx):
    files = sorted(p for p in shared_data.rglob("*") if p.name.endswith((".nii", ".nii.gz")))
    assert len(files) >= 3
    for path in files:
        img = nib.load(path)
        records = decode(path, ctx)
        assert len(records) == 1  # default four_d_policy "first"
        rec = records[0]
        arr = array_of(rec)
        assert nib.aff2axcodes(affine_of(rec)) == ("R", "A", "S") and rec.orientation == "RAS"
        assert arr.shape == rec.shape and arr.ndim == 3 and arr.dtype.byteorder in ("<", "=", "|")
        canon = nib.as_closest_canonical(img)
        expected = np.asanyarray(canon.dataobj)
        expected = expected[..., 0] if expected.ndim == 4 else expected
        np.testing.assert_allclose(arr.astype(np.float64), expected.astype(np.float64), rtol=1e-6)
        np.testing.assert_allclose(affine_of(rec), canon.affine, atol=1e-5)
        meta = json.loads(rec.meta_json)
        assert meta["source"]["axcodes"] == "".join(nib.aff2axcodes(img.affine))
        np.testing.assert_allclose(np.reshape(meta["source"]["affine"], (4, 4)), img.affine, atol=1e-5)
        assert meta["redundancy"] == slice_redundancy(arr, axis=2)
        assert rec.patient == rec.study == rec.acquired_at == ""


def test_ct_is_int16_hounsfield_equal_to_nibabel(shared_data, ct_hu, ctx):
    (rec,) = decode(shared_data / "nifti" / CT, ctx)
    arr = array_of(rec)
    assert rec.hounsfield and arr.dtype == np.int16
    np.testing.assert_array_equal(arr, ct_hu)  # the file is RAS already: same voxels, same order
    assert rec.spacing_mm == (3.0, 3.0, 3.0)
    meta = json.loads(rec.meta_json)
    assert meta["volume"]["value_range"] == [float(ct_hu.min()), float(ct_hu.max())]
    assert meta["source"]["dtype"] == "int32" and meta["source"]["affine_from"] == "sform"


def test_fmri_keeps_native_int16_and_scaled_data_becomes_float32(shared_data, ctx):
    (rec,) = decode(shared_data / "nifti" / "nibabel_example4d.nii.gz", ctx)
    assert not rec.hounsfield and array_of(rec).dtype == np.int16
    (rec,) = decode(shared_data / "nifti" / "nibabel_functional.nii", ctx)
    img = nib.load(shared_data / "nifti" / "nibabel_functional.nii")
    assert img.dataobj.slope != 1.0 or img.dataobj.inter != 0.0
    arr = array_of(rec)
    assert arr.dtype == np.float32
    np.testing.assert_allclose(
        arr, nib.as_closest_canonical(img).get_fdata()[..., 0].astype(np.float32), rtol=1e-6
    )


# --- orientation ---------------------------------------------------------------------------------


def test_lps_volume_comes_back_ras_with_voxels_flipped(ct_img, ct_hu, tmp_path, ctx):
    n = np.array(ct_hu.shape)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = n[:2] - 1  # index i → n-1-i on the first two axes
    lps_affine = ct_img.affine @ flip
    lps = nib.Nifti1Image(ct_hu[::-1, ::-1, :].copy(), lps_affine)
    path = tmp_path / "lps.nii.gz"
    nib.save(lps, path)
    assert nib.aff2axcodes(nib.load(path).affine) == ("L", "P", "S")
    (rec,) = decode(path, ctx)
    assert nib.aff2axcodes(affine_of(rec)) == ("R", "A", "S")
    np.testing.assert_array_equal(array_of(rec), ct_hu)
    np.testing.assert_allclose(affine_of(rec), ct_img.affine, atol=1e-4)
    assert json.loads(rec.meta_json)["source"]["axcodes"] == "LPS"


def test_permuted_axes_come_back_ras(ct_img, ct_hu, tmp_path, ctx):
    # (Z, X, Y) storage ("SRA"): the array is transposed and the affine's columns permuted
    perm = (2, 0, 1)
    aff = ct_img.affine.copy()
    aff[:3, :3] = ct_img.affine[:3, :3][:, perm]
    path = tmp_path / "sra.nii"
    nib.save(nib.Nifti1Image(np.transpose(ct_hu, perm).copy(), aff), path)
    assert nib.aff2axcodes(nib.load(path).affine) == ("S", "R", "A")
    (rec,) = decode(path, ctx)
    np.testing.assert_array_equal(array_of(rec), ct_hu)
    assert rec.orientation == "RAS"


# --- containers and encodings --------------------------------------------------------------------


def test_big_endian_nifti_gives_the_same_record_content(shared_data, ct_img, ct_hu, tmp_path, ctx):
    hdr = ct_img.header.as_byteswapped(">")
    path = tmp_path / "be.nii"
    nib.save(nib.Nifti1Image(ct_hu.astype(">i4"), ct_img.affine, hdr), path)
    assert path.read_bytes()[:4] == (348).to_bytes(4, "big")
    (le,) = decode(shared_data / "nifti" / CT, ctx)
    (be,) = decode(path, ctx)
    assert be.content_sha256 == le.content_sha256 and dict(be.payload) == dict(le.payload)
    assert json.loads(be.meta_json)["source"]["endianness"] == "big"


def test_nifti2_and_analyze_style_pair(ct_img, ct_hu, tmp_path, ctx):
    nib.save(nib.Nifti2Image(ct_hu, ct_img.affine), tmp_path / "ct2.nii.gz")
    nib.save(nib.Nifti1Pair(ct_hu, ct_img.affine), tmp_path / "pair.img")
    (n2,) = decode(tmp_path / "ct2.nii.gz", ctx)
    (pair,) = decode(tmp_path / "pair.hdr", ctx)
    np.testing.assert_array_equal(array_of(n2), ct_hu)
    np.testing.assert_array_equal(array_of(pair), ct_hu)
    assert (
        n2.source_format == "nifti2" and json.loads(pair.meta_json)["source"]["container"] == "hdr/img pair"
    )


def _patch_header(path: Path, offset: int, fmt: str, *values: float) -> None:
    """Overwrite header fields of an uncompressed little-endian NIfTI-1 file in place."""
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, offset, *values)
    path.write_bytes(bytes(raw))


SCL_SLOPE_OFFSET, SROW_OFFSET = 112, 280  # NIfTI-1 header layout


def test_scl_slope_inter_are_applied_for_hounsfield(ct_img, ct_hu, tmp_path, ctx):
    path = tmp_path / "raw.nii"
    nib.save(nib.Nifti1Image((ct_hu + 2048).astype(np.uint16), ct_img.affine), path)  # raw stored values
    _patch_header(path, SCL_SLOPE_OFFSET, "<ff", 1.0, -2048.0)  # HU = 1 * raw - 2048
    assert (nib.load(path).dataobj.slope, nib.load(path).dataobj.inter) == (1.0, -2048.0)
    (rec,) = decode(path, ctx)
    assert rec.hounsfield
    np.testing.assert_array_equal(array_of(rec), ct_hu)
    assert "scl_slope/scl_inter applied" in json.loads(rec.meta_json)["steps"]


def test_implausible_hounsfield_values_are_quarantined(ct_img, ct_hu, tmp_path, ctx):
    path = tmp_path / "bad_scale.nii"
    nib.save(nib.Nifti1Image(ct_hu.astype(np.int16), ct_img.affine), path)
    _patch_header(path, SCL_SLOPE_OFFSET, "<ff", 1000.0, 0.0)  # a wrong rescale: -1.2 million "HU"
    assert quarantine_reason(path, ctx) == ReasonCode.VOLUME_VALUES_IMPLAUSIBLE
    noisy = ct_hu.astype(np.float32)
    noisy[3, 4, 5] = np.nan
    nib.save(nib.Nifti1Image(noisy, ct_img.affine), tmp_path / "nan.nii")
    assert quarantine_reason(tmp_path / "nan.nii", ctx) == ReasonCode.VOLUME_VALUES_IMPLAUSIBLE


# --- 4D policy -----------------------------------------------------------------------------------


def test_four_d_policy(shared_data, pseudo):
    path = shared_data / "nifti" / "nibabel_example4d.nii.gz"
    img = nib.load(path)
    canon = np.asanyarray(nib.as_closest_canonical(img).dataobj)
    first = decode_nifti(
        item_for(path, pseudo), WorkerContext(pseudo=pseudo, volume=VolumeConfig(four_d_policy="first"))
    )
    every = decode_nifti(
        item_for(path, pseudo), WorkerContext(pseudo=pseudo, volume=VolumeConfig(four_d_policy="all"))
    )
    assert len(first) == 1 and len(every) == img.shape[3] == 2
    np.testing.assert_array_equal(array_of(first[0]), canon[..., 0])
    for t, rec in enumerate(every):
        np.testing.assert_array_equal(array_of(rec), canon[..., t])
        assert json.loads(rec.meta_json)["volume"]["four_d"] == {"policy": "all", "n_volumes": 2, "index": t}
    sid = item_for(path, pseudo).source_id
    assert [r.source_ids for r in every] == [(f"{sid}-v000000",), (f"{sid}-v000001",)]
    assert len({r.record_id for r in every}) == 2 and first[0].source_ids == (sid,)
    assert every[0].content_sha256 == first[0].content_sha256 != every[1].content_sha256
    ctx_q = WorkerContext(pseudo=pseudo, volume=VolumeConfig(four_d_policy="quarantine"))
    assert quarantine_reason(path, ctx_q) == ReasonCode.VOLUME_UNSUPPORTED_DIMS
    # a 3-D file is not affected by the 4-D policy
    assert len(decode_nifti(item_for(shared_data / "nifti" / CT, pseudo), ctx_q)) == 1


# --- resampling ----------------------------------------------------------------------------------


def test_optional_resampling_to_target_spacing(shared_data, ct_hu, pseudo):
    ctx = WorkerContext(pseudo=pseudo, volume=VolumeConfig(target_spacing_mm=(6.0,)))
    (rec,) = decode(shared_data / "nifti" / CT, ctx)
    arr = array_of(rec)
    assert rec.spacing_mm == (6.0, 6.0, 6.0) and rec.orientation == "RAS" and arr.dtype == np.int16
    # same origin, twice the spacing: new voxel (i, j, k) is old voxel (2i, 2j, 2k), exactly
    n = [min(a, (b + 1) // 2) for a, b in zip(arr.shape, ct_hu.shape, strict=True)]
    np.testing.assert_array_equal(arr[: n[0], : n[1], : n[2]], ct_hu[::2, ::2, ::2][: n[0], : n[1], : n[2]])
    assert json.loads(rec.meta_json)["volume"]["resampled_to_mm"] == [6.0, 6.0, 6.0]


# --- broken inputs -------------------------------------------------------------------------------


def test_truncated_and_corrupt_files(shared_data, ct_img, ct_hu, tmp_path, ctx):
    gz = (shared_data / "nifti" / CT).read_bytes()
    (tmp_path / "trunc.nii.gz").write_bytes(gz[: len(gz) // 3])
    assert quarantine_reason(tmp_path / "trunc.nii.gz", ctx) == ReasonCode.VOLUME_DATA_CORRUPT
    raw = gzip.decompress(gz)
    (tmp_path / "trunc.nii").write_bytes(raw[: len(raw) // 2])
    assert quarantine_reason(tmp_path / "trunc.nii", ctx) == ReasonCode.VOLUME_DATA_CORRUPT
    (tmp_path / "garbage.nii").write_bytes(b"\x5c\x01\x00\x00" + bytes(range(256)) * 2)
    assert quarantine_reason(tmp_path / "garbage.nii", ctx) == ReasonCode.VOLUME_HEADER_INVALID
    five_d = nib.Nifti1Image(ct_hu[:10, :10, :10, None, None].repeat(3, axis=4), ct_img.affine)
    nib.save(five_d, tmp_path / "5d.nii")
    assert quarantine_reason(tmp_path / "5d.nii", ctx) == ReasonCode.VOLUME_UNSUPPORTED_DIMS
    nib.save(nib.Nifti1Image(ct_hu[:, :, :1], ct_img.affine), tmp_path / "slice.nii")
    assert quarantine_reason(tmp_path / "slice.nii", ctx) == ReasonCode.VOLUME_UNSUPPORTED_DIMS
    nib.save(nib.Nifti1Image(ct_hu, ct_img.affine), tmp_path / "singular.nii")
    _patch_header(tmp_path / "singular.nii", SROW_OFFSET, "<12f", *([0.0] * 12))  # sform all zero
    assert quarantine_reason(tmp_path / "singular.nii", ctx) == ReasonCode.VOLUME_HEADER_INVALID
    nib.save(nib.Nifti1Image(ct_hu, ct_img.affine), tmp_path / "nan_affine.nii")
    _patch_header(tmp_path / "nan_affine.nii", SROW_OFFSET, "<f", float("nan"))  # srow_x[0] = NaN
    assert quarantine_reason(tmp_path / "nan_affine.nii", ctx) == ReasonCode.VOLUME_HEADER_INVALID


def test_text_fields_and_extensions_never_reach_meta(ct_img, ct_hu, tmp_path, ctx):
    img = nib.Nifti1Image(ct_hu, ct_img.affine)
    img.header["descrip"] = b"Patient Canary Qqname 1970-01-01"
    img.header["aux_file"] = b"canary_aux"
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"Canary comment MRN 998877"))
    nib.save(img, tmp_path / "phi.nii")
    (rec,) = decode(tmp_path / "phi.nii", ctx)
    for canary in ("Canary", "canary", "Qqname", "1970-01-01", "998877"):
        assert canary not in rec.meta_json
    deid = json.loads(rec.meta_json)["deid"]
    assert deid["text_fields_dropped"] == ["descrip", "aux_file"] and deid["extensions_dropped_codes"] == [
        "6"
    ]


def test_record_contract_and_determinism(shared_data, ctx):
    path = shared_data / "nifti" / CT
    a, b = decode(path, ctx)[0], decode(path, ctx)[0]
    assert a == b and a.payload == b.payload
    assert a.record_id == ctx.pseudo.token("record", item_for(path, ctx.pseudo).source_id)
    assert a.meta_json == json.dumps(
        json.loads(a.meta_json), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
