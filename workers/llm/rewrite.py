"""LLM rewrite of label-derived captions (``caption.llm_rewrite``), through the build's vLLM.

In: template captions (``pipelines.captions``: label names and codes only, never patient text).
Out: per caption, the model's rephrasing (one fluent radiology-style sentence or short
paragraph) or the PHI-free reasons it has none. Whether a rephrasing is *used* is decided by
the guard (``pipelines.caption_guard``) at the caller, never here: the cache holds what the model
said, so a change of the label vocabulary re-judges cached answers without asking again.

The same settings, endpoint or offline worker and the same sidecar cache as the report
structurer (:class:`~workers.llm.config.LlmConfig`): a chat of ``[system, user]`` (the system
message is shared, so vLLM's prefix cache computes it once), structured outputs with the JSON
schema ``{"text": string}`` bounded to the caption's length, temperature 0 and a fixed seed. The
cache key is (template text, prompt id, model id) (:func:`workers.llm.cache.rewrite_key`); the
prompt id is :data:`REWRITE_PROMPT_VERSION` plus a fingerprint of the prompt, the schemas and
the sampling. A server that is down or an offline worker that dies raises
:class:`~workers.llm.config.LlmShardError` for the whole batch (answers already cached stay).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from schemas.canonical import canonical_bytes
from workers.llm.cache import LlmCache, rewrite_key
from workers.llm.config import Completion, LlmConfig, LlmRequest

log = logging.getLogger(__name__)

#: bump on any change of the wording below (the fingerprint catches forgotten bumps)
REWRITE_PROMPT_VERSION = "caption-rewrite-v1"
#: output token budget of one rewrite (a caption is one sentence; bounds a weak model's output)
REWRITE_MAX_TOKENS = 384

REWRITE_SYSTEM = (
    "You rewrite one short caption of a medical image, made from its finding labels, as one "
    "fluent radiology-style sentence or short paragraph.\n"
    "Rules:\n"
    "- Output one JSON object with the key text and nothing else.\n"
    "- Name every finding of the caption with the caption's own words.\n"
    "- Keep the certainty of each finding: a possible finding stays possible (possible, may, "
    "cannot be excluded); an absent finding stays absent (no, without).\n"
    "- Do not add any finding, location, size, severity, cause, comparison or recommendation, "
    "and do not drop any.\n"
    "- Write in the language of the caption.\n"
)
REWRITE_USER = "Caption:\n<<<\n{text}\n>>>"


def max_chars(text: str) -> int:
    """The schema's bound on the rewrite: twice the caption, as a power of two in [64, 1024]."""
    q = 64
    while q < 2 * len(text) and q < 1024:
        q *= 2
    return q


def rewrite_schema(text: str) -> dict:
    """The JSON schema of one answer: ``{"text": <1 .. max_chars(text) characters>}``."""
    return {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": max_chars(text)}},
        "required": ["text"],
        "additionalProperties": False,
    }


def rewrite_messages(text: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": REWRITE_SYSTEM},
        {"role": "user", "content": REWRITE_USER.format(text=text)},
    ]


def rewrite_prompt_id(config: LlmConfig) -> str:
    """``caption-rewrite-v1+<sha12>`` over the prompt, the schemas at each bound and the sampling."""
    material = {
        "version": REWRITE_PROMPT_VERSION,
        "system": REWRITE_SYSTEM,
        "user": REWRITE_USER,
        "schemas": [rewrite_schema("x" * n) for n in (1, 40, 80, 200, 400, 1000)],
        "sampling": {"temperature": 0.0, "max_tokens": _max_tokens(config), "seed": config.seed},
    }
    return f"{REWRITE_PROMPT_VERSION}+{hashlib.sha256(canonical_bytes(material)).hexdigest()[:12]}"


def _max_tokens(config: LlmConfig) -> int:
    return min(config.max_tokens, REWRITE_MAX_TOKENS)


def rewrite_request(text: str, config: LlmConfig) -> LlmRequest:
    return LlmRequest(tuple(rewrite_messages(text)), rewrite_schema(text), _max_tokens(config))


