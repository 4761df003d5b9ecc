"""The local backend's shuffle (``pipelines.runners.local``): correct groups, one spill file per map task."""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidTag

from pipelines.runners import local, spill


class _CountSpill:
    """Group function that records how many shuffle map files exist while reducers run."""

    def __init__(self, flow: local.LocalFlow) -> None:
        self.flow = flow
        self.max_map_files = 0

    def __call__(self, key: str, values: list):
        names = os.listdir(self.flow._tmp)
        self.max_map_files = max(self.max_map_files, sum("-m" in n for n in names))
        yield (key, len(values), values[0], values[-1])


def _key(x: int) -> str:
    return f"k{x % 997}"


def _ident(x):
    return x


def _spread(seed: int):
    return range(seed * 10_000, (seed + 1) * 10_000)


@pytest.mark.parametrize("bucket_elements", [64, 32_768])
def test_shuffle_groups_everything_and_writes_one_file_per_map_task(monkeypatch, tmp_path, bucket_elements):
    monkeypatch.setattr(local, "BUCKET_ELEMENTS", bucket_elements)
    flow = local.LocalFlow(workers=1, quiet=True, spill_dir=str(tmp_path))
    counter = _CountSpill(flow)
    nums = flow.create([0, 1, 2, 3], "seeds").flat_map(_spread, "spread")
    out = flow.run({"g": nums.group(_key, counter, _ident, "group")})["g"]
    n = 40_000
    assert len(out) == 997
    assert sum(c for _, c, _, _ in out) == n
    by_key = {k: (c, lo, hi) for k, c, lo, hi in out}
    # every group's values arrive sorted by `order`, whatever bucket they crossed
    assert by_key["k5"] == (len(range(5, n, 997)), 5, max(range(5, n, 997)))
    # map tasks hold 8 x PART elements each; one file per map task, never one per (map task, bucket)
    n_maps = -(-n // (8 * local.PART))
    n_buckets = max(4, -(-n // bucket_elements))
    assert counter.max_map_files == n_maps
    assert n_buckets > 1
    if bucket_elements == 64:
        assert n_buckets * n_maps > 100 * counter.max_map_files  # the old layout's file count
    assert not os.listdir(tmp_path)  # spill folder removed after the run


def test_map_file_chunks_round_trip(tmp_path):
    key = os.urandom(32)
    path = str(tmp_path / "m000000")
    chunks = {b: [(f"k{b}", i) for i in range(b * 3)] for b in (1, 4, 9)}
    spill.write_chunks(chunks, path, key)
    for b in range(12):
        assert spill.read_chunk(path, b, key) == chunks.get(b, [])
    # chunks are sealed: no element bytes in clear, and a wrong key fails loudly
    assert b"k4" not in open(path, "rb").read()
    with pytest.raises(InvalidTag):
        spill.read_chunk(path, 4, os.urandom(32))
