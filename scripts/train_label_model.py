"""Train the learned report labeller (``workers.report.label_model``) on the *dev* split of the gold sets.

For each gold set (PTB-XL → ``ecg``, Indiana → ``cxr``):

1. run the dev reports through the real report path (de-identification, language detection,
   medspaCy rules without the learned layer);
2. features (:func:`workers.report.label_model.featurize`): word 1-3-grams, character 4-grams of long
   words (TF-IDF, min df 2) and the rule outputs (one-hot block of weight ``RULE_WEIGHT``);
3. per label, 5-fold cross-validation grouped by patient over a small grid (C, class weight,
   threshold): the out-of-fold F1 of the best setting is compared with the rules' F1 on the
   same reports; the label goes to ``stack`` mode only if it has at least ``MIN_SUPPORT`` dev
   positives and beats the rules by ``MARGIN``, otherwise it stays ``rules``;
4. refit the chosen setting on all dev reports and write ``<domain>.json.gz`` and
   ``cv_report.json`` under ``workers/resources/labels_model/``.

The test split is never read. Needs scikit-learn (a training-time tool only; inference is
NumPy). Usage::

    .venv/bin/python scripts/train_label_model.py [--data-dir ../shared/data/reports] [--out DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("LOGURU_LEVEL", "WARNING")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from workers.report.label_model import FEATURE_VERSION, MODEL_DIR, featurize, rule_features  # noqa: E402

log = logging.getLogger("train_label_model")

DOMAIN_OF = {"ptbxl": "ecg", "indiana": "cxr"}


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (recorded in the model file)."""

    folds: int = 5
    min_df: int = 2
    char_min_len: int = 7
    rule_weight: float = 1.0
    grid_c: tuple[float, ...] = (3.0, 10.0, 30.0)
    grid_class_weight: tuple[str, ...] = ("none", "balanced")
    grid_threshold: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
    min_support: int = 8
    margin: float = 0.01
    prune: float = 0.005  # weights below this magnitude are dropped from the shipped file
    seed: int = 0


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _counts(pred: np.ndarray, y: np.ndarray) -> tuple[int, int, int]:
    return int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())


def dev_rows(gold_name: str, data_dir: Path) -> tuple[object, list[dict]]:
    """Dev reports of a gold set through the report path, with rule-only structured output."""
    from pipelines.eval_labels import deidentified_reports, load_gold, predicted_labels
    from schemas.records import ReportRecord
    from workers.report.rules import CONTEXT_SECTIONS, model_text, prepare_nlp_text, structure_many

    gold = load_gold(gold_name, data_dir, "dev")
    kept = [(rep, rec) for rep, rec in deidentified_reports(gold) if isinstance(rec, ReportRecord)]
    structured = structure_many(
        [rec.text for _, rec in kept],
        [rec.report_type for _, rec in kept],
        [rec.language for _, rec in kept],
        learned=False,
    )
    ctx = CONTEXT_SECTIONS if gold.report_type == "radiology" else frozenset()
    rows = []
    for (rep, rec), st in zip(kept, structured, strict=True):
        rows.append(
            {
                "group": rep.row.get(gold.patient_column) or rep.key,
                "gold": rep.labels,
                "rules_pred": predicted_labels(st, gold.scope, gold.normal_label)[0],
                "text": model_text(st, prepare_nlp_text(rec.text)),
                "rules": rule_features(st, ctx),
            }
        )
    return gold, rows


def _matrix(feats: list[dict[str, float]], vocab: dict[str, int], idf: np.ndarray, cfg: TrainConfig):
    """The same vectors as ``LabelModel.vector`` (TF-IDF text block + rule block)."""
    from scipy.sparse import csr_matrix

    indptr, indices, data = [0], [], []
    for fd in feats:
        idx, val, ridx = [], [], []
        for f, c in fd.items():
            i = vocab.get(f)
            if i is None:
                continue
            if f.startswith("r:"):
                ridx.append(i)
            else:
                idx.append(i)
                val.append((1.0 + np.log(c)) * idf[i])
        v = np.asarray(val)
        if len(v):
            v = v / (np.linalg.norm(v) or 1.0)
        indices += idx + ridx
        data += list(v) + [cfg.rule_weight] * len(ridx)
        indptr.append(len(indices))
    return csr_matrix((data, indices, indptr), shape=(len(feats), len(idf)))


