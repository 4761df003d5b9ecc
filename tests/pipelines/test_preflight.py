"""A missing package stops a build (or any command) with one line naming the package and its extra;
the package metadata declares every package the code imports."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import pickle
import re
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from packaging.requirements import Requirement

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


# --- the package metadata declares what the code imports -----------------------------------------

REPO = Path(__file__).resolve().parents[2]
OURS = ("schemas", "workers", "pipelines", "trainer")
#: distributions of modules this environment does not hold (the GPU image's vLLM)
NOT_INSTALLED_HERE = {"vllm": ["vllm"]}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {_norm(Requirement(r).name) for r in project["dependencies"]}
    extras = {k: {_norm(Requirement(r).name) for r in v} for k, v in project["optional-dependencies"].items()}
    return core, extras


def _third_party_imports() -> dict[str, str]:
    """Top-level module → one file importing it, over the shipped packages (absolute imports)."""
    found: dict[str, str] = {}
    for pkg in OURS:
        for path in sorted((REPO / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for n in names:
                    top = n.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in preflight.OWN_PACKAGES:
                        found.setdefault(top, str(path.relative_to(REPO)))
    return found


def test_every_imported_package_is_declared_in_pyproject() -> None:
    """A module the code imports comes from a distribution named in ``dependencies`` or an extra,
    not only through another package's requirements (pandas via wfdb, jinja2 via spaCy)."""
    core, extras = _declared()
    declared = core.union(*extras.values())
    dists = {**importlib.metadata.packages_distributions(), **NOT_INSTALLED_HERE}
    undeclared = {
        module: where
        for module, where in _third_party_imports().items()
        if not {_norm(d) for d in dists.get(module, [module])} & declared
    }
    assert undeclared == {}


def test_every_build_module_is_a_core_dependency_and_every_hint_names_an_extra() -> None:
    core, extras = _declared()
    dists = importlib.metadata.packages_distributions()
    for module, _ in preflight.CORE:
        assert {_norm(d) for d in dists[module]} & core, module
    for module, hint in preflight.EXTRA_OF.items():
        for extra in re.findall(r"medcorpus\[([\w-]+)\]", hint):
            assert extra in extras, (module, extra)
    # the extras a user would look for
    assert {"beam", "dask", "airflow", "train", "llm", "dev"} <= set(extras)


def test_a_command_without_its_extra_stops_with_one_line(monkeypatch, capsys, tmp_path) -> None:
    """``medcorpus train`` where torch is not installed: one line naming the extra, exit 2."""
    monkeypatch.delitem(sys.modules, "trainer.train", raising=False)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch → ModuleNotFoundError
    rc = main(
        ["train", "--shards", str(tmp_path), "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == [
        "medcorpus train: error: the 'torch' package is not installed (install medcorpus[train] (torch))"
    ]


def test_an_import_error_in_our_own_code_keeps_its_traceback() -> None:
    try:
        import pipelines.no_such_module  # noqa: F401
    except ImportError as exc:
        assert not preflight.is_missing_dependency(exc)
    try:
        from pipelines.config import no_such_name  # noqa: F401
    except ImportError as exc:  # a name missing from an installed module: not an install problem
        assert not preflight.is_missing_dependency(exc)
    try:
        import medcorpus_absent_pkg  # noqa: F401
    except ImportError as exc:
        assert preflight.is_missing_dependency(exc)
