"""Benchmark: chest-radiograph DICOM → WebDataset shard, medcorpus path vs a plain loop.

Both sides read the same files (the sample CXR, NEMA WG04 "RG1": Philips CR, 1955x1841,
MONOCHROME1, JPEG 2000 lossy, replicated ``--n`` times) and write with
``webdataset.ShardWriter`` into a temporary folder:

- plain loop: ``pydicom.dcmread`` → ``ds.pixel_array`` → min/max to uint8 (no LUTs, no
  inversion) → full-size PNG (Pillow) → one sample ``{png}`` per file.
- medcorpus: ``workers.dicom.decode.decode_dicom`` (reading with truncation checks, PS3.15
  de-identification, Modality LUT → VOI LUT → MONOCHROME1 inversion, 512-px PNG rendition,
  lossless ``raw.npy``) → one sample ``{png, raw.npy, meta.json}`` per file.

Prints files/s of each side, the ratio, and where the time goes (decode, transform, encode,
write). The medcorpus breakdown comes from a second, instrumented pass that calls the same
functions ``decode_dicom`` calls, one stage at a time. Run: ``.venv/bin/python bench/bench_dicom.py``.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import webdataset as wds
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from schemas import InputItem, InputKind  # noqa: E402
from schemas.canonical import canonical_json  # noqa: E402
from workers.config import ImageConfig  # noqa: E402
from workers.context import WorkerContext  # noqa: E402
from workers.deid.dicom import deidentify  # noqa: E402
from workers.deid.pseudonym import DEMO_SECRET, Pseudonymizer  # noqa: E402
from workers.dicom.decode import decode_dicom  # noqa: E402
from workers.dicom.identity import dicom_identity  # noqa: E402
from workers.dicom.pixels import (  # noqa: E402
    apply_modality,
    decode_pixels,
    encode_npy,
    encode_png,
    frame_view,
    render_grey,
    resize_longest,
)
from workers.dicom.read import read_dicom  # noqa: E402
from workers.dicom.records import dicom_meta  # noqa: E402

SAMPLE_CANDIDATES = (
    REPO.parent / "shared" / "data" / "dicom" / "cxr" / "RG1_J2KI.dcm",
    REPO / "examples" / "data" / "dicom" / "cxr" / "RG1_J2KI.dcm",
)


class Clock:
    """Accumulates seconds per stage."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.t[stage] = self.t.get(stage, 0.0) + seconds


def plain_loop(files: list[Path], out: Path) -> tuple[float, Clock]:
    clock = Clock()
    start = time.perf_counter()
    with wds.ShardWriter(str(out / "plain-%06d.tar"), maxcount=10_000, verbose=0) as sink:
        for i, f in enumerate(files):
            t0 = time.perf_counter()
            ds = pydicom.dcmread(f)
            arr = ds.pixel_array
            t1 = time.perf_counter()
            a = arr.astype(np.float32)
            lo, hi = float(a.min()), float(a.max())
            img = ((a - lo) * (255.0 / max(hi - lo, 1.0))).astype(np.uint8)
            t2 = time.perf_counter()
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            png = buf.getvalue()
            t3 = time.perf_counter()
            sink.write({"__key__": f"{i:06d}", "png": png})
            t4 = time.perf_counter()
            clock.add("decode", t1 - t0)
            clock.add("transform", t2 - t1)
            clock.add("encode", t3 - t2)
            clock.add("write", t4 - t3)
    return time.perf_counter() - start, clock


def _item(path: Path, ctx: WorkerContext) -> InputItem:
    return InputItem(
        source_id=ctx.pseudo.source_id(path.name),
        path=str(path),
        kind=InputKind.DICOM,
        source_name="bench",
        licence="MIT",
        size_bytes=path.stat().st_size,
    )


def medcorpus_path(files: list[Path], out: Path, ctx: WorkerContext) -> float:
    """decode_dicom end to end, then ShardWriter (the timing that counts for the ratio)."""
    start = time.perf_counter()
    with wds.ShardWriter(str(out / "medcorpus-%06d.tar"), maxcount=10_000, verbose=0) as sink:
        for f in files:
            (rec,) = decode_dicom(_item(f, ctx), ctx)
            members = dict(rec.payload)
            sink.write(
                {
                    "__key__": rec.record_id,
                    "image_0.png": members["png"],
                    "image_0.raw.npy": members["raw.npy"],
                    "meta.json": rec.meta_json.encode(),
                }
            )
    return time.perf_counter() - start


