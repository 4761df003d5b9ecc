"""Benchmark: the same build on the local runner, Apache Beam and Dask, with 1 and 2 workers.

Input: a larger corpus generated from the real bundled sample files, replicated with new
identities: PTB-XL ECG records copied under new record names (``HR1xxxxx``) with matching
report-CSV rows under new ``ecg_id``/``patient_id``; DICOM images (CR, CT, MR, the JPEG 2000
chest CR) and the 20-slice CT series re-identified with pydicom (new PatientID/PatientName,
Study/Series/SOP Instance UIDs, accession); plus the four broken files of ``quarantine_demo``.
Copies are exact content duplicates, so dedup is switched off (it would drop or quarantine
them); every other stage runs as in the demo config.

Each measurement is a fresh Python process (like a CLI call: runner start-up, imports, model
loads and shutdown included) building from scratch (``use_cache=False``) into a new folder.
Reported: wall seconds per runner and worker count, per-stage seconds, each runner's overhead
against the local runner with the same worker count (ratio > 1 means slower than local), the
2-worker speed-up, and a check that every run wrote byte-identical output.

Usage: python bench/bench_runners.py [--ecg 60] [--images 24] [--series 1] [--repeats 1]
       [--runners local,beam,dask] [--workers 1,2] [--json build/bench/bench_runners.json]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EXAMPLES = REPO / "examples" / "data"
IMAGE_SOURCES = ("dicom/cr/6154", "dicom/ct/CT_small.dcm", "dicom/mr/MR_small.dcm", "dicom/cxr/RG1_J2KI.dcm")
ECG_SOURCES = ("HR06000", "HR06001", "HR06002", "HR06003", "HR06004")
# demo source name → folder in the generated input
SOURCE_PATHS = {
    "totalsegmentator_ct": "data/series",
    "pydicom_samples": "data/dicom",
    "ptbxl_ecg": "data/ecg",
    "ptbxl_reports": "data/reports",
    "broken_inputs": "data/quarantine_demo",
}


# --- input generation ------------------------------------------------------------------------------


def _reidentify(src: Path, dst: Path, copy: int, instance: str = "") -> None:
    """Copy a DICOM file with a new patient, study, series and instance identity (pixels untouched)."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(src)
    seed = f"medcorpus-bench|{copy}"
    ds.PatientID = f"BENCH{copy:06d}"
    ds.PatientName = f"BENCH^PATIENT{copy:06d}"
    ds.AccessionNumber = f"ACC{copy:08d}"
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[seed, "series"])
    sop = generate_uid(entropy_srcs=[seed, "sop", src.name, instance])
    ds.SOPInstanceUID = sop
    if getattr(ds, "file_meta", None) is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = sop
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst, enforce_file_format=False)


def _copy_ecg(stem: str, new_id: int, dst: Path) -> None:
    """Copy a PTB-XL WFDB record (header + .mat) under the record name ``HR{new_id}``."""
    src = EXAMPLES / "ecg" / "ptbxl_500hz"
    name = f"HR{new_id}"
    header = (src / f"{stem}.hea").read_text()
    header = header.replace(f"{stem}.mat", f"{name}.mat").replace(stem, name, 1)
    dst.mkdir(parents=True, exist_ok=True)
    (dst / f"{name}.hea").write_text(header)
    shutil.copyfile(src / f"{stem}.mat", dst / f"{name}.mat")


