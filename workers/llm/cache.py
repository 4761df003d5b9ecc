"""Sidecar cache of LLM structuring results, content-addressed JSON files.

Key: sha256 of the canonical JSON of (sha256 of the report text, report type, language, schema
version, prompt id, model id). Report type and language are part of the prompt and of the
generation schema, so they belong to the key as well. One entry per file at
``<root>/<key[:2]>/<key>.json``, written atomically (temp file + ``os.replace``), so a crash or a
failed shard never leaves a half-written entry; entries hold no timestamps, so the same
results give byte-identical files. A rebuild with unchanged reports never calls the model.

Entries hold the LLM outcome only (the validated report or the failure reasons); the rule path
is cheap and recomputed, so a change of the rules does not invalidate the cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from schemas.atomic import write_atomic
from schemas.canonical import canonical_bytes


def text_sha256(text: str) -> str:
    """sha256 (hex) of the report text as UTF-8, exactly as given (no normalisation)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(
    text: str, report_type: str, language: str, schema_version: str, prompt_id: str, model_id: str
) -> str:
    """The 64-hex cache key of one report under one schema, prompt and model."""
    fields = {
        "text_sha256": text_sha256(text),
        "report_type": report_type,
        "language": language,
        "schema_version": schema_version,
        "prompt": prompt_id,
        "model": model_id,
    }
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()


def rewrite_key(text: str, prompt_id: str, model_id: str) -> str:
    """The 64-hex cache key of one caption rewrite (``workers.llm.rewrite``): the template text,
    the rewrite prompt id and the model id. The prompt id names the task, so a key never
    collides with a report structurer's key in the same sidecar."""
    fields = {"caption_sha256": text_sha256(text), "prompt": prompt_id, "model": model_id}
    return hashlib.sha256(canonical_bytes(fields)).hexdigest()


@dataclass
class LlmCache:
    """Content-addressed JSON sidecar under ``root``; counts hits and misses of :meth:`get`."""

    root: Path
    hits: int = field(default=0, init=False)
    misses: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The stored entry, or None. A corrupt entry (should not happen) counts as a miss."""
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, key: str, entry: dict) -> None:
        """Write ``entry`` atomically (canonical JSON, sorted keys, UTF-8)."""
        write_atomic(self.path(key), canonical_bytes(entry), durable=False, mode=0o600)  # a cache

    def keys(self) -> list[str]:
        """All stored keys, sorted."""
        return sorted(p.stem for p in self.root.glob("*/*.json"))

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
