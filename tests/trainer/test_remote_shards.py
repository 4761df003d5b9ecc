"""The trainer's ``--shards`` as a storage URL: a real build of the example ECGs and reports,
published to a real S3 API (moto's server on loopback, tests/pipelines/s3_server.py), one real
training epoch reading its shards through webdataset's ``pipe:`` (fsspec underneath)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipelines import cli, storage
from pipelines.build import run_build
from pipelines.config import config_from_dict
from pipelines.objstore import read_versions, set_location
from pipelines.publish import CorpusRoot
from tests.conftest import EXAMPLES
from tests.pipelines.s3_server import s3_server
from trainer import remote
from trainer.config import config_from_dict as train_config
from trainer.data import ShardSetError, list_shards, make_eval_loader

BUILD = {
    "deid": {"demo": True},
    "sources": [
        {
            "name": "ecg",
            "path": "ecg",
            "licence": "CC-BY-4.0",
            "ecg": {"study_id_pattern": "(\\d+)", "partial_leads": "flag"},
        },
        {
            "name": "reports",
            "path": "reports",
            "licence": "CC-BY-4.0",
            "report": {
                "columns": {
                    "report_id": "ecg_id",
                    "patient_id": "patient_id",
                    "study_id": "ecg_id",
                    "timestamp": "recording_date",
                    "text": ["report"],
                    "report_type": "cardiology",
                }
            },
        },
    ],
    "shards": {"max_samples": 4},
    "workers": 1,
    "strict": True,
}
TRAIN = {
    "data": {
        "modalities": ["ecg", "report"],
        "batch_size": 3,
        "workers": 0,
        "ecg_downsample": 10,
        # shards in seeded passes, no sample shuffle: one epoch of 11 x 3 is exactly one pass
        "resampled": False,
        "shuffle_buffer": 1,
        "shuffle_initial": 1,
    },
    "model": {"embed_dim": 16, "ecg_width": 4, "text_dim": 16, "text_buckets": 512, "head": "linear"},
    "optim": {"warmup_steps": 2, "lr": 3e-3},
    "epochs": 1,
    "threads": 1,
    "log_every": 1,
    "progress": False,
}
VERSION = "2026-04-01"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The example ECG + report build, published to ``s3://medcorpus-train/corpus``."""
    with s3_server() as env:
        storage.filesystem("s3://medcorpus-train").mkdir("medcorpus-train")
        tmp = tmp_path_factory.mktemp("remote_shards")
        root, work = "s3://medcorpus-train/corpus", tmp / "work"
        build = CorpusRoot(work).build_dir(VERSION)
        run_build(EXAMPLES, build, config_from_dict(BUILD), quiet=True)
        argv = ["publish", VERSION, "--corpus-root", root, "--work-root", str(work)]
        assert cli.main([*argv, "--max-quarantine-fraction", "0.5"]) == 0
        (entry,) = read_versions(root)["versions"]
        yield {"env": env, "root": root, "set": set_location(root, entry), "build": build, "tmp": tmp}


def _published_keys(set_url: str, split: str) -> list[str]:
    with storage.open_input(f"{set_url}/manifest.parquet") as f:
        t = pq.read_table(f, columns=["key", "split"]).to_pylist()
    return sorted(r["key"] for r in t if r["split"] == split)


