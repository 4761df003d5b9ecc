"""Evaluation of a trained checkpoint on the val/test split.

Pair similarity: cosine for CLIP-trained models; for Symile-trained ones the multilinear inner
product (MIP) with the running mean of the other modalities' training representations standing in
for them, E_z[MIP(x, y, z)] (``--similarity mip`` uses the learned missingness vectors instead,
which modality dropout trains; ``cosine`` forces cosine). Metrics:
- Retrieval R@1/5/10 for every ordered modality pair (a → b), over the samples holding both:
  query a_i, candidates b_*, the hit is b_i. Ties are broken at random *in expectation*
  (R@k = P(rank ≤ k) with the true item uniformly placed among equal scores), so identical
  embeddings (e.g. identical template reports) earn no credit. ``chance`` is k / N.
- For 3+ modalities, Symile-style retrieval: the element-wise product of the other modalities
  as the query against one target modality (multilinear inner product), over complete samples.
- The Symile-MIMIC protocol (:func:`candidate_retrieval`): each complete sample's other
  modalities query its own target among ``n_candidates`` (10: the positive and 9 negatives
  drawn, seeded, from the same split); accuracy = P(the positive ranks first), chance 1/10.
- Zero-shot classification from the report entity labels (``report_*.json`` findings asserted
  ``present``): for each label with positives and negatives among the labelled samples,
  score = cos(x, prompt(label)) − cos(x, negative_prompt(label)); AUROC (Mann–Whitney) and
  accuracy of score > 0. CXR labels are scored on images/volumes, ECG labels on ECGs.
- Modality gap (Liang et al., NeurIPS 2022): ‖mean(a) − mean(b)‖₂ over paired samples, with the
  mean cosine of true pairs beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata

from schemas.atomic import write_atomic
from schemas.labels import ALL_LABELS, CXR_LABELS, ECG_LABELS
from trainer.cli import DEFAULT_NEGATIVE_PROMPT, DEFAULT_PROMPT, add_evaluate_arguments
from trainer.config import ConfigError, config_from_dict
from trainer.data import ShardSetError, make_eval_loader
from trainer.distributed import pick_device
from trainer.encoders import MultiModalEncoder
from trainer.losses import mip_scores
from trainer.train import load_checkpoint

log = logging.getLogger(__name__)

KS = (1, 5, 10)
N_CANDIDATES = 10  # the Symile-MIMIC protocol: 1 positive + 9 negatives from the same split


@dataclass
class Embedded:
    """Embeddings of one split: ``reps[m]`` (N, d) as the model emits them (unit rows for ``l2``),
    ``mask`` (N, M) bool in the order of ``modalities``. Pairwise metrics use cosine similarity."""

    modalities: tuple[str, ...]
    reps: dict[str, torch.Tensor]
    mask: torch.Tensor
    labels: torch.Tensor
    labels_known: torch.Tensor
    keys: list[str]
    missing: dict[str, torch.Tensor] = field(default_factory=dict)
    similarity: str = "cosine"

    def pair_scores(self, a: str, b: str, rows: torch.Tensor) -> torch.Tensor:
        """(n, n) scores of ``a`` rows against ``b`` rows (``rows`` selects samples).

        ``cosine``: cosine similarity. ``mip`` / ``mip-mean``: multilinear inner product with a
        stand-in for every other modality: the model's learned missingness vector (``mip``), or
        the running mean of that modality's training representations (``mip-mean``), i.e.
        E_z[MIP(x, y, z)], how a Symile model scores a pair when the rest is absent.
        """
        x, y = self.reps[a][rows], self.reps[b][rows]
        if self.similarity == "cosine":
            return F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T
        w = torch.ones(x.shape[1], dtype=x.dtype)
        for m in self.modalities:
            if m not in (a, b):
                w = w * self.missing[m]
        return (x * w) @ y.T


def load_model(checkpoint: str | Path, device: torch.device) -> tuple[MultiModalEncoder, Any]:
    """Rebuild the model of a checkpoint (its config is stored inside) in eval mode."""
    state = load_checkpoint(checkpoint)
    cfg = config_from_dict(state["config"])
    model = MultiModalEncoder(cfg.model, cfg.data)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), cfg


@torch.no_grad()
def embed_split(
    model: MultiModalEncoder,
    shards: str | Path,
    split: str,
    cfg,
    device: torch.device,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    similarity: str = "auto",
) -> Embedded:
    """Encode every sample of ``split`` once (ordered pass). ``similarity``: ``cosine``, ``mip``,
    ``mip-mean`` or ``auto`` (``mip-mean`` for a Symile-trained model, else ``cosine``)."""
    loader, _ = make_eval_loader(shards, split, cfg.data, batch_size=batch_size, workers=workers)
    reps: dict[str, list[torch.Tensor]] = {m: [] for m in model.modalities}
    masks, labels, known, keys = [], [], [], []
    for batch in loader:
        out, mask = model(batch)
        for m in model.modalities:
            reps[m].append(out[m].float().cpu())
        masks.append(mask.cpu())
        labels.append(batch["labels"])
        known.append(batch["labels_known"])
        keys.extend(batch["key"])
    if not keys:
        raise ShardSetError(f"split {split!r} yielded no samples")
    if similarity == "auto":
        similarity = "mip-mean" if cfg.loss.name == "symile" else "cosine"
    if similarity == "mip-mean":
        absent = {m: model.rep_mean[j].float().cpu() for j, m in enumerate(model.modalities)}
    else:
        absent = {m: model.missing_rep(m).float().cpu() for m in model.modalities}
    return Embedded(
        modalities=model.modalities,
        reps={m: torch.cat(v) for m, v in reps.items()},
        mask=torch.cat(masks),
        labels=torch.cat(labels),
        labels_known=torch.cat(known),
        keys=keys,
        missing=absent,
        similarity=similarity,
    )


def recall_at_k(scores: torch.Tensor, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """Expected R@k for (Q, C=Q) scores whose diagonal holds the true matches (random tie-break).

    With g candidates scoring above the truth and t others tied with it, the truth sits
    uniformly at ranks g+1 … g+t+1, so P(rank ≤ k) = clip((k − g) / (t + 1), 0, 1).
    Also returns the mean rank (expected, 1-based).
    """
    return _expected_recall(scores.diagonal()[:, None], scores, ks)


def _expected_recall(true: torch.Tensor, scores: torch.Tensor, ks: tuple[int, ...]) -> dict[str, float]:
    """R@k with random tie-breaking in expectation; ``true`` (Q, 1) is among ``scores`` (Q, C)."""
    greater = (scores > true).sum(1).double()
    ties = (scores == true).sum(1).double() - 1.0
    out = {f"R@{k}": float(((k - greater) / (ties + 1)).clamp(0, 1).mean()) for k in ks}
    out["mean_rank"] = float((greater + 1 + ties / 2).mean())
    return out


def draw_negatives(keys: list[str], n_negatives: int, seed: int) -> tuple[list[int], torch.Tensor]:
    """Seeded negatives per query: ``(order, idx)`` with ``order`` the row indices sorted by key and
    ``idx`` (Q, 1 + n) rows: column 0 the query's own row, then ``n`` distinct other rows drawn
    without replacement. Depends on the keys and the seed only, not on the loader's order."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    rng = np.random.default_rng(seed)
    idx = np.empty((len(order), 1 + n_negatives), dtype=np.int64)
    for q, row in enumerate(order):
        others = rng.choice(len(order) - 1, size=n_negatives, replace=False)
        others = others + (others >= q)  # skip the query itself
        idx[q, 0], idx[q, 1:] = row, np.asarray(order)[others]
    return order, torch.from_numpy(idx)


