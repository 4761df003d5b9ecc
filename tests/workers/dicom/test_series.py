"""assemble_series: the real 20-slice CT series, and synthetic geometries built from a real slice.

Geometry is checked with the DICOM standard's own per-pixel equation (PS3.3 C.7.6.2.1.1):
``P(r, c) = S + c·Δc·X + r·Δr·Y`` in LPS, mapped to RAS by negating x and y, then through the
inverse of the volume's affine; the voxel found there must hold the HU pydicom computes for that
file and pixel.
"""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from schemas import ImageRecord, QuarantineRecord, ReasonCode, SeriesSlice, VolumeRecord
from tests.workers.dicom.test_decode import decode, load_npy, make_ctx, payload, pydicom_file
from workers.config import VolumeConfig
from workers.dicom.series import assemble_series

TS_DIR = ("dicom", "ct", "totalsegmentator_siemens_ct_series")


def accounted_once(slices: list[SeriesSlice], out: list) -> dict[str, object]:
    """Map each input source_id to the one output record that accounts for it (asserting once)."""
    owner: dict[str, object] = {}
    for r in out:
        ids = (r.source_id,) if isinstance(r, QuarantineRecord) else r.source_ids
        for sid in ids:
            assert sid not in owner, "slice accounted for twice"
            owner[sid] = r
    assert set(owner) == {s.source_id for s in slices}
    return owner


def world_check(
    vol_rec: VolumeRecord, files: list[tuple[pydicom.Dataset, np.ndarray]], n_samples: int = 200
) -> None:
    """Every sampled (file, row, col) lands on a voxel holding that pixel's value."""
    vol = load_npy(payload(vol_rec, "npy"))
    assert vol.shape == vol_rec.shape and vol.dtype == np.int16
    inv = np.linalg.inv(np.array(vol_rec.affine).reshape(4, 4))
    rng = np.random.default_rng(0)
    for _ in range(n_samples):
        ds, values = files[rng.integers(len(files))]
        r, c = int(rng.integers(values.shape[0])), int(rng.integers(values.shape[1]))
        s = np.array([float(v) for v in ds.ImagePositionPatient])
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        dr, dc = (float(v) for v in ds.PixelSpacing)
        lps = s + c * dc * iop[:3] + r * dr * iop[3:]
        ras = np.array([-lps[0], -lps[1], lps[2], 1.0])
        ijk = inv @ ras
        idx = np.rint(ijk[:3]).astype(int)
        assert np.allclose(ijk[:3], idx, atol=1e-3)
        assert vol[tuple(idx)] == values[r, c]


@pytest.fixture(scope="module")
def ts_slices(shared_data):
    ctx = make_ctx()
    folder = shared_data.joinpath(*TS_DIR)
    paths = sorted(folder.iterdir())
    slices = []
    for p in paths:
        (s,) = decode(p, ctx, str(p.relative_to(shared_data)))
        slices.append(s)
    return ctx, paths, slices


def test_totalsegmentator_series_becomes_one_ras_volume(ts_slices):
    ctx, paths, slices = ts_slices
    assert len({s.series_key for s in slices}) == 1  # grouped although SeriesInstanceUID is empty
    shuffled = list(slices)
    random.Random(7).shuffle(shuffled)
    out = assemble_series(shuffled, ctx)
    (vol,) = out
    assert isinstance(vol, VolumeRecord)
    assert vol.shape == (512, 512, 20) and vol.orientation == "RAS" and vol.hounsfield
    assert vol.source_format == "dicom-series"
    accounted_once(slices, out)

    datasets = [pydicom.dcmread(p) for p in paths]
    # slice spacing measured from ImagePositionPatient along the normal (SliceThickness is 3 mm:
    # this reconstruction overlaps its slices, as PROVENANCE's "3 mm" thickness hides)
    z = sorted(float(ds.ImagePositionPatient[2]) for ds in datasets)
    assert {float(ds.SliceThickness) for ds in datasets} == {3.0}
    expected_step = float(np.median(np.diff(z)))
    assert vol.spacing_mm == pytest.approx((0.9765625, 0.9765625, expected_step))
    # ordered by position: source_ids follow increasing z (superior), whatever the input order
    by_sid = {s.source_id: s for s in slices}
    assert [by_sid[sid].position_mm[2] for sid in vol.source_ids] == z
    world_check(vol, [(ds, apply_modality_lut(ds.pixel_array, ds)) for ds in datasets])
    # another input order gives the same bytes
    again = assemble_series(list(reversed(slices)), ctx)
    assert dataclasses.astuple(again[0]) == dataclasses.astuple(vol)
    meta = json.loads(vol.meta_json)
    assert meta["volume"]["n_slices"] == 20 and meta["dicom"]["SliceThickness"] == 3.0


