"""LLM structurer parts that need no vLLM: prompt/schema, cache, client semantics, fallback.

The client is exercised over real HTTP (the ``openai`` SDK + httpx) against a small scripted
OpenAI-compatible endpoint on 127.0.0.1, which stands in for the *server* so that transient
errors, rejections and concurrency can be provoked on purpose; the client, cache, validation
and fallback logic under test are the real ones. Fallbacks run the real rule path.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import pytest

from schemas.labels import CXR_LABELS, ECG_LABELS
from schemas.report_schema import REPORT_JSON_SCHEMA, REPORT_SCHEMA_VERSION, SECTION_NAMES
from workers.llm.cache import LlmCache, cache_key
from workers.llm.client import AsyncLlmClient, gather_fail_fast
from workers.llm.config import Completion, LlmConfig, LlmRequest, LlmServerUnavailable
from workers.llm.prompt import GenerationBounds, build_messages, generation_schema, prompt_id
from workers.llm.server import free_port
from workers.llm.structurer import LlmStructurer, disagreement, validate_output

VALIDATOR = jsonschema.Draft202012Validator(REPORT_JSON_SCHEMA)

# -- prompt and generation schema -----------------------------------------------------------


def test_messages_share_the_system_prefix():
    a = build_messages("sinusrhythmus lagetyp normal", "cardiology", "de")
    b = build_messages("Heart size normal. No effusion.", "radiology", "en")
    assert a[0] == b[0] and a[0]["role"] == "system"
    assert "sinusrhythmus lagetyp normal" in a[1]["content"] and "radiology" in b[1]["content"]
    for label in (*CXR_LABELS, *ECG_LABELS):
        assert label in a[0]["content"]
    with pytest.raises(ValueError):
        build_messages("x", "pathology", "en")


@pytest.mark.parametrize("report_type", ["radiology", "cardiology", "other"])
def test_generation_schema_narrows_the_report_schema(report_type):
    bounds = GenerationBounds(max_section_chars=300, max_findings=7, max_evidence_chars=500)
    gen = generation_schema(report_type, "de", bounds)
    jsonschema.Draft202012Validator.check_schema(gen)
    props, base = gen["properties"], REPORT_JSON_SCHEMA["properties"]
    assert gen["required"] == REPORT_JSON_SCHEMA["required"] and gen["additionalProperties"] is False
    assert props["report_type"]["enum"] == [report_type]
    assert props["language"]["enum"] == ["de"]
    assert props["schema_version"] == base["schema_version"]
    assert set(props["sections"]["properties"]) == set(SECTION_NAMES)
    assert all(p["maxLength"] == 300 for p in props["sections"]["properties"].values())
    assert props["findings"]["maxItems"] == 7
    item, base_item = props["findings"]["items"]["properties"], base["findings"]["items"]["properties"]
    assert set(item["label"]["enum"]) <= set(base_item["label"]["enum"])
    assert item["label"]["enum"] == list(
        {"radiology": CXR_LABELS, "cardiology": ECG_LABELS}.get(report_type, item["label"]["enum"])
    )
    assert item["assertion"] == base_item["assertion"] and item["section"] == base_item["section"]
    assert item["evidence"]["maxLength"] == 200  # never above the report schema's own bound
    # an instance at the generation bounds is valid under both schemas
    instance = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "report_type": report_type,
        "language": "de",
        "sections": {name: "ü" * 300 for name in SECTION_NAMES},
        "findings": [{"label": item["label"]["enum"][0], "assertion": "negated", "evidence": "x" * 200}] * 7,
        "normal": False,
    }
    jsonschema.validate(instance, gen)
    jsonschema.validate(instance, REPORT_JSON_SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**instance, "findings": instance["findings"] * 2}, gen)


def test_prompt_id_tracks_everything_that_shapes_outputs():
    base = prompt_id(GenerationBounds(), {"temperature": 0.0, "max_tokens": 100})
    assert base == prompt_id(GenerationBounds(), {"temperature": 0.0, "max_tokens": 100})
    assert base != prompt_id(GenerationBounds(max_findings=5), {"temperature": 0.0, "max_tokens": 100})
    assert base != prompt_id(GenerationBounds(), {"temperature": 0.0, "max_tokens": 101})
    assert base.startswith("report-structurer-v")


def test_config_validates_and_fingerprints_local_models(tmp_path):
    with pytest.raises(ValueError):
        LlmConfig(mode="batch", model="m")
    with pytest.raises(ValueError):
        LlmConfig(model="")
    with pytest.raises(ValueError):
        LlmConfig(model="m", schema_version="0.9")
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 128}')
    (model / "model.safetensors").write_bytes(b"\0" * 10)
    first = LlmConfig(model=str(model)).resolved_model_id()
    (model / "config.json").write_text('{"hidden_size": 256}')
    assert LlmConfig(model=str(model)).resolved_model_id() != first
    assert LlmConfig(model="served-name").resolved_model_id() == "served-name"
    assert LlmConfig(model=str(model), model_id="pinned").resolved_model_id() == "pinned"


# -- cache ----------------------------------------------------------------------------------


def test_cache_key_covers_every_component_and_entries_are_atomic(tmp_path):
    args = ("Herz normal gross.", "radiology", "de", "1.0", "p1", "m1")
    key = cache_key(*args)
    for i, other in enumerate(("Herz normal groß.", "cardiology", "en", "1.1", "p2", "m2")):
        changed = list(args)
        changed[i] = other
        assert cache_key(*changed) != key
    cache = LlmCache(tmp_path)
    assert cache.get(key) is None
    entry = {"llm": None, "invalid_reasons": ["json"], "attempts": 2, "z": "ä"}
    cache.put(key, entry)
    first_bytes = cache.path(key).read_bytes()
    cache.put(key, dict(reversed(list(entry.items()))))
    assert cache.path(key).read_bytes() == first_bytes  # canonical, deterministic
    assert cache.get(key) == entry and (cache.hits, cache.misses) == (1, 1)
    assert not list(tmp_path.glob("*/*.tmp-*")) and cache.keys() == [key]
    cache.path(key).write_text('{"llm": ')  # a corrupt entry is a miss, not a crash
    assert cache.get(key) is None


# -- validation and disagreement ----------------------------------------------------------------


def _valid(report_type="cardiology", language="de", findings=()) -> dict:
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "report_type": report_type,
        "language": language,
        "sections": {"findings": "sinusrhythmus"},
        "findings": list(findings),
        "normal": False,
    }


def test_validate_output_reasons_are_phi_free():
    secret = "Patient Erika Mustermann"
    ok, why = validate_output(Completion(json.dumps(_valid()), "stop"), "cardiology", "de")
    assert ok == _valid() and why == []
    bad = _valid(findings=[{"label": secret, "assertion": "present"}])
    ok, why = validate_output(Completion(json.dumps(bad), "stop"), "cardiology", "de")
    assert ok is None and why == ["schema:enum@findings/0/label"]
    assert not any(secret in w for w in why)
    assert validate_output(Completion('{"schema_version": "1.0", "sec', "length"), "cardiology", "de")[1] == [
        "truncated",
        "json",
    ]
    assert validate_output(Completion(json.dumps(_valid()), "stop"), "radiology", "de")[1] == [
        "mismatch:report_type"
    ]
    assert validate_output(Completion(None, "rejected", error="http_400"), "cardiology", "de")[1] == [
        "rejected:http_400"
    ]


def test_disagreement_compares_label_assertion_sets():
    llm = _valid(
        findings=[
            {"label": "sinus_rhythm", "assertion": "present"},
            {"label": "ischemia", "assertion": "negated"},
        ]
    )
    rules = _valid(
        findings=[
            {"label": "sinus_rhythm", "assertion": "present"},
            {"label": "ischemia", "assertion": "present"},
        ]
    )
    d = disagreement(llm, rules)
    assert d == {
        "llm_only": ["ischemia:negated"],
        "rules_only": ["ischemia:present"],
        "shared": 1,
        "jaccard": round(1 / 3, 6),
        "present_agree": False,
        "normal_agree": True,
    }
    assert disagreement(_valid(), _valid())["jaccard"] == 1.0


# -- client semantics over real HTTP ------------------------------------------------------------


class ScriptedEndpoint:
    """A scripted OpenAI-compatible endpoint: ``answer(body) -> (status, content, finish_reason)``."""

    def __init__(self, answer, delay_s: float = 0.0) -> None:
        self.answer = answer
        self.delay_s = delay_s
        self.bodies: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(
                    200,
                    {
                        "object": "list",
                        "data": [{"id": "stub", "object": "model", "created": 0, "owned_by": "t"}],
                    },
                )

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint._lock:
                    endpoint.bodies.append(body)
                    endpoint.in_flight += 1
                    endpoint.max_in_flight = max(endpoint.max_in_flight, endpoint.in_flight)
                time.sleep(endpoint.delay_s)
                status, content, finish = endpoint.answer(body)
                with endpoint._lock:
                    endpoint.in_flight -= 1
                if status != 200:
                    self._send(status, {"error": {"message": "scripted", "type": "x", "code": status}})
                    return
                self._send(
                    200,
                    {
                        "id": "c",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "stub",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": finish,
                            }
                        ],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


def _cfg(base_url: str, **kw) -> LlmConfig:
    return LlmConfig(base_url=base_url, model="stub", retries=2, backoff_s=0.01, backoff_max_s=0.05, **kw)


def _request() -> LlmRequest:
    return LlmRequest(tuple(build_messages("sinusrhythmus", "cardiology", "de")), {"type": "object"}, 64)


async def _complete_all(cfg: LlmConfig, n: int) -> tuple[list[Completion], int]:
    async with AsyncLlmClient(cfg) as client:
        out = await client.complete_all([_request() for _ in range(n)])
        return out, client.retries_done


def test_client_retries_transient_errors_with_backoff():
    calls = iter([503, 502, 200])
    with ScriptedEndpoint(lambda body: (next(calls), "{}", "stop")) as ep:
        (only,), retries = asyncio.run(_complete_all(_cfg(ep.base_url), 1))
    assert only == Completion("{}", "stop", 11, 7) and retries == 2
    body = ep.bodies[-1]
    assert body["temperature"] == 0.0 and body["structured_outputs"] == {"json": {"type": "object"}}
    assert "guided_json" not in body


def test_client_raises_shard_error_when_the_server_stays_down():
    with ScriptedEndpoint(lambda body: (503, "", "stop")) as ep:
        with pytest.raises(LlmServerUnavailable):
            asyncio.run(_complete_all(_cfg(ep.base_url), 4))
        assert len(ep.bodies) <= 4 * 3

    async def ready(cfg):
        async with AsyncLlmClient(cfg) as client:
            await client.check_ready()

    started = time.monotonic()
    with pytest.raises(LlmServerUnavailable):
        asyncio.run(ready(_cfg(f"http://127.0.0.1:{free_port()}/v1")))
    assert time.monotonic() - started < 10


def test_client_returns_rejections_and_bounds_in_flight_requests():
    with ScriptedEndpoint(lambda body: (400, "", "stop")) as ep:
        (only,), _ = asyncio.run(_complete_all(_cfg(ep.base_url), 1))
    assert only.text is None and only.finish_reason == "rejected" and only.error == "http_400"
    assert len(ep.bodies) == 1  # a rejection is not retried
    with ScriptedEndpoint(lambda body: (200, "{}", "stop"), delay_s=0.15) as ep:
        out, _ = asyncio.run(_complete_all(_cfg(ep.base_url, max_in_flight=3), 10))
    assert len(out) == 10 and ep.max_in_flight == 3


def test_gather_fail_fast_cancels_the_rest():
    cancelled = []

    async def slow():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def boom():
        await asyncio.sleep(0.01)
        raise LlmServerUnavailable("down")

    with pytest.raises(LlmServerUnavailable):
        asyncio.run(gather_fail_fast([slow(), boom(), slow()]))
    assert cancelled == [True, True]


# -- structurer: retry once, then the rule path with a flag ---------------------------------------


def test_invalid_output_is_retried_once_then_falls_back_to_rules(tmp_path):
    reports = [("sinusrhythmus. linkstyp. sonst normales ekg", "cardiology", "de")]
    with ScriptedEndpoint(lambda body: (200, '{"schema_version":"1.0","sections":{"fin', "length")) as ep:
        cfg = _cfg(ep.base_url, cache_dir=str(tmp_path))
        with LlmStructurer(cfg) as structurer:
            (res,) = structurer(reports)
            assert len(ep.bodies) == 2
            first, second = (b["structured_outputs"]["json"] for b in ep.bodies)
            assert second["properties"]["findings"]["maxItems"] < first["properties"]["findings"]["maxItems"]
            assert res["llm_fallback"] and res["structurer"] == "rules" and res["llm"] is None
            assert res["report"] == res["rules"] and not list(VALIDATOR.iter_errors(res["report"]))
            assert res["llm_meta"]["attempts"] == 2
            assert res["llm_meta"]["invalid_reasons"] == ["truncated", "json", "truncated", "json"]
            assert "sinus_rhythm" in {f["label"] for f in res["rules"]["findings"]}
            # the fallback is cached: a rebuild asks the model nothing
            (again,) = structurer(reports)
            assert len(ep.bodies) == 2 and again["llm_meta"]["cache_hit"] and again["report"] == res["report"]


def test_valid_output_is_kept_beside_the_rules(tmp_path):
    text = "sinusrhythmus. linkstyp. sonst normales ekg"
    llm = _valid(findings=[{"label": "atrial_fibrillation", "assertion": "present", "evidence": "x"}])
    with ScriptedEndpoint(lambda body: (200, json.dumps(llm), "stop")) as ep:
        (res,) = LlmStructurer(_cfg(ep.base_url))([(text, "cardiology", "de")])
    assert len(ep.bodies) == 1
    assert res["structurer"] == "llm" and not res["llm_fallback"] and res["report"] == llm == res["llm"]
    assert res["rules"] != llm and not list(VALIDATOR.iter_errors(res["rules"]))
    assert res["disagreement"] == disagreement(llm, res["rules"])
    assert "atrial_fibrillation:present" in res["disagreement"]["llm_only"]


def test_config_from_mapping_roundtrips_yaml_style_sections():
    cfg = LlmConfig.from_mapping(
        {"mode": "offline", "model": "/models/m", "bounds": {"max_findings": 5}, "tensor_parallel_size": 2}
    )
    assert cfg.bounds == GenerationBounds(max_findings=5) and cfg.tensor_parallel_size == 2
    assert LlmConfig.from_mapping(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="max_inflight"):
        LlmConfig.from_mapping({"model": "m", "max_inflight": 4})


def test_config_from_mapping_is_the_project_loader():
    """The ``llm:`` section goes through schemas.config_coerce like the rest of the build config:
    unknown keys (also nested) and wrong types are one-line errors naming the key."""
    from schemas.config_coerce import ConfigError

    with pytest.raises(
        ConfigError, match=r"^config llm.max_inflight: unknown key \(did you mean max_in_flight\?\)"
    ):
        LlmConfig.from_mapping({"model": "m", "max_inflight": 4})
    with pytest.raises(ConfigError, match=r"^config llm.bounds.max_finding: unknown key"):
        LlmConfig.from_mapping({"model": "m", "bounds": {"max_finding": 4}})
    with pytest.raises(ConfigError, match=r"^config llm.max_tokens: expected an integer, got '2048'"):
        LlmConfig.from_mapping({"model": "m", "max_tokens": "2048"})
    with pytest.raises(ConfigError, match=r"^config llm.structured_outputs: expected true/false"):
        LlmConfig.from_mapping({"model": "m", "structured_outputs": "no"})
    assert LlmConfig.from_mapping({"model": "m", "backoff_s": 1}).backoff_s == 1.0


def test_report_type_synonyms_are_normalised_like_the_rule_path(tmp_path):
    llm = _valid(report_type="cardiology")
    with ScriptedEndpoint(lambda body: (200, json.dumps(llm), "stop")) as ep:
        (res,) = LlmStructurer(_cfg(ep.base_url))([("sinusrhythmus", "ECG", "de")])
    assert ep.bodies[0]["structured_outputs"]["json"]["properties"]["report_type"]["enum"] == ["cardiology"]
    assert res["report"]["report_type"] == res["rules"]["report_type"] == "cardiology"


def test_bounds_fit_the_report_length():
    b = GenerationBounds()
    assert b.fit(10) == GenerationBounds(max_section_chars=64, max_findings=10, max_evidence_chars=64)
    assert b.fit(65) == GenerationBounds(max_section_chars=128, max_findings=21, max_evidence_chars=128)
    assert b.fit(100_000) == b  # never above the configured bounds
    assert b.fit(10).compact().max_findings < b.fit(10).max_findings
