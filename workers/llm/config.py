"""Configuration and shard-level errors of the LLM report structurer (vLLM).

The pipeline environment needs only ``openai`` (server mode) and the standard library here; vLLM
itself lives in its own environment (``.venv-vllm`` or a GPU worker image), see ``docs/vllm.md``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

from schemas import config_coerce
from schemas.canonical import canonical_json
from schemas.report_schema import REPORT_SCHEMA_VERSION
from workers.llm.prompt import PROMPT_VERSION, GenerationBounds, prompt_id

MODES: tuple[str, ...] = ("server", "offline")

#: structured-output backend that keeps ``maxLength``-bounded strings valid JSON (see workers.llm.prompt)
STRUCTURED_BACKEND = "guidance"

REPO_ROOT = Path(__file__).resolve().parents[2]


class LlmShardError(RuntimeError):
    """The LLM stage cannot complete this batch; the caller fails the shard and retries it later.

    Nothing of the batch is returned. Cache entries already written are complete, validated
    results of single reports, so a rerun only asks the model for the rest.
    """


class LlmServerUnavailable(LlmShardError):
    """The vLLM server did not answer (connection refused/reset, timeouts, 5xx) after all retries."""


class LlmWorkerFailed(LlmShardError):
    """The offline vLLM worker process died, could not start, or broke the protocol."""


@dataclass(frozen=True)
class LlmRequest:
    """One chat request: messages, the JSON Schema to enforce (None: free text), token budget."""

    messages: tuple[dict, ...]
    schema: dict | None
    max_tokens: int


@dataclass(frozen=True)
class Completion:
    """The model's answer. ``text`` is None when the server rejected the request (``error`` says why).

    ``finish_reason`` is vLLM's (``stop``, ``length``) or ``rejected``; token counts are the
    server's usage figures.
    """

    text: str | None
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""


@dataclass(frozen=True)
class LlmConfig:
    """How the LLM structurer reaches vLLM and how it decodes.

    mode: ``server`` (OpenAI-compatible HTTP API at ``base_url``) or ``offline``
        (``vllm.LLM`` in a worker subprocess run by ``python_executable``).
    model: served model name (server) or local model directory (offline).
    model_id: identity of the weights for the cache key; empty derives it from ``model``
        (a local directory is fingerprinted by its config/tokenizer files and weight sizes).
    max_in_flight: concurrent HTTP requests (server mode).
    retries: extra attempts per request for transient errors; backoff doubles from
        ``backoff_s`` up to ``backoff_max_s`` seconds.
    request_timeout_s / connect_timeout_s: per HTTP request, seconds.
    cache_dir: sidecar cache folder; empty disables the cache.
    max_tokens: output token budget per report; bounds: generation-schema limits.
    Offline only: tensor_parallel_size, max_model_len (tokens), gpu_memory_utilization
        (fraction of GPU memory; of host RAM on the CPU backend), dtype, enforce_eager,
        worker_timeout_s (per batch, seconds), offline_batch_size (reports per ``LLM.chat``
        call; results are cached after each), kv_cache_space_gib (CPU backend only),
        single_process (engine core and model worker inside the worker process: starts in a
        third of the time on a small CPU; leave off on GPUs).
    """

    mode: str = "server"
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: str = "EMPTY"
    model: str = ""
    model_id: str = ""
    max_in_flight: int = 16
    retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    request_timeout_s: float = 300.0
    connect_timeout_s: float = 5.0
    cache_dir: str = ""
    prompt_version: str = PROMPT_VERSION
    schema_version: str = REPORT_SCHEMA_VERSION
    max_tokens: int = 2048
    bounds: GenerationBounds = GenerationBounds()
    seed: int = 0
    structured_outputs: bool = True
    # offline worker process
    python_executable: str = str(REPO_ROOT / ".venv-vllm" / "bin" / "python")
    tensor_parallel_size: int = 1
    max_model_len: int = 8192
    gpu_memory_utilization: float = 0.85
    dtype: str = "auto"
    enforce_eager: bool = False
    worker_timeout_s: float = 3600.0
    kv_cache_space_gib: int = 0
    single_process: bool = False
    offline_batch_size: int = 2048

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"LlmConfig.mode must be one of {MODES}, got {self.mode!r}")
        if not self.model:
            raise ValueError("LlmConfig.model is required (served model name or local model path)")
        if self.schema_version != REPORT_SCHEMA_VERSION:
            raise ValueError(
                f"LlmConfig.schema_version {self.schema_version!r} does not match the report schema "
                f"{REPORT_SCHEMA_VERSION!r}"
            )
        if self.prompt_version != PROMPT_VERSION:
            raise ValueError(f"LlmConfig.prompt_version {self.prompt_version!r} is not {PROMPT_VERSION!r}")
        if self.max_in_flight < 1 or self.retries < 0 or self.max_tokens < 1 or self.offline_batch_size < 1:
            raise ValueError(
                "LlmConfig: max_in_flight, max_tokens and offline_batch_size >= 1 and retries >= 0 are required"
            )

    def sampling(self) -> dict:
        """Sampling parameters shared by both modes (greedy, seeded, bounded)."""
        return {"temperature": 0.0, "max_tokens": self.max_tokens, "seed": self.seed}

    def resolved_prompt_id(self) -> str:
        """Prompt version plus the fingerprint of prompt, schemas and sampling (cache key part)."""
        return prompt_id(self.bounds, {**self.sampling(), "structured": self.structured_outputs})

    def resolved_model_id(self) -> str:
        """``model_id`` if set, else a fingerprint of the local model folder, else ``model``."""
        if self.model_id:
            return self.model_id
        return model_fingerprint(self.model)

    def to_json(self) -> str:
        return canonical_json(asdict(self))

    @classmethod
    def from_mapping(cls, data: dict, key: str = "llm") -> LlmConfig:
        """Build from a plain mapping (e.g. the ``llm:`` section of the build YAML) with the
        project's one config loader (:func:`schemas.config_coerce.from_mapping`, as the build and
        the trainer): an unknown key or a value of the wrong type is a ``ConfigError`` (a
        ``ValueError``) naming ``llm.<key>``; ``bounds`` is a mapping of
        :class:`GenerationBounds` fields."""
        return config_coerce.from_mapping(cls, data, key)


def model_fingerprint(model: str) -> str:
    """``name@sha12`` for a local model folder (config, tokenizer and weight names/sizes); else ``model``.

    Hashing multi-GB weights on every start is too slow; names and byte sizes of the weight
    files plus the full config and tokenizer files identify a checkpoint in practice.
    """
    path = Path(model)
    if not path.is_dir():
        return model
    digest = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(f.name.encode())
        if f.suffix in (".json", ".jinja", ".model", ".txt"):
            digest.update(f.read_bytes())
        else:
            digest.update(str(f.stat().st_size).encode())
    return f"{path.name}@{digest.hexdigest()[:12]}"
