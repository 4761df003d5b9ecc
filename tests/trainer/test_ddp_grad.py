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
