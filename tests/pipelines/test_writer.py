"""The deterministic, atomic tar writer, read back with webdataset and tarfile."""

from __future__ import annotations

import os
import tarfile

import pytest
import webdataset as wds

from pipelines.writer import TarShardWriter, tar_member_size


def _samples(n: int):
    return [
        (f"k{i:04d}", {"meta.json": b'{"i": %d}' % i, "ecg_0.npy": os.urandom(0) + bytes([i]) * (700 + i)})
        for i in range(n)
    ]


def test_bytes_identical_and_readable(tmp_path):
    for name in ("a.tar", "b.tar"):
        with TarShardWriter(tmp_path / name) as w:
            for key, members in _samples(5):
                w.write(key, members)
    a, b = (tmp_path / "a.tar").read_bytes(), (tmp_path / "b.tar").read_bytes()
    assert a == b
    got = list(wds.WebDataset(str(tmp_path / "a.tar"), shardshuffle=False))
    assert [s["__key__"] for s in got] == [f"k{i:04d}" for i in range(5)]
    assert got[3]["ecg_0.npy"] == bytes([3]) * 703
    with tarfile.open(tmp_path / "a.tar") as t:
        infos = t.getmembers()
    assert all(i.mtime == 0 and i.uid == 0 and i.uname == "" for i in infos)
    assert len(a) <= sum(tar_member_size(len(v)) for _, m in _samples(5) for v in m.values()) + 10240


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "s.tar"
    with pytest.raises(RuntimeError):
        with TarShardWriter(target) as w:
            w.write("k1", {"meta.json": b"{}"})
            raise RuntimeError("crash mid-shard")
    assert list(tmp_path.iterdir()) == []


def test_rejects_dotted_keys(tmp_path):
    with pytest.raises(ValueError, match="invalid sample key"):
        with TarShardWriter(tmp_path / "x.tar") as w:
            w.write("1.2.840.10008", {"meta.json": b"{}"})
