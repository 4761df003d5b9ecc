"""ECG-only build against the hand-written loop (issue 15: target build / baseline >= 0.4).

Both run in this one process, one after the other, on the same WFDB files (page cache warmed
first by reading every file once):

1. baseline: for every record (sorted ``*.hea``), ``wfdb.rdrecord`` → physical signal → float16
   (leads x samples, 12 x 5000) → ``webdataset.ShardWriter`` (1000 samples per tar). Nothing else:
   no de-identification, lead mapping, QC, hashing or manifest. It runs wfdb's stock header
   parser (the build's workers use ``workers/ecg/wfdb_header.py``, the same results faster).
2. build: ``medcorpus build INPUT --config ECG_ONLY.yaml --out OUT --runner R --workers W --quiet``
   through ``pipelines.cli.main`` (in this process; ``--build-subprocess`` runs the CLI as a child
   instead) with a config that has the ECG source alone and dedup off (the generated
   ``INPUT/medcorpus_ecg_only.yaml``, else one written from ``scale_inputs.build_config``).

Prints records/s of both and the ratio build / baseline, and the ratio of records per CPU second
(every process of the build counted; robust to other load on a shared machine); ``--json``
writes them. ``--rounds K`` alternates the two K times and keeps the best of each.

Usage::

    .venv/bin/python bench/bench_ecg_baseline.py --n 1000 --work /tmp/ecgbase          # generate + run
    .venv/bin/python bench/bench_ecg_baseline.py --input WORK/inputs/n1000-... --work /tmp/ecgbase
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))

import scale_inputs  # noqa: E402
from proc_sampler import TreeCpu  # noqa: E402

BENCH_SECRET = "medcorpus-bench-scale-secret-0001"


def ecg_headers(input_dir: Path) -> list[Path]:
    root = input_dir / "ecg" if (input_dir / "ecg").is_dir() else input_dir
    return sorted(root.rglob("*.hea"))


def warm(headers: list[Path]) -> int:
    """Read every record's files once (so neither side pays the first disk read)."""
    n = 0
    for h in headers:
        for p in h.parent.glob(h.stem + ".*"):
            n += len(p.read_bytes())
    return n


def baseline(headers: list[Path], out: Path, maxcount: int = 1000) -> dict:
    import numpy as np
    import webdataset as wds
    import wfdb

    out.mkdir(parents=True, exist_ok=True)
    port = sys.modules.get("workers.ecg.wfdb_header")  # imported by an in-process build round
    if port is not None:
        port.uninstall()  # the loop runs stock wfdb, as a user's script would
    c0, t0 = time.process_time(), time.perf_counter()
    with wds.ShardWriter(str(out / "ecg-%06d.tar"), maxcount=maxcount, verbose=0) as sink:
        for h in headers:
            rec = wfdb.rdrecord(str(h.with_suffix("")))
            sink.write({"__key__": h.stem, "ecg.npy": rec.p_signal.T.astype(np.float16)})
    s, cpu = time.perf_counter() - t0, time.process_time() - c0
    if port is not None:
        port.install()
    return {
        "records": len(headers),
        "seconds": round(s, 3),
        "cpu_seconds": round(cpu, 3),
        "records_per_s": round(len(headers) / s, 1),
    }


def ecg_only_config(input_dir: Path, work: Path) -> Path:
    cfg = input_dir / scale_inputs.CONFIG_ECG_ONLY
    if cfg.is_file():
        return cfg
    import yaml

    path = work / "ecg_only.yaml"
    data = scale_inputs.build_config(ecg_only=True)
    if not (input_dir / "ecg").is_dir():
        data["sources"][0]["path"] = "."
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def build(
    input_dir: Path,
    cfg: Path,
    out: Path,
    runner: str,
    workers: int,
    subprocess_cli: bool,
    medcorpus: str | None,
) -> dict:
    argv = [
        "build",
        str(input_dir),
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--runner",
        runner,
        "--workers",
        str(workers),
        "--quiet",
    ]
    if not subprocess_cli:
        import pipelines.cli  # noqa: F401 - imported before the clock, as the baseline's imports

    with TreeCpu() as tree:  # driver, pool workers, watchdog helpers
        t0 = time.perf_counter()
        rc, err = _run_cli(argv, subprocess_cli, medcorpus)
        s = time.perf_counter() - t0
    cpu = tree.cpu_s
    stats = {}
    try:
        stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    return {
        "rc": rc,
        "error": err if rc else "",
        "seconds": round(s, 3),
        "cpu_seconds": round(cpu, 3),
        "n_samples": stats.get("n_samples"),
    }