# ------------------------------------------------------------------------------------------
# synthetic geometries from one real slice (CT_small, 128x128, HU)
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base_slice():
    (s,) = decode(pydicom_file("CT_small.dcm"), make_ctx())
    return s


AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def synth(base: SeriesSlice, i: int, pos, orientation=AXIAL, *, same_pixels=False, **extra) -> SeriesSlice:
    hu = np.frombuffer(base.pixels, "<i2").reshape(base.rows, base.columns)
    values = hu if same_pixels else (hu + i).astype(np.int16)
    meta = json.loads(base.meta_json)
    if "temporal" in extra:
        meta["temporal"] = extra.pop("temporal")
    return dataclasses.replace(
        base,
        source_id=f"f{i:04d}",
        position_mm=tuple(float(v) for v in pos),
        orientation=orientation,
        pixels=values.astype("<i2").tobytes(),
        meta_json=json.dumps(meta, sort_keys=True, separators=(",", ":")),
        **extra,
    )


def axial_stack(base, zs, start=0):
    return [synth(base, start + i, (10.0, -20.0, z)) for i, z in enumerate(zs)]


def kinds(out) -> list[str]:
    return sorted(type(r).__name__ for r in out)


def test_uniform_series_any_order(base_slice):
    slices = axial_stack(base_slice, [0, 2.5, 5, 7.5, 10, 12.5])
    ctx = make_ctx()
    out = assemble_series(random.Random(1).sample(slices, len(slices)), ctx)
    (vol,) = out
    assert vol.shape == (128, 128, 6) and vol.spacing_mm[2] == pytest.approx(2.5)
    assert vol.source_ids == tuple(s.source_id for s in slices)
    accounted_once(slices, out)


def test_gap_splits_and_quarantines_the_short_run(base_slice):
    slices = axial_stack(base_slice, [0, 2.5, 5, 7.5, 20, 22.5])
    out = assemble_series(slices, make_ctx())
    owner = accounted_once(slices, out)
    assert kinds(out) == ["QuarantineRecord", "QuarantineRecord", "VolumeRecord"]
    (vol,) = [r for r in out if isinstance(r, VolumeRecord)]
    assert vol.shape[2] == 4 and vol.source_ids == tuple(s.source_id for s in slices[:4])
    for s in slices[4:]:
        assert owner[s.source_id].reason == ReasonCode.SERIES_INCONSISTENT
        assert "gap" in owner[s.source_id].message


def test_duplicates_identical_and_conflicting(base_slice):
    slices = axial_stack(base_slice, [0, 2.5, 5, 7.5, 10])
    twin = synth(base_slice, 2, (10.0, -20.0, 5.0))  # same position and same pixels as slice 2
    twin = dataclasses.replace(twin, source_id="f9998")
    other = synth(base_slice, 77, (10.0, -20.0, 7.5))  # same position as slice 3, other pixels
    allin = slices + [twin, other]
    out = assemble_series(allin, make_ctx())
    owner = accounted_once(allin, out)
    (vol,) = [r for r in out if isinstance(r, VolumeRecord)]
    assert vol.shape[2] == 5
    reasons = sorted(
        owner[s.source_id].reason.value for s in allin if isinstance(owner[s.source_id], QuarantineRecord)
    )
    assert reasons == [ReasonCode.DUPLICATE.value, ReasonCode.SERIES_INCONSISTENT.value]


