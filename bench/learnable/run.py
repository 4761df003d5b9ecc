"""The learnable benchmark end to end: generate → ``medcorpus build`` → ``train`` → ``evaluate``.

Usage: ``python bench/learnable/run.py WORKDIR [--patients 600] [--losses clip symile]``

Steps (each one a real CLI call, resumable: existing outputs are reused):
1. ``bench/learnable/generate.py WORKDIR/input`` (raw DICOM, WFDB and report CSVs);
2. ``medcorpus build WORKDIR/input --config bench/learnable/build.yaml --out WORKDIR/corpus``;
3. per loss: ``medcorpus train --shards WORKDIR/corpus --config bench/learnable/train_{loss}.yaml``;
4. per loss: ``medcorpus evaluate --split test`` (held-out patients).
Prints R@1 against chance for image–text and ECG–text (the acceptance bar is 5x chance), with the
wall-clock and CPU seconds of each step, and writes WORKDIR/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PAIRS = ("image->report", "report->image", "ecg->report", "report->ecg", "image->ecg")


def _run(cmd: list[str], timings: dict, name: str) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    timings[name] = {
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workdir", type=Path)
    p.add_argument("--patients", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--losses", nargs="+", default=["clip", "symile"], choices=["clip", "symile"])
    a = p.parse_args(argv)
    work = a.workdir.resolve()
    bin_dir = Path(sys.executable).parent
    medcorpus = str(bin_dir / "medcorpus")
    timings: dict = {}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    if not (work / "input").is_dir():
        _run(
            [
                sys.executable,
                str(HERE / "generate.py"),
                str(work / "input"),
                "--patients",
                str(a.patients),
                "--seed",
                str(a.seed),
            ],
            timings,
            "generate",
        )
    if not (work / "corpus" / "manifest.parquet").is_file():
        _run(
            [
                medcorpus,
                "build",
                str(work / "input"),
                "--config",
                str(HERE / "build.yaml"),
                "--out",
                str(work / "corpus"),
                "--quiet",
            ],
            timings,
            "build",
        )
    summary: dict = {"patients": a.patients, "timings": timings, "results": {}}
    for loss in a.losses:
        run_dir = work / f"run_{loss}"
        ckpt = run_dir / "checkpoints" / "latest.pt"
        _run(
            [
                medcorpus,
                "train",
                "--shards",
                str(work / "corpus"),
                "--config",
                str(HERE / f"train_{loss}.yaml"),
                "--out",
                str(run_dir),
                "--resume",
                "auto",
            ],
            timings,
            f"train_{loss}",
        )
        out = work / f"eval_{loss}.json"
        _run(
            [
                medcorpus,
                "evaluate",
                "--checkpoint",
                str(ckpt),
                "--shards",
                str(work / "corpus"),
                "--split",
                "test",
                "--out",
                str(out),
            ],
            timings,
            f"evaluate_{loss}",
        )
        summary["results"][loss] = json.loads(out.read_text())
    (work / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))

    print("\n| loss | pair | n | R@1 | chance | R@1 / chance | R@5 | R@10 |")
    print("|---|---|---|---|---|---|---|---|")
    ok = True
    for loss, res in summary["results"].items():
        for pair in PAIRS:
            r = res["retrieval"].get(pair)
            if r is None:
                continue
            ratio = r["R@1"] / r["chance@1"]
            if pair in ("image->report", "ecg->report"):
                ok = ok and ratio >= 5
            print(
                f"| {loss} | {pair} | {r['n']} | {r['R@1']:.3f} | {r['chance@1']:.4f} | {ratio:.1f}x | "
                f"{r['R@5']:.3f} | {r['R@10']:.3f} |"
            )
    for loss, res in summary["results"].items():
        for m, z in res["zero_shot"].items():
            print(f"zero-shot {loss} {m}: macro AUROC {z['macro_auroc']:.3f} over {sorted(z['labels'])}")
        for pair, g in res["modality_gap"].items():
            print(f"modality gap {loss} {pair}: {g['gap']:.3f} (true-pair cosine {g['pair_cosine']:.3f})")
    print("timings:", json.dumps(timings))
    print(
        "acceptance (image->report and ecg->report R@1 >= 5x chance, every loss):", "PASS" if ok else "FAIL"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
