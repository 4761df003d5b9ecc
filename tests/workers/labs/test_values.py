"""Labs values: parsing, the train split's empirical CDF, the members, and table times."""

from __future__ import annotations

import io
import json
from datetime import datetime

import numpy as np
import pytest

from pipelines.tables import parse_time, template_fields
from workers.labs.values import fit_cdf, labs_members, parse_value, percentile


@pytest.mark.parametrize(
    ("text", "value"), [("1.5", 1.5), (" 7 ", 7.0), ("", None), ("___", None), ("nan", None), ("inf", None)]
)
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_percentile_is_the_train_ecdf():
    train = [3.0, 1.0, 2.0, 2.0]
    x, mean = fit_cdf(train)
    assert x.tolist() == [1.0, 2.0, 2.0, 3.0]
    # F(v) = #(train <= v) / n, checked against numpy on the same values
    for v in (0.5, 1.0, 2.0, 2.5, 3.0, 9.0):
        assert percentile(x, v) == np.mean(np.asarray(train) <= v)
    assert mean == pytest.approx(np.mean([np.mean(np.asarray(train) <= v) for v in train]))
    assert fit_cdf([])[0].size == 0 and fit_cdf([])[1] == 0.5
    assert percentile(np.zeros(0), 1.0) == 0.5


def test_members_dense_over_items_with_missing_as_mean():
    cdfs = {"a": fit_cdf([1.0, 2.0, 3.0, 4.0]), "b": fit_cdf([10.0, 20.0])}
    items = [("a", "Creatinine"), ("b", "Potassium"), ("c", "Urea")]
    npy, js = labs_members(items, {"a": (2.5, "mg/dL", "2180-01-01T00:00:00")}, cdfs, "sid")
    arr = np.load(io.BytesIO(npy))
    meta = json.loads(js)
    assert arr.dtype == np.float32 and arr.shape == (3, 3)
    assert arr[0, 0] == 2.5 and np.isnan(arr[0, 1]) and np.isnan(arr[0, 2])
    assert arr[1].tolist() == pytest.approx([0.5, cdfs["b"][1], 0.5])
    assert arr[2].tolist() == [0.0, 1.0, 1.0]
    assert meta["missing"] == [False, True, True] and meta["units"] == ["mg/dL", "", ""]
    assert (
        meta["item_names"] == ["Creatinine", "Potassium", "Urea"]
        and meta["normalisation"]["stats_id"] == "sid"
    )


@pytest.mark.parametrize(
    ("text", "fmt", "when"),
    [
        ("2180-05-06 22:23:00", "", datetime(2180, 5, 6, 22, 23)),
        ("21800507 182300.000", "", datetime(2180, 5, 7, 18, 23)),
        ("21800508 42300.0", "", datetime(2180, 5, 8, 4, 23)),  # MIMIC-CXR StudyTime as a number
        ("21800508", "", datetime(2180, 5, 8)),
        ("06/05/2180 10:00", "%d/%m/%Y %H:%M", datetime(2180, 5, 6, 10, 0)),
        ("garbage", "", None),
        ("", "", None),
    ],
)
def test_parse_time(text, fmt, when):
    assert parse_time(text, fmt) == when


def test_template_fields():
    assert template_fields("files/p{subject_id:.2}/p{subject_id}/s{study_id}/{dicom_id}.jpg") == {
        "subject_id",
        "study_id",
        "dicom_id",
    }
    assert template_fields("{StudyDate} {StudyTime}") == {"StudyDate", "StudyTime"}
