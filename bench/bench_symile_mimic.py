"""Symile-MIMIC build benchmark (issue 17): a MIMIC lookalike with N admissions, built from its tables.

For each size N: writes a lookalike in the published MIMIC-CXR-JPG / MIMIC-IV-ECG / MIMIC-IV
layouts (``tests/fixtures/mimic_lookalike.py``; every admission links an ECG, a PA/AP chest X-ray
and ``--labs`` lab events over ``--items`` lab items; the files replicate ``--replicas`` distinct
JPEGs and ECG signals from the shared real sample data), then runs the CLI build
(``examples/symile_mimic.yaml`` with dedup off: the images are replicas) in a subprocess and
reports:

* wall and CPU seconds of the build command (CPU: every process of its tree, so samples per CPU
  second stay comparable on a busy machine), and the peak resident memory of its tree (the peak
  of the sum over all processes at one instant, and the largest single process);
* seconds and samples per second of the whole build, of the link stages (identity join, study
  grouping, the anchor linker), of the labs stages (train CDFs, statistics, members) and of the
  table reading (admissions, lab events, metadata), from the build's ``run.json``;
* the growth exponent between consecutive sizes, ``log(t2 / t1) / log(n2 / n1)`` (1 = linear).

``--quick`` runs 200 and 800 admissions (a minute or two); the default is 5,000 and 20,000.
Run it niced on a shared machine::

    nice -n 19 .venv/bin/python bench/bench_symile_mimic.py --work /tmp/bsm [--quick] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.proc_sampler import TreeCpu, tree_rss  # noqa: E402
from tests.fixtures.mimic_lookalike import linked_scenario, make_lookalike  # noqa: E402

SHARED = Path(os.environ.get("MEDCORPUS_SHARED_DATA", REPO.parent / "shared" / "data"))
BENCH_SECRET = "medcorpus-bench-symile-mimic-0001"  # used only when MEDCORPUS_SECRET is unset
#: run.json stage names (``+`` joins fused stages) → group; first match wins
GROUPS = (
    ("labs", ("labs-",)),
    ("link", ("identity-", "link", "anchor-", "lab-events")),
    ("tables", ("table-rows", "table-counts")),
    ("decode", ("decode", "folders", "discover", "slices", "series")),
    ("write", ("write", "plan")),
)


def stage_group(name: str) -> str:
    """The group of a run.json stage name (``other`` when none matches)."""
    for group, prefixes in GROUPS:
        if any(part.startswith(prefixes) for part in name.split("+")):
            return group
    return "other"


def bench_config(work: Path, workers: int) -> Path:
    """``examples/symile_mimic.yaml`` with dedup off (replicated images), all admissions train."""
    cfg = yaml.safe_load((REPO / "examples" / "symile_mimic.yaml").read_text())
    cfg["dedup"] = {"enabled": False}
    cfg["workers"] = workers
    path = work / "symile_mimic_bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_size(n: int, args: argparse.Namespace, config: Path) -> dict:
    root, out = args.work / f"in-{n}", args.work / f"out-{n}"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    if not (root / "done").is_file():
        shutil.rmtree(root, ignore_errors=True)
        scenario = linked_scenario(n, labs_per_admission=args.labs, n_items=args.items)
        make_lookalike(root, SHARED, scenario, replicas=args.replicas, reports=False)
        (root / "done").write_text("ok\n")
    t_gen = time.perf_counter() - t0
    env = dict(os.environ)
    env.setdefault("MEDCORPUS_SECRET", BENCH_SECRET)
    cmd = [sys.executable, "-m", "pipelines.cli", "build", str(root), "--config", str(config)]
    cmd += ["--out", str(out), "--workers", str(args.workers)]
    log_path = args.work / f"build-{n}.log"  # a file, not a pipe: nobody drains a pipe while sampling
    t0 = time.perf_counter()
    with TreeCpu() as cpu, open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        rss = tree_rss(proc.pid)
        proc.wait()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise SystemExit(f"build of {n} admissions failed (exit {proc.returncode}):\n{tail}")
    run = json.loads((out / "run.json").read_text())
    stats = json.loads((out / "stats.json").read_text())
    groups: dict[str, float] = {}
    for name, sec in run["stage_seconds"].items():
        groups[stage_group(name)] = groups.get(stage_group(name), 0.0) + float(sec)
    samples = int(
        stats.get("samples", stats.get("n_samples", 0)) or sum(stats["samples_with_modalities"].values())
    )
    lab_rows = stats["tables"]["counts"]["labevents"]["rows"]
    res = {
        "admissions": n,
        "lab_events": lab_rows,
        "samples": samples,
        "generate_s": round(t_gen, 1),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu.cpu_s, 1),
        "build_s": run["seconds"]["total"],
        "stage_s": {k: round(v, 3) for k, v in sorted(groups.items())},
        **rss,
    }
    res["samples_per_s"] = {
        "build": round(samples / wall, 1),
        "build_per_cpu_s": round(samples / cpu.cpu_s, 1) if cpu.cpu_s else None,
        **{g: round(n / groups[g], 1) for g in ("link", "labs", "tables") if groups.get(g)},
    }
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return res


def _exponent(x: float, y: float, k: float) -> float | None:
    return round(math.log(y / x) / k, 2) if x > 0 and y > 0 else None


def growth(rows: list[dict]) -> list[dict]:
    """Exponent of each measure between consecutive sizes: log(y2 / y1) / log(n2 / n1)."""
    out = []
    for a, b in zip(rows, rows[1:], strict=False):
        k = math.log(b["admissions"] / a["admissions"])
        g = {"from": a["admissions"], "to": b["admissions"], "wall": _exponent(a["wall_s"], b["wall_s"], k)}
        g["cpu"] = _exponent(a.get("cpu_s", 0), b.get("cpu_s", 0), k)
        for s in ("link", "labs", "tables", "decode"):
            g[f"stage_{s}"] = _exponent(a["stage_s"].get(s, 0), b["stage_s"].get(s, 0), k)
        g["sum_peak_rss"] = _exponent(a["sum_peak_mb"], b["sum_peak_mb"], k)
        g["max_process_peak_rss"] = _exponent(a["max_process_peak_mb"], b["max_process_peak_mb"], k)
        out.append(g)
    return out


def table(rows: list[dict]) -> str:
    head = "| admissions | lab events | samples | wall s | samples/s | link s (adm/s) | labs s (adm/s) | tables s | decode s | peak RSS sum / max process MB |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        s, ps = r["stage_s"], r["samples_per_s"]
        lines.append(
            f"| {r['admissions']:,} | {r['lab_events']:,} | {r['samples']:,} | {r['wall_s']:.1f} | {ps['build']:.1f} "
            f"| {s.get('link', 0):.1f} ({ps.get('link', 0):,.0f}) | {s.get('labs', 0):.2f} ({ps.get('labs', 0):,.0f}) "
            f"| {s.get('tables', 0):.1f} | {s.get('decode', 0):.1f} | {r['sum_peak_mb']:.0f} / {r['max_process_peak_mb']:.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="folder for inputs and outputs")
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000], help="admissions per run")
    ap.add_argument("--quick", action="store_true", help="sizes 200 and 800")
    ap.add_argument("--labs", type=int, default=50, help="lab events per admission")
    ap.add_argument("--items", type=int, default=50, help="distinct lab items")
    ap.add_argument("--replicas", type=int, default=64, help="distinct JPEGs / ECG signals")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the build outputs")
    ap.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes = [200, 800]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    config = bench_config(args.work, args.workers)
    rows = []
    for n in sorted(args.sizes):
        rows.append(run_size(n, args, config))
        print(json.dumps(rows[-1]), flush=True)
    result = {"rows": rows, "growth": growth(rows), "workers": args.workers, "cpus": os.cpu_count()}
    print(table(rows))
    for g in result["growth"]:
        print(
            f"growth {g['from']:,} -> {g['to']:,}: "
            + ", ".join(f"{k} {v}" for k, v in g.items() if k not in ("from", "to"))
        )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
