"""Benchmark: ECG and NIfTI decoding, medcorpus decoders vs the bare library read.

ECG (WFDB): ``workers.ecg.wfdb.decode_wfdb`` (header + comment de-identification, the window
plus a filter margin read with wfdb, mV conversion, lead mapping, QC, ``resample_poly`` to 500 Hz,
float16 npy, hashing) against ``wfdb.rdrecord`` of the whole record alone (physical values, no
resampling). For long records (MIT-BIH: 30 min) the decoder reads only 10 s + margin, so it can
be faster than the bare read; the per-file lines show this.

ECG (DICOM): ``workers.ecg.dicom.decode_dicom_ecg`` against ``ds.waveform_array`` of every
multiplex group (both after ``pydicom.dcmread``, which is timed on both sides).

Volumes: ``workers.volume.nifti.decode_nifti`` (load, RAS reorientation, HU/int16 or native dtype,
plausibility check, slice redundancy, npy, hashing) against ``nibabel.load`` + ``get_fdata``.
For 4-D files the decoder reads only volume 0 (``four_d_policy="first"``) while ``get_fdata``
reads all volumes.

Prints items/s of each side, the ratio (medcorpus / baseline; > 1 means medcorpus is faster),
per file and in total, and writes the figures as JSON with ``--json``.
Run: ``.venv/bin/python bench/bench_ecg_volume.py [--rounds 5] [--data DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import nibabel as nib  # noqa: E402
import pydicom  # noqa: E402
import wfdb  # noqa: E402

from schemas import InputItem, InputKind  # noqa: E402
from workers.context import WorkerContext  # noqa: E402
from workers.deid.pseudonym import DEMO_SECRET, Pseudonymizer  # noqa: E402
from workers.ecg.dicom import decode_dicom_ecg  # noqa: E402
from workers.ecg.wfdb import decode_wfdb  # noqa: E402
from workers.volume.nifti import decode_nifti  # noqa: E402

DATA_CANDIDATES = (
    Path(os.environ.get("MEDCORPUS_SHARED_DATA", REPO.parent / "shared" / "data")),
    REPO / "examples" / "data",
)


def _item(path: Path, kind: InputKind) -> InputItem:
    return InputItem(
        source_id="f" + path.name.replace(".", "")[:15].lower(),
        path=str(path),
        kind=kind,
        source_name="bench",
        licence="bench",
        size_bytes=path.stat().st_size,
    )


def _time(fn: Callable[[], object], rounds: int) -> float:
    """Best-of-rounds wall time of one call, in seconds (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _row(name: str, ours: float, base: float) -> dict:
    return {
        "file": name,
        "medcorpus_s": round(ours, 6),
        "baseline_s": round(base, 6),
        "medcorpus_per_s": round(1 / ours, 2),
        "baseline_per_s": round(1 / base, 2),
        "ratio": round(base / ours, 3),
    }


def bench(data: Path, rounds: int) -> dict:
    ctx = WorkerContext(pseudo=Pseudonymizer(DEMO_SECRET))
    groups: dict[str, list[dict]] = {"ecg_wfdb": [], "ecg_dicom": [], "nifti": []}

    for hea in sorted(data.rglob("*.hea")):
        base = str(hea.with_suffix(""))
        try:
            wfdb.rdheader(base)
        except Exception:  # noqa: BLE001 - not a usable record: skip it in the benchmark
            continue
        item = _item(hea, InputKind.WFDB)
        ours = _time(lambda item=item: decode_wfdb(item, ctx), rounds)
        baseline = _time(lambda base=base: wfdb.rdrecord(base), rounds)
        groups["ecg_wfdb"].append(_row(hea.name, ours, baseline))

    for dcm in sorted(
        p for p in data.rglob("*.dcm") if "waveform" in p.parent.name or p.parent.name == "ecg"
    ):
        item = _item(dcm, InputKind.DICOM)

        def ours_fn(dcm=dcm, item=item):
            return decode_dicom_ecg(pydicom.dcmread(dcm), item, ctx)

        def base_fn(dcm=dcm):
            ds = pydicom.dcmread(dcm)
            return [ds.waveform_array(i) for i in range(len(ds.WaveformSequence))]

        groups["ecg_dicom"].append(_row(dcm.name, _time(ours_fn, rounds), _time(base_fn, rounds)))

    for nii in sorted(p for p in data.rglob("*") if p.name.endswith((".nii", ".nii.gz"))):
        item = _item(nii, InputKind.NIFTI)
        ours = _time(lambda item=item: decode_nifti(item, ctx), rounds)
        baseline = _time(lambda nii=nii: nib.load(nii).get_fdata(), rounds)
        groups["nifti"].append(_row(nii.name, ours, baseline))

    summary = {}
    for name, rows in groups.items():
        if not rows:
            continue
        ours_total = sum(r["medcorpus_s"] for r in rows)
        base_total = sum(r["baseline_s"] for r in rows)
        summary[name] = {
            "files": len(rows),
            "medcorpus_per_s": round(len(rows) / ours_total, 2),
            "baseline_per_s": round(len(rows) / base_total, 2),
            "ratio": round(base_total / ours_total, 3),
        }
    return {"data": str(data), "rounds": rounds, "per_file": groups, "summary": summary}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="timed repetitions per file (best is kept)")
    ap.add_argument("--data", type=Path, default=None, help="folder with WFDB/DICOM-ECG/NIfTI files")
    ap.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    args = ap.parse_args()
    data = args.data or next((d for d in DATA_CANDIDATES if d.is_dir()), None)
    if data is None:
        sys.exit("no sample data found (set --data or MEDCORPUS_SHARED_DATA)")
    result = bench(data, args.rounds)
    labels = {
        "ecg_wfdb": "ECG WFDB   decode_wfdb vs wfdb.rdrecord",
        "ecg_dicom": "ECG DICOM  decode_dicom_ecg vs dcmread+waveform_array",
        "nifti": "NIfTI      decode_nifti vs nibabel.load+get_fdata",
    }
    for name, rows in result["per_file"].items():
        if not rows:
            continue
        print(f"\n{labels[name]}")
        print(f"  {'file':40s} {'medcorpus/s':>12s} {'baseline/s':>12s} {'ratio':>7s}")
        for r in rows:
            print(
                f"  {r['file']:40s} {r['medcorpus_per_s']:12.1f} {r['baseline_per_s']:12.1f} {r['ratio']:7.2f}"
            )
        s = result["summary"][name]
        print(
            f"  {'TOTAL (' + str(s['files']) + ' files)':40s} {s['medcorpus_per_s']:12.1f} {s['baseline_per_s']:12.1f} {s['ratio']:7.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
