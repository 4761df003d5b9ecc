"""Reports per CPU-second of the whole report path, one process (the issue-16 speed goal is per core).

The path is ``workers.report.ingest.decode_report_table`` as ``bench/bench_reports.py`` runs it
(CSV, NFC, text de-identification, language detection, medspaCy sections/targets/ConText,
canonical JSON, the record), on the PTB-XL and Indiana reports read in place from the shared data.
``bench/bench_reports.py`` reports wall-clock seconds, which a busy machine inflates; this script
takes ``time.process_time`` (the best of ``--repeat`` runs after a warm-up that builds medspaCy).

Usage::

    .venv/bin/python bench/deid_report_path.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("LOGURU_LEVEL", "WARNING")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.bench_reports import SETS, full_path  # noqa: E402

DEFAULT_DATA = Path(os.environ.get("MEDCORPUS_SHARED_DATA", REPO.parent / "shared" / "data")) / "reports"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    total_n, total_cpu = 0, 0.0
    for name, (rel, mapping, _targets) in SETS.items():
        full_path(args.data_dir / rel, mapping)  # warm-up: medspaCy pipelines, caches
        best, n = float("inf"), 0
        for _ in range(args.repeat):
            t0 = time.process_time()
            n = len(full_path(args.data_dir / rel, mapping))
            best = min(best, time.process_time() - t0)
        print(f"{name}: {n} reports, {n / best:.0f} reports per CPU-second")
        total_n, total_cpu = total_n + n, total_cpu + best
    print(f"all: {total_n} reports, {total_n / total_cpu:.0f} reports per CPU-second")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
