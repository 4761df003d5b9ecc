"""Corpus roots in object storage (pipelines/objstore.py), against a real S3 API: moto's server
mode on loopback (tests/pipelines/s3_server.py), s3fs through fsspec, real builds of pydicom
sample images, the real CLI, webdataset reading the published shards over the S3 API."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import pydicom
import pytest

from pipelines import cli, storage
from pipelines.build import run_build
from pipelines.config import config_from_dict
from pipelines.corpus_index import CROSSSET, INDEX, latest_view, prior_index
from pipelines.objstore import orphans, read_versions, set_location
from pipelines.publish import CorpusRoot, publish_set
from tests.conftest import EXAMPLES
from tests.pipelines.s3_server import s3_server

CONFIG = {
    "deid": {"demo": True},
    "sources": [{"name": "dicom", "path": "dicom", "licence": "MIT"}],
    "shards": {"max_samples": 1},
    "workers": 1,
    "strict": True,
}
D1, D2 = "2026-02-01", "2026-02-02"


@pytest.fixture(scope="module")
def s3():
    with s3_server() as env:
        fs = storage.filesystem("s3://medcorpus-test")
        fs.mkdir("medcorpus-test")
        yield env


def _day1(src: Path) -> None:
    (src / "dicom").mkdir(parents=True)
    shutil.copyfile(EXAMPLES / "dicom/ct/CT_small.dcm", src / "dicom/CT_small.dcm")
    shutil.copyfile(EXAMPLES / "dicom/mr/MR_small.dcm", src / "dicom/MR_small.dcm")


def _day2(src: Path) -> None:
    (src / "dicom").mkdir(parents=True)
    shutil.copyfile(EXAMPLES / "dicom/ct/CT_small.dcm", src / "dicom/CT_small.dcm")  # again: duplicate
    shutil.copyfile(EXAMPLES / "dicom/cr/6154", src / "dicom/6154")  # new
    ds = pydicom.dcmread(EXAMPLES / "dicom/mr/MR_small.dcm")
    ds.PatientID = "SOMEONE-ELSE-31"  # day 1's pixels under another patient: conflict
    ds.save_as(src / "dicom/MR_small.dcm")


def _publish_cli(capsys, version: str, root, work: Path | None = None) -> dict:
    argv = ["publish", version, "--corpus-root", str(root), "--json"]
    argv += ["--work-root", str(work)] if work else []
    rc = cli.main(argv)
    out = capsys.readouterr().out
    assert rc == 0, out
    return json.loads(out.strip().splitlines()[-1]) | {"_stdout": out}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def corpora(s3, tmp_path_factory):
    """Day 1 and day 2 published to an S3 corpus root and, from the same builds, to a local one."""
    tmp = tmp_path_factory.mktemp("objstore")
    url = "s3://medcorpus-test/corpus"
    work, local = tmp / "work", tmp / "local"
    for day, make in ((D1, _day1), (D2, _day2)):
        make(tmp / day)
        build = CorpusRoot(work).build_dir(day)
        run_build(tmp / day, build, config_from_dict(CONFIG), quiet=True, prior=prior_index(url))
        shutil.copytree(build, CorpusRoot(local).build_dir(day))  # the same bytes, for a local root
        # day 2 quarantines 1 of its 3 images (the conflict): above the default gate of 25%
        argv = [
            "publish",
            day,
            "--corpus-root",
            url,
            "--work-root",
            str(work),
            "--max-quarantine-fraction",
            "0.5",
        ]
        assert cli.main(argv) == 0
        publish_set(local, day, max_quarantine_fraction=0.5)
    return url, work, local


def test_publish_uploads_a_unique_prefix_then_the_pointer(corpora, capsys) -> None:
    url, work, local = corpora
    fs = storage.filesystem(url)
    idx = read_versions(url)
    assert [e["version"] for e in idx["versions"]] == [D1, D2] and idx["current"] == D2
    assert fs.cat_file(f"{url}/CURRENT") == f"{D2}\n".encode()
    for e in idx["versions"]:
        assert e["path"].startswith(f"sets/{e['version']}/") and len(e["path"].split("/")) == 3
        remote = set_location(url, e)
        local_set = CorpusRoot(local).set_dir(e["version"])
        files = sorted(
            p.relative_to(local_set).as_posix()
            for p in local_set.rglob("*")
            if p.is_file() and p.name != "SET.json"
        )
        assert files and f"{INDEX}" in files and "manifest.parquet" in files
        for rel in files:  # byte-identical to the set published on local disk
            assert _sha(fs.cat_file(f"{remote}/{rel}")) == _sha((local_set / rel).read_bytes()), rel
        assert json.loads(fs.cat_file(f"{remote}/SET.json"))["entry"] == e
        assert not fs.exists(f"{remote}/blobs") and not fs.exists(f"{remote}/cache")
    # publishing again: nothing is uploaded, the pointer is unchanged
    before = sorted(fs.find(url))
    out = _publish_cli(capsys, D2, url, work)
    assert out["already_published"] is True
    assert sorted(storage.filesystem(url).find(url)) == before
    assert orphans(url) == []


def test_cross_set_dedup_against_the_store_matches_the_local_root(corpora) -> None:
    url, _, local = corpora
    fs = storage.filesystem(url)
    e2 = read_versions(url)["versions"][1]
    xs = json.loads(fs.cat_file(f"{set_location(url, e2)}/{CROSSSET}"))
    assert xs["segments"] == [D1]
    assert xs["against_published"] == {"image": {"conflict": 1, "duplicate": 1}}
    assert [v for v, _ in prior_index(url).segments] == [D1, D2]
    assert latest_view(url).to_pylist() == latest_view(local).to_pylist()


def test_a_failed_upload_is_never_visible_and_a_rerun_publishes_once(corpora, monkeypatch, tmp_path) -> None:
    url, work, _ = corpora
    d3 = "2026-02-03"
    src = tmp_path / "src"
    (src / "dicom").mkdir(parents=True)
    shutil.copyfile(EXAMPLES / "dicom/cr/6154", src / "dicom/6154")  # day 2's image again
    run_build(
        src, CorpusRoot(work).build_dir(d3), config_from_dict(CONFIG), quiet=True, prior=prior_index(url)
    )
    import s3fs

    real_put, calls = s3fs.S3FileSystem.put_file, []

    def failing_put(self, lpath, rpath, *a, **kw):  # the network drops after two objects
        calls.append(rpath)
        if len(calls) > 2:
            raise ConnectionError("connection reset")
        return real_put(self, lpath, rpath, *a, **kw)

    monkeypatch.setattr(s3fs.S3FileSystem, "put_file", failing_put)
    before = read_versions(url)
    with pytest.raises(ConnectionError):
        cli.main(["publish", d3, "--corpus-root", url, "--work-root", str(work)])
    monkeypatch.undo()
    assert read_versions(url) == before  # readers see nothing of it
    assert len(orphans(url)) == 1 and orphans(url)[0].startswith(f"sets/{d3}/")
    assert cli.main(["publish", d3, "--corpus-root", url, "--work-root", str(work)]) == 0
    after = read_versions(url)
    assert [e["version"] for e in after["versions"]] == [D1, D2, d3]
    assert len(orphans(url)) == 1  # the half upload, still unnamed; the set is published once
    xs = json.loads(storage.filesystem(url).cat_file(f"{set_location(url, after['versions'][2])}/{CROSSSET}"))
    assert xs["against_published"] == {"image": {"duplicate": 1}}  # a re-export: nothing new


def test_webdataset_reads_published_shards_over_the_s3_api(corpora) -> None:
    import webdataset as wds

    url, _, local = corpora
    fs = storage.filesystem(url)
    e1 = read_versions(url)["versions"][0]
    remote = set_location(url, e1)
    tars = sorted(fs.glob(f"{remote}/shards/*/*.tar"))
    assert tars
    urls = [storage.shard_url("s3://" + t.removeprefix("s3://")) for t in tars]  # glob drops s3://
    assert all(u.startswith("pipe:") for u in urls)
    got = {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)}
    want = {}
    for t in sorted(CorpusRoot(local).set_dir(D1).glob("shards/*/*.tar")):
        with tarfile.open(t) as tf:
            for m in tf.getmembers():
                key, member = m.name.split(".", 1)
                want.setdefault(key, {})[member] = tf.extractfile(m).read()
    assert set(got) == set(want) and got
    for key, members in want.items():
        for member, data in members.items():
            assert got[key][member] == data


def test_credentials_never_reach_outputs_or_logs(corpora, s3, capsys, caplog) -> None:
    url, work, _ = corpora
    secrets_ = [s3["AWS_SECRET_ACCESS_KEY"].encode(), s3["AWS_ACCESS_KEY_ID"].encode()]
    with caplog.at_level("DEBUG"):
        assert cli.main(["corpus-status", "--corpus-root", url, "--json"]) == 0
    out = capsys.readouterr()
    blobs = [out.out.encode(), out.err.encode(), caplog.text.encode()]
    fs = storage.filesystem(url)
    blobs += [fs.cat_file(p) for p in fs.find(url)]
    blobs += [p.read_bytes() for p in work.rglob("*") if p.is_file()]
    assert len(blobs) > 20
    for b in blobs:
        for s in secrets_:
            assert s not in b
    # the pointer names prefixes, never an endpoint or a key
    assert b"127.0.0.1" not in fs.cat_file(f"{url}/versions.json")


@pytest.mark.parametrize("name", ["dask", pytest.param("beam", marks=pytest.mark.slow)])  # Beam: ~30 s
def test_dask_and_beam_workers_dedup_against_the_store_like_local(corpora, name, tmp_path) -> None:
    """The lookup runs in the engines' worker processes, which reach the S3 server with the
    credentials of their environment; the outputs equal the local runner's byte for byte."""
    from pipelines.flow import make_flow

    url = corpora[0]
    src = tmp_path / "src"
    _day2(src)
    prior = prior_index(url)
    assert prior.segments and all(p.startswith("s3://") for _, p in prior.segments)
    outs = {}
    for runner_name in ("local", name):
        flow = None if runner_name == "local" else make_flow(runner_name, 2, quiet=True)
        out = tmp_path / runner_name
        try:
            run_build(src, out, config_from_dict(CONFIG), quiet=True, prior=prior, runner=flow)
        finally:
            if flow is not None:
                flow.close()
        outs[runner_name] = {
            p.relative_to(out).as_posix(): _sha(p.read_bytes())
            for p in sorted(out.rglob("*"))
            if p.is_file() and p.suffix in (".parquet", ".tar") or p.name in (CROSSSET, "stats.json")
        }
    assert outs["local"] == outs[name]
    xs = json.loads((tmp_path / name / CROSSSET).read_text())
    assert xs["against_published"]["image"]["duplicate"] >= 1  # day 2's images are all published


