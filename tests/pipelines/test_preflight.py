"""A missing package stops a build before any work, with one line naming the package."""

from __future__ import annotations

import importlib.util
import pickle
from dataclasses import replace

import pytest

from pipelines import preflight
from pipelines.cli import main
from pipelines.config import BuildConfig, DedupConfig


def _names(reqs) -> set[str]:
    return {r.module for r in reqs}


def test_requirements_follow_the_config() -> None:
    base = BuildConfig()
    assert {"pydicom", "wfdb", "medspacy", "langdetect", "matplotlib"} <= _names(preflight.requirements(base))
    assert "sentence_transformers" in _names(preflight.requirements(base))  # dedup is on by default
    no_dedup = replace(base, dedup=DedupConfig(enabled=False))
    assert "sentence_transformers" not in _names(preflight.requirements(no_dedup))
    assert "apache_beam" in _names(preflight.requirements(base, "beam"))
    assert "distributed" in _names(preflight.requirements(base, "dask"))
    assert "apache_beam" not in _names(preflight.requirements(base, "local"))


def test_this_environment_has_everything() -> None:
    assert preflight.missing(BuildConfig(), "beam") == []
    assert preflight.missing(BuildConfig(), "dask") == []


def test_a_missing_module_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == "langdetect" else real(m, *a))
    assert _names(preflight.missing(BuildConfig())) == {"langdetect"}
    with pytest.raises(preflight.MissingDependency, match="'langdetect' package is not installed"):
        preflight.check(BuildConfig())


def test_missing_dependency_survives_pickling() -> None:
    exc = pickle.loads(pickle.dumps(preflight.MissingDependency("medspacy", "medspacy")))
    assert isinstance(exc, preflight.MissingDependency) and exc.module == "medspacy"
    assert str(exc) == "the 'medspacy' package is not installed (install medspacy)"


def test_from_import_error_uses_the_top_level_module() -> None:
    try:
        import medcorpus_absent_pkg.sub  # noqa: F401
    except ImportError as exc:
        assert preflight.from_import_error(exc).module == "medcorpus_absent_pkg"


def test_cli_build_stops_with_one_line(monkeypatch, capsys, examples_dir, tmp_path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == "medspacy" else real(m, *a))
    out = tmp_path / "out"
    examples = examples_dir.parent  # the demo: examples/ with examples/demo.yaml
    rc = main(["build", str(examples), "--config", str(examples / "demo.yaml"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith(
        "medcorpus build: error: the 'medspacy' package is not installed"
    )
    assert "requirements/nodeps.txt" in err[0]
    assert not out.exists()  # nothing was built, nothing quarantined
