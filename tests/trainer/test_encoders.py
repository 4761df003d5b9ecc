"""Encoders, item pooling, missingness vectors and the offline MiniLM text encoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer.config import DataConfig, ModelConfig
from trainer.encoders import (
    ConvNet,
    HashedTextEncoder,
    MiniLMTextEncoder,
    MultiModalEncoder,
    ViT,
    hashed_ngrams,
)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _small(**kw) -> tuple[ModelConfig, DataConfig]:
    m = ModelConfig(
        embed_dim=16, image_width=4, ecg_width=4, volume_width=2, text_dim=16, text_buckets=512, **kw
    )
    d = DataConfig(
        modalities=("image", "volume", "ecg", "report"), image_size=16, volume_size=(8, 8, 8), max_items=2
    )
    return m, d


def _batch(b: int = 3) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(b, 2, 1, 16, 16, generator=g),
        "image_items": torch.tensor([[True, True], [True, False], [False, False]]),
        "volume": torch.randn(b, 2, 1, 8, 8, 8, generator=g),
        "volume_items": torch.tensor([[True, False], [False, False], [True, False]]),
        "ecg": torch.randn(b, 2, 12, 2500, generator=g),
        "ecg_items": torch.tensor([[True, False], [True, False], [True, False]]),
        "report": ["pleural effusion", "", "sinus rhythm"],
        "modality_mask": torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [0, 1, 1, 1]], dtype=torch.bool),
    }


def test_convnets_and_vit_shapes() -> None:
    assert ConvNet(2, 1, 4, stem_kernel=5, kernel=3, stem_stride=1)(torch.randn(2, 1, 32, 32)).shape == (
        2,
        16,
    )
    assert ConvNet(1, 12, 4, stem_kernel=15, kernel=7, stem_stride=2)(torch.randn(2, 12, 2500)).shape == (
        2,
        32,
    )
    assert ConvNet(3, 1, 2, stem_kernel=3, kernel=3, stem_stride=1)(torch.randn(2, 1, 8, 8, 8)).shape == (
        2,
        8,
    )
    assert ViT(16, 4, 32, 2, 4)(torch.randn(3, 1, 16, 16)).shape == (3, 32)


def test_labs_mlp_is_the_symile_paper_encoder() -> None:
    # 50 labs: 100 -> 256 -> 1024 (GELU), then a linear head to d and LayerNorm, as in the paper
    m = ModelConfig(embed_dim=32, labs_width=256, head="linear", embed_norm="layernorm")
    d = DataConfig(modalities=("image", "labs"), labs_items=50)
    model = MultiModalEncoder(m, d)
    assert [tuple(p.shape) for p in model.encoders["labs"].parameters()] == [
        (256, 100),
        (256,),
        (1024, 256),
        (1024,),
    ]
    assert tuple(model.heads["labs"].weight.shape) == (32, 1024)
    x = torch.rand(3, 1, 100)
    batch = {
        "image": torch.randn(3, 1, 1, 64, 64),
        "image_items": torch.ones(3, 1, dtype=torch.bool),
        "labs": x,
        "labs_items": torch.tensor([[True], [True], [False]]),
        "modality_mask": torch.ones(3, 5, dtype=torch.bool),
    }
    out, mask = model(batch)
    assert out["labs"].shape == (3, 32) and mask[:, 1].tolist() == [True, True, False]
    assert torch.allclose(out["labs"][2], model.missing_rep("labs"))  # absent: missingness vector
    with pytest.raises(ValueError, match="labs_items"):
        MultiModalEncoder(m, DataConfig(modalities=("image", "labs")))


def test_hashed_ngrams_stable_and_in_range() -> None:
    ids = hashed_ngrams("Sinus tachycardia, rate 112 bpm", 1000)
    assert ids == hashed_ngrams("sinus TACHYCARDIA rate 112 bpm", 1000)  # case/punctuation-insensitive
    assert all(1 <= i < 1000 for i in ids)
    # 5 tokens + 4 bigrams; numbers are magnitude classes: 112 and 118 hash alike, 92 does not
    assert len(ids) == 9
    assert ids == hashed_ngrams("sinus tachycardia rate 118 bpm", 1000)
    assert ids != hashed_ngrams("sinus tachycardia rate 92 bpm", 1000)
    assert hashed_ngrams("", 1000) == [0]
    enc = HashedTextEncoder(1000, 8)
    assert enc(["a b", "", "c"]).shape == (3, 8)


def test_model_pools_present_items_and_fills_missing_rows() -> None:
    m, d = _small()
    model = MultiModalEncoder(m, d).eval()
    batch = _batch()
    with torch.no_grad():
        reps, mask = model(batch)
        assert mask.tolist() == [
            [True, True, True, True],
            [True, False, True, False],
            [False, True, True, True],
        ]
        for z in reps.values():
            assert z.shape == (3, 16)
            assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
        # row 0 image = projection of the mean of both items' features
        enc, head = model.encoders["image"], model.heads["image"]
        feats = enc(batch["image"][0]).mean(0, keepdim=True)
        assert torch.allclose(reps["image"][0], F.normalize(head(feats), dim=-1)[0], atol=1e-5)
        # absent image (row 2) and absent report (row 1, empty text) hold the missingness vectors
        j_img, j_rep = model.modalities.index("image"), model.modalities.index("report")
        assert torch.allclose(reps["image"][2], F.normalize(model.missing[j_img], dim=0), atol=1e-6)
        assert torch.allclose(reps["report"][1], F.normalize(model.missing[j_rep], dim=0), atol=1e-6)


def test_zero_missing_and_layernorm_options() -> None:
    m, d = _small(missing="zero", embed_norm="layernorm", init_logit_scale=0.74)
    model = MultiModalEncoder(m, d).eval()
    with torch.no_grad():
        reps, _ = model(_batch())
    assert float(reps["image"][2].abs().sum()) == 0.0
    assert torch.allclose(reps["ecg"].mean(1), torch.zeros(3), atol=1e-5)  # LayerNorm rows: zero mean
    assert abs(float(model.logit_scale().detach()) - 0.74) < 1e-5
    assert not model.missing.requires_grad


def test_every_trainable_parameter_gets_a_gradient() -> None:
    m, d = _small()
    model = MultiModalEncoder(m, d)
    reps, _ = model(_batch())
    (sum(z.sum() for z in reps.values()) * model.logit_scale()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_minilm_frozen_offline_semantics_and_cache() -> None:
    enc = MiniLMTextEncoder("frozen")
    texts = ["small left pleural effusion", "fluid in the left pleural space", "sinus rhythm, rate 70 bpm"]
    e = enc(texts)
    assert e.shape == (3, 384) and not e.requires_grad
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-4)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2])  # the real model's semantics, not a hash
    assert torch.equal(enc(texts[:1])[0], e[0]) and len(enc._cache) == 3
    assert not any(p.requires_grad for p in enc.parameters())


def test_minilm_last_layer_trainable() -> None:
    enc = MiniLMTextEncoder("last")
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert trainable and all("layer.5." in n for n in trainable)
    out = enc(["cardiomegaly", "no cardiomegaly"])
    out.sum().backward()
    assert all(p.grad is not None for n, p in enc.named_parameters() if p.requires_grad)


def test_modality_dropout_keeps_two_and_feeds_missing_vectors() -> None:
    from trainer.encoders import modality_dropout

    mask = torch.tensor([[1, 1, 1, 1]] * 200 + [[1, 1, 0, 0]] * 50, dtype=torch.bool)
    drop = modality_dropout(mask, 0.3, torch.Generator().manual_seed(0))
    left = (mask & ~drop).sum(1)
    assert bool((left >= 2).all()) and not bool((drop & ~mask).any())
    assert not bool(drop[200:].any())  # two present: nothing may be dropped
    rate = float(drop[:200].float().mean())
    assert 0.15 < rate < 0.3  # 0.3 minus the samples restored to keep two modalities
    m, d = _small()
    model = MultiModalEncoder(m, d).eval()
    batch = _batch()
    hide = torch.zeros(3, 4, dtype=torch.bool)
    hide[0, model.modalities.index("ecg")] = True
    with torch.no_grad():
        reps, present = model(batch, hide)
    assert not bool(present[0, model.modalities.index("ecg")])
    assert torch.allclose(reps["ecg"][0], model.missing_rep("ecg"))


def test_running_mean_of_representations_updates_only_in_training() -> None:
    m, d = _small()
    model = MultiModalEncoder(m, d)
    batch = _batch()
    with torch.no_grad():
        model.eval()
        model(batch)
        assert int(model.rep_mean_batches) == 0 and float(model.rep_mean.abs().sum()) == 0.0
        model.train()
        reps, mask = model(batch)
    j = model.modalities.index("image")
    assert torch.allclose(
        model.rep_mean[j], reps["image"][mask[:, j]].mean(0), atol=1e-6
    )  # first batch: its mean
    with torch.no_grad():
        reps2, _ = model(batch)
    expected = 0.98 * reps["image"][mask[:, j]].mean(0) + 0.02 * reps2["image"][mask[:, j]].mean(0)
    assert torch.allclose(model.rep_mean[j], expected, atol=1e-6) and int(model.rep_mean_batches) == 2