def _run_cli(argv: list[str], subprocess_cli: bool, medcorpus: str | None) -> tuple[int, str]:
    """(exit code, error text) of ``medcorpus *argv`` in this process or as a child."""
    if subprocess_cli:
        exe = medcorpus or str(REPO / ".venv" / "bin" / "medcorpus")
        p = subprocess.run([exe, *argv], capture_output=True, text=True)
        return p.returncode, p.stderr[-2000:]
    from pipelines.cli import main as cli_main

    try:
        return cli_main(argv), ""
    except SystemExit as exc:  # argparse errors
        return int(exc.code or 1), "SystemExit"
    except Exception as exc:  # noqa: BLE001 - a failing build is a result here
        return 1, f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", type=Path, help="a generated input folder (or any folder of WFDB records)")
    src.add_argument("--n", type=int, help="generate this many ECGs (no X-rays/CT) into WORK/inputs first")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder for shards and the build")
    ap.add_argument("--seed", type=int, default=0, help="generator seed (with --n)")
    ap.add_argument("--runner", default="local", choices=["local", "beam", "dask"], help="build runner")
    ap.add_argument("--workers", type=int, default=1, help="build workers (default 1, as the issue measured)")
    ap.add_argument("--build-subprocess", action="store_true", help="run the build as a CLI child process")
    ap.add_argument("--medcorpus", help="medcorpus executable for --build-subprocess")
    ap.add_argument(
        "--rounds", type=int, default=1, help="alternate baseline and build this many times; best of each"
    )
    ap.add_argument(
        "--settle", type=float, default=35.0, help="seconds to wait after deleting outputs (see main)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the baseline shards and the build output")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    os.environ.setdefault("MEDCORPUS_SECRET", BENCH_SECRET)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.n:
        input_dir, _ = scale_inputs.ensure_inputs(work / "inputs", args.n, args.seed, 0, 0)
    else:
        input_dir = args.input.resolve()
    headers = ecg_headers(input_dir)
    if not headers:
        print(f"no WFDB headers under {input_dir}", file=sys.stderr)
        return 2
    warm(headers)
    base_out, build_out = work / "baseline_shards", work / "ecg_only_build"
    cfg = ecg_only_config(input_dir, work)
    bs, rs = [], []
    for _ in range(max(1, args.rounds)):  # alternated: a load change on a shared machine hits both
        for p in (base_out, build_out):
            shutil.rmtree(p, ignore_errors=True)
        # ext4 will not reuse an inode freed less than ~30 s ago (vm.dirty_expire_centisecs) and
        # scans past each one: file creation right after deleting a build's ~10^4 files cost a
        # 1-worker build 29 % of its CPU (perf, docs/scale.md, sixth session). The build creates
        # ~3 files per record, the loop one per 1,000: wait until the deleted inodes have aged.
        time.sleep(args.settle)
        bs.append(baseline(headers, base_out))
        print(
            f"baseline (wfdb.rdrecord -> float16 -> ShardWriter): {bs[-1]['records']} records, "
            f"{bs[-1]['records_per_s']:.0f}/s, {bs[-1]['cpu_seconds']:.1f} CPU s"
        )
        rs.append(
            build(input_dir, cfg, build_out, args.runner, args.workers, args.build_subprocess, args.medcorpus)
        )
        if rs[-1]["rc"] != 0:
            break
    b = min(bs, key=lambda x: x["seconds"])
    r = min(rs, key=lambda x: (x["rc"] != 0, x["seconds"]))
    res = {
        "records": len(headers),
        "rounds": len(rs),
        "baseline_records_per_s": b["records_per_s"],
        "baseline_seconds": b["seconds"],
        "baseline_cpu_seconds": min(x["cpu_seconds"] for x in bs),
        "build": r,
        "build_records_per_s": round(len(headers) / r["seconds"], 2) if r["rc"] == 0 else None,
        "runner": args.runner,
        "workers": args.workers,
        "in_process": not args.build_subprocess,
    }
    res["ratio"] = (
        round(res["build_records_per_s"] / b["records_per_s"], 4) if res["build_records_per_s"] else None
    )
    if r["rc"] == 0:
        cpu = min(x["cpu_seconds"] for x in rs)
        res["cpu_ratio"] = round(res["baseline_cpu_seconds"] / cpu, 4)  # records per CPU second, build / loop
        print(
            f"ECG-only build ({args.runner}, {args.workers} worker(s)): {r['n_samples']} samples, "
            f"{res['build_records_per_s']:.1f} records/s; build / baseline = {res['ratio']:.3f} (target >= 0.4); "
            f"per CPU second (all processes): {res['cpu_ratio']:.3f}"
        )
    else:
        print(f"ECG-only build failed (rc={r['rc']}): {r['error'][-1500:]}", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if not args.keep:
        for p in (base_out, build_out):
            shutil.rmtree(p, ignore_errors=True)
    return 0 if r["rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