def medcorpus_breakdown(files: list[Path], out: Path, ctx: WorkerContext) -> Clock:
    """The same stages decode_dicom runs, timed one by one (second pass)."""
    clock = Clock()
    with wds.ShardWriter(str(out / "breakdown-%06d.tar"), maxcount=10_000, verbose=0) as sink:
        for f in files:
            t0 = time.perf_counter()
            ds = read_dicom(str(f), ctx.limits.max_file_bytes)
            dicom_identity(ds, ctx.pseudo)
            clean, audit = deidentify(ds, ctx)
            t1 = time.perf_counter()
            arr, photometric = decode_pixels(ds)
            t2 = time.perf_counter()
            stored, _ = apply_modality(arr, ds)
            rendition, _, _ = render_grey(stored, frame_view(ds), photometric)
            small = resize_longest(rendition, ctx.image.rendition_size)
            meta = canonical_json({"dicom": dicom_meta(clean), "deid": audit})
            t3 = time.perf_counter()
            png, raw = encode_png(small), encode_npy(stored)
            t4 = time.perf_counter()
            sink.write(
                {"__key__": f.name, "image_0.png": png, "image_0.raw.npy": raw, "meta.json": meta.encode()}
            )
            t5 = time.perf_counter()
            clock.add("read+deid", t1 - t0)
            clock.add("decode", t2 - t1)
            clock.add("transform", t3 - t2)
            clock.add("encode", t4 - t3)
            clock.add("write", t5 - t4)
    return clock


def _fmt(clock: Clock, n: int) -> str:
    total = sum(clock.t.values())
    return ", ".join(f"{k} {v / n * 1000:.0f} ms ({100 * v / total:.0f}%)" for k, v in clock.t.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=int(os.environ.get("BENCH_DICOM_N", "6")), help="replicas of the CXR"
    )
    parser.add_argument("--size", type=int, default=512, help="rendition longest side (px)")
    parser.add_argument("--sample", type=Path, default=None, help="a chest radiograph DICOM file")
    args = parser.parse_args(argv)
    sample = args.sample or next((p for p in SAMPLE_CANDIDATES if p.is_file()), None)
    if sample is None:
        print("no sample CXR found (pass --sample)")
        return 1
    ctx = WorkerContext(pseudo=Pseudonymizer(DEMO_SECRET), image=ImageConfig(rendition_size=args.size))
    tmp = Path(tempfile.mkdtemp(prefix="bench_dicom_"))
    try:
        src = tmp / "in"
        src.mkdir()
        files = []
        for i in range(args.n):
            f = src / f"cxr_{i:04d}"  # no extension, as PACS exports often are
            shutil.copyfile(sample, f)
            files.append(f)
        (tmp / "plain").mkdir()
        (tmp / "mc").mkdir()
        (tmp / "bd").mkdir()
        # warm-up (imports, plugin discovery) outside the timings
        decode_dicom(_item(files[0], ctx), ctx)
        pydicom.dcmread(files[0]).pixel_array  # noqa: B018

        plain_s, plain_clock = plain_loop(files, tmp / "plain")
        mc_s = medcorpus_path(files, tmp / "mc", ctx)
        mc_clock = medcorpus_breakdown(files, tmp / "bd", ctx)
        plain_bytes = sum(p.stat().st_size for p in (tmp / "plain").iterdir())
        mc_bytes = sum(p.stat().st_size for p in (tmp / "mc").iterdir())
        n = len(files)
        print(f"sample: {sample.name} x {n}  ({pydicom.dcmread(sample, stop_before_pixels=True).Rows} rows)")
        print(
            f"plain loop : {n / plain_s:6.2f} files/s  ({plain_s / n * 1000:.0f} ms/file, shard {plain_bytes / n / 1e6:.2f} MB/file)"
        )
        print(
            f"medcorpus  : {n / mc_s:6.2f} files/s  ({mc_s / n * 1000:.0f} ms/file, shard {mc_bytes / n / 1e6:.2f} MB/file)"
        )
        print(f"ratio (medcorpus / plain throughput): {plain_s / mc_s:.2f}")
        print(f"plain     where time goes: {_fmt(plain_clock, n)}")
        print(f"medcorpus where time goes: {_fmt(mc_clock, n)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