def generate(root: Path, n_ecg: int, n_images: int, n_series: int) -> dict:
    """Write the generated input under ``root/data``; returns counts per kind."""
    data = root / "data"
    # ECGs + their report rows (new ecg_id, new patient_id), plus the original rows unpaired
    with open(EXAMPLES / "reports" / "ptbxl_reports.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    by_id = {r[0]: r for r in body}
    out_rows = []
    for k in range(n_ecg):
        stem = ECG_SOURCES[k % len(ECG_SOURCES)]
        new_id = 100000 + k
        _copy_ecg(stem, new_id, data / "ecg" / f"{k // 100:03d}")
        row = list(by_id[stem[2:].lstrip("0")])
        row[0], row[1] = str(new_id), f"{500000 + k}.0"
        out_rows.append(row)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(out_rows + body)
    (data / "reports").mkdir(parents=True, exist_ok=True)
    (data / "reports" / "reports.csv").write_text(buf.getvalue(), encoding="utf-8")
    # DICOM images: the small ones in turn, every fourth copy the 1955x1841 JPEG 2000 chest CR
    for k in range(n_images):
        src = IMAGE_SOURCES[3] if k % 4 == 3 else IMAGE_SOURCES[k % 3]
        _reidentify(EXAMPLES / src, data / "dicom" / f"{k:05d}", 1000 + k)
    # CT series: all 20 slices, one new identity per copy
    slices = sorted((EXAMPLES / "dicom" / "ct" / "series_01").iterdir())
    for k in range(n_series):
        for i, s in enumerate(slices):
            _reidentify(s, data / "series" / f"{k:03d}" / f"{i:03d}", 2000 + k, instance=str(i))
    shutil.copytree(EXAMPLES / "quarantine_demo", data / "quarantine_demo")
    return {
        "ecg": n_ecg,
        "reports": len(out_rows) + len(body),
        "images": n_images,
        "series": n_series,
        "series_slices": n_series * len(slices),
        "broken": len(list((data / "quarantine_demo").iterdir())),
    }


def bench_config():
    """The demo config on the generated layout, dedup off (copies are duplicates by design)."""
    from pipelines.config import ShardConfig, load_config

    cfg = load_config(REPO / "examples" / "demo.yaml")
    sources = tuple(replace(s, path=SOURCE_PATHS[s.name]) for s in cfg.sources if s.name in SOURCE_PATHS)
    return replace(
        cfg,
        sources=sources,
        strict=True,
        dedup=replace(cfg.dedup, enabled=False),
        shards=ShardConfig(max_samples=32, max_bytes=64 << 20),
    )


# --- one measurement (child process) ----------------------------------------------------------------


class _Timed:
    """Runner wrapper that adds up the wall time of each stage (it forwards everything)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.workers = inner.workers
        self.stages: dict[str, float] = {}

    def _add(self, desc: str, t0: float) -> None:
        self.stages[desc] = self.stages.get(desc, 0.0) + time.perf_counter() - t0

    def map(self, fn, tasks, desc):
        t0 = time.perf_counter()
        try:
            return self.inner.map(fn, tasks, desc)
        finally:
            self._add(desc, t0)

    def group_map(self, key_fn, fn, items, desc):
        t0 = time.perf_counter()
        try:
            return self.inner.group_map(key_fn, fn, items, desc)
        finally:
            self._add(desc, t0)

    def close(self) -> None:
        self.inner.close()


def _digest(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out)
        if p.is_file() and rel.parts[0] not in ("cache", ".lock"):
            h.update(rel.as_posix().encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def run_one(runner_name: str, workers: int, input_dir: Path, out_dir: Path) -> dict:
    """Build once with a fresh runner; seconds include runner start-up and shutdown."""
    t0 = time.perf_counter()
    from pipelines.build import run_build
    from pipelines.runners import make_runner

    runner = _Timed(make_runner(runner_name, workers, quiet=True))
    try:
        res = run_build(input_dir, out_dir, bench_config(), quiet=True, runner=runner, use_cache=False)
    finally:
        runner.close()
    seconds = time.perf_counter() - t0
    return {
        "runner": runner_name,
        "workers": workers,
        "seconds": round(seconds, 2),
        "stages": {k: round(v, 2) for k, v in runner.stages.items()},
        "samples": res.n_samples,
        "shards": res.n_shards,
        "quarantined": res.n_quarantined,
        "files": res.n_files,
        "digest": _digest(out_dir),
    }


# --- driver ------------------------------------------------------------------------------------------


def _child(runner_name: str, workers: int, input_dir: Path, out_dir: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("LOGURU_LEVEL", "WARNING")
    env.setdefault("HF_HUB_OFFLINE", "1")
    proc = subprocess.run(
        [sys.executable, __file__, "--one", runner_name, str(workers), str(input_dir), str(out_dir)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{runner_name} with {workers} workers failed (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ecg", type=int, default=60, help="ECG records (each with a report row)")
    ap.add_argument("--images", type=int, default=24, help="DICOM images")
    ap.add_argument("--series", type=int, default=1, help="copies of the 20-slice CT series")
    ap.add_argument("--runners", default="local,beam,dask")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--repeats", type=int, default=1, help="runs per cell; the fastest counts")
    ap.add_argument("--json", type=Path, default=REPO / "build" / "bench" / "bench_runners.json")
    ap.add_argument("--one", nargs=4, metavar=("RUNNER", "WORKERS", "INPUT", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        r, w, i, o = args.one
        print(json.dumps(run_one(r, int(w), Path(i), Path(o))))
        return

    runners = [r for r in args.runners.split(",") if r]
    worker_counts = [int(w) for w in args.workers.split(",") if w]
    with tempfile.TemporaryDirectory(prefix="medcorpus-bench-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        counts = generate(tmp / "input", args.ecg, args.images, args.series)
        print(f"generated input in {time.perf_counter() - t:.1f}s: {counts}", flush=True)
        best: dict[tuple[str, int], dict] = {}
        for rep in range(args.repeats):
            for w in worker_counts:
                for r in runners:
                    out = tmp / f"out-{r}-{w}-{rep}"
                    res = _child(r, w, tmp / "input", out)
                    shutil.rmtree(out, ignore_errors=True)
                    print(f"  {r:5s} workers={w}: {res['seconds']:7.1f}s  stages={res['stages']}", flush=True)
                    if (r, w) not in best or res["seconds"] < best[(r, w)]["seconds"]:
                        best[(r, w)] = res
    digests = {v["digest"] for v in best.values()}
    identical = len(digests) == 1
    print()
    print(f"input: {counts}; output: {next(iter(best.values()))['samples']} samples")
    print("| runner | workers | wall s | vs local (same workers) | speed-up 1→2 workers |")
    print("|---|---|---|---|---|")
    rows = []
    for r in runners:
        for w in worker_counts:
            cell = best[(r, w)]
            local = best.get(("local", w))
            ratio = cell["seconds"] / local["seconds"] if local else None
            one = best.get((r, 1))
            speedup = one["seconds"] / cell["seconds"] if one and w != 1 else None
            rows.append({**cell, "vs_local": ratio, "speedup_vs_1_worker": speedup})
            print(
                f"| {r} | {w} | {cell['seconds']:.1f} | "
                f"{'' if ratio is None else f'{ratio:.2f}x'} | {'' if speedup is None else f'{speedup:.2f}x'} |"
            )
    print(f"\nbyte-identical output across all runs: {identical}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"input": counts, "cpus": os.cpu_count(), "identical": identical, "runs": rows}, indent=1)
    )
    print(f"results: {args.json}")
    if not identical:
        raise SystemExit("runners disagree: outputs are not byte-identical")


if __name__ == "__main__":
    main()