def candidate_retrieval(
    emb: Embedded, n_candidates: int = N_CANDIDATES, seed: int = 0, ks: tuple[int, ...] = (1, 5)
) -> dict[str, dict[str, float]]:
    """The Symile-MIMIC retrieval protocol, for each target modality, over complete samples.

    Query: a sample's other modalities; candidates: its own target and ``n_candidates - 1``
    negatives of the same split (:func:`draw_negatives`; fewer when the split is smaller).
    Score: MIP(query reps..., candidate) for MIP similarities (Symile), the sum of the query
    modalities' cosines with the candidate otherwise (CLIP; the paper's CLIP score differs by a
    term constant over candidates). ``accuracy`` = P(positive ranks first), ties at random.
    """
    sel = emb.mask.all(1)
    rows = sel.nonzero(as_tuple=True)[0].tolist()
    if len(rows) < 2:
        return {}
    n_neg = min(n_candidates, len(rows)) - 1
    _, idx = draw_negatives([emb.keys[r] for r in rows], n_neg, seed)
    rows_t = torch.tensor(rows)
    res: dict[str, dict[str, float]] = {}
    for target in emb.modalities:
        queries = [m for m in emb.modalities if m != target]
        cand = emb.reps[target][rows_t][idx]  # (Q, C, d)
        own = idx[:, 0]
        if emb.similarity == "cosine":
            cn = F.normalize(cand, dim=-1)
            scores = sum(
                torch.einsum("qd,qcd->qc", F.normalize(emb.reps[m][rows_t][own], dim=-1), cn) for m in queries
            )
        else:
            prod = emb.reps[queries[0]][rows_t][own]
            for m in queries[1:]:
                prod = prod * emb.reps[m][rows_t][own]
            scores = torch.einsum("qd,qcd->qc", prod, cand)
        r = _expected_recall(scores[:, :1], scores, tuple(k for k in ks if k <= n_neg + 1))
        res["+".join(queries) + f"->{target}"] = {
            "n_queries": len(rows),
            "n_candidates": n_neg + 1,
            "seed": seed,
            "accuracy": r["R@1"],
            "chance": 1.0 / (n_neg + 1),
            **r,
        }
    return res


