"""Data card figures: the 12-lead layout on a true mV/s grid, volume plane orientation, thumbnails."""

from __future__ import annotations

import io

import nibabel as nib
import numpy as np
import pytest
import wfdb
from PIL import Image

from pipelines.datacard import plots
from schemas.contract import ECG_LEADS


def _grey(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("L"), dtype=np.int16)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of runs of True in a 1-D mask."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)]


@pytest.fixture(scope="module")
def ptbxl(shared_data) -> np.ndarray:
    """PTB-XL ecg_id 6000 (CinC 2021 form): 12 leads, 500 Hz, 10 s, in mV, as (12, 5000)."""
    rec = wfdb.rdrecord(str(shared_data / "ecg/wfdb/ptbxl_500hz_cinc2021/HR06000"))
    assert list(rec.sig_name) == list(ECG_LEADS) and rec.fs == 500
    return rec.p_signal.T.astype(np.float16)


def test_ecg_figure_is_drawn_at_10_mm_per_mv_and_25_mm_per_s(ptbxl):
    img = _grey(plots.ecg_figure(ptbxl, 500.0))
    width_mm = (10.0 + 0.4) * plots.PAPER_MM_PER_S  # 10 s of trace plus the calibration margin
    px_per_mm = img.shape[1] / width_mm
    assert img.shape[1] == 1100
    dark = img < 80  # the trace and text are near-black; the paper grid is light red
    # calibration pulses (1 mV) at t = -0.3 s: one vertical run of 10 mm per row, 3 mV apart
    col = round((-0.3 + 0.4) * plots.PAPER_MM_PER_S * px_per_mm)
    runs = [r for r in _runs(dark[:, col - 1 : col + 2].any(axis=1)) if r[1] > 10]
    assert len(runs) == 4
    for _, length in runs:
        assert length == pytest.approx(plots.PAPER_MM_PER_MV * px_per_mm, abs=3)
    tops = [s for s, _ in runs]
    assert np.diff(tops) == pytest.approx([plots.ECG_ROW_MV * plots.PAPER_MM_PER_MV * px_per_mm] * 3, abs=2)
    # the rhythm strip (lead II, 10 s): its highest point is where the data puts it
    lead2 = ptbxl[ECG_LEADS.index("II")].astype(float)
    i = int(np.argmax(lead2))
    x = round((i / 500.0 + 0.4) * plots.PAPER_MM_PER_S * px_per_mm)
    rhythm_base = tops[3] + plots.PAPER_MM_PER_MV * px_per_mm  # baseline of the 4th row, in pixels
    expected = rhythm_base - lead2[i] * plots.PAPER_MM_PER_MV * px_per_mm
    band = dark[int(tops[3] - 60) :, x - 2 : x + 3].any(axis=1)
    top_dark = int(np.flatnonzero(band)[0]) + int(tops[3] - 60)
    assert top_dark == pytest.approx(expected, abs=4)


def test_ecg_figure_shows_missing_leads_as_gaps(ptbxl):
    sig = ptbxl.copy()
    sig[ECG_LEADS.index("V3")] = np.nan
    full, gap = _grey(plots.ecg_figure(ptbxl, 500.0)), _grey(plots.ecg_figure(sig, 500.0))
    assert full.shape == gap.shape and (full != gap).any()
    with pytest.raises(ValueError):
        plots.ecg_figure(sig[:6], 500.0)


def test_volume_planes_radiological_orientation():
    vol = np.zeros((6, 8, 10), dtype=np.int16)  # (X, Y, Z) in RAS: +x right, +y anterior, +z superior
    vol[5, 7, 5] = 1  # patient's right, anterior, in the axial mid-slice (z = 5)
    vol[5, 4, 9] = 2  # patient's right, superior, in the coronal mid-slice (y = 4)
    vol[3, 7, 9] = 3  # anterior, superior, in the sagittal mid-slice (x = 3)
    p = plots.volume_planes(vol)
    assert p["axial"].shape == (8, 6) and p["coronal"].shape == (10, 6) and p["sagittal"].shape == (10, 8)
    assert p["axial"][0, 0] == 1  # anterior at the top, patient's right on the viewer's left
    assert p["coronal"][0, 0] == 2  # superior at the top, right on the left
    assert p["sagittal"][0, 0] == 3  # superior at the top, anterior on the left


def test_volume_figure_on_real_ct(examples_dir):
    img = nib.as_closest_canonical(nib.load(examples_dir / "nifti/totalsegmentator_example_ct.nii.gz"))
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    vol = np.asarray(img.dataobj).astype(np.int16)
    axial = plots.volume_planes(vol)["axial"]
    rows, _ = np.nonzero(axial > 300)  # bone: the spine lies posterior, i.e. in the lower half
    assert rows.size and np.median(rows) > axial.shape[0] / 2
    png = plots.volume_figure(vol, img.header.get_zooms()[:3], hounsfield=True)
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (900, 330)


def test_thumbnail_keeps_aspect_and_is_deterministic():
    grad = np.tile(np.arange(300, dtype=np.uint8), (120, 1))
    buf = io.BytesIO()
    Image.fromarray(grad).save(buf, format="PNG")
    a, size = plots.thumbnail_png(buf.getvalue(), 100)
    b, _ = plots.thumbnail_png(buf.getvalue(), 100)
    assert size == (100, 40) and a == b
    # the card's HTML is compared byte for byte across builds: a figure's PNG carries no
    # Software/date text chunk (matplotlib writes one by default) and is the same on every call
    hist = plots.histogram([1.0, 1.0, 2.0], "t", "x")
    with Image.open(io.BytesIO(hist)) as im:
        assert im.size == (420, 260) and not {"Software", "Creation Time", "date:create"} & set(im.info)
    assert hist == plots.histogram([1.0, 1.0, 2.0], "t", "x")
