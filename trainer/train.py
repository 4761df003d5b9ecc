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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from schemas.atomic import atomic_open, write_atomic
from trainer.cli import add_train_arguments
from trainer.config import (
    MODALITY_NAMES,
    ConfigError,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    with_overrides,
)
from trainer.data import ShardSetError, TrainLoader, make_train_loader, probe_labs_items
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
    return batch["modality_mask"][:, [MODALITY_NAMES.index(m) for m in modalities]]


def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` through the project's atomic write (fsynced: a checkpoint is a final output)."""
    with atomic_open(path, durable=True, mode=0o666) as f:
        torch.save(obj, f)


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
        return _train(cfg, str(shards), run_dir, info, resume)  # a folder, a URL or a pattern
    finally:
        cleanup()


@dataclass
class _Run:
    """One training run's objects and the loop state carried between optimizer steps."""

    cfg: TrainConfig
    info: DistInfo
    run_dir: Path
    model: MultiModalEncoder
    ddp: nn.Module
    loader: TrainLoader
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    seed: int
    steps_per_epoch: int
    total_steps: int
    n_epochs: int
    step: int = 0
    start_epoch: int = 0
    #: micro-batches of ``start_epoch`` a resumed run has already done
    skip: int = 0
    stop_at: int = 0
    result: TrainResult | None = None
    metrics: IO[str] | None = None
    bar: Any = None
    t_log: float = 0.0
    samples_since: int = 0
    last_ckpt: str = ""


def resolve_labs_items(cfg: TrainConfig, shards: str | Path) -> TrainConfig:
    """``cfg`` with ``data.labs_items`` read from the training shards when labs are encoded and
    it is 0; the run's config (and so every checkpoint) then holds the number."""
    if "labs" not in cfg.data.modalities or cfg.data.labs_items:
        return cfg
    n = probe_labs_items(shards, cfg.data.train_split)
    log.info("labs: %d item(s) per sample, model input %d", n, 2 * n)
    return replace(cfg, data=replace(cfg.data, labs_items=n))


def _train(cfg: TrainConfig, shards: str, run_dir: Path, info: DistInfo, resume) -> TrainResult:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg = resolve_labs_items(cfg, shards)
    state = _resume_state(cfg, resume, run_dir)
    run = _setup(cfg, shards, run_dir, info, state)
    _open_outputs(run)
    _log_plan(run)
    run.result = TrainResult(
        steps=run.step, total_steps=run.total_steps, batches_per_epoch=run.loader.num_batches
    )
    run.stop_at = min(run.total_steps, cfg.stop_after_steps) if cfg.stop_after_steps else run.total_steps
    t_start = time.perf_counter()
    run.t_log, run.samples_since = time.perf_counter(), 0
    run.model.train()
    done = run.step >= run.stop_at
    for epoch in range(run.start_epoch, run.n_epochs):
        if done:
            break
        micro, done = _run_epoch(run, epoch)
        run.result.epoch_batches.append(micro)
        limit = run.steps_per_epoch * cfg.optim.accum_steps
        if micro < limit and not done:
            raise RuntimeError(f"loader yielded {micro} of {limit} batches in epoch {epoch}")
    return _finish(run, time.perf_counter() - t_start)


def _resume_state(cfg: TrainConfig, resume, run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint to resume from (None: a fresh run); its model/loss config must match ``cfg``."""
    resume_path = _resolve_resume(resume, run_dir)
    state = load_checkpoint(resume_path) if resume_path else None
    if state is not None:
        saved = config_from_dict(state["config"])
        if saved.model != cfg.model or saved.loss != cfg.loss or saved.data.modalities != cfg.data.modalities:
            raise ConfigError("resume: the checkpoint's model/loss config differs from this config")
    return state


def _setup(cfg: TrainConfig, shards: str, run_dir: Path, info: DistInfo, state: dict | None) -> _Run:
    """Model, loader, optimizer, schedule and scaler (restored from ``state`` when resuming)."""
    device = info.device
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
    opt = torch.optim.AdamW(
        param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, warmup_cosine(cfg.optim.warmup_steps, total_steps, cfg.optim.min_lr_ratio)
    )
    amp_dtype = resolve_precision(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    run = _Run(
        cfg=cfg,
        info=info,
        run_dir=run_dir,
        model=model,
        ddp=model,
        loader=loader,
        opt=opt,
        sched=sched,
        scaler=scaler,
        amp_dtype=amp_dtype,
        seed=seed,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        n_epochs=math.ceil(total_steps / steps_per_epoch),
    )
    if state is not None:
        _restore(run, state)
    if info.distributed:
        run.ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return run


def _restore(run: _Run, state: dict[str, Any]) -> None:
    """Load weights, optimizer, schedule, scaler, position and RNG states from a checkpoint."""
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    run.step, run.start_epoch, run.skip = state["step"], state["epoch"], state["micro_in_epoch"]
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    log.info("resumed at step %d (epoch %d, batch %d)", run.step, run.start_epoch, run.skip)


def _open_outputs(run: _Run) -> None:
    """Rank 0: ``config.json``, the ``metrics.jsonl`` appender and the progress bar."""
    if not run.info.is_main:
        return
    run.run_dir.mkdir(parents=True, exist_ok=True)
    config_text = json.dumps(config_to_dict(run.cfg), indent=2, sort_keys=True)
    write_atomic(run.run_dir / "config.json", config_text.encode(), mode=0o666)
    run.metrics = open(run.run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
    if run.cfg.progress:
        from tqdm.auto import tqdm

        run.bar = tqdm(total=run.total_steps, initial=run.step, desc="train", unit="step", dynamic_ncols=True)


def _log_plan(run: _Run) -> None:
    cfg = run.cfg
    log.info(
        "training: %d step(s), %d per epoch (%d batch(es) of %d x %d rank(s)), loss %s, device %s, precision %s",
        run.total_steps,
        run.steps_per_epoch,
        run.loader.num_batches,
        cfg.data.batch_size,
        run.info.world,
        cfg.loss.name,
        run.info.device.type,
        "fp32" if run.amp_dtype is None else str(run.amp_dtype).removeprefix("torch."),
    )


def _run_epoch(run: _Run, epoch: int) -> tuple[int, bool]:
    """One epoch (skipping the micro-batches a resumed run did); returns (micro-batches, stop)."""
    cfg, accum = run.cfg, run.cfg.optim.accum_steps
    assert run.result is not None
    run.loader.set_epoch(epoch)
    micro, loss_acc = 0, 0.0
    limit = run.steps_per_epoch * accum
    for batch in run.loader:
        if micro >= limit:
            break
        if run.skip:
            run.skip -= 1
            micro += 1
            continue
        last_micro = (micro + 1) % accum == 0
        loss_acc += _forward_backward(run, batch, micro, last_micro) / accum
        micro += 1
        run.samples_since += len(batch["key"]) * run.info.world
        if not last_micro:
            continue
        _optimizer_step(run)
        run.result.losses.append(loss_acc)
        _report_step(run, epoch, loss_acc)
        loss_acc = 0.0
        at_epoch_end = micro >= limit
        if (
            (cfg.ckpt_every and run.step % cfg.ckpt_every == 0)
            or run.step == run.stop_at
            or (not cfg.ckpt_every and at_epoch_end)
        ):
            if at_epoch_end:
                _checkpoint(run, epoch + 1, 0)
            else:
                _checkpoint(run, epoch, micro)
        if run.step >= run.stop_at:
            return micro, True
    return micro, False


def _forward_backward(run: _Run, batch: dict, micro: int, last_micro: bool) -> float:
    """Loss of one micro-batch, backpropagated (scaled by 1/accum); DDP syncs on the last only."""
    cfg, info, accum = run.cfg, run.info, run.cfg.optim.accum_steps
    sync = contextlib.nullcontext() if (last_micro or not info.distributed) else run.ddp.no_sync()
    with sync:
        drop = None
        if cfg.loss.modality_dropout > 0:
            gen = torch.Generator().manual_seed(
                cfg.seed * 7_919 + run.step * 131 + micro % accum + info.rank * 17
            )
            drop = modality_dropout(_present(batch, run.model.modalities), cfg.loss.modality_dropout, gen)
        with torch.autocast(info.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
            reps, mask = run.ddp(batch, drop)
        loss = contrastive_loss(cfg, reps, mask, run.model.logit_scale(), run.step)
        run.scaler.scale(loss / accum).backward()
    return float(loss.detach())


def _optimizer_step(run: _Run) -> None:
    """Clip (if configured), step the optimizer and the schedule, count the step."""
    if run.cfg.optim.grad_clip > 0:
        run.scaler.unscale_(run.opt)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.optim.grad_clip)
    run.scaler.step(run.opt)
    run.scaler.update()
    run.opt.zero_grad(set_to_none=True)
    run.sched.step()
    run.step += 1


def _report_step(run: _Run, epoch: int, loss: float) -> None:
    """Progress bar, and every ``log_every`` steps a log line and a ``metrics.jsonl`` row."""
    step = run.step
    if run.bar is not None:
        run.bar.update(1)
        run.bar.set_postfix(loss=f"{loss:.4f}")
    if step % run.cfg.log_every != 0 and step != run.stop_at:
        return
    now = time.perf_counter()
    rate = run.samples_since / max(now - run.t_log, 1e-9)
    rec = {
        "step": step,
        "epoch": epoch,
        "loss": all_reduce_mean(loss, run.info.device),
        "lr": run.sched.get_last_lr()[0],
        "logit_scale": float(run.model.logit_scale().detach()),
        "samples_per_s": rate,
    }
    log.info(
        "step %d/%d epoch %d loss %.4f lr %.2e scale %.2f %.1f samples/s",
        step,
        run.total_steps,
        epoch,
        rec["loss"],
        rec["lr"],
        rec["logit_scale"],
        rate,
    )
    if run.metrics is not None:
        run.metrics.write(json.dumps(rec) + "\n")
        run.metrics.flush()
    run.t_log, run.samples_since = now, 0


def _checkpoint(run: _Run, epoch: int, micro: int) -> None:
    """Rank 0 saves the full training state; ``(epoch, micro)`` is where a resume continues."""
    if not run.info.is_main:
        return
    state_out = {
        "format": CHECKPOINT_FORMAT,
        "config": config_to_dict(run.cfg),
        "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
        "step": run.step,
        "epoch": epoch,
        "micro_in_epoch": micro,
        "loader_seed": run.seed,
        "world": run.info.world,
        "rng": {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": np.random.get_state(),
        },
    }
    run.last_ckpt = str(save_checkpoint(run.run_dir, state_out, run.cfg.keep_checkpoints))


def _finish(run: _Run, seconds: float) -> TrainResult:
    """Close the outputs, write ``rank<N>.json`` and fill in the result's totals."""
    result, info = run.result, run.info
    assert result is not None
    if run.bar is not None:
        run.bar.close()
    if run.metrics is not None:
        run.metrics.close()
    run.run_dir.mkdir(parents=True, exist_ok=True)
    rank_info = {
        "rank": info.rank,
        "world": info.world,
        "epoch_batches": result.epoch_batches,
        "steps": run.step,
    }
    write_atomic(run.run_dir / f"rank{info.rank}.json", json.dumps(rank_info).encode(), mode=0o666)
    result.steps = run.step
    result.checkpoint = run.last_ckpt
    result.seconds = seconds
    n_new = len(result.losses)
    accum, batch_size = run.cfg.optim.accum_steps, run.cfg.data.batch_size
    result.samples_per_s = n_new * accum * batch_size * info.world / max(seconds, 1e-9)
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
