"""Stage functions for the runner tests. They live in an importable module (not in a test file)
because Beam's SDK workers and Dask's worker processes unpickle them by reference.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from schemas.modality import Modality
from schemas.reasons import ReasonCode
from schemas.records import InputKind, QuarantineRecord

BUG_MESSAGE = "injected decoder bug for the runner tests"


def square(x: int) -> int:
    return x * x


def mod3_key(x: int) -> str:
    return f"k{x % 3}"


def key_and_group(key: str, xs: list) -> tuple[str, list]:
    return key, list(xs)


def quarantine_odd(x: int) -> list:
    """Odd inputs are 'bad input': a quarantine record (reason by x % 4) instead of a value."""
    if x % 2 == 0:
        return [x]
    reason = ReasonCode.EMPTY_FILE if x % 4 == 1 else ReasonCode.DICOM_TRUNCATED
    return [QuarantineRecord(f"src{x}", "test", Modality.IMAGE, "decode", reason, "bad")]


def raise_on_seven(x: int) -> int:
    if x == 7:
        raise RuntimeError(BUG_MESSAGE)
    return x


class SetupOnce:
    """Records its ``setup()`` calls in a folder (one file per call, named by pid and object id)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.ready = False

    def setup(self) -> None:
        Path(self.folder, f"setup-{os.getpid()}-{id(self)}").touch()
        self.ready = True

    def __call__(self, x: int) -> tuple[int, int, bool]:
        return x, os.getpid(), self.ready


# --- bug injection into a real build ---------------------------------------------------------------


def decode_bug(item, ctx):
    """A 'decoder' with a bug: any exception that is not a QuarantineError."""
    raise RuntimeError(BUG_MESSAGE)


class WithDecoder:
    """Run a stage function with ``pipelines.decode.DECODERS[kind]`` replaced *in the worker*.

    Pickled by reference to this module, so the replacement reaches Beam and Dask worker
    processes (which import ``pipelines.decode`` afresh); restored after each call.
    """

    def __init__(self, fn: Callable, kind: str, spec: str) -> None:
        self.fn = fn
        self.kind = kind
        self.spec = spec

    def __call__(self, task):
        from pipelines import decode

        kind = InputKind(self.kind)
        old = decode.DECODERS[kind]
        decode.DECODERS[kind] = self.spec
        try:
            return self.fn(task)
        finally:
            decode.DECODERS[kind] = old


class BugInjectingRunner:
    """Wraps a real runner; its ``decode`` stage uses :func:`decode_bug` for one input kind."""

    def __init__(self, inner, kind: str = "wfdb") -> None:
        self.inner = inner
        self.kind = kind
        self.workers = inner.workers

    def map(self, fn, tasks, desc):
        if desc == "decode":
            fn = WithDecoder(fn, self.kind, f"{__name__}:decode_bug")
        return self.inner.map(fn, tasks, desc)

    def group_map(self, key_fn, fn, items, desc):
        return self.inner.group_map(key_fn, fn, items, desc)

    def close(self) -> None:
        self.inner.close()


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


class DieOnce:
    """Kills its worker process at ``x == victim`` the first time only (a marker file remembers)."""

    def __init__(self, folder: str, victim: int = 3) -> None:
        self.folder = folder
        self.victim = victim

    def __call__(self, x: int) -> int:
        marker = Path(self.folder, "died")
        if x == self.victim and not marker.exists():
            marker.touch()
            os._exit(7)
        return x * 10


def die_on_three(x: int) -> int:
    """Kills its worker process every time it sees 3 (a crash that retries cannot fix)."""
    if x == 3:
        os._exit(7)
    return x


class FailOnce:
    """Raises at ``x == victim`` the first time only (a transient error, e.g. a server hiccup)."""

    def __init__(self, folder: str, victim: int = 2) -> None:
        self.folder = folder
        self.victim = victim

    def __call__(self, x: int) -> int:
        marker = Path(self.folder, "failed")
        if x == self.victim and not marker.exists():
            marker.touch()
            raise RuntimeError(BUG_MESSAGE)
        return x
