"""The one config coercer (schemas/config_coerce.py) as the build and the trainer use it."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from pipelines import config as build_config
from schemas.config_coerce import ConfigError, from_mapping
from tests.conftest import REPO
from trainer import config as train_config


def _as_yaml_data(cfg) -> dict:
    """What a YAML file holding ``cfg`` parses back to (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def test_both_loaders_raise_the_one_error_class():
    assert build_config.ConfigError is ConfigError and train_config.ConfigError is ConfigError


@pytest.mark.parametrize(
    "cfg",
    [
        build_config.config_from_dict({}),
        build_config.load_config(REPO / "examples" / "demo.yaml"),
        # anchors, windows, filters, tables: every nested dataclass and tuple type of the build config
        build_config.config_from_dict(yaml.safe_load((REPO / "examples" / "symile_mimic.yaml").read_text())),
    ],
    ids=["build-defaults", "demo", "symile-mimic"],
)
def test_every_build_config_field_type_round_trips(cfg):
    # a field type the coercer does not know raises TypeError here instead of passing through
    assert build_config.config_from_dict(_as_yaml_data(cfg)) == cfg


def test_every_trainer_config_field_type_round_trips():
    cfg = train_config.load_config(REPO / "examples" / "symile_mimic_train.yaml")
    assert cfg != train_config.TrainConfig().validate()
    assert train_config.config_from_dict(_as_yaml_data(cfg)) == cfg


def test_every_llm_config_field_type_round_trips():
    """The build's ``llm:`` section (workers.llm.config.LlmConfig) is the third user of the loader."""
    from workers.llm.config import LlmConfig
    from workers.llm.prompt import GenerationBounds

    cfg = LlmConfig(model="m", mode="offline", bounds=GenerationBounds(max_findings=5), enforce_eager=True)
    assert LlmConfig.from_mapping(_as_yaml_data(cfg)) == cfg
    assert from_mapping(LlmConfig, _as_yaml_data(cfg)) == cfg


@pytest.mark.parametrize(
    ("build", "train", "message"),
    [
        ({"deid": {"demo": "yes"}}, {"progress": "yes"}, "expected true/false, got 'yes'"),
        ({"workers": "2"}, {"epochs": "2"}, "expected an integer, got '2'"),
        ({"workers": True}, {"epochs": True}, "expected an integer, got True"),
        ({"runner": 5}, {"device": 5}, "expected a string, got 5 (quote it in YAML)"),
        ({"split": {"train": "most"}}, {"optim": {"lr": "most"}}, "expected a number, got 'most'"),
        ({"shards": {"max_samplez": 3}}, {"data": {"batch_sise": 3}}, "unknown key (did you mean"),
        ({"shards": 3}, {"data": 3}, "expected a mapping, got int"),
    ],
)
def test_build_and_trainer_reject_the_same_things_in_one_line(build, train, message):
    for load, data in ((build_config.config_from_dict, build), (train_config.config_from_dict, train)):
        with pytest.raises(ConfigError) as err:
            load(data)
        text = str(err.value)
        assert message in text and "\n" not in text and text.startswith("config "), text


def test_the_error_names_the_full_key_path():
    with pytest.raises(
        ConfigError, match=r"^config sources\[0\]\.report\.columns\.text\[1\]: expected a string"
    ):
        build_config.config_from_dict({"sources": [{"name": "a", "report": {"columns": {"text": ["r", 7]}}}]})
    with pytest.raises(ConfigError, match=r"^config optim\.betas\[1\]: expected a number"):
        train_config.config_from_dict({"optim": {"betas": [0.9, "x"]}})
    with pytest.raises(ConfigError, match=r"^config data\.colour: unknown key; also unknown: size$"):
        train_config.config_from_dict({"data": {"size": 1, "colour": 2}})


def test_values_the_pipeline_used_to_pass_unchecked_are_refused():
    # the old pipeline coercer turned these into strings/ints silently
    with pytest.raises(ConfigError, match="licence: expected a string"):
        build_config.config_from_dict({"sources": [{"name": "a", "licence": 2024}]})
    with pytest.raises(ConfigError, match="workers: expected an integer, got 2.5"):
        build_config.config_from_dict({"workers": 2.5})
    with pytest.raises(ConfigError, match="llm: expected a mapping"):
        build_config.config_from_dict({"llm": ["model"]})


def test_byte_sizes_only_where_declared():
    cfg = build_config.config_from_dict(
        {"shards": {"max_bytes": "1GiB"}, "limits": {"max_file_bytes": "2GB"}}
    )
    assert cfg.shards.max_bytes == 1 << 30 and cfg.limits.max_file_bytes == 2_000_000_000
    with pytest.raises(ConfigError, match="shards.max_bytes: not a size: 'lots'"):
        build_config.config_from_dict({"shards": {"max_bytes": "lots"}})
    with pytest.raises(ConfigError, match="max_samples: expected an integer, got '1k'"):
        build_config.config_from_dict({"shards": {"max_samples": "1k"}})


def test_lists_scalars_and_empty_sections():
    cfg = build_config.config_from_dict({"sources": [{"name": "a", "exclude": "*.txt"}], "deid": None})
    assert cfg.sources[0].exclude == ("*.txt",) and cfg.deid == build_config.DeidConfig()
    with pytest.raises(ConfigError, match=r"volume_size: expected 3 values, got 2"):
        train_config.config_from_dict({"data": {"volume_size": [8, 8]}})
    with pytest.raises(ConfigError, match=r"linking\.windows: expected a list"):
        build_config.config_from_dict({"linking": {"windows": {"modality": "ecg"}}})


def test_missing_required_key_and_unsupported_types():
    @dataclasses.dataclass(frozen=True)
    class Needs:
        name: str
        tags: set[str] = dataclasses.field(default_factory=set)

    with pytest.raises(ConfigError, match=r"^config x\.name: missing \(no default\)$"):
        from_mapping(Needs, {}, "x")
    with pytest.raises(TypeError, match="unsupported config type"):  # a bug in the classes, not bad input
        from_mapping(Needs, {"name": "a", "tags": ["b"]})
