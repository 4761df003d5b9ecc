"""``caption.llm_rewrite`` in a CheXpert lookalike build, through the real CPU vLLM server.

The tiny model has random weights: its rewrites are schema-valid JSON (structured outputs) but
nonsense, so the guard must reject them and keep the template text; whatever it accepts must
pass the guard. The rerun must be answered by the sidecar cache alone (vLLM's own request
counter does not move) and give byte-identical outputs.
"""

from __future__ import annotations

import json

import pytest
import yaml

from pipelines import caption_guard as guard
from pipelines.build import run_build
from pipelines.captions import Caption, guard_spec
from pipelines.config import CaptionConfig, config_from_dict
from pipelines.datacard import write_datacard
from pipelines.validate import validate_build
from tests.pipelines.test_captions import CONFIG, write_lookalike
from tests.pipelines.test_captions_llm import captions_of, output_bytes, rewrite_config, samples
from tests.workers.llm.test_vllm_cpu import _successful_requests
from workers.llm.rewrite import REWRITE_PROMPT_VERSION

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

REASONS = {guard.MISSING, guard.ADDED, guard.CHANGED, "json", "schema", "truncated,json", "truncated,schema"}


def test_caption_rewrite_build_through_vllm(vllm_server, shared_data, tmp_path) -> None:
    src = write_lookalike(tmp_path / "in", shared_data)
    plain = tmp_path / "plain"
    run_build(src, plain, config_from_dict(rewrite_config(None, None)), quiet=True)
    llm = {
        "mode": "server",
        "base_url": vllm_server.spec.base_url,
        "model": vllm_server.spec.name,
        "cache_dir": str(tmp_path / "llm-cache"),
        "max_in_flight": 8,
    }
    before = _successful_requests(vllm_server)
    out = tmp_path / "rewrite"
    run_build(src, out, config_from_dict(rewrite_config(llm, True)), quiet=True)
    served = _successful_requests(vllm_server) - before
    assert validate_build(out).ok
    ref, got = samples(plain), samples(out)
    assert sorted(ref) == sorted(got)
    templates = {text for s in ref.values() for _, text, _ in captions_of(s)}
    assert served == len(templates) == 5  # one request per distinct template caption
    cfg = CaptionConfig(**yaml.safe_load(CONFIG)["tables"][0]["caption"])
    vocab = guard.Vocabulary.of(cfg)
    states: dict[str, int] = {}
    for key, s in got.items():
        for (g, text, js), (_, text0, js0) in zip(captions_of(s), captions_of(ref[key]), strict=True):
            assert js == js0  # the structured report stays label-derived
            assert g["llm_prompt_id"].startswith(REWRITE_PROMPT_VERSION + "+")
            assert g["llm_model_id"] == "tiny-llm"
            if g["llm_rewrite"] is True:
                cap = Caption(
                    text0, g["template"], *(tuple(g[k]) for k in ("positive", "uncertain", "negative"))
                )
                want, optional, normal = guard_spec(cap, cfg)
                assert guard.check(text, want, vocab, optional, normal) == ""
            else:
                assert g["llm_rewrite"] == "rejected" and text == text0
                assert g["llm_reject_reason"] in REASONS, g["llm_reject_reason"]
            states[str(g["llm_rewrite"])] = states.get(str(g["llm_rewrite"]), 0) + 1
    print(f"\ntiny-model rewrites: {states}")
    for f in sorted((tmp_path / "llm-cache").glob("*/*.json")):
        entry = json.loads(f.read_text(encoding="utf-8"))
        print(" ", repr((entry["text"] or "")[:72]), entry["reasons"])
    assert sum(states.values()) == 5
    card = json.loads(write_datacard(out).json_path.read_text())["generated_text"]["llm_rewrite"]
    assert card["rewritten"] == states.get("True", 0) and card["rejected"] == states.get("rejected", 0)

    # a rerun (fresh output folder, the same sidecar cache) sends vLLM nothing
    before = _successful_requests(vllm_server)
    again = tmp_path / "again"
    run_build(src, again, config_from_dict(rewrite_config(llm, True)), quiet=True)
    assert _successful_requests(vllm_server) == before
    assert output_bytes(again) == output_bytes(out)
