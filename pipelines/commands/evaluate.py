"""``medcorpus evaluate --checkpoint CKPT --shards OUT``: retrieval R@k, zero-shot, modality gap.

Thin wiring: arguments in :mod:`trainer.cli`, metrics in :mod:`trainer.evaluate` (imported inside
the handler, so ``medcorpus --help`` does not load torch).
"""

from __future__ import annotations

import argparse

from trainer.cli import add_evaluate_arguments


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a trained checkpoint on the val/test split")
    add_evaluate_arguments(p)
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from trainer.evaluate import run_from_args

    return run_from_args(args)
