"""Scale benchmark (issue 15): the CLI build at growing corpus sizes on each runner, with the peak
memory of every process, and growth exponents. A long benchmark: not run in CI.

For each size N (ECG records; plus N/100 chest X-rays and N/1000 CT series, see
``bench/scale_inputs.py``) the input is generated once under ``WORKDIR/inputs/`` (reused by later
runs with the same parameters). For each runner, the build runs as a separate process, exactly as
a user runs it::

    .venv/bin/medcorpus build INPUT --config INPUT/medcorpus.yaml --out OUT --runner R --workers W --quiet

with ``MEDCORPUS_SECRET`` set (yours, else a fixed benchmark secret), into a fresh ``OUT``. While it
runs, the resident memory (RSS) of the driver process and of every descendant (worker pools, Beam
SDK workers, Dask nanny/worker processes) is sampled every ``--poll`` seconds (psutil). Reported:

* wall seconds, samples (``OUT/stats.json`` ``n_samples``), samples/s, CPU seconds of the process
  tree (``wait4`` rusage: the driver and the descendants it reaped);
* peak RSS of the driver, the largest peak of any descendant ("max worker"), and the peak of the
  sum over all processes at one instant (RSS counts shared pages in every process that maps
  them, so the sum over-states forked workers' memory; it is an upper bound);
* output bytes (``OUT/shards``) and everything in ``OUT`` (the cache/blob store included);
* per-stage seconds from ``OUT/run.json`` if the build writes one;
* a no-op rerun of the same command on the finished ``OUT`` (wall seconds, peaks);
* whether the outputs of the runners are identical for the same N (the sha256 columns of
  ``OUT/shards.parquet`` and ``OUT/manifest.parquet``, or the shard files' hashes);
* growth exponents between consecutive sizes: ``log(t2/t1) / log(n2/n1)`` for wall time and for
  each peak, plus the peak ratios (issue 15 accepts <= 1.1 for time, and peak(10^5) <= 1.3 x
  peak(10^4) for every process).

Results go to ``WORKDIR/scale.json`` (updated after every build, so a crash keeps what finished)
and as markdown tables to ``WORKDIR/scale.md`` and stdout. A failed build (non-zero exit, timeout,
``--max-rss-gb`` exceeded) is reported with the tail of its stderr and the benchmark goes on.

Examples::

    .venv/bin/python bench/bench_scale.py --sizes 1000 10000 100000 --runners local dask beam \\
        --workers 2 --max-n-beam 30000 --out /scratch/scale
    .venv/bin/python bench/bench_scale.py --sizes 300 --runners local --out /tmp/scale   # harness check
    .venv/bin/python bench/bench_scale.py --sizes 1000 --runners local --ecg-baseline --out /tmp/scale

``--ecg-baseline`` also runs ``bench/bench_ecg_baseline.py`` per size (hand-written wfdb →
float16 → webdataset.ShardWriter loop against an ECG-only build of the same files).
Disk: about 0.17 MB of input per ECG (N = 10^5: ~17 GB, generated once) and, at N = 300, 0.37 MB
per ECG in each build folder (shards 0.17 MB plus the blob store and cache): use
``--delete-outputs`` when several runners run at 10^5 (the identity check's digests are taken first).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale_inputs  # noqa: E402

BENCH_SECRET = "medcorpus-bench-scale-secret-0001"  # used only when MEDCORPUS_SECRET is unset
MB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# running one command under the memory sampler
# ---------------------------------------------------------------------------------------------


def _label(p) -> str:
    """A short role name for a process: its name and the interesting part of its command line."""
    try:
        cmd = p.cmdline()
    except Exception:  # noqa: BLE001 - gone or not readable
        return "?"
    text = " ".join(cmd[1:4]) if cmd else p.name()
    return f"{p.name()}: {text}"[:100]


def _kill_tree(pid: int) -> None:
    """SIGTERM, then SIGKILL, the process group the build was started in (ours)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                done, _, _ = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            time.sleep(0.2)