def test_one_training_epoch_reads_exactly_the_published_set_over_s3(
    published, monkeypatch, capsys, caplog, tmp_path
) -> None:
    import trainer.train as train_mod

    set_url = published["set"]
    want = _published_keys(set_url, "train")
    assert len(want) == 33  # 33 train samples in 9 shards of <= 4
    seen: list[str] = []
    real = train_mod.make_train_loader

    def recording_loader(shards, *a, **kw):  # the real loader; only the batch keys are noted
        assert shards == set_url
        loader = real(shards, *a, **kw)
        dl = loader.dataloader

        class Recorded:
            def __iter__(self):
                for batch in dl:
                    seen.extend(batch["key"])
                    yield batch

        loader.dataloader = Recorded()
        return loader

    monkeypatch.setattr(train_mod, "make_train_loader", recording_loader)
    cfg, run = tmp_path / "train.yaml", tmp_path / "run"
    cfg.write_text(yaml.safe_dump(TRAIN))
    with caplog.at_level("DEBUG"):
        rc = cli.main(["train", "--shards", set_url, "--config", str(cfg), "--out", str(run)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    result = json.loads(out.out.strip().splitlines()[-1])
    assert result["batches_per_epoch"] == 11 and result["steps"] == 11
    assert sorted(seen) == want  # every published training sample once, nothing else
    # the same keys as the local build that was published (nothing lost or added on the way)
    local = pq.read_table(published["build"] / "manifest.parquet", columns=["key", "split"]).to_pylist()
    assert want == sorted(r["key"] for r in local if r["split"] == "train")
    # credentials never reach stdout/stderr, logs or the run folder
    blobs = [out.out.encode(), out.err.encode(), caplog.text.encode()]
    blobs += [p.read_bytes() for p in run.rglob("*") if p.is_file()]
    assert len(blobs) > 4
    for secret in (published["env"]["AWS_SECRET_ACCESS_KEY"], published["env"]["AWS_ACCESS_KEY_ID"]):
        assert all(secret.encode() not in b for b in blobs)
    piped = remote.shard_url(f"{set_url}/shards/train/train-000000.tar")  # the command names the URL only
    assert piped.startswith("pipe:") and piped.endswith(f"{set_url}/shards/train/train-000000.tar")
    assert "127.0.0.1" not in piped and published["env"]["AWS_ACCESS_KEY_ID"] not in piped


def test_brace_and_glob_patterns_on_the_store(published) -> None:
    set_url = published["set"]
    folder, total = list_shards(set_url, "train")
    assert len(folder) == 9 and total == 33 and all(u.startswith("s3://") for u in folder)
    assert list_shards(f"{set_url}/shards", "train") == (folder, total)
    assert list_shards(f"{set_url}/shards/train", "train") == (folder, total)
    braces = list_shards(f"{set_url}/shards/train/train-{{000000..000008}}.tar", "train")
    assert braces == (folder, total)
    # a pattern over every split and every published set: only the split's shards are taken
    assert list_shards(f"{published['root']}/sets/*/*/shards/*/*.tar", "train") == (folder, total)
    val = list_shards(f"{published['root']}/sets/*/*/shards/*/*.tar", "val")
    assert len(val[0]) == 2 and val[1] == 5
    # names a brace range holds but the store does not are left out; the count follows sizes.json
    part = list_shards(f"{set_url}/shards/train/train-{{000007..000012}}.tar", "train")
    assert part == (folder[7:], 5)
    with pytest.raises(ShardSetError, match="matches no shard"):
        list_shards(f"{set_url}/shards/train/train-{{000100..000102}}.tar", "train")
    with pytest.raises(ShardSetError, match="no shard folder"):
        list_shards(f"{published['root']}/sets/nope", "train")


def test_eval_pass_over_s3_equals_the_local_shards(published) -> None:
    """An ordered pass over a split streamed from the store yields the local shards' samples."""
    cfg = train_config(TRAIN).data
    dl, total = make_eval_loader(published["set"], "val", cfg, batch_size=2, workers=0)
    got = [k for batch in dl for k in batch["key"]]
    want = []
    for t in sorted((published["build"] / "shards" / "val").glob("*.tar")):
        with tarfile.open(t) as tf:
            want += list(dict.fromkeys(m.name.split(".", 1)[0] for m in tf))
    assert got == want and total == len(want) == 5


def test_local_paths_and_local_patterns_are_unchanged(published) -> None:
    build: Path = published["build"]
    urls, total = list_shards(build, "train")
    assert urls == [str(p) for p in sorted((build / "shards" / "train").glob("train-*.tar"))] and total == 33
    assert remote.shard_url(urls[0]) == urls[0]  # webdataset opens local paths itself
    assert list_shards(f"{build}/shards/train/train-{{000000..000008}}.tar", "train") == (urls, total)
