"""Stage functions for the flow tests (an importable module: Beam and Dask workers unpickle them)."""

from __future__ import annotations

import os
from collections.abc import Iterable


def expand(n: int) -> Iterable[int]:
    """Seed n -> the numbers 10n .. 10n+9."""
    return range(10 * n, 10 * n + 10)


expand.fans_out = True


def mod3(x: int) -> str:
    return f"k{x % 3}"


def ident(x):
    return x


def group_summary(key: str, xs: list) -> Iterable[tuple]:
    yield key, tuple(xs)


def total(xs: list) -> dict:
    return {"n": len(xs), "sum": sum(xs), "first": xs[:3]}


def scale(x: int, side: dict) -> Iterable[tuple]:
    yield x, x * side["n"]


def tag_parity(x: int) -> Iterable[tuple]:
    yield ("even" if x % 2 == 0 else "odd"), x


def pid_of(x: int) -> Iterable[tuple]:
    yield x, os.getpid()


def boom_on_seven(x: int) -> Iterable[int]:
    if x == 7:
        raise RuntimeError("injected bug in a flow stage")
    yield x


def blas_threads(x: int) -> Iterable[tuple]:
    """(x, pid, OpenBLAS threads of this process as OpenBLAS itself reports them)."""
    import numpy  # noqa: F401 - loads OpenBLAS
    from threadpoolctl import threadpool_info

    yield x, os.getpid(), max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
