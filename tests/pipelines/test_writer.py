"""The deterministic, atomic tar writer, read back with webdataset and tarfile."""

from __future__ import annotations

import hashlib
import os
import tarfile

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from pipelines.blobs import BlobStore
from pipelines.shards import SampleHeader, WriteShard, fragment_path
from pipelines.writer import TarShardWriter, tar_member_size
from schemas.contract import SHARDS_DIR, shard_name


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


def test_digest_is_taken_while_writing_and_equals_the_file(tmp_path):
    with TarShardWriter(tmp_path / "a.tar") as w:
        assert w.sha256 == ""  # not before the tar is complete
        for key, members in _samples(40):  # ~30 kB: many writes, end-of-archive padding included
            w.write(key, members)
    assert w.sha256 == hashlib.sha256((tmp_path / "a.tar").read_bytes()).hexdigest()
    with pytest.raises(RuntimeError):
        with TarShardWriter(tmp_path / "b.tar") as failed:
            failed.write("k1", {"meta.json": b"{}"})
            raise RuntimeError("crash mid-shard")
    assert failed.sha256 == ""


def test_manifest_digests_are_the_member_and_shard_bytes(tmp_path):
    """Member digests come from the blob store (hashed once, at put); the shard's from its writer."""
    store = BlobStore(str(tmp_path / "blobs"))
    headers = []
    for key, members in _samples(3):
        refs = tuple(sorted((m, store.put(data), len(data)) for m, data in members.items()))
        headers.append(
            SampleHeader(
                key,
                "train",
                refs,
                "p",
                "s",
                ("ecg",),
                (False, True),
                ("r",),
                ("s",),
                ("src",),
                ("x",),
                ("ecg",),
                (("s", "ecg"),),
            )
        )
    name = shard_name("train", 0)
    (result,) = WriteShard(str(tmp_path / "out"), store.root)(name, [(name, h) for h in headers])
    tar_path = tmp_path / "out" / SHARDS_DIR / name
    assert result.sha256 == hashlib.sha256(tar_path.read_bytes()).hexdigest() and not result.skipped
    with tarfile.open(tar_path) as t:
        got = {i.name: hashlib.sha256(t.extractfile(i).read()).hexdigest() for i in t.getmembers()}
    rows = pq.read_table(fragment_path(tmp_path / "out", name)).to_pylist()
    want = {f"{r['key']}.{m}": d for r in rows for m, d in zip(r["members"], r["member_sha256"], strict=True)}
    assert got == want and len(got) == 6