def run_measured(
    cmd: list[str],
    env: dict,
    log_dir: Path,
    name: str,
    poll: float = 0.2,
    timeout: float = 0.0,
    max_rss_bytes: int = 0,
) -> dict:
    """Run ``cmd``; sample RSS of it and every descendant every ``poll`` s until it exits."""
    import psutil

    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.stdout", log_dir / f"{name}.stderr"
    peaks: dict[int, int] = {}
    labels: dict[int, str] = {}
    sum_peak = 0
    max_procs = 0
    samples = 0
    killed = ""
    t0 = time.perf_counter()
    with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
        proc = subprocess.Popen(cmd, env=env, stdout=fo, stderr=fe, start_new_session=True)
    driver = psutil.Process(proc.pid)
    status = 0
    ru = None
    while True:
        try:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:
            pid = proc.pid
        if pid:
            break
        try:
            procs = [driver, *driver.children(recursive=True)]
        except psutil.Error:
            procs = [driver]
        total = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            total += rss
            if rss > peaks.get(p.pid, 0):
                peaks[p.pid] = rss
            if p.pid not in labels:
                labels[p.pid] = ("driver " if p.pid == proc.pid else "child ") + _label(p)
        sum_peak = max(sum_peak, total)
        max_procs = max(max_procs, len(procs))
        samples += 1
        elapsed = time.perf_counter() - t0
        if timeout and elapsed > timeout:
            killed = f"timeout after {timeout:.0f}s"
        elif max_rss_bytes and total > max_rss_bytes:
            killed = f"RSS sum {total / 1e9:.1f} GB > limit {max_rss_bytes / 1e9:.1f} GB"
        if killed:
            _kill_tree(proc.pid)
            status, ru = 0, None
            break
        time.sleep(poll)
    wall = time.perf_counter() - t0
    proc.returncode = -9 if killed else os.waitstatus_to_exitcode(status)
    workers = {pid: rss for pid, rss in peaks.items() if pid != proc.pid}
    top = max(workers, key=workers.get) if workers else None
    return {
        "cmd": cmd,
        "rc": proc.returncode,
        "killed": killed,
        "wall_s": round(wall, 2),
        "cpu_s": round(ru.ru_utime + ru.ru_stime, 2) if ru else None,
        # ru_maxrss (KiB on Linux): the largest single process among the driver and reaped children
        "ru_maxrss_mb": round(ru.ru_maxrss / 1024, 1) if ru else None,
        "driver_peak_mb": round(peaks.get(proc.pid, 0) / MB, 1),
        "max_worker_peak_mb": round(workers[top] / MB, 1) if top else 0.0,
        "max_worker": labels.get(top, "") if top else "",
        "sum_peak_mb": round(sum_peak / MB, 1),
        "n_processes_seen": len(peaks),
        "max_concurrent_processes": max_procs,
        "rss_samples": samples,
        "per_process_peak_mb": sorted(
            (
                {"pid": pid, "label": labels.get(pid, ""), "peak_mb": round(v / MB, 1)}
                for pid, v in peaks.items()
            ),
            key=lambda r: -r["peak_mb"],
        )[:20],
        "stdout": str(out_path),
        "stderr": str(err_path),
        "stderr_tail": _tail(err_path) if (proc.returncode or killed) else "",
    }


def _tail(path: Path, n: int = 2500) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-n:].decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# reading a finished build
# ---------------------------------------------------------------------------------------------


def _tree_bytes(root: Path) -> int:
    total = 0
    if not root.exists():
        return 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def build_facts(out: Path) -> dict:
    """Counts, bytes and stage times of a finished build (whatever of it exists)."""
    stats = _read_json(out / "stats.json") or {}
    run = _read_json(out / "run.json")
    per_mod = stats.get("per_modality") or {}
    facts = {
        "n_samples": stats.get("n_samples"),
        "per_modality": per_mod,
        "n_quarantined": sum(int(v.get("quarantined", 0)) for v in per_mod.values() if isinstance(v, dict))
        if per_mod
        else None,
        "dedup": stats.get("dedup"),
        "shards_bytes": _tree_bytes(out / "shards"),
        "out_bytes": _tree_bytes(out),
        "run_json": run,
        "stages": _stages(run),
    }
    facts["n_shards"] = sum(1 for _ in (out / "shards").rglob("*.tar")) if (out / "shards").is_dir() else 0
    return facts


def _stages(run: dict | None) -> dict[str, float]:
    """Flatten run.json's timing dicts (``seconds``, ``stage_seconds``, or any dict of numbers)."""
    if not isinstance(run, dict):
        return {}
    out: dict[str, float] = {}
    for key, val in run.items():
        if isinstance(val, dict):
            for k, v in val.items():
                if isinstance(v, int | float) and not isinstance(v, bool):
                    out[f"{key}.{k}" if key != "stage_seconds" else k] = float(v)
    return out