def retrieval(emb: Embedded, ks: tuple[int, ...] = KS) -> dict[str, dict[str, float]]:
    """R@k (and chance) for every ordered modality pair, plus MIP retrieval for 3+ modalities."""
    res: dict[str, dict[str, float]] = {}
    mods = emb.modalities
    for i, j in combinations(range(len(mods)), 2):
        sel = emb.mask[:, i] & emb.mask[:, j]
        n = int(sel.sum())
        if n < 2:
            continue
        s = emb.pair_scores(mods[i], mods[j], sel)
        for name, scores in ((f"{mods[i]}->{mods[j]}", s), (f"{mods[j]}->{mods[i]}", s.T)):
            res[name] = {"n": n, **recall_at_k(scores, ks), **{f"chance@{k}": min(1.0, k / n) for k in ks}}
    if len(mods) >= 3:
        sel = emb.mask.all(1)
        n = int(sel.sum())
        if n >= 2:
            for t, target in enumerate(mods):
                queries = [emb.reps[m][sel] for k, m in enumerate(mods) if k != t]
                s = mip_scores(emb.reps[target][sel], queries)
                name = "mip:" + "+".join(m for m in mods if m != target) + f"->{target}"
                res[name] = {"n": n, **recall_at_k(s, ks), **{f"chance@{k}": min(1.0, k / n) for k in ks}}
    return res


