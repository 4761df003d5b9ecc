"""Encrypted spill files and the tasks that read and write them: the shared core of the local and
Dask backends (``pipelines.runners.local``, ``pipelines.runners.dask``).

A collection lives in *partition files*: pickled lists of elements, sealed with AES-GCM under a key
made for the run (32 random bytes, never written to disk), so input paths and headers never rest
on disk in clear. A task reads its input files, applies stage functions and writes its outputs as
new partition files; it returns only ``(file, element count)`` pairs. Every task is idempotent: a
rerun (retry, a rescheduled task after a worker died) rewrites the same files.
"""

from __future__ import annotations

import os
import pickle
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipelines.flow import GroupFn, KeyFn, OrderFn, group_in_memory
from pipelines.heap import keep_heap

# --- encrypted spill files ------------------------------------------------------------------------


def seal(obj: Any, key: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), None)


def unseal(blob: bytes, key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return pickle.loads(AESGCM(key).decrypt(blob[:12], blob[12:], None))


_FOOTER = 8  #: bytes: big-endian length of the sealed chunk index at the end of a map file


def write_chunks(chunks: dict[int, Any], path: str, key: bytes) -> None:
    """One file: sealed chunks, then the sealed index ``{bucket: (offset, length)}``, then its size."""
    index: dict[int, tuple[int, int]] = {}
    with open(path, "wb") as f:
        for b in sorted(chunks):
            data = seal(chunks[b], key)
            index[b] = (f.tell(), len(data))
            f.write(data)
        tail = seal(index, key)
        f.write(tail)
        f.write(len(tail).to_bytes(_FOOTER, "big"))


def read_chunk(path: str, bucket: int, key: bytes) -> list:
    """Bucket ``bucket``'s elements from one map file (empty when the map task had none)."""
    with open(path, "rb") as f:
        f.seek(-_FOOTER, os.SEEK_END)
        n = int.from_bytes(f.read(_FOOTER), "big")
        f.seek(-_FOOTER - n, os.SEEK_END)
        index = unseal(f.read(n), key)
        if bucket not in index:
            return []
        offset, length = index[bucket]
        f.seek(offset)
        return unseal(f.read(length), key)


def dump(obj: Any, path: str, key: bytes) -> None:
    data = seal(obj, key)
    with open(path, "wb") as f:
        f.write(data)


def load(path: str, key: bytes) -> Any:
    with open(path, "rb") as f:
        return unseal(f.read(), key)


_SIDES: dict[str, Any] = {}  # per process: side-value file → value (loaded once)


def clear_sides() -> None:
    """Forget the side values this process loaded (the run that wrote them is over)."""
    _SIDES.clear()


def side_value(path: str, key: bytes) -> Any:
    if path not in _SIDES:
        if len(_SIDES) >= 8:  # a few side values per run; drop older runs' values
            _SIDES.clear()
        _SIDES[path] = load(path, key)
    return _SIDES[path]


def read_all(sources: tuple, key: bytes) -> list:
    out: list = []
    for s in sources:
        out.extend(s if isinstance(s, list) else load(s, key))
    return out


def write_parts(elements: list, prefix: str, part: int, key: bytes) -> list[tuple[str, int]]:
    out = []
    for i in range(0, len(elements), part):
        path = f"{prefix}-{i // part:06d}"
        dump(elements[i : i + part], path, key)
        out.append((path, min(part, len(elements) - i)))
    return out


# --- tasks (run in worker processes) ----------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    fn: Callable
    side: str = ""  # spill file of a side value (flat_map_with)


@dataclass(frozen=True)
class ChainTask:
    """Apply a fused chain of flat_map steps to one partition; write the outputs in partitions.

    With ``slices = K`` the outputs are dealt into K slices (element i to slice i mod K; K lists of
    partitions, some maybe empty): task k of the next step reads slice k of every task of this one (the Dask
    backend's fan-out, where the next step's task count is fixed before any data is seen).
    """

    sources: tuple  # spill file names, or in-memory lists (seeds)
    steps: tuple[Step, ...]
    out_prefix: str
    part: int
    key: bytes = field(repr=False)
    slices: int = 0

    def __call__(self) -> list:
        keep_heap()
        elements = read_all(self.sources, self.key)
        for step in self.steps:
            if step.side:
                value = side_value(step.side, self.key)
                elements = [y for x in elements for y in step.fn(x, value)]
            else:
                elements = [y for x in elements for y in step.fn(x)]
        if not self.slices:
            return write_parts(elements, self.out_prefix, self.part, self.key)
        k = self.slices  # strided: the files of one slow folder (a CT series) spread over every slice
        return [
            write_parts(elements[s::k], f"{self.out_prefix}-s{s:04d}", self.part, self.key) for s in range(k)
        ]


@dataclass(frozen=True)
class BucketTask:
    """Shuffle map side: one batch of partitions → ONE file of ``n_buckets`` chunks (by crc32 of the key)."""

    sources: tuple
    key_fn: KeyFn
    n_buckets: int
    out_path: str
    key: bytes = field(repr=False)

    def __call__(self) -> int:
        keep_heap()
        elements = read_all(self.sources, self.key)
        buckets: dict[int, list] = {}
        for e in elements:
            k = self.key_fn(e)
            if not isinstance(k, str):
                raise TypeError(f"group key must be str, got {type(k).__name__}")
            buckets.setdefault(zlib.crc32(k.encode()) % self.n_buckets, []).append((k, e))
        write_chunks(buckets, self.out_path, self.key)
        return len(elements)


@dataclass(frozen=True)
class GroupTask:
    """Shuffle reduce side: bucket ``bucket``'s chunk of every map file → ``fn(key, values sorted)``."""

    map_prefix: str  # map files are f"{map_prefix}{i:06d}" for i < n_maps
    n_maps: int
    bucket: int
    fn: GroupFn
    order: OrderFn
    out_prefix: str
    part: int
    key: bytes = field(repr=False)

    def __call__(self) -> list[tuple[str, int]]:
        keep_heap()
        kvs = [
            kv
            for i in range(self.n_maps)
            for kv in read_chunk(f"{self.map_prefix}{i:06d}", self.bucket, self.key)
        ]
        groups = group_in_memory(kvs, _first, _second_by(self.order))
        del kvs
        elements = [y for k, vs in groups for y in self.fn(k, [v for _, v in vs])]
        return write_parts(elements, self.out_prefix, self.part, self.key)


@dataclass(frozen=True)
class GatherTask:
    """``gather``: every element of a collection, sorted by ``order`` → ``fn(elements)`` → side file."""

    sources: tuple
    fn: Callable
    order: OrderFn
    out_path: str
    key: bytes = field(repr=False)

    def __call__(self) -> None:
        keep_heap()
        elements = sorted(read_all(self.sources, self.key), key=self.order)
        value = self.fn(elements)
        del elements
        dump(value, self.out_path, self.key)


def _first(kv: tuple) -> str:
    return kv[0]


@dataclass(frozen=True)
class _second_by:  # noqa: N801 - a picklable key function
    order: OrderFn

    def __call__(self, kv: tuple) -> Any:
        return self.order(kv[1])


def call(task) -> Any:
    return task()
