"""Contrastive objectives: pairwise CLIP/InfoNCE (ConVIRT) and Symile's multilinear objective.

Conventions: representations are (N, d) tensors of one batch, row ``i`` of every modality
belongs to sample ``i``; ``logit_scale`` is the *exponentiated* temperature (CLIP's
``logit_scale.exp()``, Symile's ``logit_scale_exp``); ``mask`` is a bool (N, M) tensor whose
column ``j`` says which samples hold modality ``j`` (in the order of the representation list).

- :func:`clip_loss`: symmetric InfoNCE of one pair, ``(CE(s·A·Bᵀ) + CE(s·B·Aᵀ)) / 2``.
- :func:`pairwise_clip_loss`: the mean of :func:`clip_loss` over every modality pair, each pair
  restricted to the samples holding both modalities (pairs with fewer than 2 such samples are
  skipped).
- :func:`symile_loss`: the Symile loss (Saporta et al., NeurIPS 2024), identical to
  ``symile.Symile`` for complete data: each modality in turn is the anchor; logits are
  multilinear inner products MIP(x, y, z, ...) = Σ_k x_k y_k z_k ...; positives on the
  diagonal; cross-entropy averaged over anchors. Missing data: ``missing="impute"`` expects the
  caller to have put a missingness representation in absent rows (the paper's learned
  missingness embedding, :class:`trainer.encoders.MultiModalEncoder` does it) and uses every
  row; ``missing="complete"`` keeps only rows where every modality is present.
"""

from __future__ import annotations

from itertools import combinations

import torch
import torch.nn.functional as F


def clip_loss(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE between paired rows of ``a`` (N, d) and ``b`` (N, d)."""
    logits = logit_scale * a @ b.T
    labels = torch.arange(a.shape[0], device=a.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def _zero_like_graph(reps: list[torch.Tensor], logit_scale: torch.Tensor | float) -> torch.Tensor:
    """A zero loss that still touches every input (DDP needs every parameter in the graph)."""
    z = sum(r.sum() for r in reps) * 0.0
    if torch.is_tensor(logit_scale):
        z = z + logit_scale * 0.0
    return z


def pairwise_clip_loss(
    reps: list[torch.Tensor],
    logit_scale: torch.Tensor | float,
    mask: torch.Tensor | None = None,
    *,
    min_pairs: int = 2,
) -> tuple[torch.Tensor, dict[str, int]]:
    """Mean CLIP loss over all modality pairs; returns ``(loss, {"i-j": n_pairs_used})``.

    Each pair (i, j) uses only the rows with ``mask[:, i] & mask[:, j]``; pairs with fewer than
    ``min_pairs`` rows are skipped (no negatives). With no usable pair the loss is 0.
    """
    n = reps[0].shape[0]
    if mask is None:
        mask = torch.ones(n, len(reps), dtype=torch.bool, device=reps[0].device)
    losses, used = [], {}
    for i, j in combinations(range(len(reps)), 2):
        sel = mask[:, i] & mask[:, j]
        count = int(sel.sum())
        used[f"{i}-{j}"] = count
        if count < min_pairs:
            continue
        losses.append(clip_loss(reps[i][sel], reps[j][sel], logit_scale))
    if not losses:
        return _zero_like_graph(reps, logit_scale), used
    return torch.stack(losses).mean(), used


def _mip_positive(anchor: torch.Tensor, others: list[torch.Tensor]) -> torch.Tensor:
    prod = anchor
    for r in others:
        prod = prod * r
    return prod.sum(dim=1)


def symile_logits_n(
    anchor: torch.Tensor, others: list[torch.Tensor], generator: torch.Generator | None = None
) -> torch.Tensor:
    """(N, N) logits with N-1 negatives per positive: non-anchor rows independently permuted.

    Row i holds MIP(anchor[i], y[π_y(j)], z[π_z(j)], ...) for j ≠ i and the positive
    MIP(anchor[i], y[i], z[i], ...) on the diagonal. With ``generator=None`` the permutations
    come from the global torch RNG in the same order as ``symile.Symile`` draws them.
    """
    shuffled = torch.ones_like(anchor)
    for r in others:
        perm = (
            torch.randperm(r.shape[0], generator=generator)
            if generator is not None
            else torch.randperm(r.shape[0])
        )
        shuffled = shuffled * r[perm.to(r.device)]
    logits = anchor @ shuffled.T
    eye = torch.eye(anchor.shape[0], device=anchor.device, dtype=torch.bool)
    return torch.where(eye, _mip_positive(anchor, others), logits)


def symile_logits_n_squared(anchor: torch.Tensor, others: list[torch.Tensor]) -> torch.Tensor:
    """(N, N^(M-1)) logits against every combination of non-anchor rows.

    Column block ``c`` (of N columns) pairs row j of the first non-anchor modality with rows
    rolled by the mixed-radix digits of ``c`` in the others, so block 0 holds the positives on
    its diagonal, which is the ordering of ``symile.Symile(negative_sampling="n_squared")``.
    """
    n = anchor.shape[0]

    def products(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(tensors) == 1:
            return [tensors[0]]
        if len(tensors) == 2:
            y, z = tensors
            return [y * torch.roll(z, shifts=s, dims=0) for s in range(n)]
        partial = products(tensors[1:])
        return [p * torch.roll(tensors[0], shifts=s, dims=0) for s in range(n) for p in partial]

    return anchor @ torch.cat(products(others), dim=0).T


def symile_loss(
    reps: list[torch.Tensor],
    logit_scale: torch.Tensor | float,
    mask: torch.Tensor | None = None,
    *,
    negative_sampling: str = "n",
    missing: str = "impute",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Symile loss over ``reps`` (M tensors of (N, d)), averaged over anchors.

    ``missing="impute"``: all rows are used (absent rows must already hold the missingness
    representation). ``missing="complete"``: only rows present in every modality; fewer than
    2 such rows give a zero loss. ``negative_sampling``: ``"n"`` or ``"n_squared"``.
    """
    if len(reps) < 2:
        raise ValueError("Symile needs at least 2 modalities")
    if missing == "complete" and mask is not None:
        keep = mask.all(dim=1)
        if int(keep.sum()) < 2:
            return _zero_like_graph(reps, logit_scale)
        if not bool(keep.all()):
            reps = [r[keep] for r in reps]
    elif missing not in ("impute", "complete"):
        raise ValueError(f"unknown missing-data mode {missing!r}")
    labels = torch.arange(reps[0].shape[0], device=reps[0].device)
    losses = []
    for i, anchor in enumerate(reps):
        others = [r for j, r in enumerate(reps) if j != i]
        if negative_sampling == "n":
            logits = symile_logits_n(anchor, others, generator)
        elif negative_sampling == "n_squared":
            logits = symile_logits_n_squared(anchor, others)
        else:
            raise ValueError(f"unknown negative sampling {negative_sampling!r}")
        losses.append(F.cross_entropy(logit_scale * logits, labels))
    return sum(losses) / len(losses)


def mip_scores(candidates: torch.Tensor, queries: list[torch.Tensor]) -> torch.Tensor:
    """Zero-shot scores (Q, C): MIP of the element-wise product of ``queries`` with each candidate."""
    prod = queries[0]
    for q in queries[1:]:
        prod = prod * q
    return prod @ candidates.T
