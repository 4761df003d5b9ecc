"""Benchmark: reports/s per core of the whole report path, with and without the label model.

Whole path = ``workers.report.ingest.decode_report_table`` (CSV parsing, normalisation,
de-identification, language detection, medspaCy rules, the learned label layer, canonical JSON,
record) over the shared sample reports (PTB-XL and Indiana, read in place). Each configuration
runs ``--repeat`` times in this one process (pinned to one core where ``os.sched_setaffinity``
exists); the median is reported both as wall-clock and as process CPU time, since on a shared
machine the CPU time is the steadier per-core figure.

Usage::

    .venv/bin/python bench/bench_labels.py [--data-dir ../shared/data/reports] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("LOGURU_LEVEL", "WARNING")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas.records import InputItem, InputKind, ReportRecord  # noqa: E402
from workers.config import ColumnMapping, ReportConfig  # noqa: E402
from workers.context import WorkerContext  # noqa: E402
from workers.deid.pseudonym import Pseudonymizer  # noqa: E402
from workers.report.ingest import decode_report_table  # noqa: E402

SETS = {
    "ptbxl": ("ptbxl_ecg/ptbxl_database_subset_partA.csv",
              ColumnMapping(report_id="ecg_id", patient_id="patient_id", study_id="ecg_id",
                            timestamp="recording_date", text=("report",), report_type="cardiology")),
    "indiana": ("indiana_cxr/indiana_reports_partA.csv",
                ColumnMapping(report_id="uid", patient_id="uid", study_id="uid",
                              text=("indication", "comparison", "findings", "impression"), report_type="radiology")),
}  # fmt: skip


def run_path(path: Path, mapping: ColumnMapping) -> list:
    ctx = WorkerContext(pseudo=Pseudonymizer("bench-secret"), report=ReportConfig(columns=mapping))
    item = InputItem("lbench", str(path), InputKind.REPORT_TABLE, "bench", "bench", path.stat().st_size)
    return decode_report_table(item, ctx)


def measure(fn, repeat: int) -> tuple[float, float, list]:
    """Median wall and CPU seconds of ``fn`` over ``repeat`` runs, and its last result."""
    walls, cpus, out = [], [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/reports"
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    import workers.report.rules as rr
    from workers.report.label_model import model_versions

    versions = model_versions()
    results = []
    print(f"label models: {versions}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| set | reports | labeller | wall reports/s | CPU reports/s (per core) |")
    print("|---|---:|---|---:|---:|")
    for name, (rel, mapping) in SETS.items():
        path = args.data_dir / rel
        run_path(path, mapping)  # warm-up: pipelines and models built once per process
        for labeller in ("rules + label model", "rules only"):
            original = rr.apply_label_model
            if labeller == "rules only":
                rr.apply_label_model = lambda structured, text, model: structured
            try:
                wall, cpu, recs = measure(lambda p=path, m=mapping: run_path(p, m), args.repeat)
            finally:
                rr.apply_label_model = original
            n = sum(isinstance(r, ReportRecord) for r in recs)
            row = {
                "set": name,
                "reports": n,
                "labeller": labeller,
                "wall_per_s": n / wall,
                "cpu_per_s": n / cpu,
            }
            results.append(row)
            print(f"| {name} | {n} | {labeller} | {row['wall_per_s']:.0f} | {row['cpu_per_s']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"label_models": versions, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
