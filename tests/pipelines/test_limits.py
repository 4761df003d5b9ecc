"""Per-item resource limits (``workers.config.LimitsConfig``) are enforced before the expensive
allocation, with reason ``limit_exceeded`` and bounded memory.

Bombs are built from the real sample files: a JPEG 2000 CT slice whose codestream decodes to
8192 x 8192 pixels from 342 bytes, a deflated CT dataset that inflates to 400 MB, a gzip-wrapped
CT file that does the same, a NIfTI header (from the real CT volume) declaring 1.2 GB of float64
voxels in a 1 kB ``.nii.gz``, a WFDB header declaring 5e9 samples at 2e8 Hz over a real ``.mat``,
and a PTB-XL export row with a 10 MB report. Each is decoded in a fresh subprocess through
``pipelines.decode.decode_item`` (strict mode) after a warm-up decode of a normal file of the
same kind; the peak RSS growth (``resource.getrusage().ru_maxrss``) must stay under a bound.
``MEDCORPUS_FULL=1`` adds controls that decode the same bombs with the limit lifted and show
the growth the limit prevents.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.filewriter import write_file_meta_info

from pipelines.decode import DecodeTask, decode_item
from pipelines.discover import sniff
from schemas.records import InputItem
from tests.conftest import REPO
from workers.config import LimitsConfig, VolumeConfig
from workers.context import WorkerContext
from workers.deid.pseudonym import Pseudonymizer

MiB = 1 << 20
CT_SERIES = "dicom/ct/totalsegmentator_siemens_ct_series"
CT_SLICE = f"{CT_SERIES}/CT.1.3.12.2.1107.5.1.4.60064.30000022120808113428000016573"
PTBXL = "reports/ptbxl_ecg/ptbxl_database_subset_partA.csv"
DEFLATED = "1.2.840.10008.1.2.1.99"

PROBE = r"""
import json, resource, sys
from pathlib import Path
from pipelines.decode import DecodeTask, decode_item
from pipelines.discover import sniff
from schemas.records import InputItem
from workers.config import LimitsConfig, VolumeConfig
from workers.context import WorkerContext
from workers.deid.pseudonym import Pseudonymizer

args = json.loads(sys.argv[1])
ctx = WorkerContext(
    pseudo=Pseudonymizer("limits-secret-0123456789"),
    # decode in this process (no watchdog helper process): the probe measures its own peak RSS
    limits=LimitsConfig(**{"item_timeout_s": 0, **args["limits"]}),
    volume=VolumeConfig(**args.get("volume", {})),
)

def run(path, companions):
    p = Path(path)
    item = InputItem("f0123456789abcdef", str(p), sniff(p), "limits", "test", p.stat().st_size, tuple(companions))
    return decode_item(DecodeTask(item, ctx, strict=True, cache_dir=""))

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

