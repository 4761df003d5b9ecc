"""``medcorpus eval-labels --gold {indiana,ptbxl} --data-dir DIR [--split test] [--structurer rules|llm]``.

Scores the findings the report path extracts against human gold labels and prints per-label
precision/recall/F1, micro/macro averages and the negation confusion (see
``pipelines.eval_labels``). ``--json FILE`` also writes the numbers as JSON. Exit code 0, or 2
for a bad path/option (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipelines.config import ConfigError
from schemas.atomic import write_atomic


def register(sub) -> None:
    p = sub.add_parser(
        "eval-labels",
        help="score extracted report findings against gold labels (Indiana CXR, PTB-XL ECG)",
        description="Per-label precision/recall/F1, micro/macro averages and negation confusion of the "
        "report structurer on a held-out split of a gold file.",
    )
    p.add_argument(
        "--gold", required=True, nargs="+", choices=("indiana", "ptbxl"), help="gold set(s) to score"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        required=True,
        help="folder holding indiana_cxr/ and ptbxl_ecg/ (e.g. ../shared/data/reports); read in place",
    )
    p.add_argument(
        "--split", default="test", choices=("test", "dev", "all"), help="held-out split (default test)"
    )
    p.add_argument(
        "--structurer",
        default="rules",
        choices=("rules", "rules-only", "llm"),
        help="which path to score: rules (the report path: medspaCy rules + the shipped label model), "
        "rules-only (without the label model), llm",
    )
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument(
        "--errors",
        type=int,
        nargs="?",
        const=8,
        default=0,
        metavar="N",
        help="also print each label's N most frequent false positives/negatives, grouped by phrase "
        "(default N 8); use on the dev split only",
    )
    p.add_argument(
        "--reliability",
        type=Path,
        nargs="?",
        const=Path("__default__"),
        help="also write the per-label reliability table the data card shows (default: next to the "
        "shipped label model, workers/resources/labels_model/reliability.json); use with --split test",
    )
    llm = p.add_argument_group("LLM path (--structurer llm)")
    llm.add_argument("--llm-mode", default="server", choices=("server", "offline"))
    llm.add_argument("--llm-base-url", default="http://127.0.0.1:8000/v1")
    llm.add_argument(
        "--llm-model", default="", help="served model name (server) or local model folder (offline)"
    )
    llm.add_argument("--llm-cache-dir", default="", help="sidecar cache folder (empty: no cache)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.eval_labels import evaluate, format_errors, format_result, llm_structure_fn

    if not args.data_dir.is_dir():
        raise ConfigError(f"data folder not found: {args.data_dir}")
    fn = None
    if args.structurer == "llm":
        if not args.llm_model:
            raise ConfigError("--structurer llm needs --llm-model")
        fn = llm_structure_fn(
            mode=args.llm_mode, base_url=args.llm_base_url, model=args.llm_model, cache_dir=args.llm_cache_dir
        )
    results, res_objs = [], []
    for gold in args.gold:
        try:
            res = evaluate(
                gold,
                args.data_dir,
                args.split,
                args.structurer,
                fn,
                errors=args.errors > 0,
                top_errors=args.errors,
            )
        except (FileNotFoundError, KeyError) as exc:
            raise ConfigError(f"gold file for {gold!r} not readable under {args.data_dir}: {exc}") from exc
        print(format_result(res))
        print()
        if res.errors:
            print(format_errors(res))
        results.append(res.to_dict())
        res_objs.append(res)
    if args.reliability:
        import datetime

        from pipelines.eval_labels import RELIABILITY_FILE, reliability
        from workers.report.label_model import MODEL_DIR

        path = MODEL_DIR / RELIABILITY_FILE if str(args.reliability) == "__default__" else args.reliability
        table = reliability(res_objs, datetime.date.today().isoformat())
        write_atomic(path, (json.dumps(table, indent=1, sort_keys=True) + "\n").encode(), mode=0o666)
    if args.json:
        write_atomic(args.json, (json.dumps(results, indent=1, sort_keys=True) + "\n").encode(), mode=0o666)
    return 0
