"""Command-line arguments of ``train`` and ``evaluate`` (no torch import here, so ``--help`` is fast).

Used by ``medcorpus train|evaluate`` (``pipelines/commands``) and by
``python -m trainer.train|trainer.evaluate`` (what torchrun launches).
"""

from __future__ import annotations

import argparse

DEFAULT_PROMPT = "{label}"
DEFAULT_NEGATIVE_PROMPT = "no {label}"


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``medcorpus train``."""
    parser.add_argument(
        "--shards",
        required=True,
        help="build output dir (or its shards/ folder), the same under a storage URL (s3://...), "
        "or a brace/glob pattern of shard files",
    )
    parser.add_argument("--config", default=None, help="training config YAML/JSON (defaults if omitted)")
    parser.add_argument("--out", default="runs/train", help="run folder: checkpoints/, metrics.jsonl")
    parser.add_argument(
        "--resume", default=None, help="checkpoint path, or 'auto' for OUT/checkpoints/latest.pt"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)",
    )


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``medcorpus evaluate``."""
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by medcorpus train")
    parser.add_argument(
        "--shards",
        required=True,
        help="build output dir (or its shards/ folder), the same under a storage URL (s3://...), "
        "or a brace/glob pattern of shard files",
    )
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--out", default=None, help="write the metrics JSON here")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the run's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="positive zero-shot prompt, with {label}")
    parser.add_argument(
        "--negative-prompt", default=DEFAULT_NEGATIVE_PROMPT, help="negative prompt, with {label}"
    )
    parser.add_argument(
        "--similarity",
        default="auto",
        choices=("auto", "cosine", "mip", "mip-mean"),
        help="pair score: cosine, or MIP with the absent modalities as learned missingness vectors (mip) "
        "or as their training mean (mip-mean); auto = mip-mean for Symile models, cosine otherwise",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        default=10,
        help="candidate retrieval: the positive among this many candidates (Symile-MIMIC: 10)",
    )
    parser.add_argument("--retrieval-seed", type=int, default=0, help="seed of the drawn negatives")
