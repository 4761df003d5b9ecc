"""``medcorpus build --out s3://...`` (pipelines/outstore.py) against a real S3 API: moto's server
on loopback (tests/pipelines/s3_server.py), credentials from the environment only.

The demo config (dedup off, for time) on a small subset of the sample data (the
runner-equivalence input) is built once on local disk and once into the store per runner (local
pool, Dask; Beam with the slow mark): every object
under the output URL must be byte for byte the local build's file of the same name (shards,
per-shard stats, sizes.json, every parquet manifest, stats.json, build.json, the data card,
complete.json), and nothing else (no blob store, no cache, no fragments) may be there.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines import cli, storage
from pipelines.build import run_build
from pipelines.config import DedupConfig, config_from_dict
from pipelines.flow import make_flow
from pipelines.outstore import OutputStore
from pipelines.validate import validate_build
from tests.conftest import REPO
from tests.pipelines import runner_helpers as h
from tests.pipelines.s3_server import s3_server

BUCKET = "medcorpus-out"
LOCAL_ONLY = {"cache", "blobs", "manifest-parts", ".lock", "run.json"}  # run.json: this run's timings


@pytest.fixture(scope="module")
def s3():
    with s3_server() as env, h.repo_on_pythonpath(REPO):
        storage.filesystem(f"s3://{BUCKET}").mkdir(BUCKET)
        yield env


def _local_files(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.relative_to(out).parts[0] not in LOCAL_ONLY
    }


def _objects(url: str) -> dict[str, bytes]:
    fs = storage.filesystem(url)
    base = url.removeprefix("s3://") + "/"
    return {
        k.removeprefix(base): fs.cat_file(k)
        for k in sorted(fs.find(url))
        if k.removeprefix(base) != "run.json"
    }


@pytest.fixture(scope="module")
def builds(s3, tmp_path_factory, examples_dir):
    """The local-disk reference build, then the same input and config into the store."""
    tmp = tmp_path_factory.mktemp("store")
    input_dir = h.demo_subset(examples_dir, tmp / "input")
    # dedup off: its embedding models cost ~8 s per build here and it writes nothing of its own to
    # the store (the full demo, dedup on, is compared object for object in docs/appends.md's figure)
    cfg = replace(h.demo_config(input_dir), dedup=DedupConfig(enabled=False))
    local = run_build(input_dir, tmp / "local", cfg, quiet=True)
    url = f"s3://{BUCKET}/demo/local"
    remote = run_build(input_dir, url, cfg, quiet=True, work_dir=tmp / "work")
    return {
        "input": input_dir,
        "cfg": cfg,
        "tmp": tmp,
        "local": local,
        "ref": _local_files(tmp / "local"),
        "url": url,
        "remote": remote,
    }


def test_s3_output_is_byte_identical_to_the_local_build(builds) -> None:
    ref, got = builds["ref"], _objects(builds["url"])
    assert builds["local"].n_shards >= 3 and builds["remote"].n_shards == builds["local"].n_shards
    assert sum(k.endswith(".tar") for k in ref) == builds["local"].n_shards
    assert "complete.json" in ref and "manifest.parquet" in ref and "datacard.html" in ref
    assert sorted(got) == sorted(ref)
    assert [k for k in ref if ref[k] != got[k]] == []
    assert builds["remote"].out_url == builds["url"]


def test_validate_reads_the_build_from_the_store(builds, capsys) -> None:
    assert cli.main(["validate", builds["url"]]) == 0
    local = builds["local"]
    assert f"OK: {local.n_shards} shards, {local.n_samples} samples" in capsys.readouterr().out


def test_the_work_folder_keeps_sidecars_not_shards(builds) -> None:
    work = builds["tmp"] / "work"
    assert not list(work.rglob("*.tar"))  # uploaded by the shard writers, then removed
    assert (work / "blobs").is_dir() and (work / "manifest.parquet").is_file()
    assert sorted(p.name for p in work.glob("shards/*/*.json") if p.name != "sizes.json") == sorted(
        Path(k).name
        for k in builds["ref"]
        if k.startswith("shards/") and k.endswith(".json") and "sizes" not in k
    )


@pytest.mark.parametrize("name", ["dask", pytest.param("beam", marks=pytest.mark.slow)])
def test_dask_and_beam_workers_write_the_same_objects(builds, name) -> None:
    url = f"s3://{BUCKET}/demo/{name}"
    runner = make_flow(name, 2, quiet=True)
    try:
        run_build(
            builds["input"], url, builds["cfg"], quiet=True, runner=runner, work_dir=builds["tmp"] / name
        )
    finally:
        runner.close()
    got = _objects(url)
    assert sorted(got) == sorted(builds["ref"])
    assert [k for k in got if got[k] != builds["ref"][k]] == []


TINY = {
    "deid": {"demo": True},
    "sources": [{"name": "dicom", "path": "dicom", "licence": "MIT"}],
    "shards": {"max_samples": 1},
    "workers": 1,
    "strict": True,
}


@pytest.fixture(scope="module")
def tiny(s3, tmp_path_factory, examples_dir):
    """Three DICOM images, one per shard: a quick build, on local disk and into the store."""
    tmp = tmp_path_factory.mktemp("tiny")
    (tmp / "in" / "dicom").mkdir(parents=True)
    for rel in ("ct/CT_small.dcm", "mr/MR_small.dcm", "cr/6154"):
        shutil.copyfile(examples_dir / "dicom" / rel, tmp / "in" / "dicom" / Path(rel).name)
    cfg = config_from_dict(TINY)
    run_build(tmp / "in", tmp / "local", cfg, quiet=True)
    url = f"s3://{BUCKET}/tiny"
    run_build(tmp / "in", url, cfg, quiet=True, work_dir=tmp / "work")
    return {
        "input": tmp / "in",
        "cfg": cfg,
        "work": tmp / "work",
        "url": url,
        "ref": _local_files(tmp / "local"),
    }


def test_a_rerun_is_a_no_op_and_a_lost_object_is_rewritten(tiny) -> None:
    url, work = tiny["url"], tiny["work"]
    assert _objects(url) == tiny["ref"] and sum(k.endswith(".tar") for k in tiny["ref"]) == 3
    again = run_build(tiny["input"], url, tiny["cfg"], quiet=True, work_dir=work)
    assert again.n_shards_skipped == again.n_shards == 3
    assert json.loads((work / "run.json").read_text())["up_to_date"] is True
    fs = storage.filesystem(url)
    fs.rm_file(sorted(k for k in fs.find(f"{url}/shards") if k.endswith(".tar"))[0])
    resumed = run_build(tiny["input"], url, tiny["cfg"], quiet=True, work_dir=work)
    assert resumed.n_shards_skipped == 2  # the others: finished on the store, not rewritten
    assert _objects(url) == tiny["ref"]


def test_a_build_that_fails_before_its_last_object_is_never_complete(tiny, monkeypatch) -> None:
    url, work = tiny["url"], tiny["work"]
    fs = storage.filesystem(url)
    fs.rm_file(sorted(k for k in fs.find(f"{url}/shards") if k.endswith(".tar"))[-1])

    def dropped(self, *a, **kw):  # the connection drops while the driver uploads the manifests
        raise ConnectionError("connection reset")

    monkeypatch.setattr(OutputStore, "put_outputs", dropped)
    with pytest.raises(ConnectionError):
        run_build(tiny["input"], url, tiny["cfg"], quiet=True, work_dir=work)
    assert not storage.filesystem(url).exists(f"{url}/complete.json")  # deleted first, not rewritten
    assert any("missing complete.json" in e for e in validate_build(url).errors)
    monkeypatch.undo()
    run_build(tiny["input"], url, tiny["cfg"], quiet=True, work_dir=work)
    assert _objects(url) == tiny["ref"]


def test_a_new_plan_deletes_the_shard_objects_of_the_old_one(tiny, tmp_path) -> None:
    url = f"s3://{BUCKET}/replan"
    run_build(tiny["input"], url, tiny["cfg"], quiet=True, work_dir=tmp_path / "w")
    assert sum(k.endswith(".tar") for k in _objects(url)) == 3
    bigger = replace(tiny["cfg"], shards=replace(tiny["cfg"].shards, max_samples=3))
    res = run_build(tiny["input"], url, bigger, quiet=True, work_dir=tmp_path / "w")
    objs = _objects(url)
    names = pq.read_table(io.BytesIO(objs["shards.parquet"]), columns=["shard"])["shard"].to_pylist()
    assert len(names) == res.n_shards < 3
    assert sorted(k for k in objs if k.startswith("shards/") and not k.endswith("sizes.json")) == sorted(
        [f"shards/{n}" for n in names] + [f"shards/{n.removesuffix('.tar')}.json" for n in names]
    )


def test_an_input_url_is_mirrored_by_the_workers_and_builds_the_same(tiny, tmp_path) -> None:
    inbox = f"s3://{BUCKET}/inbox"
    fs = storage.filesystem(inbox)
    for p in sorted(tiny["input"].rglob("*")):
        if p.is_file():
            fs.put_file(str(p), f"{inbox}/{p.relative_to(tiny['input']).as_posix()}")
    fs.pipe_file(f"{inbox}/dicom/.DS_Store", b"not an input")
    out, mirror = tmp_path / "out", tmp_path / "mirror"
    first = run_build(inbox, out, tiny["cfg"], quiet=True, input_mirror=mirror)
    assert first.n_samples == 3 and sorted(p.name for p in (mirror / "dicom").iterdir()) == sorted(
        p.name for p in (tiny["input"] / "dicom").iterdir()
    )
    got = _local_files(out)  # complete.json: keyed over the inputs' mtimes (the objects' here)
    assert {k: v for k, v in got.items() if k != "complete.json"} == {
        k: v for k, v in tiny["ref"].items() if k != "complete.json"
    }
    assert run_build(inbox, out, tiny["cfg"], quiet=True, input_mirror=mirror).n_shards_skipped == 3
    assert json.loads((out / "run.json").read_text())["up_to_date"] is True  # nothing downloaded
    fs.rm_file(f"{inbox}/dicom/6154")  # an object removed from the store leaves the mirror too
    assert run_build(inbox, out, tiny["cfg"], quiet=True, input_mirror=mirror).n_samples == 2
    assert not (mirror / "dicom" / "6154").exists()


def test_cli_builds_from_a_url_into_a_url_and_needs_a_work_folder(
    s3, examples_dir, tmp_path, capsys, monkeypatch
) -> None:
    inbox = f"s3://{BUCKET}/cli-in"
    storage.filesystem(inbox).put_file(str(examples_dir / "dicom/cr/6154"), f"{inbox}/dicom/6154")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("deid: {demo: true}\nsources: [{name: d, path: dicom, licence: MIT}]\nworkers: 1\n")
    url = f"s3://{BUCKET}/cli/"
    monkeypatch.delenv("MEDCORPUS_WORK_ROOT", raising=False)
    assert cli.main(["build", inbox, "--config", str(cfg), "--out", url, "--quiet"]) == 2
    assert "--input-mirror or $MEDCORPUS_WORK_ROOT" in capsys.readouterr().err
    argv = [
        "build",
        inbox,
        "--config",
        str(cfg),
        "--out",
        url,
        "--quiet",
        "--input-mirror",
        str(tmp_path / "m"),
    ]
    assert cli.main(argv) == 2
    assert "--work-dir or $MEDCORPUS_WORK_ROOT" in capsys.readouterr().err
    monkeypatch.setenv("MEDCORPUS_WORK_ROOT", str(tmp_path / "wr"))
    assert cli.main(["build", inbox, "--config", str(cfg), "--out", url, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"shards: {url.rstrip('/')}/shards" in out
    objs = _objects(url.rstrip("/"))
    assert sum(k.endswith(".tar") for k in objs) == 1  # one sample, in whichever split
    assert json.loads(objs["stats.json"])["n_samples"] == 1 and "complete.json" in objs
    assert list((tmp_path / "wr" / "builds").glob("out-*/blobs"))
    assert list((tmp_path / "wr" / "inputs").glob("in-*/dicom/6154"))
    secrets_ = [s3["AWS_SECRET_ACCESS_KEY"].encode(), s3["AWS_ACCESS_KEY_ID"].encode()]
    for data in [*objs.values(), *(p.read_bytes() for p in (tmp_path / "wr").rglob("*") if p.is_file())]:
        assert not any(s in data for s in secrets_)
