"""The LLM report-structuring stage (sources with ``report.structurer: llm``).

Runs after decode: report records of those sources are restructured in batches by
``workers.llm_structurer.LlmStructurer`` (vLLM server over the OpenAI API, or an offline vLLM
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

from tqdm import tqdm

from pipelines.errors import UserError
from schemas.records import ItemRecord, ReportRecord

log = logging.getLogger(__name__)

BATCH = 256
#: LLM metadata kept in the sample (excludes run-dependent fields such as cache hits)
STABLE_META = ("model_id", "prompt_id", "schema_version", "attempts", "invalid_reasons")


def _dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _llm_config(options: dict, out_dir: Path):
    from workers.llm_config import LlmConfig

    opts = dict(options)
    opts.setdefault("cache_dir", str(out_dir / "cache" / "llm"))
    try:
        return LlmConfig.from_mapping(opts)
    except (TypeError, ValueError) as exc:
        raise UserError(f"llm: {exc}") from None


def apply_llm(
    records: list[ItemRecord], llm_sources: set[str], options: dict, out_dir: Path, quiet: bool
) -> list[ItemRecord]:
    """Restructure the reports of ``llm_sources`` with the LLM; other records pass unchanged."""
    idx = [i for i, r in enumerate(records) if isinstance(r, ReportRecord) and r.source_name in llm_sources]
    if not idx:
        return records
    from workers.llm_structurer import LlmStructurer

    cfg = _llm_config(options, out_dir)
    out = list(records)
    fallbacks = 0
    with LlmStructurer(cfg) as structurer:
        for s in tqdm(range(0, len(idx), BATCH), desc="llm", disable=quiet, leave=False):
            chunk = [records[i] for i in idx[s : s + BATCH]]
            results = structurer([(r.text, r.report_type, r.language) for r in chunk])
            for i, rec, res in zip(idx[s : s + BATCH], chunk, results, strict=True):
                report_json = _dumps(res["report"])
                meta = json.loads(rec.meta_json) if rec.meta_json else {}
                meta["llm"] = {
                    "structurer": res["structurer"],
                    "fallback": res["llm_fallback"],
                    "rules": res["rules"],
                    "disagreement": res["disagreement"],
                    **{k: res["llm_meta"][k] for k in STABLE_META},
                }
                fallbacks += res["llm_fallback"]
                payload = tuple(
                    (suf, report_json.encode() if suf == "json" else data) for suf, data in rec.payload
                )
                out[i] = replace(rec, structured_json=report_json, meta_json=_dumps(meta), payload=payload)
    log.info("llm stage: %d reports, %d fell back to rules", len(idx), fallbacks)
    return out
