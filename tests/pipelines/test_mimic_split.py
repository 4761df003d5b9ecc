"""MIMIC-CXR-JPG's published split file applied as a ``split`` table, on the MIMIC lookalike.

``examples/symile_mimic.yaml`` plus one table (``mimic-cxr-2.0.0-split.csv``, role ``split``), built
over 8 admissions whose split-file rows say validate, test, train, disagree, use an unknown name,
or are missing. Splits must follow the file, stay by patient, and fall back to the keyed-hash
split for patients the file does not list.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from pipelines.build import run_build
from pipelines.config import DedupConfig, DeidConfig, SplitConfig, TableConfig, load_config
from pipelines.flow import make_flow
from pipelines.split import split_of
from pipelines.validate import validate_build
from tests.conftest import REPO
from tests.fixtures.mimic_lookalike import Cxr, linked_scenario, make_lookalike
from workers.deid.pseudonym import DEMO_SECRET, Pseudonymizer
from workers.ids import normalise_id

PSEUDO = Pseudonymizer(DEMO_SECRET)
SPLIT = SplitConfig(0.5, 0.25, 0.25)
SPLIT_TABLE = TableConfig(
    name="cxr_split",
    role="split",
    path="mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-split.csv",
    patient="{subject_id}",
    value="{split}",
)


def _scenario():
    base = list(linked_scenario(8))
    splits = ["validate", "validate", "test", "test", "train", "train", "-", "train"]
    out = [replace(p, split=s) for p, s in zip(base, splits, strict=True)]
    # patient 5: one row train, one row test (a second CXR outside the window): a tie → test
    out[5] = replace(out[5], cxrs=(*out[5].cxrs, Cxr("c905", 100.0, split="test")))
    # patient 7: an extra row with a split name the file format does not have: counted, not used
    out[7] = replace(out[7], cxrs=(*out[7].cxrs, Cxr("c907", 100.0, split="holdout")))
    return tuple(out)


EXPECTED = {0: "val", 1: "val", 2: "test", 3: "test", 4: "train", 5: "test", 7: "train"}


def _cfg():
    cfg = load_config(REPO / "examples" / "symile_mimic.yaml")
    return replace(
        cfg,
        tables=(*cfg.tables, SPLIT_TABLE),
        deid=DeidConfig(demo=True),
        dedup=DedupConfig(enabled=False),
        split=SPLIT,
        strict=True,
        workers=2,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data) -> tuple[Path, tuple, Path]:
    scenario = _scenario()
    root = tmp_path_factory.mktemp("mimic_split")
    make_lookalike(root, shared_data, scenario)
    out = tmp_path_factory.mktemp("mimic_split_out")
    run_build(root, out, _cfg(), quiet=True)
    return out, scenario, root


def test_samples_take_the_split_file_split_by_patient(built) -> None:
    out, scenario, _ = built
    tars = sorted(str(p) for p in (out / "shards").rglob("*.tar"))
    got: dict[str, set[str]] = {}
    for s in wds.WebDataset(tars, shardshuffle=False, empty_check=False):
        split = Path(s["__url__"]).parent.name
        got.setdefault(json.loads(s["meta.json"])["patient"], set()).add(split)
    assert len(got) == len(scenario)
    for i, p in enumerate(scenario):
        patient = PSEUDO.patient(normalise_id(p.subject))
        want = EXPECTED.get(i) or split_of(patient, PSEUDO, SPLIT)  # 6: not in the file
        assert got[patient] == {want}, i
    assert validate_build(out).ok


def test_split_table_counts(built) -> None:
    out, _, _ = built
    counts = json.loads((out / "stats.json").read_text())["tables"]["counts"]["cxr_split"]
    assert counts["rows"] == 9  # 7 patients' CXRs + the two extra rows
    assert counts["rows_unknown_split"] == 1
    assert counts["patients_split_by_table"] == 7 and counts["patients_not_in_split_table"] == 1
    assert counts["patients_in_several_splits"] == 1


@pytest.mark.slow  # Beam's FnApiRunner and a Dask cluster on 2 cores: make test-full
def test_same_split_on_beam_and_dask(built, tmp_path) -> None:
    out, _, root = built
    ref = pq.read_table(out / "manifest.parquet").select(["key", "split"]).to_pylist()
    for name in ("dask", "beam"):
        runner = make_flow(name, 2, quiet=True)
        try:
            run_build(root, tmp_path / name, _cfg(), quiet=True, runner=runner)
        finally:
            runner.close()
        other = pq.read_table(tmp_path / name / "manifest.parquet").select(["key", "split"]).to_pylist()
        assert sorted(other, key=str) == sorted(ref, key=str), name
