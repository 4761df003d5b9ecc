"""bench/bench_symile_mimic.py: its replicated lookalike is valid WFDB/JPEG, its arithmetic is right."""

from __future__ import annotations

import math
import os
from datetime import timedelta

import numpy as np
import wfdb
from PIL import Image

from bench.bench_symile_mimic import growth, stage_group
from tests.fixtures.mimic_lookalike import CXR, ECG, cxr_path, ecg_path, linked_scenario, make_lookalike


def test_replicated_lookalike_files_are_real_records(tmp_path, shared_data) -> None:
    scenario = linked_scenario(6, labs_per_admission=5, n_items=5)
    make_lookalike(tmp_path, shared_data, scenario, replicas=2)
    first = wfdb.rdrecord(str(tmp_path / ECG / ecg_path(scenario[0], scenario[0].ecgs[0])))
    for p in scenario:
        e, c = p.ecgs[0], p.cxrs[0]
        path = tmp_path / ECG / ecg_path(p, e)
        rec = wfdb.rdrecord(str(path))
        assert rec.record_name == path.name and rec.p_signal.shape == (5000, 12)
        when = p.base + timedelta(hours=e.hours)
        assert (rec.base_date, rec.base_time) == (when.date(), when.time())
        with Image.open(tmp_path / CXR / cxr_path(p, c)) as im:
            assert im.format == "JPEG" and im.size[0] > 100
    # records 1, 3, 5 share one signal file (hard link) and so one signal; 2 differs
    dat = [os.stat((tmp_path / ECG / ecg_path(p, p.ecgs[0])).with_suffix(".dat")).st_ino for p in scenario]
    assert dat[0] == dat[2] == dat[4] and dat[1] == dat[3] and dat[0] != dat[1]
    again = wfdb.rdrecord(str(tmp_path / ECG / ecg_path(scenario[2], scenario[2].ecgs[0])))
    assert np.array_equal(first.p_signal, again.p_signal)
    names = (tmp_path / "mimic-iv/2.2/hosp/d_labitems.csv").read_text().splitlines()
    assert len(names) == 1 + 4 + 5  # the four named items, then the five made-up ones


def test_stage_groups_and_growth() -> None:
    assert stage_group("link-anchor/shuffle") == "link"
    assert stage_group("records+identity-route") == "link"
    assert stage_group("labs-cdf") == "labs" and stage_group("table-rows") == "tables"
    assert stage_group("decode") == "decode" and stage_group("assign") == "other"
    row = {"stage_s": {"link": 1.0, "labs": 1.0}, "sum_peak_mb": 100.0, "max_process_peak_mb": 50.0}
    a = {"admissions": 1000, "wall_s": 10.0, **row}
    b = {"admissions": 4000, "wall_s": 40.0, **row, "stage_s": {"link": 8.0, "labs": 2.0}}
    g = growth([a, b])[0]
    assert g["wall"] == 1.0 and g["stage_link"] == 1.5 and g["stage_labs"] == 0.5
    assert g["sum_peak_rss"] == 0.0 and g["stage_decode"] is None
    assert math.isclose(math.log(8) / math.log(4), 1.5)