def parse_answer(completion: Completion, text: str) -> tuple[str | None, list[str]]:
    """The rewrite of one answer, or ``None`` and PHI-free reasons (``rejected:http_400``,
    ``truncated``, ``json``, ``schema``)."""
    if completion.text is None:
        return None, [f"rejected:{completion.error or 'unknown'}"]
    reasons = ["truncated"] if completion.finish_reason == "length" else []
    try:
        obj = json.loads(completion.text)
    except json.JSONDecodeError:
        return None, [*reasons, "json"]
    out = obj.get("text") if isinstance(obj, dict) else None
    if not isinstance(out, str) or not out.strip() or len(out) > max_chars(text) or set(obj) != {"text"}:
        return None, [*reasons, "schema"]
    return " ".join(out.split()), []


@dataclass
class RewriteStats:
    """Counts over all calls: captions asked about, cache hits and misses, requests sent."""

    captions: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    requests: int = 0


class CaptionRewriter:
    """``setup()`` once per worker process, then ``self(texts) -> list[entry]`` per batch.

    An entry is ``{"text": str | None, "reasons": [...], "prompt_id", "model_id", tokens}``
    (what the cache stores), with ``cache_hit`` added.
    """

    def __init__(self, config: LlmConfig) -> None:
        self.config = config
        self.cache = LlmCache(config.cache_dir) if config.cache_dir else None
        self.model_id = config.resolved_model_id()
        self.prompt_id = rewrite_prompt_id(config)
        self.stats = RewriteStats()
        self._engine = None

    def setup(self) -> CaptionRewriter:
        if self.config.mode == "offline" and self._engine is None:
            from workers.llm.offline import OfflineEngine

            self._engine = OfflineEngine(self.config)
        return self

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __call__(self, texts: list[str]) -> list[dict]:
        """One batch: cached answers, then one request batch for the rest; input order."""
        keys = [rewrite_key(t, self.prompt_id, self.model_id) for t in texts]
        found: dict[str, dict] = {}
        todo: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key in found or key in todo:
                continue
            entry = self.cache.get(key) if self.cache else None
            if entry is not None:
                found[key] = {**entry, "cache_hit": True}
                self.stats.cache_hits += 1
            else:
                todo[key] = text
                self.stats.cache_misses += 1
        if todo:
            found.update(self._ask(todo))  # raises LlmShardError: nothing returned
        self.stats.captions += len(texts)
        return [found[k] for k in keys]

    def _entry(self, text: str, c: Completion) -> dict:
        out, reasons = parse_answer(c, text)
        return {
            "text": out,
            "reasons": reasons,
            "prompt_id": self.prompt_id,
            "model_id": self.model_id,
            "completion_tokens": c.completion_tokens,
            "prompt_tokens": c.prompt_tokens,
        }

    def _ask(self, todo: dict[str, str]) -> dict[str, dict]:
        """Ask the model about every text of ``todo`` (key → text) in one batch; each answer is
        cached as soon as it is final (a batch that fails keeps the finished ones)."""
        if self.config.mode == "server":
            from workers.llm.structurer import _run_sync

            return _run_sync(self._ask_server(todo))
        self.setup()
        assert self._engine is not None
        keys = list(todo)
        answers = self._engine.generate([rewrite_request(todo[k], self.config) for k in keys])
        self.stats.requests += len(keys)
        return {k: self._keep(k, todo[k], c) for k, c in zip(keys, answers, strict=True)}

    def _keep(self, key: str, text: str, c: Completion) -> dict:
        entry = self._entry(text, c)
        if self.cache:
            self.cache.put(key, entry)
        return {**entry, "cache_hit": False}

    async def _ask_server(self, todo: dict[str, str]) -> dict[str, dict]:
        from workers.llm.client import AsyncLlmClient, gather_fail_fast

        out: dict[str, dict] = {}
        async with AsyncLlmClient(self.config) as client:
            await client.check_ready()

            async def one(key: str, text: str) -> None:
                out[key] = self._keep(key, text, await client.complete(rewrite_request(text, self.config)))

            try:
                await gather_fail_fast([one(k, t) for k, t in todo.items()])
            finally:
                self.stats.requests += client.requests_sent
        return out
