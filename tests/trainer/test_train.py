"""Training loop: checkpoints, metrics, resume continuity, accumulation, 2-rank DDP on CPU, GPU AMP."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.trainer.shardgen import make_sample, make_shard_set, write_split
from trainer.config import TrainConfig, config_from_dict, config_to_dict
from trainer.train import load_checkpoint, train

REPO = Path(__file__).resolve().parents[2]


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def tiny(**over) -> TrainConfig:
    base = {
        "data": {
            "modalities": ["image", "ecg", "report"],
            "batch_size": 4,
            "workers": 0,
            "image_size": 16,
            "ecg_downsample": 10,
            "shuffle_buffer": 8,
            "shuffle_initial": 4,
        },
        "model": {
            "embed_dim": 16,
            "image_width": 4,
            "ecg_width": 4,
            "text_dim": 16,
            "text_buckets": 512,
            "head": "linear",
        },
        "optim": {"warmup_steps": 2, "lr": 3e-3},
        "epochs": 2,
        "threads": 1,
        "log_every": 1,
        "progress": False,
    }
    return config_from_dict(_merge(base, over))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return make_shard_set(
        tmp_path_factory.mktemp("train_shards"),
        n={"train": 24, "val": 4, "test": 8},
        per_shard=6,
        drop_every=5,
    )


def test_train_writes_metrics_and_checkpoints(shards: Path, tmp_path: Path) -> None:
    res = train(tiny(keep_checkpoints=2), shards, tmp_path / "run")
    assert res.batches_per_epoch == 6 and res.total_steps == 12 and res.steps == 12
    assert res.epoch_batches == [6, 6]
    assert all(math.isfinite(v) for v in res.losses) and len(res.losses) == 12
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 13))
    assert {"loss", "lr", "logit_scale", "samples_per_s", "epoch"} <= set(lines[0])
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.pt"))
    assert ckpts == ["latest.pt", "step-00000006.pt", "step-00000012.pt"]
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert state["step"] == 12 and state["epoch"] == 2 and state["micro_in_epoch"] == 0
    assert state["loader_seed"] == 0 and state["scheduler"]["last_epoch"] == 12
    assert config_from_dict(state["config"]) == tiny(keep_checkpoints=2)
    # warmup then cosine to 0 at the last step
    assert lines[0]["lr"] == pytest.approx(3e-3) and lines[-1]["lr"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("loss", "accum", "stop"),
    [("clip", 1, 5), ("symile", 2, 2)],
)
def test_resume_continues_the_same_loss_curve(
    shards: Path, tmp_path: Path, loss: str, accum: int, stop: int
) -> None:
    over = {"loss": {"name": loss}, "optim": {"accum_steps": accum}, "max_steps": 8 // accum}
    full = train(tiny(**over), shards, tmp_path / "full")
    cut = train(tiny(**over, stop_after_steps=stop), shards, tmp_path / "cut")
    assert cut.steps == stop
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "latest.pt")
    assert state["step"] == stop and state["micro_in_epoch"] > 0  # stopped mid-epoch
    rest = train(tiny(**over), shards, tmp_path / "cut", resume="auto")
    assert rest.steps == full.steps
    assert np.allclose(cut.losses + rest.losses, full.losses, rtol=0, atol=1e-5)


def test_resume_refuses_a_different_model(shards: Path, tmp_path: Path) -> None:
    from trainer.config import ConfigError

    train(tiny(max_steps=1), shards, tmp_path / "r")
    with pytest.raises(ConfigError, match="differs"):
        train(tiny(max_steps=2, model={"embed_dim": 8}), shards, tmp_path / "r", resume="auto")


def test_two_rank_ddp_gloo_equal_batches(tmp_path: Path) -> None:
    # 4 train shards of uneven size: without a nominal epoch length the ranks would disagree
    rng = np.random.default_rng(0)
    samples = [make_sample(i, rng, modalities=("image", "ecg", "report")) for i in range(22)]
    root = tmp_path / "ddp"
    for split, sl in (("train", samples),):
        d = root / "shards" / split
        d.mkdir(parents=True)
        sizes, start = {}, 0
        for k, n in enumerate((9, 2, 7, 4)):
            paths = write_split(tmp_path / f"tmp{k}", split, sl[start : start + n], 100)
            target = d / f"{split}-{k:06d}.tar"
            paths[0].rename(target)
            sizes[target.name] = n
            start += n
        (d / "sizes.json").write_text(json.dumps(sizes))
    cfg = config_to_dict(tiny(epochs=2, data={"resampled": False, "batch_size": 3}))
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "trainer.train",
        "--shards",
        str(root),
        "--config",
        str(cfg_path),
        "--out",
        str(tmp_path / "run"),
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / "run" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    # ceil(22 / (3 * 2)) = 4 batches per rank, in both epochs, on both ranks
    assert ranks[0]["epoch_batches"] == ranks[1]["epoch_batches"] == [4, 4]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 8
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert state["world"] == 2 and state["step"] == 8


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_gpu_autocast_training(shards: Path, tmp_path: Path, precision: str) -> None:
    res = train(
        tiny(precision=precision, device="cuda", max_steps=4, threads=0), shards, tmp_path / precision
    )
    assert res.steps == 4 and all(math.isfinite(v) for v in res.losses)
    state = load_checkpoint(tmp_path / precision / "checkpoints" / "latest.pt")
    assert (state["scaler"] is not None) == (precision == "fp16")
