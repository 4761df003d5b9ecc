"""MIMIC-IV-ECG machine statements (``machine_measurements.csv``) as each ECG's report, on the
MIMIC lookalike.

A real build of the lookalike (``tests/fixtures/mimic_lookalike.py``: one CSV row per ECG with
synthetic statements in MIMIC's wording, one row whose statements are all empty, one with a gap
between statements, a row whose study has no ECG, an ECG without a row, an all-zero ECG the
decoder quarantines) with the ``docs/datasets.md`` MIMIC-IV-ECG snippet as the config (read from
the doc). Row by row: which ECG the text joins, its text (non-empty ``report_i`` in order, one
per line), the measurements with units in ``meta.json``, the reason of every row and ECG that
is not in a sample, and the labels of a few unambiguous statements.
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
from pipelines.config import config_from_dict
from pipelines.validate import validate_build
from tests.conftest import REPO
from tests.fixtures.mimic_lookalike import (
    MEASUREMENT_COLUMNS,
    NOT_MEASURED,
    SCENARIO,
    build_symile_with,
    ecg_statements,
    make_lookalike,
    measurement_values,
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
TABLE = "mimic_iv_ecg_text/machine_measurements.csv"

#: machine_measurements.csv row (named like its ECG) → what the build does with it
ROWS = {
    **{n: "joined" for n in ("e1", "e2", "e3", "e4", "e5", "e7", "e8", "e9")},
    "e6": "report_empty",  # report_0 ... report_17 all empty
    "e11": "unlinked",  # its ECG is all zero: quarantined by the decoder
    "e90": "unlinked",  # a study id no ECG has
}
#: ECGs not in a sample
ECGS = {"e6": "unlinked", "e10": "unlinked", "e11": "ecg_qc_failed"}
#: statements whose labels are unambiguous → labels the report must hold as present
LABELS = {
    "e2": {"sinus_rhythm", "normal_ecg"},
    "e3": {"atrial_fibrillation", "complete_left_bundle_branch_block"},
    "e1": {"sinus_rhythm", "left_axis_deviation"},
    "e4": {"sinus_bradycardia", "first_degree_av_block"},
    "e9": {"sinus_rhythm", "long_qt"},
}
UNITS = {c: ("deg" if c.endswith("_axis") else "ms") for c in MEASUREMENT_COLUMNS[24:]}


def snippet() -> dict:
    """The MIMIC-IV-ECG preset, as ``docs/datasets.md`` shows it."""
    doc = (REPO / "docs" / "datasets.md").read_text(encoding="utf-8")
    section = doc[doc.index("## MIMIC-IV-ECG") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    return yaml.safe_load(block.group(1))


def _ecgs() -> dict:
    return {e.name: (p, e) for p in SCENARIO for e in p.ecgs}


def _samples(out: Path) -> list[dict]:
    tars = sorted(str(p) for p in (out / "shards").rglob("*.tar"))
    return list(wds.WebDataset(tars, shardshuffle=False, empty_check=False))


@pytest.fixture(scope="module")
def look(tmp_path_factory, shared_data) -> dict:
    root = tmp_path_factory.mktemp("mimic_ecg_text")
    files = make_lookalike(root, shared_data, reports=False)
    table = PSEUDO.source_id(TABLE)
    sid = {f"{table}-r{i:06d}": ("report", n) for n, i in files["measurements"].items()}
    sid |= {PSEUDO.source_id(f"mimic_iv_ecg/{rel}"): ("ecg", n) for n, rel in files["ecg"].items()}
    return {"root": root, "files": files, "name": sid}


@pytest.fixture(scope="module")
def built(look, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mimic_ecg_text_build")
    run_build(look["root"], out, config_from_dict(snippet() | TEST_KEYS), quiet=True)
    return out


def test_lookalike_writes_the_published_measurements_layout(look) -> None:
    path = look["root"] / "mimic-iv-ecg" / "1.0" / "machine_measurements.csv"
    header = path.read_text().splitlines()[0].split(",")
    assert header == MEASUREMENT_COLUMNS
    assert set(look["files"]["measurements"]) == set(ROWS)


def test_each_text_joins_its_ecg_in_order_with_measurements(look, built) -> None:
    manifest = pq.read_table(built / "manifest.parquet").select(["key", "source_ids"]).to_pylist()
    files = {r["key"]: sorted(look["name"][s] for s in r["source_ids"]) for r in manifest}
    ecgs = _ecgs()
    joined = set()
    for s in _samples(built):
        (ecg_m, ecg), (rep_m, row) = files[s["__key__"]]
        assert (ecg_m, rep_m) == ("ecg", "report") and ecg == row  # the row of its own study
        p, e = ecgs[ecg]
        assert sorted(k for k in s if not k.startswith("__")) == [
            "ecg_0.npy",
            "meta.json",
            "report_0.json",
            "report_0.txt",
        ]
        assert s["report_0.txt"].decode() == "\n".join(x for x in ecg_statements(e) if x)
        meta = json.loads(s["meta.json"])
        assert meta["patient"] == PSEUDO.patient(normalise_id(p.subject))
        study = PSEUDO.study(normalise_id(str(40000000 + int(ecg[1:]))))
        assert {it["study"] for it in meta["items"]} == {study}
        rep = next(it for it in meta["items"] if it["modality"] == "report")
        ecg_item = next(it for it in meta["items"] if it["modality"] == "ecg")
        assert rep["acquired_at"] == ecg_item["acquired_at"]  # ecg_time, shifted alike
        want = {
            c: {"value": None if v == NOT_MEASURED else v, "unit": UNITS[c]}
            for c, v in measurement_values(ecg, ecg_statements(e)).items()
        }
        assert rep["meta"]["measurements"] == want
        assert rep["meta"]["fields"] == {
            "bandwidth": "0.005-150 Hz",
            "filtering": "60 Hz notch  Baseline filter",
        }
        structured = json.loads(s["report_0.json"])
        assert structured["report_type"] == "cardiology"
        present = {f["label"] for f in structured["findings"] if f["assertion"] == "present"}
        assert LABELS.get(ecg, set()) <= present, (ecg, present)
        joined.add(ecg)
    assert joined == {n for n, v in ROWS.items() if v == "joined"}
    # a gap between statements closes up; the atrial fibrillation row has no P wave values
    assert ecg_statements(ecgs["e4"][1])[1] == "" and "e4" in joined
    assert measurement_values("e3", ecg_statements(ecgs["e3"][1]))["p_onset"] == NOT_MEASURED


def test_every_other_row_and_ecg_is_accounted_with_its_reason(look, built) -> None:
    q = pq.read_table(built / "quarantine.parquet").to_pylist()
    got = {look["name"][r["source_id"]]: r["reason"] for r in q}
    assert len(got) == len(q)
    want = {("report", n): v for n, v in ROWS.items() if v != "joined"}
    want |= {("ecg", n): v for n, v in ECGS.items()}
    assert got == want
    assert validate_build(built).ok  # inputs = written + quarantined, per modality
    stats = json.loads((built / "stats.json").read_text())
    assert stats["samples_with_modalities"] == {"ecg+report": 8}
    blob = "\n".join(json.dumps(r) for r in q)
    assert all(p.subject not in blob for p in SCENARIO)  # no raw id in quarantine details


#: Symile anchors: admission → the ECG whose text rides along
ANCHOR_ECG = {"20000001": "e1", "20000002": "e4", "20000004": "e7", "20000005": "e8"}


@pytest.fixture(scope="module")
def anchored(look, tmp_path_factory) -> Path:
    text = next(s for s in snippet()["sources"] if s["name"] == "mimic_iv_ecg_text")
    return build_symile_with(look["root"], text, tmp_path_factory.mktemp("mimic_ecg_text_anchor"))


def test_anchor_build_text_rides_along_with_the_chosen_ecg(look, anchored) -> None:
    manifest = pq.read_table(anchored / "manifest.parquet").select(["key", "source_ids"]).to_pylist()
    chosen = set()
    for r in manifest:
        names = [look["name"].get(s) for s in r["source_ids"]]
        ecg = {n for m, n in filter(None, names) if m == "ecg"}
        text = {n for m, n in filter(None, names) if m == "report"}
        assert len(ecg) == 1 and text == ecg  # the chosen ECG's row, and only it
        chosen |= ecg
    assert chosen == set(ANCHOR_ECG.values())
    q = pq.read_table(anchored / "quarantine.parquet").to_pylist()
    reports = {
        look["name"][r["source_id"]][1]: r["reason"]
        for r in q
        if look["name"].get(r["source_id"], ("",))[0] == "report"
    }
    assert reports == {n: "unlinked" for n in ROWS if n not in chosen} | {"e6": "report_empty"}
    assert validate_build(anchored).ok
    stats = json.loads((anchored / "stats.json").read_text())
    assert stats["samples_with_modalities"] == {"image+ecg+report+labs": 4}
