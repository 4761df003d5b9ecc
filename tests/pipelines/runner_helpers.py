"""Helpers for the runner-equivalence tests. They live in an importable module (not in a test
file) because Beam's SDK workers and Dask's worker processes import them by name
(``decoder_overrides`` names ``tests.pipelines.runner_helpers:decode_bug``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

BUG_MESSAGE = "injected decoder bug for the runner tests"


# --- bug injection into a real build ---------------------------------------------------------------


def decode_bug(item, ctx):
    """A 'decoder' with a bug: any exception that is not a QuarantineError."""
    raise RuntimeError(BUG_MESSAGE)


@contextlib.contextmanager
def repo_on_pythonpath(repo: Path):
    """Beam's worker-pool processes are fresh ``python -m`` processes: make ``tests.*`` importable."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), old) if p)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
