"""The ECG convention: lead aliases, rational resampling factors, NaN handling, QC, ages."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb
from scipy.signal import resample_poly

from schemas.contract import ECG_LEADS
from schemas.reasons import QuarantineError, ReasonCode
from workers.config import EcgConfig
from workers.ecg.convention import (
    ALIAS_RULES,
    SourceChannel,
    assign_leads,
    conform,
    deidentify_age,
    lead_qc,
    match_lead,
    match_lead_code,
    resample_factors,
    resample_lead,
    units_to_mv,
)


@pytest.mark.parametrize(
    ("name", "lead", "sign", "modified"),
    [
        ("I", "I", 1, False),
        ("i", "I", 1, False),
        ("AVL", "aVL", 1, False),
        ("avl", "aVL", 1, False),
        ("aVF", "aVF", 1, False),
        ("MLII", "II", 1, True),
        ("ML2", "II", 1, True),
        ("MLIII", "III", 1, True),
        ("Lead I (Einthoven)", "I", 1, False),
        ("Lead aVR", "aVR", 1, False),
        ("lead_ii", "II", 1, False),
        ("Lead 2", "II", 1, False),
        ("DIII", "III", 1, False),
        ("D1", "I", 1, False),
        ("C3", "V3", 1, False),
        ("v6", "V6", 1, False),
        ("MV1", "V1", 1, True),
        ("mod.V1", "V1", 1, True),
        ("-aVR", "aVR", -1, False),
        ("MDC_ECG_LEAD_AVF", "aVF", 1, False),
    ],
)
def test_lead_aliases(name, lead, sign, modified):
    m = match_lead(name)
    assert m is not None and (m.lead, m.sign, m.modified) == (lead, sign, modified)
    assert all(rule in ALIAS_RULES for rule in m.alias.split("+"))


@pytest.mark.parametrize(
    "name", ["vx", "vy", "ECG1", "ECG 2", "V2-V3", "CM5", "V4R", "ABP", "PLETH", "2", "", "V7"]
)
def test_not_leads(name):
    assert match_lead(name) is None


def test_lead_codes_scpecg_and_mdc():
    assert match_lead_code("5.6.3-9-61", "SCPECG").lead == "III"
    assert match_lead_code("5.6.3-9-3", "SCPECG").lead == "V1"
    assert match_lead_code("2:64", "MDC").lead == "aVF"
    assert match_lead_code("62", "SCPECG").lead == "aVR"
    assert match_lead_code("9999", "SCPECG") is None and match_lead_code("62", "99LOCAL") is None


def test_assignment_prefers_unmodified_lead_then_first_channel():
    a = assign_leads([match_lead("MLII"), match_lead("V5"), match_lead("II"), match_lead("v5"), None])
    assert a.sources["II"][0] == 2 and a.sources["V5"][0] == 1
    assert a.duplicates == (0, 3) and a.unmapped == (4,)
    assert list(a.sources) == [lead for lead in ECG_LEADS if lead in a.sources]


@pytest.mark.parametrize(
    ("rate", "up", "down"),
    [(360, 25, 18), (1000, 1, 2), (100, 5, 1), (500, 1, 1), (257, 500, 257), (1000 / 3, 3, 2)],
)
def test_resample_factors(rate, up, down):
    assert resample_factors(rate, 500)[:2] == (up, down)


def test_awkward_rate_is_approximated_and_says_so():
    up, down, exact = resample_factors(499.9, 500)
    assert not exact and max(up, down) <= 1000 and abs(499.9 * up / down - 500) / 500 < 1e-3


def test_units():
    assert units_to_mv("mV") == 1.0 and units_to_mv("mv") == 1.0
    assert units_to_mv("uV") == 1e-3 and units_to_mv("µV") == 1e-3 and units_to_mv("V") == 1e3
    assert units_to_mv("mmHg") is None and units_to_mv("") is None


def _real_lead(shared_data, rec="mitdb_100/100", ch=0, n=3600):
    r = wfdb.rdrecord(str(shared_data / "ecg" / "wfdb" / rec), sampto=n, channels=[ch])
    return r.p_signal[:, 0], float(r.fs)


def test_resample_lead_is_resample_poly_and_nan_does_not_smear(shared_data):
    x, fs = _real_lead(shared_data)
    np.testing.assert_array_equal(resample_lead(x, fs, 500), resample_poly(x, 25, 18, padtype="edge"))
    x2 = x.copy()
    x2[1000:1036] = np.nan  # 100 ms of invalid samples
    y = resample_lead(x2, fs, 500)
    nan = np.flatnonzero(np.isnan(y))
    assert nan.size and nan.min() >= int(1000 * 500 / 360) - 1 and nan.max() <= int(1036 * 500 / 360) + 1
    far = np.r_[0 : int(900 * 500 / 360), int(1200 * 500 / 360) : y.size]
    np.testing.assert_allclose(y[far], resample_lead(x, fs, 500)[far], atol=1e-9)


def test_lead_qc_on_real_and_damaged_lead(shared_data):
    x, fs = _real_lead(shared_data)
    assert lead_qc(x, fs) == []
    flat = x.copy()
    flat[500:1000] = flat[500]
    assert "flat" in lead_qc(flat, fs)
    clipped = np.clip(x, None, np.percentile(x, 95))
    assert "clipped" in lead_qc(clipped, fs)
    assert "clipped" in lead_qc(x, fs, at_adc_limit=np.r_[np.zeros(x.size - 1, bool), True])
    assert "implausible_amplitude" in lead_qc(x * 100, fs)
    assert lead_qc(np.full(100, np.nan), fs) == ["nan"]


def test_conform_partial_and_policy(shared_data):
    x, fs = _real_lead(shared_data, n=4000)
    ch = [SourceChannel("MLII", x, fs, match_lead("MLII"))]
    out = conform(ch, EcgConfig(), source_duration_s=4000 / fs)
    assert out.array.shape == (12, 5000) and out.array.dtype == np.float16
    assert np.isnan(out.array[0].astype(float)).all() and not np.isnan(out.array[1].astype(float)).any()
    assert "partial_leads" in out.qc_flags and "missing:V6" in out.qc_flags
    with pytest.raises(QuarantineError) as exc:
        conform(ch, EcgConfig(partial_leads="quarantine"), source_duration_s=10)
    assert exc.value.reason == ReasonCode.ECG_LEADS_MISSING
    with pytest.raises(QuarantineError) as exc:
        conform([SourceChannel("vx", x, fs, match_lead("vx"))], EcgConfig(), source_duration_s=10)
    assert exc.value.reason == ReasonCode.ECG_LEADS_MISSING


def test_conform_honours_configured_rate_and_window(shared_data):
    x, fs = _real_lead(shared_data, n=3600)
    out = conform([SourceChannel("II", x, fs, match_lead("II"))], EcgConfig(rate_hz=250, seconds=5.0), 10.0)
    assert out.array.shape == (12, 1250)
    np.testing.assert_allclose(
        out.array[1].astype(float), resample_poly(x, 25, 36, padtype="edge")[:1250], atol=1e-3, rtol=1e-3
    )


@pytest.mark.parametrize(
    ("raw", "age"),
    [
        ("59", "59"),
        ("89", "89"),
        ("90", "90+"),
        ("103", "90+"),
        ("042Y", "42"),
        ("006M", "0"),
        ("?", ""),
        ("-1", ""),
        ("NaN", ""),
    ],
)
def test_age_deidentification(raw, age):
    assert deidentify_age(raw) == age