def test_localizer_and_mixed_orientation_never_enter_the_volume(base_slice):
    slices = axial_stack(base_slice, [0, 2.5, 5, 7.5])
    scout = synth(base_slice, 50, (0.0, 0.0, 0.0), SAGITTAL, is_localizer=True)
    sag = [synth(base_slice, 60 + i, (x, 0.0, 0.0), SAGITTAL) for i, x in enumerate((0.0, 3.0))]
    allin = slices + [scout] + sag
    out = assemble_series(allin, make_ctx())
    owner = accounted_once(allin, out)
    (vol,) = [r for r in out if isinstance(r, VolumeRecord)]
    assert set(vol.source_ids) == {s.source_id for s in slices}
    assert "localizer" in owner[scout.source_id].message
    for s in sag:
        assert owner[s.source_id].reason == ReasonCode.SERIES_INCONSISTENT
        assert "orientation" in owner[s.source_id].message


def test_sagittal_series_affine_matches_the_standard_equation(base_slice):
    """An oblique/sagittal stack: the RAS affine maps every pixel to where DICOM says it is."""
    files = []
    slices = []
    for i, x in enumerate([-12.0, -9.0, -6.0, -3.0]):
        s = synth(base_slice, i, (x, 5.0, 40.0), SAGITTAL)
        slices.append(s)
        d = pydicom.Dataset()
        d.ImagePositionPatient = list(s.position_mm)
        d.ImageOrientationPatient = list(SAGITTAL)
        d.PixelSpacing = list(s.pixel_spacing_mm)
        files.append((d, np.frombuffer(s.pixels, "<i2").reshape(s.rows, s.columns)))
    (vol,) = assemble_series(list(reversed(slices)), make_ctx())
    assert vol.orientation == "RAS"
    aff = np.array(vol.affine).reshape(4, 4)
    assert np.all(np.diag(np.abs(aff[:3, :3])) > 0) and np.all(np.diag(aff)[:3] > 0)  # canonical RAS
    world_check(vol, files)


@pytest.mark.parametrize("policy", ["first", "all", "quarantine"])
def test_four_d_series_follow_the_policy(base_slice, policy):
    slices = []
    for phase in range(2):
        for i, z in enumerate([0, 2.5, 5, 7.5]):
            slices.append(
                synth(
                    base_slice,
                    phase * 10 + i,
                    (10.0, -20.0, z),
                    temporal={"TemporalPositionIdentifier": str(phase + 1)},
                )
            )
    ctx = make_ctx(volume=VolumeConfig(four_d_policy=policy))
    out = assemble_series(slices, ctx)
    accounted_once(slices, out)
    vols = [r for r in out if isinstance(r, VolumeRecord)]
    if policy == "first":
        assert len(vols) == 1 and vols[0].source_ids == tuple(s.source_id for s in slices[:4])
        assert sum(isinstance(r, QuarantineRecord) for r in out) == 4
    elif policy == "all":
        assert len(vols) == 2 and {v.source_ids for v in vols} == {
            tuple(s.source_id for s in slices[:4]),
            tuple(s.source_id for s in slices[4:]),
        }
    else:
        assert not vols and {r.reason for r in out} == {ReasonCode.VOLUME_UNSUPPORTED_DIMS}


def test_short_series_become_images(base_slice):
    slices = axial_stack(base_slice, [0, 2.5])
    out = assemble_series(slices, make_ctx(volume=VolumeConfig(min_slices=3)))
    accounted_once(slices, out)
    assert all(isinstance(r, ImageRecord) for r in out) and len(out) == 2
    for r, s in zip(sorted(out, key=lambda r: r.source_ids), slices, strict=True):
        np.testing.assert_array_equal(
            load_npy(payload(r, "raw.npy")), np.frombuffer(s.pixels, "<i2").reshape(128, 128)
        )
        assert r.pixel_steps[0] == "modality_lut:rescale"


def test_lone_ct_slice_image_matches_pydicom(base_slice):
    """CT_small alone: the ImageRecord holds apply_modality_lut's HU."""
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    (img,) = assemble_series([base_slice], make_ctx())
    assert isinstance(img, ImageRecord) and img.dicom_modality == "CT"
    np.testing.assert_array_equal(load_npy(payload(img, "raw.npy")), apply_modality_lut(ds.pixel_array, ds))
