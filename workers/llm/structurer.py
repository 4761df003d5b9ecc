"""LLM report structurer: de-identified report text → the structured report JSON, via vLLM.

For every report ``(text, report_type, language)``:

1. look up the sidecar cache (``workers.llm.cache``; key: text hash, report type, language,
   schema version, prompt id, model id); a hit never calls the model;
2. otherwise ask vLLM (server mode through :class:`~workers.llm.client.AsyncLlmClient`, or the
   offline worker :class:`~workers.llm.offline.OfflineEngine`) under structured outputs with the
   generation schema (``workers.llm.prompt``), temperature 0;
3. validate the answer against :data:`schemas.report_schema.REPORT_JSON_SCHEMA` (and that it
   kept the given report type and language); an invalid one is retried once with tighter
   bounds; still invalid (or rejected by the server) falls back to the rule path
   ``workers.report.rules.structure_with_rules`` with ``llm_fallback = True``;
4. store the LLM outcome in the cache (atomically, per report);
5. run the rule path for every report as well and record the LLM-vs-rules disagreement. Both
   structured forms are kept side by side; neither overwrites the other.

A server that is down (after retries) or an offline worker that dies raises
:class:`~workers.llm.config.LlmShardError` for the whole batch: nothing is returned, so the
caller fails the shard and a rerun picks up the cached reports and asks only for the rest.

Entry points: :func:`structure_reports` (one call) and :class:`LlmStructurer` (``setup()`` once
per worker process, then call it per batch; keeps the offline engine loaded).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas.report_schema import REPORT_JSON_SCHEMA
from workers.llm.cache import LlmCache, cache_key
from workers.llm.config import (
    Completion,
    LlmConfig,
    LlmRequest,
    LlmServerUnavailable,
    LlmShardError,
    LlmWorkerFailed,
)
from workers.llm.prompt import REPORT_TYPES, build_messages, generation_schema

__all__ = [
    "LlmConfig",
    "LlmServerUnavailable",
    "LlmShardError",
    "LlmStructurer",
    "LlmWorkerFailed",
    "StructurerStats",
    "build_request",
    "disagreement",
    "structure_reports",
    "validate_output",
]

log = logging.getLogger(__name__)

RulesFn = Callable[[str, str, str], dict]
ReportIn = tuple[str, str, str]  # (text, report_type, language)

_VALIDATOR = None


def _validator():
    global _VALIDATOR
    if _VALIDATOR is None:
        import jsonschema

        _VALIDATOR = jsonschema.Draft202012Validator(REPORT_JSON_SCHEMA)
    return _VALIDATOR


def validate_output(completion: Completion, report_type: str, language: str) -> tuple[dict | None, list[str]]:
    """Parse and validate one answer. Returns (report, []) or (None, PHI-free reasons).

    Reasons name the failure class and the JSON path, never a value: ``rejected:http_400``,
    ``truncated``, ``json``, ``schema:enum@findings/0/label``, ``mismatch:report_type``.
    """
    if completion.text is None:
        return None, [f"rejected:{completion.error or 'unknown'}"]
    reasons: list[str] = []
    if completion.finish_reason == "length":
        reasons.append("truncated")
    try:
        obj = json.loads(completion.text)
    except json.JSONDecodeError:
        return None, [*reasons, "json"]
    errors = sorted(_validator().iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        return None, [
            *reasons,
            *(f"schema:{e.validator}@{'/'.join(map(str, e.absolute_path))}" for e in errors[:5]),
        ]
    if obj["report_type"] != report_type:
        return None, [*reasons, "mismatch:report_type"]
    if obj["language"] != language[:8]:
        return None, [*reasons, "mismatch:language"]
    return obj, []


def disagreement(llm: dict, rules: dict) -> dict:
    """LLM vs rule-path findings of one report, as ``label:assertion`` sets.

    ``jaccard`` is |shared| / |union| (1.0 when both are empty); ``present_agree`` compares the
    sets of labels asserted present; ``normal_agree`` compares the ``normal`` flags.
    """
    a = {f"{f['label']}:{f['assertion']}" for f in llm["findings"]}
    b = {f"{f['label']}:{f['assertion']}" for f in rules["findings"]}
    union = a | b
    pa = {f["label"] for f in llm["findings"] if f["assertion"] == "present"}
    pb = {f["label"] for f in rules["findings"] if f["assertion"] == "present"}
    return {
        "llm_only": sorted(a - b),
        "rules_only": sorted(b - a),
        "shared": len(a & b),
        "jaccard": round(len(a & b) / len(union), 6) if union else 1.0,
        "present_agree": pa == pb,
        "normal_agree": llm["normal"] == rules["normal"],
    }


@dataclass
class StructurerStats:
    """Counts over the reports of all calls so far (hits/misses are cache lookups)."""

    reports: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    valid_first: int = 0
    valid_retry: int = 0
    fallback: int = 0
    requests: int = 0
    completion_tokens: int = 0
    prompt_tokens: int = 0
    invalid_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def cache_hit_rate(self) -> float:
        n = self.cache_hits + self.cache_misses
        return self.cache_hits / n if n else 0.0

    @property
    def llm_valid_rate(self) -> float:
        """Share of reports whose final LLM outcome is schema-valid (cached ones included)."""
        return (self.reports - self.fallback) / self.reports if self.reports else 0.0


RulesBatchFn = Callable[[list[str], list[str], list[str]], list[dict]]


def _load_rules() -> RulesBatchFn:
    """The rule path (medspaCy), imported lazily: its batch form if it has one."""
    import workers.report.rules as rules

    if hasattr(rules, "structure_many"):
        return rules.structure_many
    return lambda texts, types, langs: [
        rules.structure_with_rules(t, rt, lang) for t, rt, lang in zip(texts, types, langs, strict=True)
    ]


def _load_type_normaliser() -> Callable[[str], str]:
    """The rule path's report-type normaliser (synonyms such as ``ecg``), so both paths agree."""
    try:
        from workers.report.rules import normalise_report_type
    except ImportError:
        return lambda value: value if value in REPORT_TYPES else "other"
    return normalise_report_type