def _digest_columns(path: Path, want=("sha256",)) -> str | None:
    """sha256 over the columns whose name contains ``sha256`` (plus key/name columns), row order."""
    try:
        import pyarrow.parquet as pq

        t = pq.read_table(path)
    except Exception:  # noqa: BLE001 - absent or unreadable: no digest
        return None
    cols = [c for c in t.column_names if any(w in c for w in want)]
    cols += [c for c in t.column_names if c in ("key", "__key__", "name", "shard", "split")]
    if not cols:
        return None
    h = hashlib.sha256()
    for c in sorted(set(cols)):
        h.update(c.encode() + b"\0")
        for v in t.column(c).to_pylist():
            h.update(repr(v).encode() + b"\n")
    return h.hexdigest()


def _digest_shard_files(out: Path) -> str | None:
    shards = out / "shards"
    if not shards.is_dir():
        return None
    h = hashlib.sha256()
    for p in sorted(shards.rglob("*")):
        if p.is_file():
            d = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    d.update(chunk)
            h.update(p.relative_to(shards).as_posix().encode() + b"\0" + d.digest())
    return h.hexdigest()


def output_digest(out: Path, hash_files: bool) -> dict:
    d = {
        "shards_parquet": _digest_columns(out / "shards.parquet"),
        "manifest_parquet": _digest_columns(out / "manifest.parquet"),
    }
    if hash_files or (d["shards_parquet"] is None and d["manifest_parquet"] is None):
        d["shard_files"] = _digest_shard_files(out)
    return d


# ---------------------------------------------------------------------------------------------
# analysis and tables
# ---------------------------------------------------------------------------------------------


def _exp(a: float | None, b: float | None, n1: float, n2: float) -> float | None:
    if not a or not b or a <= 0 or b <= 0 or n1 <= 0 or n2 <= n1:
        return None
    return math.log(b / a) / math.log(n2 / n1)


def growth(results: list[dict]) -> list[dict]:
    rows = []
    for runner in dict.fromkeys(r["runner"] for r in results):
        ok = sorted(
            (r for r in results if r["runner"] == runner and r.get("status") == "ok"),
            key=lambda r: r["n_ecg"],
        )
        for a, b in zip(ok, ok[1:], strict=False):
            n1 = a.get("n_samples") or a["n_ecg"]
            n2 = b.get("n_samples") or b["n_ecg"]
            row = {"runner": runner, "n1": a["n_ecg"], "n2": b["n_ecg"]}
            row["time_exp"] = _exp(a["wall_s"], b["wall_s"], n1, n2)
            for k in ("driver_peak_mb", "max_worker_peak_mb", "sum_peak_mb"):
                row[f"{k}_exp"] = _exp(a[k], b[k], n1, n2)
                row[f"{k}_ratio"] = (b[k] / a[k]) if a[k] else None
            rows.append(row)
    return rows


def identity(results: list[dict]) -> dict[int, dict]:
    """Per N: are the outputs of every successful runner identical?"""
    out: dict[int, dict] = {}
    for n in sorted({r["n_ecg"] for r in results}):
        runs = [r for r in results if r["n_ecg"] == n and r.get("status") == "ok" and r.get("digest")]
        if len(runs) < 2:
            continue
        ref = runs[0]
        verdict = {}
        for r in runs[1:]:
            keys = [k for k, v in ref["digest"].items() if v is not None and r["digest"].get(k) is not None]
            verdict[r["runner"]] = bool(keys) and all(ref["digest"][k] == r["digest"][k] for k in keys)
        out[n] = {"reference": ref["runner"], "same": verdict}
    return out


def _f(v, fmt="{:.1f}", none="–") -> str:
    if v is None:
        return none
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def _gb(b) -> str:
    return "–" if b is None else f"{b / 1e9:.2f}"