def auroc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve via the Mann–Whitney U statistic (ties count one half)."""
    pos, neg = int(truth.sum()), int((~truth).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[truth].sum() - pos * (pos + 1) / 2) / (pos * neg))


def label_text(label: str) -> str:
    """``sinus_tachycardia`` → ``sinus tachycardia``."""
    return label.replace("_", " ")


@torch.no_grad()
def zero_shot(
    model: MultiModalEncoder,
    emb: Embedded,
    *,
    prompt: str = DEFAULT_PROMPT,
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
    min_count: int = 1,
) -> dict[str, Any]:
    """Per-label AUROC/accuracy of prompt-vs-negative-prompt scores, and their macro means."""
    if "report" not in emb.modalities:
        return {}
    out: dict[str, Any] = {}
    label_index = {name: i for i, name in enumerate(ALL_LABELS)}
    for j, m in enumerate(emb.modalities):
        if m == "report":
            continue
        vocab = ECG_LABELS if m == "ecg" else CXR_LABELS
        rows = emb.mask[:, j] & emb.labels_known
        if int(rows.sum()) < 2:
            continue
        per_label: dict[str, dict[str, float]] = {}
        for label in vocab:
            truth = emb.labels[rows, label_index[label]].numpy() > 0.5
            if truth.sum() < min_count or (~truth).sum() < min_count:
                continue
            t = model.encode_text(
                [prompt.format(label=label_text(label)), negative_prompt.format(label=label_text(label))]
            ).cpu()
            if emb.similarity != "cosine":  # the other modalities of the model are absent here
                w = torch.ones(t.shape[1])
                for other in emb.modalities:
                    if other not in (m, "report"):
                        w = w * emb.missing[other]
                score = ((emb.reps[m][rows] * w) @ t.T).numpy()
            else:
                score = (F.normalize(emb.reps[m][rows], dim=-1) @ F.normalize(t, dim=-1).T).numpy()
            score = score[:, 0] - score[:, 1]
            per_label[label] = {
                "auroc": auroc(score, truth),
                "accuracy": float(((score > 0) == truth).mean()),
                "positives": int(truth.sum()),
                "n": int(truth.size),
            }
        if per_label:
            out[m] = {
                "labels": per_label,
                "macro_auroc": float(np.nanmean([v["auroc"] for v in per_label.values()])),
                "macro_accuracy": float(np.mean([v["accuracy"] for v in per_label.values()])),
            }
    return out


def modality_gap(emb: Embedded) -> dict[str, dict[str, float]]:
    """‖centroid(a) − centroid(b)‖ over paired samples and the mean cosine of the true pairs."""
    res = {}
    mods = emb.modalities
    for i, j in combinations(range(len(mods)), 2):
        sel = emb.mask[:, i] & emb.mask[:, j]
        if int(sel.sum()) < 1:
            continue
        a = F.normalize(emb.reps[mods[i]][sel], dim=-1)
        b = F.normalize(emb.reps[mods[j]][sel], dim=-1)
        res[f"{mods[i]}-{mods[j]}"] = {
            "gap": float((a.mean(0) - b.mean(0)).norm()),
            "pair_cosine": float((a * b).sum(1).mean()),
            "n": int(sel.sum()),
        }
    return res


def evaluate(
    checkpoint: str | Path,
    shards: str | Path,
    split: str = "test",
    *,
    device: str = "auto",
    batch_size: int = 64,
    workers: int | None = None,
    prompt: str = DEFAULT_PROMPT,
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
    similarity: str = "auto",
    n_candidates: int = N_CANDIDATES,
    retrieval_seed: int = 0,
) -> dict[str, Any]:
    """All metrics of ``checkpoint`` on ``split`` as a JSON-able dict."""
    if n_candidates < 2:
        raise ConfigError("candidates: must be >= 2 (the positive and at least one negative)")
    dev = pick_device(device)
    model, cfg = load_model(checkpoint, dev)
    emb = embed_split(
        model, shards, split, cfg, dev, batch_size=batch_size, workers=workers, similarity=similarity
    )
    counts = {m: int(emb.mask[:, j].sum()) for j, m in enumerate(emb.modalities)}
    return {
        "split": split,
        "n_samples": len(emb.keys),
        "modality_counts": counts,
        "loss": cfg.loss.name,
        "similarity": emb.similarity,
        "retrieval": retrieval(emb),
        "candidates": candidate_retrieval(emb, n_candidates, retrieval_seed),
        "zero_shot": zero_shot(model, emb, prompt=prompt, negative_prompt=negative_prompt),
        "modality_gap": modality_gap(emb),
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Short human-readable summary of :func:`evaluate`'s result."""
    lines = [
        f"split {result['split']}: {result['n_samples']} samples, loss {result['loss']}, "
        f"pair similarity {result['similarity']}"
    ]
    for name, r in result["retrieval"].items():
        lines.append(
            f"  {name:28s} n={r['n']:5d}  R@1 {r['R@1']:.3f} (chance {r['chance@1']:.3f}, x{r['R@1'] / r['chance@1']:.1f})"
            f"  R@5 {r['R@5']:.3f}  R@10 {r['R@10']:.3f}"
        )
    for name, r in result.get("candidates", {}).items():
        lines.append(
            f"  {name:28s} n={r['n_queries']:5d}  1 of {r['n_candidates']}: accuracy {r['accuracy']:.3f} "
            f"(chance {r['chance']:.3f}, seed {r['seed']})"
        )
    for m, z in result["zero_shot"].items():
        lines.append(f"  zero-shot {m}: macro AUROC {z['macro_auroc']:.3f} over {len(z['labels'])} label(s)")
    for pair, g in result["modality_gap"].items():
        lines.append(f"  gap {pair}: {g['gap']:.3f} (pair cosine {g['pair_cosine']:.3f})")
    return lines


def run_from_args(args: argparse.Namespace) -> int:
    """Evaluate from parsed arguments; bad input gives a one-line error and exit code 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = evaluate(
            args.checkpoint,
            args.shards,
            args.split,
            device=args.device,
            batch_size=args.batch_size,
            workers=args.workers,
            prompt=args.prompt,
            negative_prompt=args.negative_prompt,
            similarity=args.similarity,
            n_candidates=args.candidates,
            retrieval_seed=args.retrieval_seed,
        )
    except (ConfigError, ShardSetError) as exc:
        print(f"medcorpus evaluate: error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        write_atomic(Path(args.out), json.dumps(result, indent=2, sort_keys=True).encode(), mode=0o666)
    print("\n".join(summary_lines(result)))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trainer.evaluate", description="Evaluate a trained checkpoint")
    add_evaluate_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
