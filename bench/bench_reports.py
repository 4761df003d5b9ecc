"""Benchmark: reports/s of the whole report text path against a regex-only baseline.

Whole path (``workers.report.ingest.decode_report_table``): CSV parsing, encoding/NFC
normalisation, rule-based de-identification, language detection, medspaCy sections + targets +
ConText, canonical JSON and the record. Baseline: CSV parsing plus the *same* target regexes
(``workers.report.nlp.vocab``) searched with ``re`` and a NegEx-style look-back for negation cues:
what a labeller without de-identification and without medspaCy costs.

Both run on the same reports, read in place from the shared sample data (PTB-XL ECG reports and
Indiana chest X-ray reports; the Indiana file is CC BY-NC-ND and is never copied). With
``--score`` both are also scored on the held-out test split (micro F1), so the ratio can be read
against what the medspaCy path buys.

Usage::

    .venv/bin/python bench/bench_reports.py [--data-dir ../shared/data/reports] [--repeat 3] [--score]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
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
from workers.report.ingest import compose_report_text, decode_report_table  # noqa: E402
from workers.report.nlp.vocab import CXR_TARGETS, ECG_TARGETS  # noqa: E402

SETS = {
    "ptbxl": (
        "ptbxl_ecg/ptbxl_database_subset_partA.csv",
        ColumnMapping(report_id="ecg_id", patient_id="patient_id", study_id="ecg_id", timestamp="recording_date",
                      text=("report",), report_type="cardiology"),
        ECG_TARGETS,
    ),
    "indiana": (
        "indiana_cxr/indiana_reports_partA.csv",
        ColumnMapping(report_id="uid", patient_id="uid", study_id="uid",
                      text=("indication", "comparison", "findings", "impression"), report_type="radiology"),
        CXR_TARGETS,
    ),
}  # fmt: skip
_NEG_CUE = re.compile(
    r"\b(?:no|not|without|negative\s+for|free\s+of|kein\w*|nicht|ohne|ingen|inga|inte)\b[^.\n;]*$", re.I
)


def _compile(table: dict[str, list[str]]) -> dict[str, re.Pattern]:
    return {
        label: re.compile(r"(?<![^\W_])(?:" + "|".join(f"(?:{p})" for p in pats) + ")", re.IGNORECASE)
        for label, pats in table.items()
    }


def regex_baseline(path: Path, mapping: ColumnMapping, patterns: dict[str, re.Pattern]) -> list[dict]:
    """CSV rows → {label: "present"|"negated"} with plain regexes and a same-sentence look-back."""
    out = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            text = compose_report_text(row, mapping.text)
            found: dict[str, str] = {}
            for label, rx in patterns.items():
                for m in rx.finditer(text):
                    start = max(text.rfind(".", 0, m.start()), text.rfind("\n", 0, m.start())) + 1
                    negated = bool(_NEG_CUE.search(text[start : m.start()]))
                    if not negated or label not in found:
                        found[label] = "negated" if negated else "present"
            out.append(found)
    return out


def full_path(path: Path, mapping: ColumnMapping) -> list:
    ctx = WorkerContext(pseudo=Pseudonymizer("bench-secret"), report=ReportConfig(columns=mapping))
    item = InputItem("fbench", str(path), InputKind.REPORT_TABLE, "bench", "bench", path.stat().st_size)
    return decode_report_table(item, ctx)


def _timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def _score_baseline(data_dir: Path, name: str, patterns: dict[str, re.Pattern]) -> float:
    """Micro F1 of the regex baseline on the held-out test split (same scoring as eval-labels)."""
    from pipelines.eval_labels import expand, load_gold, score

    gold = load_gold(name, data_dir, "test")
    golds, preds, resolved = [], [], []
    for rep in gold.reports:
        text = compose_report_text(rep.row, gold.text_columns)
        if not text.strip():
            continue
        if gold.scope == "non_context_sections":  # findings + impression only, like the rule path
            text = compose_report_text(rep.row, ("findings", "impression"))
        found = {}
        for label, rx in patterns.items():
            for m in rx.finditer(text):
                start = max(text.rfind(".", 0, m.start()), text.rfind("\n", 0, m.start())) + 1
                neg = bool(_NEG_CUE.search(text[start : m.start()]))
                if not neg or label not in found:
                    found[label] = "negated" if neg else "present"
        positive = expand(lab for lab, a in found.items() if a == "present")
        if gold.normal_label == "normal":
            positive = positive | ({"normal"} if not positive else set())
        elif "sinus_rhythm" in positive and not (
            positive - {"sinus_rhythm", "normal_ecg", "sinus_arrhythmia"}
        ):
            positive = positive | {"normal_ecg"}
        golds.append(rep.labels)
        preds.append(frozenset(positive))
        resolved.append(found)
    _, micro, _, _ = score(golds, preds, resolved, gold.labels)
    return micro.f1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/reports"
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median reported)")
    ap.add_argument("--score", action="store_true", help="also score both on the held-out test split")
    ap.add_argument("--json", type=Path, help="write the results as JSON")
    ap.add_argument("--pyrush", action="store_true", help="also time the whole path with PyRuSH sentences")
    args = ap.parse_args(argv)

    from workers.report.nlp.pipeline import get_nlp

    t0 = time.perf_counter()
    get_nlp(domains=("cxr",)), get_nlp(domains=("ecg",))
    build_s = time.perf_counter() - t0

    rows, results = [], {"pipeline_build_s": build_s, "sets": {}}
    total = {"n": 0, "full_s": 0.0, "base_s": 0.0}
    for name, (rel, mapping, table) in SETS.items():
        path = args.data_dir / rel
        patterns = _compile(table)
        full_path(path, mapping)  # warm-up (language profiles, regex caches)
        full_s, recs = _timed(lambda p=path, m=mapping: full_path(p, m), args.repeat)
        base_s, base = _timed(lambda p=path, m=mapping, pt=patterns: regex_baseline(p, m, pt), args.repeat)
        n = len(recs)
        assert n == len(base)
        n_ok = sum(isinstance(r, ReportRecord) for r in recs)
        entry = {
            "reports": n,
            "ingested": n_ok,
            "full_reports_per_s": n / full_s,
            "baseline_reports_per_s": n / base_s,
            "full_ms_per_report": 1000 * full_s / n,
            "baseline_ms_per_report": 1000 * base_s / n,
            "slowdown_full_vs_baseline": full_s / base_s,
        }
        if args.pyrush:
            import functools

            import workers.report.rules as rules
            from workers.report.nlp.pipeline import get_nlp as _get

            fast = rules.get_nlp
            rules.get_nlp = functools.partial(_get, "pyrush")
            try:
                full_path(path, mapping)
                pyrush_s, _ = _timed(lambda p=path, m=mapping: full_path(p, m), args.repeat)
            finally:
                rules.get_nlp = fast
            entry["pyrush_reports_per_s"] = n / pyrush_s
        if args.score:
            from pipelines.eval_labels import evaluate

            entry["test_micro_f1_full"] = evaluate(name, args.data_dir, "test").micro.f1
            entry["test_micro_f1_baseline"] = _score_baseline(args.data_dir, name, patterns)
        results["sets"][name] = entry
        total["n"] += n
        total["full_s"] += full_s
        total["base_s"] += base_s
        rows.append((name, entry))

    results["all"] = {
        "reports": total["n"],
        "full_reports_per_s": total["n"] / total["full_s"],
        "baseline_reports_per_s": total["n"] / total["base_s"],
        "slowdown_full_vs_baseline": total["full_s"] / total["base_s"],
    }
    print(f"medspaCy pipelines built in {build_s:.2f} s (once per process)")
    print("| set | reports | whole path reports/s | regex baseline reports/s | ratio (baseline/whole) |"
          + (" test micro-F1 whole | test micro-F1 baseline |" if args.score else ""))  # fmt: skip
    print("|---|---:|---:|---:|---:|" + ("---:|---:|" if args.score else ""))
    for name, e in rows + [("all", results["all"])]:
        line = (
            f"| {name} | {e['reports']} | {e['full_reports_per_s']:.1f} | {e['baseline_reports_per_s']:.1f} "
            f"| {e['slowdown_full_vs_baseline']:.1f}x |"
        )
        if args.score and "test_micro_f1_full" in e:
            line += f" {e['test_micro_f1_full']:.3f} | {e['test_micro_f1_baseline']:.3f} |"
        elif args.score:
            line += " | |"
        print(line)
    if args.pyrush:
        print("whole path with PyRuSH sentences (reports/s): "
              + ", ".join(f"{n}: {e['pyrush_reports_per_s']:.1f}" for n, e in rows))  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
