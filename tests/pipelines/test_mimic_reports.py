"""MIMIC-CXR free-text reports (``mimic-cxr-reports/files/p{subject[:2]}/p{subject}/s{study}.txt``)
built with the MIMIC-CXR-JPG images, on the MIMIC lookalike.

Two real builds of the lookalike (``tests/fixtures/mimic_lookalike.py``: a synthetic report per
study in MIMIC's section style, some without FINDINGS, an empty and a blank file, a study no image
has, one report with a planted clinician name, subject id and date):

- by study, with the ``docs/datasets.md`` MIMIC-CXR-JPG snippet as the config (read from the doc);
- Symile-style anchors (``examples/symile_mimic.yaml`` plus the snippet's reports source).

Report identity comes from the path (``report.path_regex``); each report must join its study's
images (or ride along with its admission's CXR), every other report file must be quarantined with
its reason, and the planted PHI must reach no shard.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
import yaml

from pipelines.build import run_build
from pipelines.config import (
    ConfigError,
    SourceConfig,
    config_from_dict,
)
from pipelines.validate import validate_build
from tests.conftest import REPO
from tests.fixtures.mimic_lookalike import (
    PLANTED_DATE,
    PLANTED_NAME,
    SCENARIO,
    build_symile_with,
    make_lookalike,
)
from workers.deid.pseudonym import DEMO_SECRET, Pseudonymizer
from workers.ids import normalise_id

PSEUDO = Pseudonymizer(DEMO_SECRET)
TEST_KEYS = {
    "deid": {"demo": True},
    "dedup": {"enabled": False},
    "split": {"train": 1.0, "val": 0.0, "test": 0.0},
    "workers": 2,
    "strict": True,
}


def snippet() -> dict:
    """The MIMIC-CXR-JPG preset, as ``docs/datasets.md`` shows it."""
    doc = (REPO / "docs" / "datasets.md").read_text(encoding="utf-8")
    section = doc[doc.index("## MIMIC-CXR-JPG") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    return yaml.safe_load(block.group(1))


def _study_of(name: str) -> str:
    return str(50000000 + int(name[1:]))


#: report file (named like its study's CXR) → what the by-study build does with it
BY_STUDY = {
    "c1": "joined",
    "c2": "joined",  # the planted PHI
    "c3": "joined",  # no FINDINGS
    "c5": "joined",  # no FINDINGS
    "c6": "joined",  # a lateral: no view filter in the preset
    "c8": "joined",
    "c9": "joined",
    "c11": "joined",
    "c4": "empty_file",  # 0 bytes
    "c7": "report_empty",  # whitespace only
    "c12": "unlinked",  # its JPG is not in the metadata CSV (no_metadata): no image in the study
    "c13": "unlinked",  # listed in the metadata CSV, JPG absent
    "c90": "unlinked",  # a study id no image has
}
#: images the by-study build quarantines (no report, or their study's report is empty/blank)
BY_STUDY_IMAGES = {"c4": "unlinked", "c7": "unlinked", "c10": "unlinked", "c12": "no_metadata"}
NO_FINDINGS = {"c3", "c5"}
#: Symile anchors: admission → the CXR whose report rides along
ANCHOR_CXR = {"20000001": "c2", "20000002": "c5", "20000004": "c8", "20000005": "c9"}


def _tars(out: Path) -> list[str]:
    return sorted(str(p) for p in (out / "shards").rglob("*.tar"))


def _samples(out: Path) -> list[dict]:
    return list(wds.WebDataset(_tars(out), shardshuffle=False, empty_check=False))


def _files_of(out: Path, look: dict) -> dict[str, set[tuple[str, str]]]:
    """Sample key → its input files as ``(modality, lookalike name)``, from ``manifest.parquet``."""
    rows = pq.read_table(out / "manifest.parquet").select(["key", "source_ids"]).to_pylist()
    return {r["key"]: {look["name"][sid] for sid in r["source_ids"]} for r in rows}


@pytest.fixture(scope="module")
def look(tmp_path_factory, shared_data) -> dict:
    root = tmp_path_factory.mktemp("mimic_reports")
    files = make_lookalike(root, shared_data)
    sid = {PSEUDO.source_id(f"mimic_cxr_reports/{rel}"): ("report", n) for n, rel in files["report"].items()}
    sid |= {PSEUDO.source_id(f"mimic_cxr_jpg/{rel}"): ("image", n) for n, rel in files["cxr"].items()}
    sid |= {PSEUDO.source_id(f"mimic_iv_ecg/{rel}"): ("ecg", n) for n, rel in files["ecg"].items()}
    return {"root": root, "files": files, "name": sid}


@pytest.fixture(scope="module")
def by_study(look, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mimic_reports_by_study")
    run_build(look["root"], out, config_from_dict(snippet() | TEST_KEYS), quiet=True)
    return out


@pytest.fixture(scope="module")
def anchored(look, tmp_path_factory) -> Path:
    reports = next(s for s in snippet()["sources"] if s["name"] == "mimic_cxr_reports")
    return build_symile_with(look["root"], reports, tmp_path_factory.mktemp("mimic_reports_anchor"))


def test_lookalike_writes_the_published_report_layout(look) -> None:
    rel = look["files"]["report"]
    assert set(rel) == set(BY_STUDY)
    for name, path in rel.items():
        subject = next(
            p.subject for p in SCENARIO if any(c.name == name for c in p.cxrs) or name in p.report_only
        )
        assert path == f"p{subject[:2]}/p{subject}/s{_study_of(name)}.txt"
        assert (look["root"] / "mimic-cxr-reports" / "files" / path).is_file()
    text = (look["root"] / "mimic-cxr-reports" / "files" / rel["c2"]).read_text()
    assert PLANTED_NAME in text and "FINDINGS:" in text and "IMPRESSION:" in text
    assert "FINDINGS:" not in (look["root"] / "mimic-cxr-reports" / "files" / rel["c3"]).read_text()


def test_each_report_joins_its_study_images(look, by_study) -> None:
    joined = {}
    files = _files_of(by_study, look)
    for s in _samples(by_study):
        meta = json.loads(s["meta.json"])
        items = meta["items"]
        reports = sorted(n for m, n in files[s["__key__"]] if m == "report")
        images = sorted(n for m, n in files[s["__key__"]] if m == "image")
        assert len(reports) == 1, reports
        name = reports[0]
        assert images == [name]  # its study's images (the lookalike has one JPG per study)
        study = PSEUDO.study(normalise_id(_study_of(name)))
        assert {it["study"] for it in items} == {study}
        subject = next(p.subject for p in SCENARIO if any(c.name == name for c in p.cxrs))
        assert meta["patient"] == PSEUDO.patient(normalise_id(subject))
        assert sorted(k for k in s if not k.startswith("__")) == [
            "image_0.png",
            "image_0.raw.npy",
            "meta.json",
            "report_0.json",
            "report_0.txt",
        ]
        rep = next(it for it in items if it["modality"] == "report")
        assert rep["meta"]["identity_from_path"] == ["patient", "study"]
        structured = json.loads(s["report_0.json"])
        sections = structured["sections"]
        assert sections.get("impression"), name
        assert bool(sections.get("findings")) == (name not in NO_FINDINGS), name
        assert {"indication", "comparison"} <= set(sections), name
        joined[name] = s["report_0.txt"].decode()
    assert set(joined) == {n for n, v in BY_STUDY.items() if v == "joined"}


def test_every_other_report_file_is_accounted_with_its_reason(look, by_study) -> None:
    q = pq.read_table(by_study / "quarantine.parquet").to_pylist()
    got = {look["name"][r["source_id"]]: r["reason"] for r in q}
    assert len(got) == len(q)
    want = {("report", n): v for n, v in BY_STUDY.items() if v != "joined"}
    want |= {("image", n): v for n, v in BY_STUDY_IMAGES.items()}
    assert got == want
    assert validate_build(by_study).ok  # inputs = written + quarantined, per modality
    stats = json.loads((by_study / "stats.json").read_text())
    assert stats["samples_with_modalities"] == {"image+report": 8}


def test_no_planted_phi_reaches_a_shard(look, by_study, anchored) -> None:
    subject = SCENARIO[0].subject
    patient = PSEUDO.patient(normalise_id(subject))
    shifted = PSEUDO.shift_datetime(PLANTED_DATE, patient).date().isoformat()
    for out in (by_study, anchored):
        texts = []
        for s in _samples(out):
            for k, v in s.items():
                if k.endswith((".txt", ".json")):
                    texts.append(v.decode())
        blob = "\n".join(texts)
        for word in (*PLANTED_NAME.split(), subject, f"{PLANTED_DATE:%Y-%m-%d}"):
            assert word not in blob, word
        for tar in _tars(out):
            data = Path(tar).read_bytes()
            assert all(w.encode() not in data for w in PLANTED_NAME.split())
        # the planted date moved by the patient's offset, as the image times did
        assert shifted in blob and "[NAME]" in blob


def test_anchor_build_reports_ride_along_with_the_chosen_cxr(look, anchored) -> None:
    rows = {r["anchor"]: r for r in pq.read_table(anchored / "anchor_links.parquet").to_pylist()}
    files = _files_of(anchored, look)
    samples = {s["__key__"]: s for s in _samples(anchored)}
    assert len(samples) == len(ANCHOR_CXR)
    by_cxr = {}
    for key, s in samples.items():
        assert "report_0.txt" in s and "report_0.json" in s
        images = {n for m, n in files[key] if m == "image"}
        reports = {n for m, n in files[key] if m == "report"}
        assert len(images) == 1 and reports == images  # the chosen CXR's report, and only it
        by_cxr[images.pop()] = key
    for hadm, cxr in ANCHOR_CXR.items():
        row = rows["a" + PSEUDO.token("anchor", f"admissions/{hadm}", 20)]
        assert row["status"] == "linked"
        assert [look["name"][s] for s in json.loads(row["linked"])["image"]] == [("image", cxr)]
        assert cxr in by_cxr, hadm
    chosen = set(ANCHOR_CXR.values())
    q = pq.read_table(anchored / "quarantine.parquet").to_pylist()
    reasons = {
        look["name"][r["source_id"]][1]: r["reason"] for r in q if look["name"][r["source_id"]][0] == "report"
    }
    want = {n: "unlinked" for n in BY_STUDY if n not in chosen} | {"c4": "empty_file", "c7": "report_empty"}
    assert reasons == want
    assert validate_build(anchored).ok
    stats = json.loads((anchored / "stats.json").read_text())
    assert stats["samples_with_modalities"] == {"image+ecg+report+labs": 4}


def test_path_regex_config_errors() -> None:
    base = {"name": "r", "path": "."}
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        config_from_dict({"sources": [base | {"report": {"path_regex": "p(?P<x"}}]})
    with pytest.raises(ConfigError, match="needs named groups"):
        config_from_dict({"sources": [base | {"report": {"path_regex": r"p(\d+)"}}]})
    with pytest.raises(ConfigError, match="'study' is not a named group"):
        config_from_dict(
            {
                "sources": [
                    base | {"report": {"path_regex": r"s(?P<study_id>\d+)", "columns": {"study_id": "study"}}}
                ]
            }
        )
    assert SourceConfig(name="r").report.path_regex == ""