def test_the_scheduled_steps_from_an_inbox_url_to_a_corpus_root_url(s3, tmp_path, capsys) -> None:
    """partitions → stage-partition → build-set → check-build → publish → corpus-status, all on
    URLs (inbox and corpus root on the S3 server), as the incremental DAG runs them; the published
    set downloaded back validates."""
    import yaml

    from pipelines.validate import validate_build

    fs = storage.filesystem("s3://medcorpus-test")
    inbox, root, day = "s3://medcorpus-test/inbox", "s3://medcorpus-test/corpus-cli", "2026-03-01"
    for rel in ("dicom/ct/CT_small.dcm", "dicom/mr/MR_small.dcm"):
        fs.put_file(str(EXAMPLES / rel), f"{inbox}/{day}/dicom/{rel.rsplit('/', 1)[-1]}")
    fs.pipe_file(f"{inbox}/2026-03-02/.hidden", b"not a partition file")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    work = tmp_path / "work"

    def run(*argv: str) -> dict:
        rc = cli.main([*argv, "--json"])
        out = capsys.readouterr().out
        assert rc == 0, out
        return json.loads(out.strip().splitlines()[-1])

    parts = run("partitions", inbox, "--start", "2026-03-01", "--end", "2026-03-03")["partitions"]
    assert [p["version"] for p in parts] == [day]
    common = ("--corpus-root", root, "--work-root", str(work))
    staged = run("stage-partition", inbox, day, *common, "--config", str(cfg))
    assert staged["n_files"] == 2
    run("build-set", day, *common, "--config", str(cfg))
    run("check-build", "--version", day, *common)
    pub = run("publish", day, *common)
    assert pub["set_dir"].startswith(f"{root}/sets/{day}/") and pub["n_samples"] == 2
    status = run("corpus-status", *common)
    assert status["current"] == day and [v["version"] for v in status["versions"]] == [day]
    back = tmp_path / "back"
    fs.get(pub["set_dir"] + "/", str(back), recursive=True)
    assert validate_build(back).ok
    assert not (work / "staging" / day).exists()  # staging is dropped once published


