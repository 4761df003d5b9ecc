"""JPEG/PNG image files: made with Pillow from the real chest X-ray DICOM's pixels at test time."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from pipelines.discover import sniff
from schemas import ImageRecord, InputItem, InputKind, QuarantineError, ReasonCode
from tests.fixtures.mimic_lookalike import base_cxr_pixels, jpeg_bytes
from workers.config import ImageConfig, LimitsConfig
from workers.context import WorkerContext
from workers.image.decode import decode_image_file


@pytest.fixture(scope="module")
def cxr(shared_data) -> np.ndarray:
    """The real WG04 RG1 chest PA, 8-bit, longest side 320."""
    return base_cxr_pixels(shared_data)


def _item(path, pseudo) -> InputItem:
    return InputItem(pseudo.source_id(path.name), str(path), sniff(path), "src", "test", path.stat().st_size)


def _decode(path, pseudo, **kw):
    ctx = WorkerContext(pseudo=pseudo, image=ImageConfig(rendition_size=kw.pop("size", 512)), **kw)
    (rec,) = decode_image_file(_item(path, pseudo), ctx)
    assert isinstance(rec, ImageRecord)
    payload = dict(rec.payload)
    raw = np.load(io.BytesIO(payload["raw.npy"]))
    png = Image.open(io.BytesIO(payload["png"]))
    return rec, raw, png, json.loads(rec.meta_json)


def test_grey_jpeg_stores_pillows_pixels_and_strips_metadata(tmp_path, pseudo, cxr):
    p = tmp_path / "cxr.jpg"
    p.write_bytes(jpeg_bytes(cxr, 3, exif=True))
    assert sniff(p) is InputKind.IMAGE_FILE
    rec, raw, png, meta = _decode(p, pseudo, size=128)
    expected = np.asarray(Image.open(p))
    assert raw.dtype == np.uint8 and np.array_equal(raw, expected)
    assert (rec.rows, rec.columns, rec.photometric, rec.bits_stored) == (*expected.shape, "MONOCHROME2", 8)
    assert png.mode == "L" and max(png.size) == 128
    assert not png.info.get("exif") and not getattr(png, "text", {})
    assert meta["source_format"] == "jpeg"
    assert {"exif", "comment"} <= set(meta["image_file"]["stripped"])
    blob = b"".join(v for _, v in rec.payload) + rec.meta_json.encode()
    assert b"PATIENT NAME" not in blob and b"burned comment" not in blob
    assert (rec.patient, rec.study, rec.acquired_at) == ("", "", "")  # identity comes from a table


def test_16bit_png_keeps_values_and_renders_min_max(tmp_path, pseudo, cxr):
    values = (cxr.astype(np.uint16) * 16 + 100).astype(np.uint16)  # 12-bit content in 16-bit
    p = tmp_path / "x16.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", "Jane Doe")
    Image.fromarray(values).save(p, pnginfo=info)
    rec, raw, png, meta = _decode(p, pseudo, size=max(values.shape))
    assert raw.dtype == np.uint16 and np.array_equal(raw, values)
    assert rec.bits_stored == 16 and meta["pixel"]["steps"] == ["voi_lut:minmax"]
    lo, hi = float(values.min()), float(values.max())
    expect = np.clip(np.floor((values - lo) * (255.0 / (hi - lo)) + 0.5), 0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(png), expect)
    assert "png_text" in meta["image_file"]["stripped"]
    assert b"Jane Doe" not in b"".join(v for _, v in rec.payload) + rec.meta_json.encode()


def test_rgb_png_with_alpha_and_exif_orientation(tmp_path, pseudo, cxr):
    rgba = np.dstack([cxr, cxr[:, ::-1], 255 - cxr, np.full_like(cxr, 200)])
    p = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(p)
    rec, raw, png, meta = _decode(p, pseudo, size=max(cxr.shape))
    assert raw.shape == (*cxr.shape, 3) and np.array_equal(raw, rgba[..., :3])
    assert rec.photometric == "RGB" and png.mode == "RGB" and "alpha_dropped" in meta["pixel"]["steps"]
    # an EXIF orientation (6: rotate 90 CW to display) is applied, as viewers show it
    ex = Image.Exif()
    ex[0x0112] = 6
    q = tmp_path / "rot.jpg"
    Image.fromarray(cxr).save(q, exif=ex.tobytes(), quality=95)
    rec2, raw2, _, meta2 = _decode(q, pseudo)
    assert raw2.shape == cxr.shape[::-1] and meta2["pixel"]["steps"][0] == "exif_orientation:6"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[: len(b) // 3], ReasonCode.IMAGE_FILE_CORRUPT),  # truncated JPEG
        (lambda b: b[:200] + bytes(len(b) - 200), ReasonCode.IMAGE_FILE_CORRUPT),  # zeroed scan data
    ],
)
def test_broken_jpeg_is_quarantined(tmp_path, pseudo, cxr, mutate, reason):
    p = tmp_path / "bad.jpg"
    p.write_bytes(mutate(jpeg_bytes(cxr, 1)))
    with pytest.raises(QuarantineError) as e:
        decode_image_file(_item(p, pseudo), WorkerContext(pseudo=pseudo))
    assert e.value.reason is reason and "/" not in e.value.message


def test_pixel_limit(tmp_path, pseudo, cxr):
    p = tmp_path / "big.png"
    Image.fromarray(cxr).save(p)
    with pytest.raises(QuarantineError) as e:
        decode_image_file(
            _item(p, pseudo), WorkerContext(pseudo=pseudo, limits=LimitsConfig(max_pixels=1000))
        )
    assert e.value.reason is ReasonCode.LIMIT_EXCEEDED


def test_build_pipeline_decodes_image_files(tmp_path, pseudo, cxr):
    """Through the decode step (cache off): an image record, not unsupported_format."""
    from pipelines.decode import DecodeTask, decode_item

    p = tmp_path / "a.jpg"
    p.write_bytes(jpeg_bytes(cxr, 2))
    (rec,) = decode_item(DecodeTask(_item(p, pseudo), WorkerContext(pseudo=pseudo), True, ""))
    assert isinstance(rec, ImageRecord) and rec.modality.value == "image"
