"""DDP with gathered negatives gives the gradient of the global-batch loss (gloo, 2 CPU ranks).

Two ranks each encode half of a batch; the loss gathers every rank's representations
(``gather_with_grad``) and DDP averages the gradients. The result must equal one process
computing the same loss on the whole batch, for CLIP and for Symile.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.trainer.shardgen import make_shard_set
from tests.trainer.test_train import tiny
from trainer.config import config_from_dict, config_to_dict
from trainer.data import make_eval_loader
from trainer.train import build_model, contrastive_loss


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _half(batch: dict, rank: int, world: int) -> dict:
    n = len(batch["key"]) // world
    sl = slice(rank * n, (rank + 1) * n)
    return {k: v[sl] for k, v in batch.items()}


def _worker(rank: int, world: int, init_file: str, cfgs: list[dict], batch_path: str, out_path: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = []
        for cfg_dict in cfgs:
            cfg = config_from_dict(cfg_dict)
            model = build_model(cfg)
            ddp = torch.nn.parallel.DistributedDataParallel(model)
            batch = _half(torch.load(batch_path, weights_only=False), rank, world)
            reps, mask = ddp(batch)
            loss = contrastive_loss(cfg, reps, mask, model.logit_scale(), step=3)
            loss.backward()
            results.append({"loss": float(loss.detach()), "grads": _grads(model)})
        if rank == 0:
            torch.save(results, out_path)
    finally:
        dist.destroy_process_group()


def test_ddp_gradient_equals_single_process_global_batch(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    shards = make_shard_set(
        tmp_path / "c", n={"test": 8}, per_shard=8, drop_every=3
    )  # some modalities missing
    cfgs = [tiny(loss={"name": loss}, data={"augment": False}) for loss in ("clip", "symile")]
    batch = next(iter(make_eval_loader(shards, "test", cfgs[0].data, batch_size=8)[0]))
    batch_path = tmp_path / "batch.pt"
    torch.save(batch, batch_path)
    out = tmp_path / "ddp.pt"
    mp.spawn(
        _worker,
        args=(2, str(tmp_path / "init"), [config_to_dict(c) for c in cfgs], str(batch_path), str(out)),
        nprocs=2,
    )
    got = torch.load(out, weights_only=False)
    for cfg, ddp_res in zip(cfgs, got, strict=True):
        model = build_model(cfg)
        reps, mask = model(batch)
        single = contrastive_loss(cfg, reps, mask, model.logit_scale(), step=3)
        single.backward()
        expected = _grads(model)
        assert abs(ddp_res["loss"] - float(single.detach())) < 1e-5, cfg.loss.name
        assert set(ddp_res["grads"]) == set(expected)
        for name, g in expected.items():
            assert torch.allclose(ddp_res["grads"][name], g, atol=1e-5, rtol=1e-4), (cfg.loss.name, name)


def _accum_worker(
    rank: int, world: int, init_file: str, cfg_dict: dict, batch_paths: list[str], out: str
) -> None:
    """The trainer's own micro-batch step (``_forward_backward``) under DDP with accumulation."""
    from types import SimpleNamespace

    from trainer.train import _forward_backward

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = config_from_dict(cfg_dict)
        model = build_model(cfg)
        run = SimpleNamespace(
            cfg=cfg,
            info=SimpleNamespace(distributed=True, rank=rank, device=torch.device("cpu")),
            model=model,
            ddp=torch.nn.parallel.DistributedDataParallel(model),
            scaler=torch.amp.GradScaler("cpu", enabled=False),
            amp_dtype=None,
            step=3,
        )
        for micro, path in enumerate(batch_paths):
            batch = _half(torch.load(path, weights_only=False), rank, world)
            _forward_backward(run, batch, micro, last_micro=micro == len(batch_paths) - 1)
            torch.save(_grads(model), f"{out}-rank{rank}-micro{micro}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_accumulation_syncs_once_and_equals_the_global_batch(tmp_path: Path) -> None:
    """accum_steps 2 on 2 ranks: the first micro-batch runs under ``no_sync()`` (the ranks' local
    gradients still differ), the second all-reduces the accumulated sum, which equals one process's
    gradient of the mean of the two global-batch losses."""
    torch.set_num_threads(1)
    shards = make_shard_set(tmp_path / "c", n={"test": 16}, per_shard=8, drop_every=3)
    cfg = tiny(loss={"name": "clip"}, data={"augment": False}, optim={"accum_steps": 2})
    loader = iter(make_eval_loader(shards, "test", cfg.data, batch_size=8)[0])
    batches = [next(loader), next(loader)]
    paths = []
    for i, b in enumerate(batches):
        paths.append(str(tmp_path / f"batch{i}.pt"))
        torch.save(b, paths[-1])
    out = str(tmp_path / "grads")
    mp.spawn(_accum_worker, args=(2, str(tmp_path / "init"), config_to_dict(cfg), paths, out), nprocs=2)
    got = {
        (r, m): torch.load(f"{out}-rank{r}-micro{m}.pt", weights_only=False) for r in (0, 1) for m in (0, 1)
    }
    # after micro-batch 0 nothing was synchronised: some gradient differs between the ranks
    assert any(not torch.allclose(got[0, 0][n], got[1, 0][n]) for n in got[0, 0])
    model = build_model(cfg)
    for b in batches:
        reps, mask = model(b)
        (contrastive_loss(cfg, reps, mask, model.logit_scale(), step=3) / 2).backward()
    expected = _grads(model)
    assert set(got[0, 1]) == set(got[1, 1]) == set(expected)
    for name, g in expected.items():
        assert torch.equal(got[0, 1][name], got[1, 1][name]), name  # synchronised on the last micro-batch
        assert torch.allclose(got[0, 1][name], g, atol=1e-5, rtol=1e-4), name