# ------------------------------------------------------------- concurrent publishers on one root


@pytest.fixture(scope="module")
def race_builds(s3, tmp_path_factory):
    """Day 1 built twice: ``plain`` without a corpus root (no cross-set dedup, so any number of
    versions of it may be published side by side) and ``dedup`` against an empty corpus root
    (``crossset.json``: a set published meanwhile makes it stale)."""
    tmp = tmp_path_factory.mktemp("race")
    _day1(tmp / "src")
    plain, dedup = tmp / "plain", tmp / "dedup"
    run_build(tmp / "src", plain, config_from_dict(CONFIG), quiet=True)
    run_build(
        tmp / "src", dedup, config_from_dict(CONFIG), quiet=True, prior=prior_index("s3://medcorpus-test/x")
    )
    assert not (plain / CROSSSET).exists() and (dedup / CROSSSET).exists() and (dedup / INDEX).exists()
    return tmp, plain, dedup


def _versions_of(tmp: Path, build: Path, versions: list[str]) -> dict[str, Path]:
    out = {}
    for v in versions:
        out[v] = tmp / f"b-{v}-{build.name}"
        if not out[v].exists():
            shutil.copytree(build, out[v])
    return out


def _publish_together(monkeypatch, root: str, builds: list[tuple[str, Path]]) -> list:
    """Publish every (version, build) from its own thread. Each publisher reads the pointer, then
    waits until all have read it: their first pointer PUTs all rest on the same ETag, so all but
    one are refused, however the threads are scheduled."""
    import threading

    from pipelines import objstore

    barrier, real, waited = (
        threading.Barrier(len(builds), timeout=120),
        objstore.read_pointer,
        threading.local(),
    )

    def read_then_wait(fs, root_):
        out = real(fs, root_)
        if not getattr(waited, "done", False):
            waited.done = True
            barrier.wait()
        return out

    monkeypatch.setattr(objstore, "read_pointer", read_then_wait)
    results: list = [None] * len(builds)

    def publish(i: int, version: str, build: Path) -> None:
        try:
            results[i] = objstore.publish_to_store(root, build, version, max_quarantine_fraction=0.5)
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            results[i] = exc

    threads = [threading.Thread(target=publish, args=(i, v, b)) for i, (v, b) in enumerate(builds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    monkeypatch.undo()
    return results


def test_concurrent_publishers_never_lose_a_version(race_builds, monkeypatch, caplog) -> None:
    tmp, plain, _ = race_builds
    root = "s3://medcorpus-test/race-three"
    vs = ["2026-05-01", "2026-05-02", "2026-05-03"]
    builds = _versions_of(tmp, plain, vs)
    with caplog.at_level("INFO", logger="pipelines.objstore"):
        results = _publish_together(monkeypatch, root, list(builds.items()))
    assert all(r is not None and not isinstance(r, Exception) for r in results), results
    assert not any(r.already_published for r in results)
    idx = read_versions(root)
    assert sorted(e["version"] for e in idx["versions"]) == vs
    assert idx["current"] == vs[-1]
    assert storage.filesystem(root).cat_file(f"{root}/CURRENT") == f"{vs[-1]}\n".encode()
    assert orphans(root) == []  # every upload is named
    lost = [r for r in caplog.records if "merging again" in r.getMessage()]
    assert len(lost) >= 2  # the two losers of the first round retried
    for r in results:  # each named prefix holds its own complete set
        assert r.entry["path"] in {e["path"] for e in idx["versions"]}
        assert json.loads(storage.filesystem(root).cat_file(f"{r.set_dir}/SET.json"))["version"] == r.version


def test_without_the_conditional_put_the_same_race_loses_versions(race_builds, monkeypatch) -> None:
    """The control: plain PUTs of the pointer (the old code) lose all but one version in the
    same race on the same server, so the test above can fail."""
    from pipelines import objstore

    tmp, plain, _ = race_builds
    root = "s3://medcorpus-test/race-plain"
    vs = ["2026-06-01", "2026-06-02", "2026-06-03"]
    builds = _versions_of(tmp, plain, vs)
    monkeypatch.setattr(objstore, "CONDITIONAL_PROTOCOLS", ())
    results = _publish_together(monkeypatch, root, list(builds.items()))
    assert all(not isinstance(r, Exception) for r in results)
    assert len(read_versions(root)["versions"]) == 1  # the last PUT won; two sets are orphans
    assert len(orphans(root)) == 2


def test_two_publishers_of_one_version_publish_it_once(race_builds, monkeypatch) -> None:
    tmp, plain, _ = race_builds
    root, v = "s3://medcorpus-test/race-same", "2026-07-01"
    copies = [tmp / "same-a", tmp / "same-b"]
    for c in copies:
        shutil.copytree(plain, c)
    results = _publish_together(monkeypatch, root, [(v, copies[0]), (v, copies[1])])
    assert sorted(r.already_published for r in results) == [False, True]
    (entry,) = read_versions(root)["versions"]
    assert all(r.entry["path"] == entry["path"] for r in results)
    (orphan,) = orphans(root)  # the loser's upload: named by nobody (corpus-gc removes it)
    assert orphan.startswith(f"sets/{v}/") and orphan != entry["path"]


def test_a_set_deduplicated_before_a_concurrent_publish_is_refused(race_builds, monkeypatch) -> None:
    """Two sets built against the same published sets, published at once: the first to commit
    wins; the other missed its records, so it is refused (rerun build-set), never named."""
    from pipelines.publish import CheckFailed

    tmp, _, dedup = race_builds
    root = "s3://medcorpus-test/race-stale"
    vs = ["2026-08-01", "2026-08-02"]
    builds = _versions_of(tmp, dedup, vs)
    results = _publish_together(monkeypatch, root, list(builds.items()))
    failed = [r for r in results if isinstance(r, CheckFailed)]
    won = [r for r in results if not isinstance(r, Exception)]
    assert len(failed) == 1 and len(won) == 1, results
    assert "was deduplicated before" in str(failed[0]) and won[0].version in str(failed[0])
    assert [e["version"] for e in read_versions(root)["versions"]] == [won[0].version]
    assert len(orphans(root)) == 1


def test_publisher_processes_at_once_all_land(race_builds, s3) -> None:
    """Four `medcorpus publish` processes started together on one root (no synchronisation but
    the pointer's compare-and-swap): all four versions are named, none twice."""
    import subprocess
    import sys

    tmp, plain, _ = race_builds
    root = "s3://medcorpus-test/race-procs"
    vs = [f"2026-09-0{i}" for i in range(1, 5)]
    procs = []
    for v in vs:
        work = tmp / f"procs-{v}"
        shutil.copytree(plain, CorpusRoot(work).build_dir(v))
        argv = [
            "publish",
            v,
            "--corpus-root",
            root,
            "--work-root",
            str(work),
            "--max-quarantine-fraction",
            "0.5",
        ]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "pipelines.cli", *argv],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[2],
            )
        )
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    idx = read_versions(root)
    assert sorted(e["version"] for e in idx["versions"]) == vs and idx["current"] == vs[-1]
    assert orphans(root) == []
    for out in outs:
        assert s3["AWS_SECRET_ACCESS_KEY"].encode() not in out and s3["AWS_ACCESS_KEY_ID"].encode() not in out


