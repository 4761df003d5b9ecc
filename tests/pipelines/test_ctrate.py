"""CT-RATE preset end to end on a lookalike of its layout (real CT sample, stored values, wrong header spacing).

The build uses ``examples/ct_rate.yaml`` as a user would (demo secret): NIfTI volumes whose
metadata CSV row gives the rescale and spacing, reports linked per ``VolumeName``, "Less is
More" slice reduction on. Assertions are on the shards' arrays against the real CT's HU values.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from pipelines.build import run_build
from pipelines.config import ConfigError, DeidConfig, SplitConfig, config_from_dict, load_config
from pipelines.flow import make_flow
from pipelines.validate import validate_build
from tests.conftest import REPO
from tests.fixtures.ctrate_lookalike import VOLUMES, base_hu, expected_hu, make_ctrate
from workers.deid.pseudonym import DEMO_SECRET, Pseudonymizer
from workers.volume.ct_metadata import apply_ct_metadata, parse_spacing, respace_affine
from workers.volume.redundancy import select_distinct_slices

PSEUDO = Pseudonymizer(DEMO_SECRET)
BY_NAME = {v.name: v for v in VOLUMES}
SKIP = {"cache", "blobs", ".lock", "run.json"}


def _cfg():
    return replace(
        load_config(REPO / "examples" / "ct_rate.yaml"),
        deid=DeidConfig(demo=True),
        split=SplitConfig(1.0, 0.0, 0.0),
        strict=True,
        workers=2,
    )


@pytest.fixture(scope="module")
def ct(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("ctrate")
    paths = make_ctrate(root, shared_data)
    out = tmp_path_factory.mktemp("ctrate_out")
    run_build(root, out, _cfg(), quiet=True)
    sid = {name: PSEUDO.source_id(f"ct_rate/{rel}") for name, rel in paths.items()}
    tars = sorted(str(p) for p in (out / "shards").rglob("*.tar"))
    samples = list(wds.WebDataset(tars, shardshuffle=False, empty_check=False))
    return {"root": root, "out": out, "sid": sid, "samples": samples, "hu": base_hu(shared_data)}


def _volume_samples(ct) -> dict[str, tuple[dict, np.ndarray, str]]:
    """VolumeName → (volume item meta, stored array, report text) for samples holding a volume."""
    by_record = {PSEUDO.record_id((s,)): name for name, s in ct["sid"].items()}
    out = {}
    for s in ct["samples"]:
        meta = json.loads(s["meta.json"])
        vol = [it for it in meta["items"] if it["modality"] == "volume"]
        if vol:
            arr = np.load(io.BytesIO(s["volume_0.npy"]))
            out[by_record[vol[0]["record_id"]]] = (vol[0], arr, s["report_0.txt"].decode())
    return out


def test_values_become_hu_and_spacing_comes_from_the_metadata(ct) -> None:
    got = _volume_samples(ct)
    assert set(got) == {"train_1_a_1", "train_1_a_2", "train_2_a_1"}
    for name, (item, arr, _) in got.items():
        v = BY_NAME[name]
        full = expected_hu(ct["hu"], v)
        kept = item["meta"]["slice_reduction"]["kept"]
        assert kept == select_distinct_slices(full, 2, 0.98)  # the reduction of the HU volume
        assert arr.dtype == np.int16 and np.array_equal(arr, full[:, :, kept]), name
        assert item["hounsfield"] is True and item["orientation"] == "RAS"
        row, col = (float(x) for x in v.xy.strip("[]").split(","))
        assert item["spacing_mm"] == [col, row, float(v.z)], name
        assert item["affine"][:11:5] == [col, row, float(v.z)]
        info = item["meta"]["ct_metadata"]
        assert info["spacing"]["header_mm"] == [1.0, 1.0, 1.0]
        assert info["rescale"]["applied"] is (v.storage != "hu"), name
    # stored values: + 1024 (slope 1) and halved (slope 2) give back the real CT's HU exactly
    hu = ct["hu"]
    _, arr, _ = got["train_2_a_1"]  # already HU: left as it was, not shifted again
    assert arr.min() == hu.min() == -1024


def test_less_is_more_drops_the_duplicated_slices(ct) -> None:
    item, arr, _ = _volume_samples(ct)["train_1_a_1"]  # every slice written twice
    red = item["meta"]["slice_reduction"]
    assert red["n_slices"] == 80 and red["ncc_threshold"] == 0.98
    assert all(k % 2 == 0 for k in red["kept"]) and len(red["kept"]) <= 40  # never a second copy
    assert arr.shape == (61, 51, len(red["kept"]))
    assert item["meta"]["redundancy"]["exact_duplicate_pairs"] == 40  # computed before the reduction


def test_reports_follow_their_volume_and_bad_volumes_are_accounted(ct) -> None:
    got = _volume_samples(ct)
    for name, (_, _, text) in got.items():
        case = [v.name for v in VOLUMES].index(name) + 1
        assert f"Findings case {case}:" in text and f"Impression case {case}:" in text
    q = pq.read_table(ct["out"] / "quarantine.parquet").to_pylist()
    by_sid = {r["source_id"]: (r["stage"], r["reason"]) for r in q}
    assert by_sid[ct["sid"]["train_3_a_1"]] == ("ct-metadata", "volume_values_implausible")
    assert by_sid[ct["sid"]["train_4_b_1"]] == ("join", "no_metadata")
    # their reports lost their volume: quarantined unlinked (linking.unlinked: drop)
    assert sorted(r["reason"] for r in q if r["modality"] == "report") == ["unlinked", "unlinked"]
    assert len(ct["samples"]) == 3 and validate_build(ct["out"]).ok


@pytest.mark.slow  # Beam's FnApiRunner and a Dask cluster on 2 cores: make test-full
def test_same_bytes_on_beam_and_dask(ct, tmp_path) -> None:
    def snap(out) -> dict[str, bytes]:
        return {
            p.relative_to(out).as_posix(): p.read_bytes()
            for p in sorted(out.rglob("*"))
            if p.is_file() and p.relative_to(out).parts[0] not in SKIP
        }

    ref = snap(ct["out"])
    for name in ("dask", "beam"):
        runner = make_flow(name, 2, quiet=True)
        try:
            run_build(ct["root"], tmp_path / name, _cfg(), quiet=True, runner=runner)
        finally:
            runner.close()
        other = snap(tmp_path / name)
        assert other.keys() == ref.keys(), name
        assert [k for k in ref if ref[k] != other[k]] == [], name


def test_ct_metadata_units() -> None:
    assert parse_spacing("[0.75, 0.8] 1.5") == (0.8, 0.75, 1.5)  # X = column spacing
    assert parse_spacing("0.7 2") == (0.7, 0.7, 2.0)
    assert parse_spacing("[0, 1] 1") is None and parse_spacing("") is None
    aff = np.array([[-1.0, 0, 0, 5], [0, 2.0, 0, 6], [0, 0, 1.0, 7], [0, 0, 0, 1]])
    new = respace_affine(aff, (0.5, 0.5, 3.0))
    assert (
        np.array_equal(new[:3, 3], aff[:3, 3]) and new[0, 0] == -0.5 and new[1, 1] == 0.5 and new[2, 2] == 3
    )
    vol = np.full((4, 4, 3), 1000, dtype=np.int16)
    out, _, info = apply_ct_metadata(vol, np.eye(4), "1", "-1024", "")
    assert out.dtype == np.int16 and int(out[0, 0, 0]) == -24 and info["rescale"]["applied"]
    from schemas.reasons import QuarantineError

    with pytest.raises(QuarantineError, match="slope"):
        apply_ct_metadata(vol, np.eye(4), "0", "-1024", "")
    with pytest.raises(QuarantineError, match="Hounsfield"):  # 1000 * 100 - 1024 is not CT
        apply_ct_metadata(vol, np.eye(4), "100", "-1024", "")
    with pytest.raises(QuarantineError, match="spacing"):
        apply_ct_metadata(vol, np.eye(4), "", "", "n/a")


def test_config_errors_are_one_line() -> None:
    base = {"sources": [{"name": "ct", "path": "x", "volume": {"target_spacing_mm": [1.0]}}]}
    table = {"name": "m", "role": "identity", "path": "m.csv", "source": "ct"}
    table |= {"path_template": "{VolumeName}", "patient": "{p}"}
    with pytest.raises(ConfigError, match="parse_column and parse_regex"):
        config_from_dict(base | {"tables": [table | {"parse_column": "VolumeName"}]})
    with pytest.raises(ConfigError, match="exclude each other"):
        config_from_dict(base | {"tables": [table | {"slope": "{RescaleSlope}"}]})