def markdown(doc: dict) -> str:
    res = doc["results"]
    lines = [
        "# medcorpus scale benchmark",
        "",
        f"{doc['started']} · {doc['machine']} · commit {doc['commit']}",
        f"command: `{doc['argv']}`",
        "",
        "## Inputs",
        "",
        "| N (ECG) | patients | CXR | CT series | files | input GB | generated in s | ECG records/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, s in sorted(doc["inputs"].items(), key=lambda kv: int(kv[0])):
        c = s["counts"]
        lines.append(
            f"| {int(n):,} | {c['patients']:,} | {c['cxr']:,} | {c['ct_series']:,} | {c['files']:,} | "
            f"{sum(s['bytes'].values()) / 1e9:.2f} | {s['seconds']['total']:.1f} | {s['ecg_records_per_s']:.0f} |"
        )
    ident = identity(res)
    lines += [
        "",
        "## Builds",
        "",
        "Peaks are RSS in MB, sampled every "
        f"{doc['poll_s']} s: driver = the `medcorpus build` process; max worker = the largest peak of any "
        "descendant; sum = peak of the sum over all processes at one instant (counts shared pages "
        "once per process: an upper bound).",
        "",
        "| runner | N | workers | status | wall s | samples | samples/s | CPU s | driver peak | max worker peak "
        "| sum peak | procs | shards GB | OUT GB | identical |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res:
        same = "–"
        if r["n_ecg"] in ident:
            i = ident[r["n_ecg"]]
            same = (
                "ref"
                if r["runner"] == i["reference"]
                else ("yes" if i["same"].get(r["runner"]) else "**no**")
            )
        if r.get("status") in ("skipped",):
            lines.append(
                f"| {r['runner']} | {r['n_ecg']:,} | {r['workers']} | skipped ({r['why']}) |" + " |" * 11
            )
            continue
        lines.append(
            f"| {r['runner']} | {r['n_ecg']:,} | {r['workers']} | {r['status']} | {_f(r.get('wall_s'))} | "
            f"{_f(r.get('n_samples'), '{:,}')} | {_f(r.get('samples_per_s'))} | {_f(r.get('cpu_s'))} | "
            f"{_f(r.get('driver_peak_mb'), '{:.0f}')} | {_f(r.get('max_worker_peak_mb'), '{:.0f}')} | "
            f"{_f(r.get('sum_peak_mb'), '{:.0f}')} | {r.get('n_processes_seen', '–')} | {_gb(r.get('shards_bytes'))} | "
            f"{_gb(r.get('out_bytes'))} | {same} |"
        )
    reruns = [r for r in res if r.get("rerun")]
    if reruns:
        lines += [
            "",
            "## No-op rerun (same command on the finished output)",
            "",
            "| runner | N | status | wall s | x first build | driver peak | max worker peak | sum peak | resumed |",
            "|---|---:|---|---:|---:|---:|---:|---:|---|",
        ]
        for r in reruns:
            q = r["rerun"]
            ratio = q["wall_s"] / r["wall_s"] if r.get("wall_s") else None
            lines.append(
                f"| {r['runner']} | {r['n_ecg']:,} | {q['status']} | {q['wall_s']:.1f} | {_f(ratio, '{:.2f}')} | "
                f"{q['driver_peak_mb']:.0f} | {q['max_worker_peak_mb']:.0f} | {q['sum_peak_mb']:.0f} | "
                f"{q.get('resumed', '–')} |"
            )
    staged = [r for r in res if r.get("stages")]
    if staged:
        lines += [
            "",
            "## Stages (seconds, from OUT/run.json)",
            "",
            "| runner | N | stages |",
            "|---|---:|---|",
        ]
        for r in staged:
            st = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
            lines.append(f"| {r['runner']} | {r['n_ecg']:,} | {st} |")
    else:
        lines += ["", "No per-stage times: the builds wrote no OUT/run.json."]
    g = growth(res)
    if g:
        lines += [
            "",
            "## Growth between consecutive sizes",
            "",
            "Exponent = log(ratio) / log(samples ratio) (1 = linear, 0 = flat). Issue 15 accepts a time "
            "exponent <= 1.1 and peak(10^5) <= 1.3 x peak(10^4) for every process.",
            "",
            "| runner | N1 → N2 | time exp | driver mem exp (ratio) | max worker mem exp (ratio) | sum mem exp (ratio) |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for row in g:

            def m(k, row=row):
                return f"{_f(row[f'{k}_exp'], '{:.2f}')} ({_f(row[f'{k}_ratio'], '{:.2f}')}x)"

            lines.append(
                f"| {row['runner']} | {row['n1']:,} → {row['n2']:,} | {_f(row['time_exp'], '{:.2f}')} | "
                f"{m('driver_peak_mb')} | {m('max_worker_peak_mb')} | {m('sum_peak_mb')} |"
            )
    base = doc.get("ecg_baseline") or {}
    if base:
        lines += [
            "",
            "## ECG-only build vs hand-written loop (bench/bench_ecg_baseline.py)",
            "",
            "| N | baseline records/s | build records/s | build / baseline | target |",
            "|---:|---:|---:|---:|---|",
        ]
        for n, b in sorted(base.items(), key=lambda kv: int(kv[0])):
            if "error" in b:
                lines.append(f"| {int(n):,} | – | – | – | error: {b['error'][:80]} |")
                continue
            build = b.get("build") or {}
            note = (
                ">= 0.4" if not build.get("rc") else f">= 0.4 (build failed: {build.get('error', '')[-60:]})"
            )
            lines.append(
                f"| {int(n):,} | {b['baseline_records_per_s']:.0f} | {_f(b.get('build_records_per_s'), '{:.1f}')} | "
                f"{_f(b.get('ratio'), '{:.3f}')} | {note} |"
            )
    failed = [r for r in res if r.get("status") not in ("ok", "skipped")]
    if failed:
        lines += ["", "## Failures", ""]
        for r in failed:
            lines += [
                f"### {r['runner']} N={r['n_ecg']:,}: {r['status']}",
                "",
                "```",
                (r.get("stderr_tail") or "").strip()[-2000:],
                "```",
                "",
            ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------


def _machine() -> str:
    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 1e9:.0f} GB RAM"
    except ImportError:
        mem = "? RAM"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{platform.node()} {os.cpu_count()} CPUs {mem}, load at start {load}, Python {platform.python_version()}"


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _medcorpus_cmd(path: str | None) -> list[str]:
    if path:
        return [path]
    exe = REPO / ".venv" / "bin" / "medcorpus"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pipelines.cli"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench_scale.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--out", type=Path, required=True, help="work folder: inputs/, builds/, logs/, scale.md/json"
    )
    ap.add_argument(
        "--sizes", type=int, nargs="+", default=[1000, 10000, 100000], help="numbers of ECG records"
    )
    ap.add_argument(
        "--runners",
        nargs="+",
        default=["local", "dask", "beam"],
        choices=["local", "beam", "dask"],
        help="runners",
    )
    ap.add_argument("--workers", type=int, default=2, help="--workers of every build (default 2)")
    for r in ("local", "beam", "dask"):
        ap.add_argument(f"--max-n-{r}", type=int, default=0, help=f"largest N to run on {r} (0: no limit)")
    ap.add_argument("--seed", type=int, default=0, help="input generator seed")
    ap.add_argument(
        "--layout", choices=["mimic", "flat"], default="mimic", help="ECG folder layout of the input"
    )
    ap.add_argument("--cxr-per", type=int, default=100, help="one chest X-ray per this many ECGs")
    ap.add_argument("--ct-per", type=int, default=1000, help="one CT series per this many ECGs")
    ap.add_argument(
        "--max-samples", type=int, default=1000, help="shards.max_samples in the generated config"
    )
    ap.add_argument("--gen-jobs", type=int, default=1, help="processes for input generation (same bytes)")
    ap.add_argument("--config", type=Path, help="build config (default: the generated INPUT/medcorpus.yaml)")
    ap.add_argument("--medcorpus", help="the medcorpus executable (default: .venv/bin/medcorpus)")
    ap.add_argument("--build-arg", action="append", default=[], help="extra build argument, repeatable")
    ap.add_argument("--poll", type=float, default=0.2, help="RSS sampling interval, seconds")
    ap.add_argument(
        "--timeout", type=float, default=0, help="kill a build after this many seconds (0: never)"
    )
    ap.add_argument(
        "--max-rss-gb", type=float, default=0, help="kill a build whose summed RSS exceeds this (0: no limit)"
    )
    ap.add_argument("--no-rerun", action="store_true", help="skip the no-op rerun measurement")
    ap.add_argument(
        "--hash-files", action="store_true", help="also hash every shard file for the identity check"
    )
    ap.add_argument("--delete-outputs", action="store_true", help="delete each build folder once measured")
    ap.add_argument(
        "--ecg-baseline", action="store_true", help="also run bench/bench_ecg_baseline.py per size"
    )
    ap.add_argument(
        "--baseline-workers", type=int, default=1, help="workers of the ECG-only build (default 1)"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("MEDCORPUS_SECRET", BENCH_SECRET)
    env.setdefault("LOGURU_LEVEL", "WARNING")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    doc: dict = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "commit": _commit(),
        "argv": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "poll_s": args.poll,
        "workers": args.workers,
        "inputs": {},
        "results": [],
        "ecg_baseline": {},
    }
    json_path, md_path = work / "scale.json", work / "scale.md"

    def save() -> None:
        json_path.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        md_path.write_text(markdown(doc), encoding="utf-8")

    base_cmd = _medcorpus_cmd(args.medcorpus)
    for n in sorted(set(args.sizes)):
        inp, summary = scale_inputs.ensure_inputs(
            work / "inputs",
            n,
            args.seed,
            args.cxr_per,
            args.ct_per,
            layout=args.layout,
            jobs=args.gen_jobs,
            max_samples=args.max_samples,
        )
        doc["inputs"][str(n)] = summary
        cfg = args.config or inp / scale_inputs.CONFIG
        for runner in args.runners:
            cap = getattr(args, f"max_n_{runner}")
            row: dict = {"runner": runner, "n_ecg": n, "workers": args.workers}
            if cap and n > cap:
                doc["results"].append(row | {"status": "skipped", "why": f"N > --max-n-{runner} {cap}"})
                save()
                continue
            out = work / "builds" / f"{runner}-n{n}-w{args.workers}"
            if out.exists():
                shutil.rmtree(out)
            cmd = [
                *base_cmd,
                "build",
                str(inp),
                "--config",
                str(cfg),
                "--out",
                str(out),
                "--runner",
                runner,
                "--workers",
                str(args.workers),
                "--quiet",
                *args.build_arg,
            ]
            print(f"[{runner} N={n}] {' '.join(cmd)}", flush=True)
            m = run_measured(
                cmd,
                env,
                work / "logs",
                f"{runner}-n{n}",
                args.poll,
                args.timeout,
                int(args.max_rss_gb * 1e9),
            )
            row |= m
            row["status"] = (
                "ok" if m["rc"] == 0 and not m["killed"] else (m["killed"] or f"failed rc={m['rc']}")
            )
            row |= build_facts(out)
            if row.get("n_samples"):
                row["samples_per_s"] = round(row["n_samples"] / m["wall_s"], 2)
            if row["status"] == "ok":
                row["digest"] = output_digest(out, args.hash_files)
                if not args.no_rerun:
                    q = run_measured(
                        cmd,
                        env,
                        work / "logs",
                        f"{runner}-n{n}-rerun",
                        args.poll,
                        args.timeout,
                        int(args.max_rss_gb * 1e9),
                    )
                    q["status"] = (
                        "ok" if q["rc"] == 0 and not q["killed"] else (q["killed"] or f"failed rc={q['rc']}")
                    )
                    mres = re.search(r"\((\d+) resumed\)", Path(q["stdout"]).read_text(errors="replace"))
                    q["resumed"] = int(mres.group(1)) if mres else None
                    q.pop("per_process_peak_mb", None)
                    row["rerun"] = q
            print(
                f"[{runner} N={n}] {row['status']}: {m['wall_s']:.1f}s, samples {row.get('n_samples')}, "
                f"driver {m['driver_peak_mb']:.0f} MB, max worker {m['max_worker_peak_mb']:.0f} MB, "
                f"sum {m['sum_peak_mb']:.0f} MB",
                flush=True,
            )
            if row["status"] != "ok":
                print(row.get("stderr_tail", "")[-1500:], file=sys.stderr, flush=True)
            if args.delete_outputs:
                shutil.rmtree(out, ignore_errors=True)
            doc["results"].append(row)
            save()
        if args.ecg_baseline:
            doc["ecg_baseline"][str(n)] = _run_baseline(inp, work, n, args, env)
            save()
    save()
    md = markdown(doc)
    print()
    print(md)
    print(f"written: {md_path} and {json_path}")
    return 0


def _run_baseline(inp: Path, work: Path, n: int, args, env: dict) -> dict:
    out_json = work / "logs" / f"ecg-baseline-n{n}.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve().parent / "bench_ecg_baseline.py"),
        "--input",
        str(inp),
        "--work",
        str(work / "baseline" / f"n{n}"),
        "--workers",
        str(args.baseline_workers),
        "--json",
        str(out_json),
    ]
    if args.medcorpus:
        cmd += ["--medcorpus", args.medcorpus]
    print(f"[ecg-baseline N={n}] {' '.join(cmd)}", flush=True)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    res = _read_json(out_json)
    if res is None:
        return {"error": (p.stderr or p.stdout)[-1500:] or f"rc={p.returncode}"}
    return res


if __name__ == "__main__":
    sys.exit(main())