# ------------------------------------------------------------- the training DAG's pick, by hand

_DAGKIT_CALLS = """
import json, sys
sys.path.insert(0, "dags")  # what Airflow does with the DAG bundle folder
import medcorpus_dagkit
from airflow.sdk.exceptions import AirflowFailException
for kwargs in json.loads(sys.argv[1]):
    try:
        print(json.dumps({"result": medcorpus_dagkit.choose_published_set(**kwargs)}))
    except AirflowFailException as exc:
        print(json.dumps({"failed": str(exc)}))
"""


def test_training_dag_resolves_a_hand_given_version_through_versions_json(corpora, tmp_path, s3) -> None:
    """``choose_published_set`` in a real Airflow-importing process (medcorpus_dagkit, as the DAG
    runs it): on an object-store root the version's prefix comes from ``versions.json`` (through
    ``medcorpus corpus-status``); a local root keeps ``ROOT/sets/<version>``."""
    import os
    import subprocess
    import sys

    url, _, local = corpora
    entries = {e["version"]: e for e in read_versions(url)["versions"]}
    manual = {"triggering": [], "latest": None}
    calls = [
        manual | {"version": D1, "corpus_root": url, "runs_dir": str(tmp_path / "runs")},
        manual | {"version": D2, "corpus_root": url + "/", "runs_dir": str(tmp_path / "runs")},
        manual | {"version": D1, "corpus_root": str(local)},
        manual | {"version": "2026-12-31", "corpus_root": url, "runs_dir": str(tmp_path / "runs")},
        manual | {"version": D1, "corpus_root": url},
    ]
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ) | {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "MEDCORPUS_BIN": f"{sys.executable} -m pipelines.cli",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _DAGKIT_CALLS, json.dumps(calls)],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert got[0]["result"] == {
        "version": D1,
        "set_dir": str(set_location(url, entries[D1])),
        "run_dir": str(tmp_path / "runs" / D1),
    }
    assert got[1]["result"]["set_dir"] == str(set_location(url, entries[D2]))
    assert storage.filesystem(url).exists(f"{got[0]['result']['set_dir']}/SET.json")
    assert got[2]["result"] == {  # a local root: unchanged
        "version": D1,
        "set_dir": str(local / "sets" / D1),
        "run_dir": str(local / "runs" / D1),
    }
    assert "2026-12-31 is not published" in got[3]["failed"]
    assert "set runs_dir" in got[4]["failed"]
    for secret in (s3["AWS_SECRET_ACCESS_KEY"], s3["AWS_ACCESS_KEY_ID"]):
        assert secret not in proc.stdout and secret not in proc.stderr


