"""``medcorpus train --shards OUT --config FILE``: contrastive training on a built corpus.

Thin wiring: the arguments live in :mod:`trainer.cli`, the loop in :mod:`trainer.train` (imported
inside the handler, so ``medcorpus --help`` does not load torch). For DDP launch the same code
with ``torchrun --nproc_per_node N -m trainer.train ...``.
"""

from __future__ import annotations

import argparse

from trainer.cli import add_train_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train CLIP/Symile encoders on the shards of a build")
    add_train_arguments(p)
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from trainer.train import run_from_args

    return run_from_args(args)
