"""Benchmark: free-text de-identification on surrogate PHI inserted into real report sentences.

The corpus (``bench/deid_corpus.py``) is built at run time from the shared sample data; phrasing
templates are split into dev and test (``bench/deid_templates.py``): tune on ``--split dev``,
report ``--split test``. Prints recall per type, strict leaks, over-redaction of protected
clinical controls, collateral on the real reports of the split and reports/s of
``workers.deid.text.deidentify_text`` on all real reports, one process. With ``--peers`` the same
corpus is scored with Presidio and philter-lite from the separate benchmark environment
``.venv-peers`` (``bench/deid_peers_env.sh``); a peer that is not installed is skipped.

Usage::

    .venv/bin/python bench/bench_text_deid.py [--split test] [--per-template 10] [--peers] [--json out.json]
    .venv/bin/python bench/bench_text_deid.py --split dev --since d-en-236 --per-template 30  # a new round
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.deid_corpus import CorpusConfig, generate, real_reports  # noqa: E402
from bench.deid_metrics import Scores, _Cover, score_collateral, score_examples  # noqa: E402
from bench.deid_templates import DEV  # noqa: E402
from workers.deid.pseudonym import Pseudonymizer  # noqa: E402
from workers.deid.text import deidentify_text, find_phi_spans  # noqa: E402

log = logging.getLogger("bench_text_deid")
DEFAULT_DATA = Path(os.environ.get("MEDCORPUS_SHARED_DATA", REPO.parent / "shared" / "data")) / "reports"
PEERS_PY = REPO / ".venv-peers" / "bin" / "python"


def project_system(pseudo: Pseudonymizer, patient: str):
    def detect(text: str) -> list[tuple[int, int]]:
        return [(s, e) for s, e, cat, _ in find_phi_spans(text, patient, pseudo) if cat != "placeholder"]

    return detect


def peer_spans(peer: str, texts: list[str]) -> tuple[list[list[tuple[int, int]]], float] | None:
    """Spans of a peer for each text, and its reports/s; ``None`` if the peer can't run."""
    if not PEERS_PY.exists():
        return None
    res = subprocess.run(
        [str(PEERS_PY), str(REPO / "bench" / "deid_peers.py"), peer],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        err = [ln for ln in res.stderr.splitlines() if "Error" in ln or "Resource" in ln][:1]
        log.warning("peer %s could not run: %s", peer, err[0].strip() if err else "see its stderr")
        return None
    out = json.loads(res.stdout)
    log.info("peer %s: %s", peer, out.get("note", ""))
    return [[tuple(s) for s in spans] for spans in out["spans"]], out["reports_per_s"]


def reports_per_second(texts: list[str], pseudo: Pseudonymizer, patient: str, repeat: int = 2) -> float:
    """Reports per second of CPU time of this process (one core; robust to a busy machine)."""
    deidentify_text("warm up", patient, pseudo)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for t in texts:
            deidentify_text(t, patient, pseudo)
        best = min(best, time.process_time() - t0)
    return len(texts) / best


def round_templates(since: str) -> set[str]:
    """The dev template ids from ``since`` onward, in the order of ``DEV`` (one tuning round)."""
    ids = [t[0] for t in DEV]
    if since not in ids:
        raise SystemExit(f"no dev template {since!r}")
    return set(ids[ids.index(since) :])


def evaluate(
    data_dir: Path, split: str, per_template: int, seed: int = 16, since: str | None = None
) -> tuple[Scores, list, list[str]]:
    examples = generate(CorpusConfig(data_dir, split, per_template, seed))
    if since:  # the same draws as the whole split, scored on one round's templates (and the controls)
        keep = round_templates(since)
        examples = [e for e in examples if e.template in keep or e.controls]
    reals = [r.text for r in real_reports(data_dir) if r.split == split]
    pseudo = Pseudonymizer("bench-secret-0123456789")
    system = project_system(pseudo, pseudo.patient("bench"))
    scores = score_examples(examples, system)
    score_collateral(reals, system, scores)
    return scores, examples, reals


def _fmt(v: float) -> str:
    return f"{100 * v:6.1f}%" if v == v else "     - "


def print_table(columns: dict[str, dict[str, float]]) -> None:
    names = list(columns)
    print(f"{'':28s}" + "".join(f"{n:>16s}" for n in names))
    keys = [k for k in next(iter(columns.values())) if k not in ("items", "controls", "items_leaked")]
    for k in keys:
        row = f"{k:28s}"
        for n in names:
            v = columns[n].get(k, float("nan"))
            row += f"{v:16.0f}" if k == "reports_per_s" else f"{_fmt(v):>16s}"
        print(row)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--split", choices=("dev", "test"), default="test")
    ap.add_argument("--per-template", type=int, default=10)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--peers", action="store_true", help="also score Presidio and philter-lite (.venv-peers)")
    ap.add_argument(
        "--show-leaks", type=int, default=0, help="print N missed items as shapes (dev split only)"
    )
    ap.add_argument(
        "--since", help="dev split: score only the templates from this id on (a new round's phrasings)"
    )
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.since and args.split != "dev":
        ap.error("--since is for the dev split")
    scores, examples, reals = evaluate(args.data_dir, args.split, args.per_template, args.seed, args.since)
    pseudo = Pseudonymizer("bench-secret-0123456789")
    all_reals = [r.text for r in real_reports(args.data_dir)]
    columns = {"medcorpus": {**scores.summary(), "reports_per_s": reports_per_second(all_reals, pseudo, "p")}}
    s = scores.summary()
    print(
        f"split={args.split}: {len(examples)} examples, {s['items']} PHI items, {s['controls']} controls, "
        f"{len(reals)} real reports"
    )
    if args.peers:
        texts = [e.text for e in examples]
        for peer in ("presidio", "philter"):
            got = peer_spans(peer, texts + reals)
            if got is None:
                print(
                    f"peer {peer}: not available offline or not installed (bench/deid_peers_env.sh), skipped"
                )
                continue
            spans, rps = got
            it = iter(spans[: len(texts) + len(reals)])
            ps = score_examples(examples, lambda _t, it=it: next(it))
            score_collateral(reals, lambda _t, it=it: next(it), ps)
            columns[peer] = {**ps.summary(), "reports_per_s": rps}
    print_table(columns)
    if args.show_leaks and args.split == "dev":
        _show_leaks(examples, scores, args.show_leaks)
    by_src = {k: f"{v[0]}/{v[1]}" for k, v in sorted(scores.by_source.items())}
    print("name leaks by name source (leaked/total):", by_src)
    if args.json:
        args.json.write_text(json.dumps(columns, indent=1, sort_keys=True))
    return 0


def _shape(value: str) -> str:
    """The letter/digit shape of a value ("Xxxx Xxxxx", "ddd-dddd"): never the value itself."""
    return re.sub(r"\d", "d", re.sub(r"[^\W\d_]", lambda m: "X" if m.group(0).isupper() else "x", value))


def _mask(ex) -> str:
    """The example's text with every surrogate value replaced by its shape (same length)."""
    text = ex.text
    for item in ex.phi:
        text = text[: item.start] + _shape(text[item.start : item.end]) + text[item.end :]
    return text


def _show_leaks(examples, scores: Scores, n: int) -> None:
    """Missed items (type, template, the shape of the value and its neighbouring words; no values)."""
    pseudo = Pseudonymizer("bench-secret-0123456789")
    system = project_system(pseudo, pseudo.patient("bench"))
    shown = 0
    for ex in examples:
        spans = system(ex.text)
        cover = _Cover(spans)  # touching spans count as one, as in the scores
        for item in ex.phi:
            if all(cover.covers(a, b) for a, b in item.tokens):
                continue
            masked = _mask(ex)
            before = " ".join(masked[: item.start].split()[-3:])
            after = " ".join(masked[item.end :].split()[:3])
            print(
                f"[{item.type}/{ex.template}/{item.source or '-'}] ...{before} <{_shape(ex.text[item.start : item.end])}> {after}..."
            )
            shown += 1
            if shown >= n:
                return
        for c in ex.controls:
            if any(s < c.end and c.start < e for s, e in spans):
                print(f"[over/{c.kind}] {ex.text[c.start : c.end]!r}")  # a clinical term, no PHI
                shown += 1


if __name__ == "__main__":
    raise SystemExit(main())