def build_request(
    rep: ReportIn, config: LlmConfig, retry: bool = False, structured: bool | None = None
) -> LlmRequest:
    """The chat request for one report: shared-prefix messages and the generation schema with
    ``config.bounds`` fitted to the report's length (compacted on the retry). ``structured``
    overrides ``config.structured_outputs`` (the benchmark's free-text run)."""
    text, report_type, language = rep
    bounds = config.bounds.fit(len(text))
    if retry:
        bounds = bounds.compact()
    use_schema = config.structured_outputs if structured is None else structured
    schema = generation_schema(report_type, language, bounds) if use_schema else None
    return LlmRequest(tuple(build_messages(text, report_type, language)), schema, config.max_tokens)


def _run_sync(coro):
    """Run a coroutine to completion from sync code, also when a loop already runs here."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


class LlmStructurer:
    """Worker-style structurer: ``setup()`` once, then ``self(reports) -> list[dict]`` per batch.

    ``rules_fn(text, report_type, language) -> dict`` defaults to the rule path
    ``workers.report.rules`` (its batch form ``structure_many`` when present), imported on setup.
    In offline mode ``setup()`` starts the vLLM worker process and keeps it until ``close()``.
    """

    def __init__(self, config: LlmConfig, rules_fn: RulesFn | None = None) -> None:
        self.config = config
        self._rules_batch: RulesBatchFn | None = None
        if rules_fn is not None:
            self._rules_batch = lambda texts, types, langs: [
                rules_fn(t, rt, lang) for t, rt, lang in zip(texts, types, langs, strict=True)
            ]
        self.cache = LlmCache(config.cache_dir) if config.cache_dir else None
        self.stats = StructurerStats()
        self.model_id = config.resolved_model_id()
        self.prompt_id = config.resolved_prompt_id()
        self._engine = None
        self._normalise_type: Callable[[str], str] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def setup(self) -> LlmStructurer:
        if self._rules_batch is None:
            self._rules_batch = _load_rules()
        if self._normalise_type is None:
            self._normalise_type = _load_type_normaliser()
        if self.config.mode == "offline" and self._engine is None:
            from workers.llm.offline import OfflineEngine

            self._engine = OfflineEngine(self.config)
        return self

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __enter__(self) -> LlmStructurer:
        return self.setup()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- main --------------------------------------------------------------------------------

    def __call__(self, reports: list[ReportIn]) -> list[dict]:
        """Structure ``reports``; results in input order (see :func:`structure_reports`)."""
        self.setup()
        assert self._normalise_type is not None
        reports = [(text, self._normalise_type(rt), lang) for text, rt, lang in reports]
        keys = [
            cache_key(t, rt, lang, self.config.schema_version, self.prompt_id, self.model_id)
            for t, rt, lang in reports
        ]
        outcomes: dict[str, tuple[dict, bool]] = {}  # key -> (cache entry, was a cache hit)
        todo: dict[str, ReportIn] = {}
        hits = misses = 0
        for key, rep in zip(keys, reports, strict=True):
            if key in outcomes or key in todo:
                continue
            entry = self.cache.get(key) if self.cache else None
            if entry is not None:
                outcomes[key] = (entry, True)
                hits += 1
            else:
                todo[key] = rep
                misses += 1
        if todo:
            fresh = self._ask_llm(todo)  # raises LlmShardError: nothing below runs, nothing returned
            outcomes.update({k: (v, False) for k, v in fresh.items()})
        assert self._rules_batch is not None
        rules = self._rules_batch(*(list(col) for col in zip(*reports, strict=True))) if reports else []
        results = [self._result(key, rule, *outcomes[key]) for key, rule in zip(keys, rules, strict=True)]
        self._count(results, hits, misses)
        return results

    def _ask_llm(self, todo: dict[str, ReportIn]) -> dict[str, dict]:
        if self.config.mode == "server":
            return _run_sync(self._ask_server(todo))
        return self._ask_offline(todo)

    def _request(self, rep: ReportIn, retry: bool = False) -> LlmRequest:
        return build_request(rep, self.config, retry=retry)

    def _entry(self, rep: ReportIn, completions: list[Completion]) -> dict:
        """The cache entry of one report from its (one or two) answers."""
        reasons: list[str] = []
        report = None
        for c in completions:
            report, why = validate_output(c, rep[1], rep[2])
            if report is not None:
                break
            reasons.extend(why)
        return {
            "llm": report,
            "attempts": len(completions),
            "invalid_reasons": reasons,
            "completion_tokens": sum(c.completion_tokens for c in completions),
            "prompt_tokens": sum(c.prompt_tokens for c in completions),
            "model_id": self.model_id,
            "prompt_id": self.prompt_id,
            "schema_version": self.config.schema_version,
        }

    def _needs_retry(self, completion: Completion, rep: ReportIn) -> bool:
        if completion.text is None:  # rejected by the server: a retry would be rejected too
            return False
        return validate_output(completion, rep[1], rep[2])[0] is None

    async def _ask_server(self, todo: dict[str, ReportIn]) -> dict[str, dict]:
        from workers.llm.client import AsyncLlmClient, gather_fail_fast

        out: dict[str, dict] = {}

        async with AsyncLlmClient(self.config) as client:
            await client.check_ready()

            async def one(key: str, rep: ReportIn) -> None:
                first = await client.complete(self._request(rep))
                answers = [first]
                if self._needs_retry(first, rep):
                    answers.append(await client.complete(self._request(rep, retry=True)))
                entry = self._entry(rep, answers)
                if self.cache:
                    self.cache.put(key, entry)  # complete and validated: safe even if the shard fails
                out[key] = entry

            try:
                await gather_fail_fast([one(k, r) for k, r in todo.items()])
            finally:
                self.stats.requests += client.requests_sent
        return out

    def _ask_offline(self, todo: dict[str, ReportIn]) -> dict[str, dict]:
        """Batches of ``offline_batch_size``; each report's entry is cached as soon as it is final."""
        assert self._engine is not None
        out: dict[str, dict] = {}
        keys_all = list(todo)
        step = self.config.offline_batch_size
        for start in range(0, len(keys_all), step):
            keys = keys_all[start : start + step]
            first = self._engine.generate([self._request(todo[k]) for k in keys])
            self.stats.requests += len(keys)
            retry_keys = []
            for k, c in zip(keys, first, strict=True):
                if self._needs_retry(c, todo[k]):
                    retry_keys.append(k)
                else:
                    out[k] = self._entry(todo[k], [c])
                    if self.cache:
                        self.cache.put(k, out[k])
            second = self._engine.generate([self._request(todo[k], retry=True) for k in retry_keys])
            self.stats.requests += len(retry_keys)
            answers = dict(zip(keys, first, strict=True))
            for k, c in zip(retry_keys, second, strict=True):
                out[k] = self._entry(todo[k], [answers[k], c])
                if self.cache:
                    self.cache.put(k, out[k])
        return out

    def _result(self, key: str, rules: dict, entry: dict, hit: bool) -> dict:
        rule_errors = list(_validator().iter_errors(rules))
        if rule_errors:  # the rule path must satisfy the same schema: a bug, not bad input
            raise RuntimeError(f"rule path output violates the report schema ({rule_errors[0].validator})")
        llm = copy.deepcopy(entry["llm"])  # duplicates of one text share an entry, not a dict
        return {
            "report": llm if llm is not None else rules,
            "structurer": "llm" if llm is not None else "rules",
            "llm_fallback": llm is None,
            "llm": llm,
            "rules": rules,
            "disagreement": disagreement(llm, rules) if llm is not None else None,
            "llm_meta": {
                "cache_key": key,
                "cache_hit": hit,
                "model_id": entry["model_id"],
                "prompt_id": entry["prompt_id"],
                "schema_version": entry["schema_version"],
                "attempts": entry["attempts"],
                "invalid_reasons": entry["invalid_reasons"],
                "completion_tokens": entry["completion_tokens"],
                "prompt_tokens": entry["prompt_tokens"],
            },
        }

    def _count(self, results: list[dict], hits: int, misses: int) -> None:
        s = self.stats
        s.reports += len(results)
        s.cache_hits += hits
        s.cache_misses += misses
        for r in results:
            meta = r["llm_meta"]
            if r["llm_fallback"]:
                s.fallback += 1
            elif meta["attempts"] == 1:
                s.valid_first += 1
            else:
                s.valid_retry += 1
            if not meta["cache_hit"]:
                s.completion_tokens += meta["completion_tokens"]
                s.prompt_tokens += meta["prompt_tokens"]
            for reason in meta["invalid_reasons"]:
                s.invalid_reasons[reason] = s.invalid_reasons.get(reason, 0) + 1


def structure_reports(texts: list[ReportIn], config: LlmConfig) -> list[dict]:
    """Structure reports with vLLM (``config.mode``); one dict per report, in input order.

    ``texts``: ``(text, report_type, language)`` with de-identified text, ``report_type`` in
    radiology | cardiology | other (synonyms such as ``ecg`` are normalised as the rule path
    does). Each result has:

    * ``report``: the schema-valid structured report to store/score (the LLM's, or the rule
      path's when ``llm_fallback``);
    * ``structurer``: ``"llm"`` or ``"rules"``; ``llm_fallback``: bool;
    * ``llm`` (dict or None) and ``rules`` (dict): both structured forms, side by side;
    * ``disagreement``: :func:`disagreement` of the two (None on fallback);
    * ``llm_meta``: cache key/hit, model id, prompt id, schema version, attempts, PHI-free
      invalid reasons, prompt and output tokens.

    Raises :class:`~workers.llm.config.LlmShardError` (server down, worker died): fail the shard.
    """
    with LlmStructurer(config) as structurer:
        return structurer(texts)