# ------------------------------------------------------------------------------- corpus-gc


def _gc(capsys, root: str, *extra: str) -> dict:
    rc = cli.main(["corpus-gc", "--corpus-root", root, *extra, "--json"])
    out = capsys.readouterr().out
    assert rc == 0, out
    return json.loads(out.strip().splitlines()[-1])


def test_corpus_gc_deletes_a_half_upload_and_never_a_named_set(race_builds, monkeypatch, capsys) -> None:
    import s3fs

    from pipelines import objstore
    from pipelines.objstore import publish_to_store

    tmp, plain, _ = race_builds
    root, v1, v2 = "s3://medcorpus-test/gc", "2026-10-01", "2026-10-02"
    builds = _versions_of(tmp, plain, [v1, v2])
    publish_to_store(root, builds[v1], v1, max_quarantine_fraction=0.5)
    real_put, calls = s3fs.S3FileSystem.put_file, []

    def failing_put(self, lpath, rpath, *a, **kw):  # the network drops after three objects
        calls.append(rpath)
        if len(calls) > 3:
            raise ConnectionError("connection reset")
        return real_put(self, lpath, rpath, *a, **kw)

    monkeypatch.setattr(s3fs.S3FileSystem, "put_file", failing_put)
    with pytest.raises(ConnectionError):
        publish_to_store(root, builds[v2], v2, max_quarantine_fraction=0.5)
    monkeypatch.undo()
    fs = storage.filesystem(root)
    (half,) = orphans(root)
    assert half.startswith(f"sets/{v2}/") and len(fs.find(f"{root}/{half}")) == 3
    pointer = fs.cat_file(f"{root}/versions.json")
    (named,) = [e["path"] for e in read_versions(root)["versions"]]
    named_objects = sorted(fs.find(f"{root}/{named}"))
    everything = sorted(fs.find(root))

    out = _gc(capsys, root)  # default: 24 h; the half upload is minutes old (maybe in progress)
    assert [(r["prefix"], r["action"]) for r in out["orphans"]] == [(half, "kept: younger than 24 h")]
    out = _gc(capsys, root, "--older-than", "0", "--dry-run")
    assert [(r["prefix"], r["action"], r["n_objects"]) for r in out["orphans"]] == [(half, "would delete", 3)]
    assert sorted(storage.filesystem(root).find(root)) == everything  # nothing deleted

    # a listing made before a publisher named a prefix: the pointer is read again before deleting
    real_orphans = objstore.orphans
    monkeypatch.setattr(objstore, "orphans", lambda r: sorted([*real_orphans(r), named]))
    out = _gc(capsys, root, "--older-than", "0")
    monkeypatch.undo()
    assert {r["prefix"]: r["action"] for r in out["orphans"]} == {
        half: "deleted",
        named: "kept: named meanwhile",
    }
    fs = storage.filesystem(root)
    assert orphans(root) == [] and not fs.exists(f"{root}/{half}")
    assert sorted(fs.find(f"{root}/{named}")) == named_objects  # the named set is whole
    assert fs.cat_file(f"{root}/versions.json") == pointer
    assert sorted(fs.find(root)) == [
        p for p in everything if not p.startswith(f"{root}/{half}".removeprefix("s3://"))
    ]
    assert _gc(capsys, root, "--older-than", "0")["orphans"] == []  # a rerun finds nothing
    assert cli.main(["corpus-gc", "--corpus-root", str(tmp / "local-root")]) == 2  # local roots: no