run(args["warmup"], args.get("warmup_companions", []))  # loads the libraries of this kind
before = peak()
out = run(args["path"], args.get("companions", []))
print(json.dumps({
    "growth": peak() - before,
    "out": [r.reason.value if hasattr(r, "reason") else type(r).__name__ for r in out],
    "messages": [getattr(r, "message", "") for r in out],
}))
"""


def probe(
    path: Path, warmup: Path, limits: dict | None = None, messages: list | None = None, **extra
) -> tuple[list[str], int]:
    """Decode ``path`` in a fresh process; return (outcomes, peak RSS growth in bytes). The
    quarantine messages are appended to ``messages`` when given."""
    args = {"path": str(path), "warmup": str(warmup), "limits": limits or {}, **extra}
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(res.stdout.strip().splitlines()[-1])
    if messages is not None:
        messages.extend(result["messages"])
    return result["out"], result["growth"]


def decode(path: Path, limits: LimitsConfig, companions: tuple[str, ...] = (), **ctx_kw) -> list[str]:
    """In-process strict decode; returns the record types / quarantine reasons."""
    ctx = WorkerContext(pseudo=Pseudonymizer("limits-secret-0123456789"), limits=limits, **ctx_kw)
    item = InputItem(
        "f0123456789abcdef", str(path), sniff(path), "limits", "test", path.stat().st_size, companions
    )
    out = decode_item(DecodeTask(item, ctx, strict=True, cache_dir=""))
    return [r.reason.value if hasattr(r, "reason") else type(r).__name__ for r in out]


# ---------------------------------------------------------------------------------------------
# bombs, built from real files


@pytest.fixture(scope="module")
def bombs(shared_data, tmp_path_factory) -> dict[str, Path]:
    import openjpeg

    d = tmp_path_factory.mktemp("bombs")
    out: dict[str, Path] = {}
    # JPEG 2000: a real CT slice (J2K lossless, 512x512) whose codestream now decodes to
    # 8192 x 8192 x 16 bit = 128 MiB; the file is 5 kB
    codestream = openjpeg.encode(np.zeros((8192, 8192), dtype=np.uint16), codec_format=0, bits_stored=12)
    ds = pydicom.dcmread(shared_data / CT_SLICE)
    ds.PixelData = encapsulate([codestream])
    ds.Rows = ds.Columns = 8192
    ds.save_as(d / "j2k_bomb.dcm")
    out["j2k_bomb"] = d / "j2k_bomb.dcm"
    # the same codestream under the slice's true header (512 x 512): the decoder would allocate
    # what the codestream says
    ds.Rows = ds.Columns = 512
    ds.save_as(d / "j2k_lying_header.dcm")
    out["j2k_lying_header"] = d / "j2k_lying_header.dcm"
    out["deflate_bomb"] = _deflate_bomb(
        shared_data / "dicom/ct/CT_small.dcm", d / "deflate_bomb.dcm", 400 * MiB
    )
    out["gzip_bomb"] = _gzip_bomb(shared_data / "dicom/ct/CT_small.dcm", d / "gzip_bomb", 400 * MiB)
    out["nifti_bomb"] = _nifti_bomb(shared_data / "nifti/totalsegmentator_example_ct.nii.gz", d)
    wf = d / "wfdb"
    wf.mkdir()
    src = shared_data / "ecg/wfdb/ptbxl_500hz_cinc2021"
    (wf / "HR06000.mat").write_bytes((src / "HR06000.mat").read_bytes())
    lines = (src / "HR06000.hea").read_text().splitlines()
    lines[0] = "HR06000 12 200000000 5000000000"  # 5e9 samples at 2e8 Hz: 2e9 per lead in 10 s
    (wf / "HR06000.hea").write_text("\n".join(lines) + "\n")
    out["wfdb_bomb"] = wf / "HR06000.hea"
    lines[0] = "HR06000 12 500 5000000000"  # 5e9 samples (115 days) at 500 Hz over a 10 s file
    (wf / "long").mkdir()
    (wf / "long" / "HR06000.mat").write_bytes((src / "HR06000.mat").read_bytes())
    (wf / "long" / "HR06000.hea").write_text("\n".join(lines) + "\n")
    out["wfdb_declared_long"] = wf / "long" / "HR06000.hea"
    header, rows = _ptbxl_rows(shared_data, 1)
    rows[0]["report"] = ("Sinusrhythmus. Linkstyp. Sonst normales EKG. " * 240_000)[: 10 * MiB]
    out["report_10mb_csv"] = _write_csv(d / "report_10mb.csv", header, rows)
    return out


def _ptbxl_rows(shared_data, n: int) -> tuple[list[str], list[dict]]:
    with open(shared_data / PTBXL, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), [r for _, r in zip(range(n), reader, strict=False)]


def _write_csv(path: Path, header: list[str], rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    return path


def _deflate_bomb(src: Path, dst: Path, zeros: int) -> Path:
    """``src`` re-encoded as Deflated Explicit VR LE with a private OB element of ``zeros``
    zero bytes (compressed on the fly: the bomb is never held in memory)."""
    ds = pydicom.dcmread(src)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)  # explicit VR little endian
    data = buf.getvalue()
    fp = io.BytesIO(data)
    read_preamble(fp, False)
    meta = _read_file_meta_info(fp)
    body = data[fp.tell() :]
    cut = _first_element_after_group(body, 0x0009)
    creator = struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 4) + b"BOMB"
    head = struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, zeros)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [comp.compress(body[:cut] + creator + head)]
    block = bytes(MiB)
    for _ in range(zeros // MiB):
        parts.append(comp.compress(block))
    parts += [comp.compress(body[cut:]), comp.flush()]
    meta.TransferSyntaxUID = DEFLATED
    out = io.BytesIO()
    out.write(bytes(128) + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    dst.write_bytes(out.getvalue() + b"".join(parts))
    return dst


def _first_element_after_group(body: bytes, group: int) -> int:
    """Offset of the first top-level element of an explicit VR LE dataset past ``group``."""
    from tests.fuzz.mutate import _walk

    return next(el.start for el in _walk(body, 0, False, True) if el.tag >> 16 > group)


def _gzip_bomb(src: Path, dst: Path, zeros: int) -> Path:
    """A gzip-wrapped copy of ``src`` followed by ``zeros`` zero bytes (streamed)."""
    with open(dst, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(src.read_bytes())
        block = bytes(MiB)
        for _ in range(zeros // MiB):
            gz.write(block)
    return dst


def _nifti_bomb(src: Path, d: Path) -> Path:
    """The real CT volume's header declaring 1000 x 1000 x 150 float64 voxels (1.2 GB), with
    1 kB of voxel data, gzipped."""
    hdr = nib.load(src).header.copy()
    hdr.set_data_shape((1000, 1000, 150))
    hdr.set_data_dtype(np.float64)
    hdr["vox_offset"] = 352
    raw = hdr.binaryblock + b"\0" * 4 + bytes(1024)
    path = d / "nifti_bomb.nii.gz"
    path.write_bytes(gzip.compress(raw, mtime=0))
    return path


# ---------------------------------------------------------------------------------------------
# bombs: limit_exceeded with bounded memory (subprocess, default limits)

BOUND = 64 * MiB
CASES = {
    # name: (warm-up file in shared_data, outcome, bound on peak RSS growth)
    "j2k_bomb": (CT_SLICE, ["limit_exceeded"], BOUND),
    "j2k_lying_header": (CT_SLICE, ["dicom_pixel_decode"], BOUND),
    "deflate_bomb": ("dicom/ct/CT_small.dcm", ["limit_exceeded"], BOUND),
    "nifti_bomb": ("nifti/nibabel_functional.nii", ["limit_exceeded"], BOUND),
    "wfdb_bomb": ("ecg/wfdb/ptbxl_500hz_cinc2021/HR06001.hea", ["limit_exceeded"], BOUND),
    # a declared length only costs its 10 s window: the file holds less than that window
    "wfdb_declared_long": ("ecg/wfdb/ptbxl_500hz_cinc2021/HR06001.hea", ["ecg_signal_corrupt"], BOUND),
    # the 10 MB field itself is read (file, text, CSV parse): bounded by a few times its size
    "report_10mb_csv": (None, ["limit_exceeded"], 160 * MiB),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bomb_is_quarantined_with_bounded_memory(name, bombs, shared_data, tmp_path):
    warm_rel, expected, bound = CASES[name]
    kw = {}
    if warm_rel is None:  # the real export's header and one row without text (no NLP load)
        header, rows = _ptbxl_rows(shared_data, 1)
        warm = _write_csv(tmp_path / "warm.csv", header, [{**rows[0], "report": ""}])
    else:
        warm = shared_data / warm_rel
    path = bombs[name]
    if path.suffix == ".hea":
        kw["companions"] = [str(path.with_suffix(".mat"))]
        kw["warmup_companions"] = [str(warm.with_suffix(".mat"))]
    messages: list[str] = []
    out, growth = probe(path, warm, messages=messages, **kw)
    assert out == expected, (name, out)
    assert growth < bound, f"{name}: peak RSS grew by {growth / MiB:.0f} MiB"
    assert "decoding exhausted memory" not in messages, "stopped by a MemoryError, not by a limit check"


def test_gzip_wrapper_obeys_the_ratio_limit(bombs, shared_data):
    """A gzip-wrapped DICOM file inflating 400 MB: stopped at ratio x size (20 x 400 kB here)."""
    out, growth = probe(
        bombs["gzip_bomb"], shared_data / "dicom/ct/CT_small.dcm", limits={"max_decompression_ratio": 20.0}
    )
    assert out == ["limit_exceeded"]
    assert growth < BOUND, f"peak RSS grew by {growth / MiB:.0f} MiB"


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,lifted,warm_rel",
    [
        ("j2k_bomb", {"max_decompression_ratio": float("inf")}, CT_SLICE),
        ("deflate_bomb", {"max_decompression_ratio": float("inf")}, "dicom/ct/CT_small.dcm"),
        ("nifti_bomb", {"max_decompression_ratio": float("inf")}, "nifti/nibabel_functional.nii"),
    ],
)
def test_control_without_the_limit_memory_explodes(name, lifted, warm_rel, bombs, shared_data):
    """Control: the same bombs with the ratio limit lifted cost 100s of MiB (the bound is real),
    or, on a machine short of memory, exhaust it (the decoder's MemoryError is quarantined)."""
    messages: list[str] = []
    _, growth = probe(bombs[name], shared_data / warm_rel, limits=lifted, messages=messages)
    exhausted = messages == ["decoding exhausted memory"]
    assert growth > 2 * BOUND or exhausted, f"{name}: only {growth / MiB:.0f} MiB without the limit"


# ---------------------------------------------------------------------------------------------
# each limit, in process


def test_max_pixels_dicom_and_nifti(shared_data):
    ct = shared_data / "dicom/ct/CT_small.dcm"  # 128 x 128
    assert decode(ct, LimitsConfig(max_pixels=128 * 128)) == ["SeriesSlice"]
    assert decode(ct, LimitsConfig(max_pixels=128 * 128 - 1)) == ["limit_exceeded"]
    vol = shared_data / "nifti/nibabel_functional.nii"  # 17 x 21 x 3 x 20
    assert decode(vol, LimitsConfig(max_pixels=17 * 21 * 3)) == ["VolumeRecord"]
    assert decode(vol, LimitsConfig(max_pixels=17 * 21 * 3 - 1)) == ["limit_exceeded"]
    # policy "all" reads every volume of the 4-D series: the limit counts all of them
    all_volumes = {"volume": VolumeConfig(four_d_policy="all")}
    assert decode(vol, LimitsConfig(max_pixels=17 * 21 * 3 * 20), **all_volumes) == ["VolumeRecord"] * 20
    assert decode(vol, LimitsConfig(max_pixels=17 * 21 * 3 * 20 - 1), **all_volumes) == ["limit_exceeded"]


def test_nifti_huge_dims_uncompressed(shared_data, tmp_path):
    """A header (of the real CT) declaring 30000^3 int16 voxels over a few bytes of data."""
    hdr = nib.load(shared_data / "nifti/totalsegmentator_example_ct.nii.gz").header.copy()
    hdr.set_data_shape((30000, 30000, 30000))
    hdr.set_data_dtype(np.int16)
    hdr["vox_offset"] = 352
    path = tmp_path / "huge.nii"
    path.write_bytes(hdr.binaryblock + bytes(4) + bytes(64))
    assert decode(path, LimitsConfig()) == ["limit_exceeded"]


def test_max_ecg_samples_wfdb_and_dicom(shared_data):
    hea = shared_data / "ecg/wfdb/ptbxl_500hz_cinc2021/HR06000.hea"
    comp = (str(hea.with_suffix(".mat")),)
    # the window read is the whole 10 s record: 12 leads x 5000 samples
    assert decode(hea, LimitsConfig(max_ecg_samples=12 * 5000), comp) == ["EcgRecord"]
    assert decode(hea, LimitsConfig(max_ecg_samples=12 * 5000 - 1), comp) == ["limit_exceeded"]
    wave = shared_data / "ecg/dicom_waveform/waveform_ecg.dcm"  # 12 x 10,000 samples (rhythm)
    assert decode(wave, LimitsConfig(max_ecg_samples=12 * 10_000)) == ["EcgRecord"]
    assert decode(wave, LimitsConfig(max_ecg_samples=12 * 10_000 - 1)) == ["limit_exceeded"]


def test_max_text_chars_table_jsonl_and_text(shared_data, tmp_path):
    """The 10 MB report: its row is limit_exceeded, the rows around it are still reports."""
    header, rows = _ptbxl_rows(shared_data, 3)
    big = ("Vorhofflimmern. " * 700_000)[: 10 * MiB]
    table = [rows[0], {**rows[1], "report": big}, rows[2]]
    out = decode(_write_csv(tmp_path / "t.csv", header, table), LimitsConfig())
    assert out == ["ReportRecord", "limit_exceeded", "ReportRecord"]
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"report": r["report"], "patient_id": r["patient_id"]}) + "\n" for r in table)
    )
    assert decode(jsonl, LimitsConfig()) == ["ReportRecord", "limit_exceeded", "ReportRecord"]
    text = tmp_path / "report.txt"
    text.write_text(big)
    assert decode(text, LimitsConfig()) == ["limit_exceeded"]
    text.write_text(rows[0]["report"])
    assert decode(text, LimitsConfig()) == ["ReportRecord"]
    assert decode(text, LimitsConfig(max_text_chars=len(rows[0]["report"]) - 1)) == ["limit_exceeded"]


