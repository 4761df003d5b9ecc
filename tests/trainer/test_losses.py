"""Losses against the reference ``symile`` package and against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from symile import MIPSimilarity, Symile

from trainer.losses import clip_loss, mip_scores, pairwise_clip_loss, symile_loss

TOL = 1e-5


def _reps(m: int, n: int, d: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1) for _ in range(m)]


def test_clip_loss_hand_computed_2x2() -> None:
    # a = [[1,0],[0,1]], b = [[1,0],[1,1]/sqrt2], scale 2:
    # logits = 2 * a b^T = [[2, sqrt2], [0, sqrt2]]
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    b = torch.tensor([[1.0, 0.0], [1 / math.sqrt(2), 1 / math.sqrt(2)]], dtype=torch.float64)
    r2 = math.sqrt(2)
    row = (-(2 - math.log(math.exp(2) + math.exp(r2))) - (r2 - math.log(1 + math.exp(r2)))) / 2
    # columns of logits: [2, 0] (target 0) and [sqrt2, sqrt2] (target 1)
    col = (-(2 - math.log(math.exp(2) + 1)) - (r2 - math.log(2 * math.exp(r2)))) / 2
    expected = (row + col) / 2
    assert abs(float(clip_loss(a, b, 2.0)) - expected) < 1e-12
    # by hand: rows 0.4426, 0.2176 (mean 0.3301); columns 0.1269, ln 2 = 0.6931 (mean 0.4100)
    assert abs(expected - 0.37006) < 1e-4


def test_clip_loss_identical_orthonormal_pairs_approach_zero() -> None:
    e = torch.eye(4, dtype=torch.float64)
    # diagonal logit s, off-diagonal 0: loss = log(1 + 3 e^{-s})
    for s in (1.0, 10.0):
        assert abs(float(clip_loss(e, e, s)) - math.log(1 + 3 * math.exp(-s))) < 1e-12


@pytest.mark.parametrize("m", [2, 3, 4])
def test_pairwise_clip_full_mask_is_mean_over_pairs(m: int) -> None:
    reps = _reps(m, 6, 8, seed=m)
    loss, used = pairwise_clip_loss(reps, 5.0)
    manual = [clip_loss(reps[i], reps[j], 5.0) for i in range(m) for j in range(i + 1, m)]
    assert abs(float(loss) - float(torch.stack(manual).mean())) < TOL
    assert len(used) == m * (m - 1) // 2 and set(used.values()) == {6}


def test_pairwise_clip_masks_missing_rows_per_pair() -> None:
    reps = _reps(3, 6, 8, seed=7)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1], [1, 0, 1]], dtype=torch.bool)
    loss, used = pairwise_clip_loss(reps, 3.0, mask)
    rows01 = [0, 2, 4]
    rows02 = [0, 1, 4, 5]
    rows12 = [0, 3, 4]
    manual = torch.stack(
        [
            clip_loss(reps[0][rows01], reps[1][rows01], 3.0),
            clip_loss(reps[0][rows02], reps[2][rows02], 3.0),
            clip_loss(reps[1][rows12], reps[2][rows12], 3.0),
        ]
    ).mean()
    assert abs(float(loss) - float(manual)) < TOL
    assert used == {"0-1": 3, "0-2": 4, "1-2": 3}


def test_pairwise_clip_skips_pairs_without_negatives_and_keeps_graph() -> None:
    reps = [r.clone().requires_grad_(True) for r in _reps(2, 3, 4, seed=1)]
    mask = torch.tensor([[1, 0], [0, 1], [1, 1]], dtype=torch.bool)  # only one joint row
    loss, used = pairwise_clip_loss(reps, 2.0, mask)
    assert float(loss.detach()) == 0.0 and used == {"0-1": 1}
    loss.backward()
    assert all(r.grad is not None for r in reps)


@pytest.mark.parametrize("m", [3, 4])
def test_symile_n_squared_matches_reference(m: int) -> None:
    reps = _reps(m, 5, 6, seed=10 + m)
    scale = torch.tensor(7.5, dtype=torch.float64)
    ref = Symile(negative_sampling="n_squared")(reps, scale)
    ours = symile_loss(reps, scale, negative_sampling="n_squared")
    assert abs(float(ours) - float(ref)) < TOL


@pytest.mark.parametrize("m", [2, 3, 4])
def test_symile_n_matches_reference_with_same_permutations(m: int) -> None:
    reps = _reps(m, 8, 6, seed=20 + m)
    scale = torch.tensor(4.0, dtype=torch.float64)
    torch.manual_seed(123)
    ref = Symile(negative_sampling="n")(reps, scale)
    torch.manual_seed(123)
    ours = symile_loss(reps, scale, negative_sampling="n")
    assert abs(float(ours) - float(ref)) < TOL


def test_symile_n_with_generator_matches_reference_seeded_globally() -> None:
    reps = _reps(3, 8, 6, seed=5)
    torch.manual_seed(99)
    ref = Symile(negative_sampling="n")(reps, 3.0)
    ours = symile_loss(reps, 3.0, negative_sampling="n", generator=torch.Generator().manual_seed(99))
    assert abs(float(ours) - float(ref)) < TOL


def test_symile_two_modalities_equals_clip() -> None:
    # with two modalities the n_squared logits are a b^T: Symile reduces to CLIP
    a, b = _reps(2, 6, 5, seed=3)
    assert (
        abs(float(symile_loss([a, b], 6.0, negative_sampling="n_squared")) - float(clip_loss(a, b, 6.0)))
        < TOL
    )


def test_symile_complete_mode_equals_reference_on_complete_rows() -> None:
    reps = _reps(3, 7, 6, seed=31)
    mask = torch.ones(7, 3, dtype=torch.bool)
    mask[1, 2] = False
    mask[4, 0] = False
    keep = [0, 2, 3, 5, 6]
    ref = Symile(negative_sampling="n_squared")([r[keep] for r in reps], 5.0)
    ours = symile_loss(reps, 5.0, mask, negative_sampling="n_squared", missing="complete")
    assert abs(float(ours) - float(ref)) < TOL


def test_symile_impute_mode_uses_missingness_rows_like_reference() -> None:
    # impute: absent rows carry the missingness vector; the loss is Symile over all rows
    reps = _reps(3, 6, 4, seed=41)
    missing_vec = F.normalize(torch.tensor([0.3, -0.2, 0.9, 0.1], dtype=torch.float64), dim=0)
    mask = torch.ones(6, 3, dtype=torch.bool)
    mask[0, 1] = mask[3, 2] = mask[5, 0] = False
    filled = [torch.where(mask[:, j : j + 1], r, missing_vec) for j, r in enumerate(reps)]
    ref = Symile(negative_sampling="n_squared")(filled, 2.0)
    ours = symile_loss(filled, 2.0, mask, negative_sampling="n_squared", missing="impute")
    assert abs(float(ours) - float(ref)) < TOL
    # and it differs from dropping those rows
    dropped = symile_loss(filled, 2.0, mask, negative_sampling="n_squared", missing="complete")
    assert abs(float(ours) - float(dropped)) > 1e-3


def test_symile_complete_mode_too_few_rows_is_zero_with_graph() -> None:
    reps = [r.clone().requires_grad_(True) for r in _reps(3, 3, 4, seed=2)]
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=torch.bool)
    loss = symile_loss(reps, 2.0, mask, missing="complete")
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert all(r.grad is not None for r in reps)


def test_symile_gradients_match_reference() -> None:
    base = _reps(3, 5, 4, seed=8)
    ours_in = [r.clone().requires_grad_(True) for r in base]
    ref_in = [r.clone().requires_grad_(True) for r in base]
    symile_loss(ours_in, 3.0, negative_sampling="n_squared").backward()
    Symile(negative_sampling="n_squared")(ref_in, 3.0).backward()
    for a, b in zip(ours_in, ref_in, strict=True):
        assert torch.allclose(a.grad, b.grad, atol=TOL)


def test_mip_scores_match_reference_similarity() -> None:
    x, y, z = _reps(3, 5, 6, seed=9)
    assert torch.allclose(mip_scores(x, [y, z]), MIPSimilarity()(x, [y, z]), atol=TOL)
