"""The training loop: AdamW, warmup + cosine, autocast, accumulation, DDP, checkpoints, resume.

Run it as ``medcorpus train --shards OUT --config train.yaml --out RUN`` (single process), or
under torchrun for DDP::

    torchrun --nproc_per_node 2 -m trainer.train --shards OUT --config train.yaml --out RUN

Layout of ``RUN``: ``checkpoints/step-XXXXXXXX.pt`` and ``checkpoints/latest.pt`` (written
atomically), ``metrics.jsonl`` (one line per logged step: step, epoch, loss, lr, logit_scale,
samples_per_s), ``config.json``, ``rank{R}.json`` (batches each rank consumed per epoch). A checkpoint holds model, optimizer, scheduler, grad scaler,
step, epoch, batches consumed in that epoch, the loader seed and the RNG states; resuming
replays the loader to the same batch, so the loss curve continues as if never stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainer.cli import add_train_arguments
from trainer.config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    with_overrides,
)
from trainer.data import ShardSetError, make_train_loader
from trainer.distributed import (
    DistInfo,
    all_reduce_mean,
    cleanup,
    gather_no_grad,
    gather_with_grad,
    init_distributed,
)
from trainer.encoders import MultiModalEncoder, modality_dropout
from trainer.losses import pairwise_clip_loss, symile_loss

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "medcorpus-trainer/1"


@dataclass
class TrainResult:
    """What a run did. ``losses`` are the per-optimizer-step losses of this invocation (global)."""

    steps: int
    total_steps: int
    batches_per_epoch: int
    losses: list[float] = field(default_factory=list)
    epoch_batches: list[int] = field(default_factory=list)
    checkpoint: str = ""
    samples_per_s: float = 0.0
    seconds: float = 0.0


def build_model(cfg: TrainConfig) -> MultiModalEncoder:
    """The model a config describes (weights seeded by ``cfg.seed``)."""
    torch.manual_seed(cfg.seed)
    return MultiModalEncoder(cfg.model, cfg.data)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no decay for biases, norms, embeddings, temperature, missingness vectors."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "bag" in name or name.endswith(("log_scale", "missing", "cls", "pos")):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(warmup: int, total: int, min_ratio: float):
    """LR multiplier per optimizer step: linear warmup over ``warmup`` steps, cosine to ``min_ratio``."""

    def fn(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return fn


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype, or None for fp32. ``auto``: bf16 (or fp16) on CUDA, fp32 on CPU."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def contrastive_loss(
    cfg: TrainConfig, reps: dict[str, torch.Tensor], mask: torch.Tensor, scale: torch.Tensor, step: int
) -> torch.Tensor:
    """The configured loss over the (DDP-gathered) global batch; same value on every rank."""
    names = list(reps)
    gathered = [gather_with_grad(reps[m]) for m in names]
    gmask = gather_no_grad(mask.to(torch.uint8)).bool()
    if cfg.loss.name == "clip":
        loss, _ = pairwise_clip_loss(gathered, scale, gmask)
        return loss
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # identical on every rank
    return symile_loss(
        gathered,
        scale,
        gmask,
        negative_sampling=cfg.loss.negative_sampling,
        missing=cfg.loss.symile_missing,
        generator=gen,
    )


def _present(batch: dict, modalities: tuple[str, ...]) -> torch.Tensor:
    """(B, M) bool presence of ``modalities`` from the batch's modality mask."""
    order = {"image": 0, "volume": 1, "ecg": 2, "report": 3}
    return batch["modality_mask"][:, [order[m] for m in modalities]]


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(run_dir: Path, state: dict[str, Any], keep: int) -> Path:
    """Write ``step-XXXXXXXX.pt`` and ``latest.pt`` atomically; keep the newest ``keep`` step files."""
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"step-{state['step']:08d}.pt"
    _atomic_save(state, path)
    tmp = ckpt_dir / "latest.pt.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(path, tmp)
    except OSError:
        import shutil

        shutil.copyfile(path, tmp)
    os.replace(tmp, ckpt_dir / "latest.pt")
    steps = sorted(ckpt_dir.glob("step-*.pt"))
    for old in steps[: max(0, len(steps) - max(1, keep))]:
        old.unlink()
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (checks its format tag)."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise ConfigError(f"checkpoint cannot be read ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError("not a medcorpus trainer checkpoint")
    return state