def test_max_file_bytes(shared_data):
    ct = shared_data / "dicom/ct/CT_small.dcm"
    size = ct.stat().st_size
    assert decode(ct, LimitsConfig(max_file_bytes=size)) == ["SeriesSlice"]
    assert decode(ct, LimitsConfig(max_file_bytes=size - 1)) == ["limit_exceeded"]


def test_decompression_ratio_spares_real_compressed_files(shared_data, bombs):
    """The ratio limit rejects the bombs, not real JPEG 2000 (lossless CT, lossy CR) or gzip
    files (the lossy CR decodes to 7.2 MB from 0.68 MB: ratio 10.6, under the 16 MiB floor)."""
    limits = LimitsConfig()
    cr = shared_data / "dicom/cxr/RG1_J2KI.dcm"
    assert decode(shared_data / CT_SLICE, limits) == ["SeriesSlice"]
    assert decode(cr, limits) == ["ImageRecord"]
    assert decode(shared_data / "nifti/totalsegmentator_example_ct.nii.gz", limits) == ["VolumeRecord"]
    assert decode(bombs["j2k_bomb"], limits) == ["limit_exceeded"]
    # below the 16 MiB floor the ratio is not applied; above it, it is
    assert decode(cr, replace(limits, max_decompression_ratio=5.0)) == ["ImageRecord"]
