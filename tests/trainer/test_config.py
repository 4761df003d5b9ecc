"""Training config: YAML → frozen dataclasses, strict keys and types, overrides."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from trainer.config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    with_overrides,
)


def test_defaults_valid_and_round_trip() -> None:
    cfg = load_config(None)
    assert cfg == TrainConfig()
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]


def test_yaml_file(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text(
        "data: {modalities: [ecg, report], batch_size: 8, volume_size: [16, 16, 8]}\n"
        "model: {text_encoder: minilm, text_trainable: last}\n"
        "loss: {name: symile, negative_sampling: n_squared}\n"
        "optim: {lr: 3e-4, betas: [0.9, 0.95]}\n"  # YAML 1.1 reads 3e-4 as a string
        "epochs: 2\n"
    )
    cfg = load_config(p)
    assert cfg.data.modalities == ("ecg", "report") and cfg.data.volume_size == (16, 16, 8)
    assert cfg.model.text_trainable == "last" and cfg.loss.name == "symile"
    assert cfg.optim.betas == (0.9, 0.95) and cfg.optim.lr == 3e-4 and cfg.epochs == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"epoch": 3}, "config epoch: unknown key"),
        ({"data": {"batch_sise": 3}}, "config data.batch_sise: unknown key"),
        ({"data": {"batch_size": "8"}}, "config data.batch_size: expected an integer"),
        ({"data": {"batch_size": 1}}, "config data.batch_size: must be >= 2"),
        ({"data": {"modalities": ["ecg"]}}, "needs >= 2 modalities"),
        ({"data": {"modalities": ["ecg", "xray"]}}, "unknown modality"),
        ({"loss": {"name": "triplet"}}, "config loss.name: clip | symile"),
        ({"model": {"image_encoder": "vit", "vit_patch": 7}}, "must divide data.image_size"),
        ({"data": {"volume_size": [8, 8]}}, "expected 3 values"),
        ({"progress": "yes"}, "expected true/false"),
        ({"optim": {"lr": "fast"}}, "config optim.lr: expected a number"),
    ],
)
def test_bad_values_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("|", r"\|")):
        config_from_dict(data)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_overrides() -> None:
    cfg = with_overrides(
        TrainConfig(), ["optim.lr=0.01", "data.modalities=[image, report]", "loss.name=symile"]
    )
    assert cfg.optim.lr == 0.01 and cfg.data.modalities == ("image", "report") and cfg.loss.name == "symile"
    with pytest.raises(ConfigError, match="unknown key"):
        with_overrides(TrainConfig(), ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="key=value"):
        with_overrides(TrainConfig(), ["optim.lr"])