def _resolve_resume(resume: str | Path | None, run_dir: Path) -> Path | None:
    if resume in (None, ""):
        return None
    if str(resume) == "auto":
        latest = run_dir / "checkpoints" / "latest.pt"
        return latest if latest.is_file() else None
    p = Path(resume)
    if not p.is_file():
        raise ConfigError("resume checkpoint not found")
    return p


def train(
    cfg: TrainConfig, shards: str | Path, run_dir: str | Path, *, resume: str | Path | None = None
) -> TrainResult:
    """Train ``cfg`` on the shards of ``cfg.data.train_split``; see the module docstring."""
    run_dir = Path(run_dir)
    info = init_distributed(cfg.device)
    try:
        return _train(cfg, Path(shards), run_dir, info, resume)
    finally:
        cleanup()


def _train(cfg: TrainConfig, shards: Path, run_dir: Path, info: DistInfo, resume) -> TrainResult:
    device = info.device
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    resume_path = _resolve_resume(resume, run_dir)
    state = load_checkpoint(resume_path) if resume_path else None
    if state is not None:
        saved = config_from_dict(state["config"])
        if saved.model != cfg.model or saved.loss != cfg.loss or saved.data.modalities != cfg.data.modalities:
            raise ConfigError("resume: the checkpoint's model/loss config differs from this config")
    seed = state["loader_seed"] if state else cfg.seed

    model = build_model(cfg).to(device)
    accum = cfg.optim.accum_steps
    loader = make_train_loader(
        shards,
        cfg.data,
        seed=seed,
        rank=info.rank,
        world=info.world,
        pin_memory=device.type == "cuda",
        batch_multiple=accum,
    )
    steps_per_epoch = loader.num_batches // accum
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    n_epochs = math.ceil(total_steps / steps_per_epoch)

    opt = torch.optim.AdamW(
        param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, warmup_cosine(cfg.optim.warmup_steps, total_steps, cfg.optim.min_lr_ratio)
    )
    amp_dtype = resolve_precision(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    step, start_epoch, skip = 0, 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, start_epoch, skip = state["step"], state["epoch"], state["micro_in_epoch"]
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        log.info("resumed at step %d (epoch %d, batch %d)", step, start_epoch, skip)

    ddp: nn.Module = model
    if info.distributed:
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2, sort_keys=True))
    metrics = open(run_dir / "metrics.jsonl", "a", encoding="utf-8") if info.is_main else None  # noqa: SIM115
    bar = None
    if info.is_main and cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True)

    log.info(
        "training: %d step(s), %d per epoch (%d batch(es) of %d x %d rank(s)), loss %s, device %s, precision %s",
        total_steps,
        steps_per_epoch,
        loader.num_batches,
        cfg.data.batch_size,
        info.world,
        cfg.loss.name,
        device.type,
        "fp32" if amp_dtype is None else str(amp_dtype).removeprefix("torch."),
    )
    result = TrainResult(steps=step, total_steps=total_steps, batches_per_epoch=loader.num_batches)
    stop_at = min(total_steps, cfg.stop_after_steps) if cfg.stop_after_steps else total_steps
    t_start = time.perf_counter()
    t_log, samples_since = time.perf_counter(), 0
    last_ckpt = ""

    def checkpoint(epoch: int, micro: int) -> None:
        nonlocal last_ckpt
        if not info.is_main:
            return
        state_out = {
            "format": CHECKPOINT_FORMAT,
            "config": config_to_dict(cfg),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "step": step,
            "epoch": epoch,
            "micro_in_epoch": micro,
            "loader_seed": seed,
            "world": info.world,
            "rng": {
                "torch": torch.get_rng_state(),
                "python": random.getstate(),
                "numpy": np.random.get_state(),
            },
        }
        last_ckpt = str(save_checkpoint(run_dir, state_out, cfg.keep_checkpoints))

    model.train()
    done = step >= stop_at
    for epoch in range(start_epoch, n_epochs):
        if done:
            break
        loader.set_epoch(epoch)
        micro, loss_acc = 0, 0.0
        limit = steps_per_epoch * accum
        for batch in loader:
            if micro >= limit:
                break
            if skip:
                skip -= 1
                micro += 1
                continue
            last_micro = (micro + 1) % accum == 0
            sync = contextlib.nullcontext() if (last_micro or not info.distributed) else ddp.no_sync()
            with sync:
                drop = None
                if cfg.loss.modality_dropout > 0:
                    gen = torch.Generator().manual_seed(
                        cfg.seed * 7_919 + step * 131 + micro % accum + info.rank * 17
                    )
                    drop = modality_dropout(_present(batch, model.modalities), cfg.loss.modality_dropout, gen)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    reps, mask = ddp(batch, drop)
                loss = contrastive_loss(cfg, reps, mask, model.logit_scale(), step)
                scaler.scale(loss / accum).backward()
            loss_acc += float(loss.detach()) / accum
            micro += 1
            samples_since += len(batch["key"]) * info.world
            if not last_micro:
                continue
            if cfg.optim.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            sched.step()
            step += 1
            result.losses.append(loss_acc)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_acc:.4f}")
            if step % cfg.log_every == 0 or step == stop_at:
                now = time.perf_counter()
                rate = samples_since / max(now - t_log, 1e-9)
                rec = {
                    "step": step,
                    "epoch": epoch,
                    "loss": all_reduce_mean(loss_acc, device),
                    "lr": sched.get_last_lr()[0],
                    "logit_scale": float(model.logit_scale().detach()),
                    "samples_per_s": rate,
                }
                log.info(
                    "step %d/%d epoch %d loss %.4f lr %.2e scale %.2f %.1f samples/s",
                    step,
                    total_steps,
                    epoch,
                    rec["loss"],
                    rec["lr"],
                    rec["logit_scale"],
                    rate,
                )
                if metrics is not None:
                    metrics.write(json.dumps(rec) + "\n")
                    metrics.flush()
                t_log, samples_since = now, 0
            loss_acc = 0.0
            at_epoch_end = micro >= limit
            if (
                (cfg.ckpt_every and step % cfg.ckpt_every == 0)
                or step == stop_at
                or (not cfg.ckpt_every and at_epoch_end)
            ):
                if at_epoch_end:
                    checkpoint(epoch + 1, 0)
                else:
                    checkpoint(epoch, micro)
            if step >= stop_at:
                done = True
                break
        result.epoch_batches.append(micro)
        if micro < limit and not done:
            raise RuntimeError(f"loader yielded {micro} of {limit} batches in epoch {epoch}")
    seconds = time.perf_counter() - t_start
    if bar is not None:
        bar.close()
    if metrics is not None:
        metrics.close()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"rank{info.rank}.json").write_text(
        json.dumps(
            {"rank": info.rank, "world": info.world, "epoch_batches": result.epoch_batches, "steps": step}
        )
    )
    result.steps = step
    result.checkpoint = last_ckpt
    result.seconds = seconds
    n_new = len(result.losses)
    result.samples_per_s = n_new * accum * cfg.data.batch_size * info.world / max(seconds, 1e-9)
    return result


# --------------------------------------------------------------------------- command line


def run_from_args(args: argparse.Namespace) -> int:
    """Run training from parsed arguments; bad input gives a one-line error and exit code 2."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        cfg = with_overrides(load_config(args.config), args.overrides)
        result = train(cfg, args.shards, args.out, resume=args.resume)
    except (ConfigError, ShardSetError) as exc:
        print(f"medcorpus train: error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            json.dumps(
                {
                    "steps": result.steps,
                    "total_steps": result.total_steps,
                    "batches_per_epoch": result.batches_per_epoch,
                    "final_loss": result.losses[-1] if result.losses else None,
                    "samples_per_s": round(result.samples_per_s, 1),
                    "checkpoint": result.checkpoint,
                }
            )
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="trainer.train", description="Contrastive training on medcorpus shards"
    )
    add_train_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
