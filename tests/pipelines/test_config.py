"""YAML config → frozen dataclasses, with one-line errors."""

from __future__ import annotations

import pytest

from pipelines.config import ConfigError, config_from_dict, load_config, parse_size
from tests.conftest import REPO


def test_demo_config_loads():
    cfg = load_config(REPO / "examples" / "demo.yaml")
    names = [s.name for s in cfg.sources]
    assert "ptbxl_reports" in names and cfg.deid.demo
    rep = next(s for s in cfg.sources if s.name == "ptbxl_reports").report
    assert rep.columns.text == ("report",) and rep.columns.study_id == "ecg_id"
    assert cfg.shards.max_bytes == 64_000_000


@pytest.mark.parametrize(
    "data, message",
    [
        ({"workers": 0}, "workers"),
        ({"split": {"train": 0.5, "val": 0.1, "test": 0.1}}, "sum to 1"),
        ({"shards": {"max_bytes": "lots"}}, "not a size"),
        ({"sources": [{"name": "a", "colour": "red"}]}, "unknown key"),
        ({"sources": [{"path": "x"}]}, "needs a name"),
        ({"deid": {"demo": "yes"}}, "true/false"),
        ({"runner": "spark"}, "runner"),
    ],
)
def test_bad_values_name_the_problem(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


LLM_SOURCE = {"name": "r", "report": {"structurer": "llm"}}


@pytest.mark.parametrize(
    "data, message",
    [
        (
            {"sources": [LLM_SOURCE], "llm": {"model": "m", "max_inflight": 4}},
            r"^config llm.max_inflight: unknown key",
        ),
        ({"llm": {"model": "m", "retries": "3"}}, r"^config llm.retries: expected an integer"),
        ({"sources": [LLM_SOURCE]}, r"^llm: LlmConfig.model is required"),
        ({"sources": [LLM_SOURCE], "llm": {"model": "m", "mode": "batch"}}, r"^llm: LlmConfig.mode must be"),
    ],
)
def test_the_llm_section_is_checked_when_the_config_is_read(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)
    ok = config_from_dict({"sources": [LLM_SOURCE], "llm": {"model": "m", "backoff_s": 1}})
    assert ok.llm == {"model": "m", "backoff_s": 1}  # kept as written (build.json is unchanged)


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [\n  - name: a\n  bad: : :\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_sizes():
    assert parse_size("256MB") == 256_000_000
    assert parse_size("1GiB") == 1 << 30
    assert parse_size(4096) == 4096


def test_secret_required_outside_demo(monkeypatch):
    cfg = config_from_dict({"deid": {"secret_env": "MC_TEST_SECRET"}})
    monkeypatch.delenv("MC_TEST_SECRET", raising=False)
    with pytest.raises(ConfigError, match="secret missing"):
        cfg.secret()
    monkeypatch.setenv("MC_TEST_SECRET", "a-long-enough-secret")
    assert cfg.secret() == "a-long-enough-secret"


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ({"columns": {"text_join": "paragraphs"}}, "text_join: must be sections or lines"),
        ({"measurements": {"rr_interval": " "}}, "non-empty text"),
        ({"measurements": {"rr_interval": "ms"}, "fields": ["rr_interval"]}, "also used as text or fields"),
        ({"measurements": ["rr_interval"]}, "expected a mapping"),
        ({"measurement_missing": [29999]}, "quote it in YAML"),
    ],
)
def test_report_table_measurement_keys_are_checked(report, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"sources": [{"name": "mm", "report": report}]})
