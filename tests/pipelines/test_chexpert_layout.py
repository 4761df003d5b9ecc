"""CheXpert's published layout (``CheXpert-v1.0-small/train.csv`` + ``train/patientN/studyM/viewK_*.jpg``).

A lookalike of real chest X-ray pixels (the shared CXR DICOM, as in the MIMIC lookalike) under
CheXpert names, built with the ``docs/datasets.md`` snippet: identity from the ``Path`` column,
patient and study from ``path_regex`` groups, view and labels copied from the row's columns.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
import yaml

from pipelines.build import run_build
from pipelines.config import config_from_dict
from pipelines.validate import validate_build
from tests.fixtures.mimic_lookalike import base_cxr_pixels, jpeg_bytes
from workers.deid.pseudonym import DEMO_SECRET, Pseudonymizer
from workers.ids import normalise_id

CONFIG = """
deid: {demo: true}
sources:
  - name: chexpert
    path: CheXpert-v1.0-small
    licence: Stanford-CheXpert
    exclude: ["*.csv", "README*", ".*"]   # train.csv / valid.csv are tables, not inputs
tables:
  - name: chexpert_train
    role: identity
    source: chexpert
    path: CheXpert-v1.0-small/train.csv
    path_root: "."
    path_template: "{Path}"
    path_regex: "patient(?P<patient>\\\\d+)/study(?P<study>\\\\d+)/"
    patient: "{patient}"
    study: "{patient}-{study}"
    fields: ["Frontal/Lateral", "AP/PA", Sex, Age, "No Finding", Cardiomegaly]
    view: "AP/PA"
linking: {unlinked: keep}
dedup: {enabled: false}
split: {train: 1.0, val: 0.0, test: 0.0}
workers: 2
strict: true
"""

# (patient, study, view file, Frontal/Lateral, AP/PA, listed in train.csv)
IMAGES = (
    ("00001", "1", "view1_frontal", "Frontal", "AP", True),
    ("00001", "2", "view1_frontal", "Frontal", "PA", True),
    ("00001", "2", "view2_lateral", "Lateral", "", True),
    ("00002", "1", "view1_frontal", "Frontal", "AP", True),
    ("00003", "1", "view1_frontal", "Frontal", "PA", False),
)


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data) -> Path:
    root = tmp_path_factory.mktemp("chexpert")
    img = base_cxr_pixels(shared_data, size=200)
    rows = []
    for i, (pat, study, view, fl, appa, listed) in enumerate(IMAGES):
        rel = f"CheXpert-v1.0-small/train/patient{pat}/study{study}/{view}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(jpeg_bytes(img, i + 1))
        if listed:
            rows.append(
                [rel, "Female" if i % 2 else "Male", 60 + i, fl, appa, "1.0" if i == 0 else "", "-1.0"]
            )
    with open(root / "CheXpert-v1.0-small" / "train.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Cardiomegaly"])
        w.writerows(rows)
    out = tmp_path_factory.mktemp("chexpert_out")
    run_build(root, out, config_from_dict(yaml.safe_load(CONFIG)), quiet=True)
    return out


def test_samples_per_study_with_row_fields(built: Path) -> None:
    pseudo = Pseudonymizer(DEMO_SECRET)
    tars = sorted(str(p) for p in (built / "shards").rglob("*.tar"))
    samples = [
        json.loads(s["meta.json"]) for s in wds.WebDataset(tars, shardshuffle=False, empty_check=False)
    ]
    # one sample per study: patient00001 has two studies (the second with two views), patient00002 one
    by_study = {m["items"][0]["study"]: m for m in samples}
    assert len(samples) == 3
    for pat, study, n_views in (("00001", "1", 1), ("00001", "2", 2), ("00002", "1", 1)):
        m = by_study[pseudo.study(normalise_id(f"{pat}-{study}"))]
        assert m["patient"] == pseudo.patient(normalise_id(pat))
        images = [it for it in m["items"] if it["modality"] == "image"]
        assert len(images) == n_views
        for it in images:
            table = it["meta"]["tables"]["chexpert_train"]
            assert it["view_position"] == table["AP/PA"]
            assert table["Cardiomegaly"] == "-1.0" and table["Frontal/Lateral"] in ("Frontal", "Lateral")


def test_unlisted_image_and_accounting(built: Path) -> None:
    q = pq.read_table(built / "quarantine.parquet").to_pylist()
    assert [(r["modality"], r["reason"]) for r in q] == [("image", "no_metadata")]
    counts = json.loads((built / "stats.json").read_text())["tables"]["counts"]["chexpert_train"]
    assert counts["rows"] == 4 and "rows_without_record" not in counts
    assert validate_build(built).ok
