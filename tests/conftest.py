"""Shared fixtures: real sample data (../shared/data beside the repo, bundled examples/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "data"
SHARED_DATA = Path(os.environ.get("MEDCORPUS_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("LOGURU_LEVEL", "WARNING")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FULL = os.environ.get("MEDCORPUS_FULL") == "1"


def pytest_collection_modifyitems(config, items):
    if FULL:
        return
    skip = pytest.mark.skip(reason="long run: set MEDCORPUS_FULL=1 (make test-full)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The developer-visible real sample data (see its PROVENANCE.md)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared sample data not found at {SHARED_DATA} (set MEDCORPUS_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES


@pytest.fixture()
def pseudo():
    from workers.deid.pseudonym import Pseudonymizer

    return Pseudonymizer("test-secret-0123456789")


@pytest.fixture()
def ctx(pseudo):
    from workers.context import WorkerContext

    return WorkerContext(pseudo=pseudo)
