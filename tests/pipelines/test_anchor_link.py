"""Anchor-based linking (Symile-MIMIC) end to end on a miniature MIMIC lookalike.

The lookalike (``tests/fixtures/mimic_lookalike.py``) replicates the real chest X-ray and ECG
sample data under new identities, in the published MIMIC-CXR-JPG / MIMIC-IV-ECG / MIMIC-IV
layouts, and times items inside, outside and on the bounds of each window. The build uses
``examples/symile_mimic.yaml`` as a user would (demo secret, dedup off: every image is a
replica). Tests check, admission by admission, which files were linked, and file by file why
the others were not.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from pipelines.build import run_build
from pipelines.config import ConfigError, DedupConfig, DeidConfig, SplitConfig, config_from_dict, load_config
from pipelines.flow import make_flow
from pipelines.validate import validate_build
from tests.conftest import REPO
from tests.fixtures.mimic_lookalike import EXPECTED, LAB_ITEMS, SCENARIO, make_lookalike
from workers.deid.pseudonym import DEMO_SECRET, Pseudonymizer

CFG = REPO / "examples" / "symile_mimic.yaml"
SKIP = {"cache", "blobs", ".lock", "run.json"}
PSEUDO = Pseudonymizer(DEMO_SECRET)


def _cfg(**kw):
    cfg = load_config(CFG)
    return replace(
        cfg,
        deid=DeidConfig(demo=True),
        dedup=DedupConfig(enabled=False),
        split=SplitConfig(1.0, 0.0, 0.0),
        strict=True,
        workers=2,
        **kw,
    )


@pytest.fixture(scope="module")
def look(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("mimic")
    files = make_lookalike(root, shared_data)
    out = tmp_path_factory.mktemp("symile")
    res = run_build(root, out, _cfg(), quiet=True)
    sid = {name: PSEUDO.source_id(f"mimic_cxr_jpg/{rel}") for name, rel in files["cxr"].items()}
    sid |= {name: PSEUDO.source_id(f"mimic_iv_ecg/{rel}") for name, rel in files["ecg"].items()}
    return {"root": root, "out": out, "res": res, "sid": sid, "name": {v: k for k, v in sid.items()}}


def _anchor(hadm: str) -> str:
    return "a" + PSEUDO.token("anchor", f"admissions/{hadm}", 20)


def test_each_admission_links_the_expected_items(look):
    rows = {r["anchor"]: r for r in pq.read_table(look["out"] / "anchor_links.parquet").to_pylist()}
    assert len(rows) == sum(len(p.admissions) for p in SCENARIO)
    for hadm, expected in EXPECTED.items():
        row = rows[_anchor(hadm)]
        linked = {m: [look["name"][s] for s in sids] for m, sids in json.loads(row["linked"]).items()}
        if isinstance(expected, str):
            assert row["status"] == expected and linked == {} and row["sample_group"] == "", hadm
            continue
        ecg, cxr, labs = expected
        assert row["status"] == "linked", hadm
        assert linked == {"ecg": [ecg], "image": [cxr]}, hadm
        assert tuple(row["labs_items"]) == labs, hadm


def test_every_other_file_is_accounted_with_its_reason(look):
    q = pq.read_table(look["out"] / "quarantine.parquet").to_pylist()
    why = {look["name"][r["source_id"]]: r["reason"] for r in q}
    assert len(why) == len(q)
    expected = {
        "c6": "filtered_out",  # lateral view
        "e5": "filtered_out",  # NaN stretch: QC flag nan
        "e11": "ecg_qc_failed",  # all-zero ECG, dropped by the decoder
        "c12": "no_metadata",  # a JPG the metadata CSV does not list
    }
    for name in ("e2", "e3", "c1", "c3", "c4", "e6", "c7", "e9", "c10", "e10", "c11"):
        expected[name] = "unlinked"
    assert why == expected
    assert validate_build(look["out"]).ok
    stats = json.loads((look["out"] / "stats.json").read_text())
    counts = stats["tables"]["counts"]
    assert counts["cxr_metadata"]["rows_without_record"] == 1  # c13: listed, no file
    assert counts["ecg_record_list"]["rows_without_record"] == 1  # e11: quarantined at decode
    assert counts["labevents"]["rows"] == sum(len(p.labs) for p in SCENARIO)
    assert stats["tables"]["anchors"] == {"linked": 4, "missing:image": 1, "missing:labs": 1}
    assert stats["samples_with_modalities"] == {"image+ecg+labs": 4}


def _samples(out: Path) -> dict[str, dict]:
    tars = sorted(str(p) for p in (out / "shards").rglob("*.tar"))
    return {s["__key__"]: s for s in wds.WebDataset(tars, shardshuffle=False, empty_check=False)}


def test_samples_members_identity_and_labs_percentiles(look):
    samples = _samples(look["out"])
    assert len(samples) == 4
    stats = json.loads((look["out"] / "labs_normalisation.json").read_text())
    items = [r["item_id"] for r in stats["items"]]
    assert set(items) <= set(LAB_ITEMS) and stats["split"] == "train"
    values: dict[str, list[float]] = {i: [] for i in items}
    arrays = []
    for s in samples.values():
        assert sorted(k for k in s if not k.startswith("__")) == [
            "ecg_0.npy",
            "image_0.png",
            "image_0.raw.npy",
            "labs_0.json",
            "labs_0.npy",
            "meta.json",
        ]
        meta = json.loads(s["meta.json"])
        assert meta["modalities"] == ["image", "ecg", "labs"] and meta["modality_mask"] == [
            True,
            False,
            True,
            False,
            True,
        ]
        image = next(i for i in meta["items"] if i["modality"] == "image")
        ecg = next(i for i in meta["items"] if i["modality"] == "ecg")
        assert image["patient"] == ecg["patient"] == meta["patient"] != ""
        assert image["view_position"] in ("PA", "AP") and image["meta"]["labels"]
        assert "nan" not in {f.split(":")[0] for f in ecg["qc_flags"]}
        arr = np.load(io.BytesIO(s["labs_0.npy"]))
        lj = json.loads(s["labs_0.json"])
        assert arr.shape == (3, len(items)) and lj["item_ids"] == items
        for j, i in enumerate(items):
            if not lj["missing"][j]:
                values[i].append(float(arr[0, j]))
        arrays.append((arr, lj))
    # every sample is train here: the percentile is the ECDF over all samples' values
    means = {r["item_id"]: r["mean_percentile"] for r in stats["items"]}
    for arr, lj in arrays:
        for j, i in enumerate(items):
            train = np.asarray(values[i], dtype=np.float32).astype(np.float64)
            if lj["missing"][j]:
                assert np.isnan(arr[0, j]) and arr[2, j] == 1.0 and arr[1, j] == pytest.approx(means[i])
            else:
                assert arr[1, j] == pytest.approx(np.mean(train <= arr[0, j])) and arr[2, j] == 0.0


@pytest.mark.slow  # about 4 minutes on 2 cores (Beam's FnApiRunner and a Dask cluster): make test-full
def test_same_bytes_on_beam_and_dask(look, tmp_path):
    def snap(out: Path) -> dict[str, bytes]:
        return {
            p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*"))
            if p.is_file() and p.relative_to(out).parts[0] not in SKIP
        }

    ref = snap(look["out"])
    for name in ("dask", "beam"):
        runner = make_flow(name, 2, quiet=True)
        try:
            out = tmp_path / name
            run_build(look["root"], out, _cfg(), quiet=True, runner=runner)
        finally:
            runner.close()
        other = snap(out)
        assert other.keys() == ref.keys(), name
        assert [k for k in ref if ref[k] != other[k]] == [], name


def test_config_errors_are_one_line():
    base = {"sources": [{"name": "cxr", "path": "x"}]}
    with pytest.raises(ConfigError, match="need linking.anchor"):
        config_from_dict(
            base
            | {
                "tables": [
                    {
                        "name": "adm",
                        "role": "anchor",
                        "path": "a.csv",
                        "id": "{h}",
                        "patient": "{s}",
                        "time": "{t}",
                    }
                ]
            }
        )
    with pytest.raises(ConfigError, match="role identity needs"):
        config_from_dict(
            base | {"tables": [{"name": "m", "role": "identity", "path": "m.csv", "source": "cxr"}]}
        )
    with pytest.raises(ConfigError, match="one window per modality"):
        config_from_dict(
            base
            | {
                "tables": [
                    {
                        "name": "adm",
                        "role": "anchor",
                        "path": "a.csv",
                        "id": "{h}",
                        "patient": "{s}",
                        "time": "{t}",
                    }
                ],
                "linking": {
                    "anchor": {
                        "table": "adm",
                        "windows": [{"modality": "ecg", "min_hours": 0, "max_hours": 1}] * 2,
                    }
                },
            }
        )
