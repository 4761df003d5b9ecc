"""Evaluation metrics against hand-computed values and sklearn, and the CLI end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from pipelines.cli import main as medcorpus
from tests.trainer.shardgen import make_shard_set
from tests.trainer.test_train import tiny
from trainer.config import config_to_dict
from trainer.evaluate import (
    Embedded,
    auroc,
    candidate_retrieval,
    draw_negatives,
    evaluate,
    modality_gap,
    recall_at_k,
    retrieval,
)


def test_recall_at_k_hand_cases() -> None:
    eye = torch.eye(4)
    r = recall_at_k(eye, ks=(1, 2))
    assert r == {"R@1": 1.0, "R@2": 1.0, "mean_rank": 1.0}
    # truth always ranked last of 4
    worst = 1.0 - eye
    r = recall_at_k(worst, ks=(1, 3, 4))
    assert r["R@1"] == 0.0 and r["R@3"] == 0.0 and r["R@4"] == 1.0 and r["mean_rank"] == 4.0
    # all scores equal: the truth is uniformly placed, R@k = k / N, expected rank (N + 1) / 2
    flat = torch.zeros(5, 5)
    r = recall_at_k(flat, ks=(1, 2, 5))
    assert r["R@1"] == pytest.approx(0.2) and r["R@2"] == pytest.approx(0.4) and r["R@5"] == 1.0
    assert r["mean_rank"] == pytest.approx(3.0)
    # one row: truth tied with one other candidate above a third: P(rank 1) = 1/2
    s = torch.tensor([[0.5, 0.5, 0.1], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert recall_at_k(s, ks=(1,))["R@1"] == pytest.approx((0.5 + 1 + 1) / 3)


def test_auroc_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random(200) < 0.3
    scores = rng.normal(size=200) + truth * 0.8
    scores[:20] = np.round(scores[:20])  # some ties
    assert auroc(scores, truth) == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    assert math.isnan(auroc(scores, np.zeros(200, dtype=bool)))


def _emb(reps: dict[str, torch.Tensor], mask: list[list[bool]]) -> Embedded:
    n = len(mask)
    return Embedded(
        tuple(reps),
        reps,
        torch.tensor(mask),
        torch.zeros(n, 65),
        torch.zeros(n, dtype=torch.bool),
        [str(i) for i in range(n)],
    )


def test_retrieval_uses_only_paired_rows_and_reports_chance() -> None:
    a = torch.eye(4)
    b = torch.eye(4)[[0, 1, 3, 2]]  # rows 2 and 3 swapped: those two miss at R@1
    emb = _emb({"image": a, "report": b}, [[True, True]] * 4)
    r = retrieval(emb)["image->report"]
    assert r["n"] == 4 and r["R@1"] == 0.5 and r["chance@1"] == 0.25 and r["R@5"] == 1.0
    emb = _emb({"image": a, "report": b}, [[True, True], [True, True], [True, False], [True, False]])
    r = retrieval(emb)
    assert (
        r["image->report"]["n"] == 2 and r["image->report"]["R@1"] == 1.0 and r["report->image"]["R@1"] == 1.0
    )


def test_draw_negatives_seeded_distinct_and_order_free() -> None:
    keys = [f"k{i:03d}" for i in range(25)]
    order, idx = draw_negatives(keys, 9, seed=3)
    assert idx.shape == (25, 10) and order == list(range(25))
    for q in range(25):
        row = idx[q].tolist()
        assert row[0] == q and q not in row[1:] and len(set(row)) == 10
    assert torch.equal(idx, draw_negatives(keys, 9, seed=3)[1])
    assert not torch.equal(idx, draw_negatives(keys, 9, seed=4)[1])
    # the draw depends on the keys, not on the order the loader delivered them in
    perm = np.random.default_rng(0).permutation(25)
    _, idx2 = draw_negatives([keys[i] for i in perm], 9, seed=3)
    named = {keys[int(r[0])]: [keys[int(j)] for j in r] for r in idx}
    named2 = {keys[perm[int(r[0])]]: [keys[perm[int(j)]] for j in r] for r in idx2}
    assert named == named2


def test_candidate_retrieval_hand_cases() -> None:
    n = 12
    one_hot = torch.eye(n)
    mods = {"image": one_hot, "ecg": one_hot.clone(), "labs": one_hot.clone()}
    for similarity in ("cosine", "mip-mean"):
        emb = _emb(dict(mods), [[True] * 3] * n)
        emb.similarity = similarity
        res = candidate_retrieval(emb, 10, seed=0)
        assert set(res) == {"ecg+labs->image", "image+labs->ecg", "image+ecg->labs"}
        r = res["ecg+labs->image"]
        assert r["n_queries"] == n and r["n_candidates"] == 10 and r["accuracy"] == 1.0 and r["chance"] == 0.1
    # constant embeddings: every candidate ties, accuracy = 1/10 in expectation, mean rank 5.5
    flat = _emb({m: torch.ones(n, 4) for m in mods}, [[True] * 3] * n)
    r = candidate_retrieval(flat, 10, seed=1)["ecg+labs->image"]
    assert r["accuracy"] == pytest.approx(0.1) and r["mean_rank"] == pytest.approx(5.5)
    # only complete samples take part; a split smaller than 10 uses every other sample
    emb = _emb(dict(mods), [[True] * 3] * 5 + [[True, False, True]] * 7)
    r = candidate_retrieval(emb, 10)["ecg+labs->image"]
    assert r["n_queries"] == 5 and r["n_candidates"] == 5 and r["chance"] == 0.2


def test_modality_gap_hand_values() -> None:
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 2.0]])  # normalised before the centroids
    g = modality_gap(_emb({"ecg": a, "report": b}, [[True, True]] * 2))["ecg-report"]
    assert g["gap"] == pytest.approx(math.sqrt(2)) and g["pair_cosine"] == pytest.approx(0.0) and g["n"] == 2


def test_train_then_evaluate_through_the_cli(tmp_path: Path, capsys) -> None:
    shards = make_shard_set(
        tmp_path / "corpus", n={"train": 24, "val": 4, "test": 8}, per_shard=6, drop_every=4
    )
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(config_to_dict(tiny(max_steps=3))))
    run = tmp_path / "run"
    assert medcorpus(["train", "--shards", str(shards), "--config", str(cfg), "--out", str(run)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["steps"] == 3 and Path(out["checkpoint"]).is_file()
    # the run's JSON files are written atomically (schemas.atomic): complete, no temp files left
    assert json.loads((run / "rank0.json").read_text())["steps"] == 3
    assert json.loads((run / "config.json").read_text())["max_steps"] == 3
    assert not list(run.rglob("*.tmp-*"))
    metrics = tmp_path / "eval.json"
    rc = medcorpus(
        [
            "evaluate",
            "--checkpoint",
            str(run / "checkpoints" / "latest.pt"),
            "--shards",
            str(shards),
            "--split",
            "test",
            "--out",
            str(metrics),
            "--workers",
            "0",
        ]
    )
    assert rc == 0
    res = json.loads(metrics.read_text())
    assert res["n_samples"] == 8 and res["split"] == "test"
    # drop_every=4 removed one modality from 2 of the 8 test samples
    assert sorted(res["modality_counts"].values()) == [7, 7, 8]
    assert {"image->report", "report->image", "ecg->report", "image->ecg", "mip:ecg+report->image"} <= set(
        res["retrieval"]
    )
    for r in res["retrieval"].values():
        assert 0.0 <= r["R@1"] <= r["R@5"] <= r["R@10"] <= 1.0
    # zero-shot runs on the labelled classes present in the test split (image: CXR labels)
    assert set(res["zero_shot"]["image"]["labels"]) <= {
        "cardiomegaly",
        "pleural_effusion",
        "pneumothorax",
        "nodule",
    }
    assert res["modality_gap"]["image-report"]["n"] >= 6
    assert "R@1" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert medcorpus(["train", "--shards", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medcorpus train: error:") and "\n" not in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: -1}\n")
    shards = make_shard_set(tmp_path / "c", n={"train": 4}, per_shard=4)
    assert medcorpus(["train", "--shards", str(shards), "--config", str(bad)]) == 2
    assert "optim.lr" in capsys.readouterr().err
    not_ckpt = tmp_path / "x.pt"
    torch.save({"hello": 1}, not_ckpt)
    assert medcorpus(["evaluate", "--checkpoint", str(not_ckpt), "--shards", str(shards)]) == 2
    assert "not a medcorpus trainer checkpoint" in capsys.readouterr().err


def test_evaluate_function_on_val(tmp_path: Path) -> None:
    from trainer.train import train

    shards = make_shard_set(tmp_path / "c", n={"train": 16, "val": 6}, per_shard=8)
    res = train(tiny(max_steps=2), shards, tmp_path / "r")
    out = evaluate(res.checkpoint, shards, "val", workers=0)
    assert out["n_samples"] == 6 and out["retrieval"]["image->report"]["chance@1"] == pytest.approx(1 / 6)


def test_mip_pair_scores_use_the_missingness_vector_of_the_third_modality() -> None:
    g = torch.Generator().manual_seed(0)
    reps = {m: torch.randn(5, 3, generator=g) for m in ("image", "ecg", "report")}
    missing = {m: torch.randn(3, generator=g) for m in reps}
    emb = _emb(reps, [[True, True, True]] * 5)
    emb.missing, emb.similarity = missing, "mip"
    rows = torch.ones(5, dtype=torch.bool)
    expected = torch.einsum("id,jd,d->ij", reps["image"], reps["report"], missing["ecg"])
    assert torch.allclose(emb.pair_scores("image", "report", rows), expected, atol=1e-6)
    emb.similarity = "cosine"
    cos = torch.nn.functional.cosine_similarity(reps["ecg"][:, None], reps["report"][None], dim=-1)
    assert torch.allclose(emb.pair_scores("ecg", "report", rows), cos, atol=1e-6)
