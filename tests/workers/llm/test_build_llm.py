"""A corpus build whose report source uses the LLM structurer, through the real CPU vLLM server."""

from __future__ import annotations

import json
import shutil

import jsonschema
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from pipelines.build import run_build
from pipelines.config import config_from_dict
from pipelines.validate import validate_build
from schemas.report_schema import REPORT_JSON_SCHEMA

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]


def _cfg(server, struct: str) -> dict:
    return {
        "deid": {"demo": True},
        "sources": [
            {"name": "ecg", "path": "ecg", "licence": "CC-BY-4.0"},
            {
                "name": "reports",
                "path": "reports",
                "licence": "CC-BY-4.0",
                "report": {
                    "structurer": struct,
                    "columns": {
                        "report_id": "ecg_id",
                        "patient_id": "patient_id",
                        "study_id": "ecg_id",
                        "text": ["report"],
                        "report_type": "cardiology",
                    },
                },
            },
        ],
        "llm": {
            "mode": "server",
            "base_url": server.spec.base_url,
            "model": server.spec.name,
            "max_tokens": 1024,
            "max_in_flight": 8,
        },
        "strict": True,
    }


def test_llm_build_is_schema_valid_and_cached(vllm_server, examples_dir, tmp_path):
    inp = tmp_path / "in"
    shutil.copytree(examples_dir / "ecg", inp / "ecg")
    shutil.copytree(examples_dir / "reports", inp / "reports")
    out = tmp_path / "out"
    run_build(inp, out, config_from_dict(_cfg(vllm_server, "llm")), quiet=True)
    assert validate_build(out).ok
    n_reports = 0
    for sample in wds.WebDataset(
        sorted(str(p) for p in (out / "shards").rglob("*.tar")), shardshuffle=False, empty_check=False
    ):
        meta = json.loads(sample["meta.json"])
        for it in meta["items"]:
            if it["modality"] != "report":
                continue
            n_reports += 1
            report = json.loads(sample[f"{it['member_prefix']}.json"])
            jsonschema.validate(report, REPORT_JSON_SCHEMA)  # the same schema as the rule path
            llm = it["meta"]["llm"]
            assert llm["structurer"] in ("llm", "rules") and "rules" in llm and "disagreement" in llm
            jsonschema.validate(llm["rules"], REPORT_JSON_SCHEMA)
    assert n_reports == 40
    # an unchanged rebuild answers every report from the LLM cache: bytes identical, no new requests
    before = sorted(p.name for p in (out / "cache" / "llm").rglob("*.json"))
    shutil.rmtree(out / "cache" / "headers")
    run_build(inp, out, config_from_dict(_cfg(vllm_server, "llm")), quiet=True)
    assert sorted(p.name for p in (out / "cache" / "llm").rglob("*.json")) == before
    rules_out = tmp_path / "rules"
    run_build(inp, rules_out, config_from_dict(_cfg(vllm_server, "rules")), quiet=True)
    # the two paths give the same samples; only report JSON members may differ
    a = pq.read_table(out / "manifest.parquet").to_pylist()
    b = pq.read_table(rules_out / "manifest.parquet").to_pylist()
    assert [(r["key"], r["members"]) for r in a] == [(r["key"], r["members"]) for r in b]