def _vocab(feats: list[dict[str, float]], cfg: TrainConfig) -> tuple[list[str], np.ndarray]:
    """Features with document frequency >= min_df (rule features always) and smooth IDF."""
    df: dict[str, int] = {}
    for fd in feats:
        for f in fd:
            df[f] = df.get(f, 0) + 1
    n = len(feats)
    names = sorted(f for f, d in df.items() if d >= cfg.min_df or f.startswith("r:"))
    idf = np.asarray([np.log((1 + n) / (1 + df[f])) + 1.0 for f in names])
    return names, idf


def _fit(x, y: np.ndarray, c: float, cw: str, seed: int):
    from sklearn.linear_model import LogisticRegression

    m = LogisticRegression(
        C=c,
        class_weight=None if cw == "none" else "balanced",
        solver="liblinear",
        max_iter=3000,
        random_state=seed,
    )
    m.fit(x, y)
    return m


def train_domain(gold, rows: list[dict], cfg: TrainConfig) -> tuple[dict, dict]:
    """Cross-validate, choose modes, refit; returns (model JSON, CV report)."""
    from sklearn.model_selection import GroupKFold

    feats = [featurize(r["text"], r["rules"], cfg.char_min_len) for r in rows]
    labels = gold.labels
    y_all = np.array([[lab in r["gold"] for lab in labels] for r in rows], dtype=bool)
    rules_all = np.array([[lab in r["rules_pred"] for lab in labels] for r in rows], dtype=bool)
    groups = [r["group"] for r in rows]
    settings = [(c, cw) for c in cfg.grid_c for cw in cfg.grid_class_weight]
    oof = {s: np.zeros(y_all.shape) for s in settings}
    for tr, te in GroupKFold(cfg.folds).split(rows, groups=groups):
        names, idf = _vocab([feats[i] for i in tr], cfg)
        vocab = {f: i for i, f in enumerate(names)}
        x_tr = _matrix([feats[i] for i in tr], vocab, idf, cfg)
        x_te = _matrix([feats[i] for i in te], vocab, idf, cfg)
        for j in range(len(labels)):
            y = y_all[tr, j]
            for s in settings:
                if y.sum() < 2 or y.all():
                    oof[s][te, j] = float(y.mean())
                else:
                    oof[s][te, j] = _fit(x_tr, y, s[0], s[1], cfg.seed).predict_proba(x_te)[:, 1]

    report, heads_cfg = {}, {}
    for j, lab in enumerate(labels):
        y = y_all[:, j]
        rules_c = _counts(rules_all[:, j], y)
        best = None
        for s in settings:
            for t in cfg.grid_threshold:
                c = _counts(oof[s][:, j] >= t, y)
                if best is None or _f1(*c) > _f1(*best[2]):
                    best = (s, t, c)
        s, t, c = best
        text_only = _f1(*_counts(oof[(10.0, "none")][:, j] >= 0.5, y)) if (10.0, "none") in oof else None
        mode = (
            "stack" if int(y.sum()) >= cfg.min_support and _f1(*c) > _f1(*rules_c) + cfg.margin else "rules"
        )
        report[lab] = {
            "support": int(y.sum()),
            "rules": {"tp": rules_c[0], "fp": rules_c[1], "fn": rules_c[2], "f1": round(_f1(*rules_c), 4)},
            "stack_cv": {"tp": c[0], "fp": c[1], "fn": c[2], "f1": round(_f1(*c), 4), "C": s[0],
                         "class_weight": s[1], "threshold": t},
            "stack_c10_t05_f1": round(text_only, 4) if text_only is not None else None,
            "mode": mode,
        }  # fmt: skip
        if mode == "stack":
            heads_cfg[lab] = (s, t)

    # combined out-of-fold micro F1 (each label by its chosen mode)
    tot = {"rules": [0, 0, 0], "combined": [0, 0, 0]}
    for r in report.values():
        for k in range(3):
            key = ("tp", "fp", "fn")[k]
            tot["rules"][k] += r["rules"][key]
            tot["combined"][k] += (r["stack_cv"] if r["mode"] == "stack" else r["rules"])[key]
    summary = {k: round(_f1(*v), 4) for k, v in tot.items()}

    names, idf = _vocab(feats, cfg)
    vocab = {f: i for i, f in enumerate(names)}
    x = _matrix(feats, vocab, idf, cfg)
    heads, max_shift = {}, 0.0
    for lab, (s, t) in heads_cfg.items():
        j = labels.index(lab)
        m = _fit(x, y_all[:, j], s[0], s[1], cfg.seed)
        w = m.coef_[0]
        keep = np.where(np.abs(w) >= cfg.prune)[0]
        w_kept = np.zeros_like(w)
        w_kept[keep] = w[keep]
        z_full = x @ w + m.intercept_[0]
        z_kept = x @ w_kept + m.intercept_[0]
        max_shift = max(max_shift, float(np.abs(z_full - z_kept).max()))
        heads[lab] = {
            "mode": "stack",
            "threshold": t,
            "bias": round(float(m.intercept_[0]), 6),
            "index": keep.tolist(),
            "weight": [round(float(v), 5) for v in w[keep]],
        }
    for lab in labels:
        heads.setdefault(lab, {"mode": "rules", "threshold": 0.5, "bias": 0.0, "index": [], "weight": []})
    # only features some head uses are needed for the weights, but every text feature counts in
    # the L2 norm: the whole vocabulary ships
    import sklearn

    digest = hashlib.sha256(Path(gold.path).read_bytes()).hexdigest()
    content = hashlib.sha256(json.dumps([names, heads], sort_keys=True).encode()).hexdigest()
    model = {
        # the date of training and a digest of what decides (vocabulary and heads)
        "version": f"{DOMAIN_OF[gold.name]}-{time.strftime('%Y%m%d')}-{content[:10]}",
        "domain": DOMAIN_OF[gold.name],
        "feature_version": FEATURE_VERSION,
        "char_min_len": cfg.char_min_len,
        "rule_weight": cfg.rule_weight,
        "features": names,
        "idf": [round(float(v), 5) for v in idf],
        "labels": heads,
        "trained_on": {"gold": gold.name, "file": Path(gold.path).name, "sha256": digest, "split": "dev",
                       "reports": len(rows)},
        "sklearn": sklearn.__version__,
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "max_logit_shift_from_pruning": round(max_shift, 5),
    }  # fmt: skip
    return model, {"gold": gold.name, "reports": len(rows), "oof_micro_f1": summary, "labels": report}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/reports"
    )
    ap.add_argument("--out", type=Path, default=MODEL_DIR)
    ap.add_argument("--gold", nargs="+", default=["ptbxl", "indiana"], choices=sorted(DOMAIN_OF))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = TrainConfig()
    args.out.mkdir(parents=True, exist_ok=True)
    cv_path = args.out / "cv_report.json"
    cv_all = json.loads(cv_path.read_text()) if cv_path.exists() else {}
    for name in args.gold:
        t0 = time.perf_counter()
        gold, rows = dev_rows(name, args.data_dir)
        model, cv = train_domain(gold, rows, cfg)
        path = args.out / f"{model['domain']}.json.gz"
        with gzip.GzipFile(path, "wb", mtime=0) as f:
            f.write(json.dumps(model, sort_keys=True, separators=(",", ":")).encode("utf-8"))
        cv_all[name] = cv
        n_stack = sum(1 for r in cv["labels"].values() if r["mode"] == "stack")
        log.info(
            "%s: %d dev reports, %d/%d labels learned, out-of-fold micro F1 rules %.4f -> combined %.4f "
            "(%s, %.0f kB, %.1f s)", name, len(rows), n_stack, len(cv["labels"]), cv["oof_micro_f1"]["rules"],
            cv["oof_micro_f1"]["combined"], path.name, path.stat().st_size / 1024, time.perf_counter() - t0,
        )  # fmt: skip
    cv_path.write_text(json.dumps(cv_all, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
