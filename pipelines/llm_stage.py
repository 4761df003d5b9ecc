"""The LLM report-structuring stage (sources with ``report.structurer: llm``).

Runs after decode: report records of those sources are restructured in batches by
``workers.llm.structurer.LlmStructurer`` (vLLM server over the OpenAI API, or an offline vLLM
worker process). The schema-valid result replaces the record's structured JSON (payload
``json`` too); the rule result, the LLM-vs-rules disagreement and a deterministic subset of the
LLM metadata go into ``meta_json["llm"]`` side by side. A server that is down raises
``LlmShardError``: the build fails before any shard is written, and a rerun resumes (finished
answers are in the LLM cache sidecar, decoded items in the decode cache).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from pipelines.errors import UserError
from schemas.canonical import canonical_json
from schemas.records import ReportRecord

log = logging.getLogger(__name__)

BATCH = 256
#: LLM metadata kept in the sample (excludes run-dependent fields such as cache hits)
STABLE_META = ("model_id", "prompt_id", "schema_version", "attempts", "invalid_reasons")


def _llm_config(options: dict, out_dir: Path):
    from workers.llm.config import LlmConfig

    opts = dict(options)
    opts.setdefault("cache_dir", str(out_dir / "cache" / "llm"))
    try:
        return LlmConfig.from_mapping(opts)
    except (TypeError, ValueError) as exc:
        raise UserError(f"llm: {exc}") from None


def restructure(structurer, chunk: list[ReportRecord]) -> list[ReportRecord]:
    """One batch of report records (with payload) through the LLM; records with the new JSON."""
    results = structurer([(r.text, r.report_type, r.language) for r in chunk])
    out = []
    for rec, res in zip(chunk, results, strict=True):
        report_json = canonical_json(res["report"])
        meta = json.loads(rec.meta_json) if rec.meta_json else {}
        meta["llm"] = {
            "structurer": res["structurer"],
            "fallback": res["llm_fallback"],
            "rules": res["rules"],
            "disagreement": res["disagreement"],
            **{k: res["llm_meta"][k] for k in STABLE_META},
        }
        if res["llm_fallback"]:
            log.info("llm stage: a report fell back to the rule structurer")
        payload = tuple((suf, report_json.encode() if suf == "json" else data) for suf, data in rec.payload)
        out.append(
            replace(
                rec,
                structured_json=report_json,
                meta_json=canonical_json(meta),
                payload=payload,
                payload_refs=(),
            )
        )
    return out
