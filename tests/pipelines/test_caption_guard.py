"""The guard on LLM-rewritten captions (``pipelines.caption_guard``), on real caption strings."""

from __future__ import annotations

import itertools

import pytest

from pipelines import caption_guard as guard
from pipelines.captions import guard_spec, make_caption
from pipelines.config import CaptionConfig
from workers.llm.cache import cache_key, rewrite_key
from workers.llm.config import Completion, LlmConfig
from workers.llm.rewrite import max_chars, parse_answer, rewrite_prompt_id, rewrite_schema

CHEX = CaptionConfig()  # the CheXpert defaults: 14 findings, "possible X", "no X"
VOCAB = guard.Vocabulary.of(CHEX)
# the template caption "Findings: cardiomegaly, possible edema and no pneumothorax."
WANT = guard.expected(("Cardiomegaly",), ("Edema",), ("Pneumothorax",))


def _judge(text: str, cap, cfg: CaptionConfig, vocab: guard.Vocabulary) -> str:
    """The guard's verdict on ``text`` as a rewrite of caption ``cap`` (as the build asks it)."""
    want, optional, normal = guard_spec(cap, cfg)
    return guard.check(text, want, vocab, optional, normal)


@pytest.mark.parametrize(
    "text",
    [
        "Findings: cardiomegaly, possible edema and no pneumothorax.",
        "Cardiomegaly is present, edema cannot be excluded, and there is no pneumothorax.",
        "The radiograph demonstrates cardiomegaly with possible edema; no pneumothorax is seen.",
        "There is cardiomegaly. Edema may be present. Pneumothorax is absent.",
        "Cardiomegaly and probable edema, without pneumothorax.",
        "No pneumothorax. Cardiomegaly with suspected edema.",
    ],
)
def test_faithful_rewrites_pass(text: str) -> None:
    assert guard.check(text, WANT, VOCAB) == ""


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Possible edema without pneumothorax.", guard.MISSING),  # cardiomegaly dropped
        ("Cardiomegaly and possible edema.", guard.MISSING),  # the negative dropped
        ("Cardiomegaly with possible edema and a small pleural effusion; no pneumothorax.", guard.ADDED),
        ("Cardiomegaly, possible edema and no pneumothorax; lung opacity.", guard.ADDED),
        ("Cardiomegaly, possible edema and no pneumothorax. No finding.", guard.ADDED),
        ("No cardiomegaly, possible edema or pneumothorax.", guard.CHANGED),  # positive negated
        ("Cardiomegaly, possible edema and pneumothorax.", guard.CHANGED),  # negation word lost
        ("Cardiomegaly and edema, no pneumothorax.", guard.CHANGED),  # hedge lost
        ("Possible cardiomegaly and edema; no pneumothorax.", guard.CHANGED),  # positive hedged
        ("Cardiomegaly, no edema and no pneumothorax.", guard.CHANGED),  # uncertain negated
        ("", guard.MISSING),
        ("lorem ipsum dolor sit amet", guard.MISSING),
    ],
)
def test_unfaithful_rewrites_are_rejected_with_a_reason(text: str, reason: str) -> None:
    assert guard.check(text, WANT, VOCAB) == reason


def test_names_match_whole_words_longest_first() -> None:
    cfg = CaptionConfig(labels=("Effusion", "Pleural Effusion", "Edema"), names={"Effusion": "effusion"})
    vocab = guard.Vocabulary.of(cfg)
    assert guard.mentions("Small pleural-effusion, no edema.", vocab) == [
        ("Pleural Effusion", guard.PRESENT),
        ("Edema", guard.NEGATED),
    ]
    assert guard.mentions("Oedematous change; effusions.", vocab) == []  # no partial words
    assert guard.mentions("No edema, pleural effusion or effusion.", vocab) == [
        ("Edema", guard.NEGATED),
        ("Pleural Effusion", guard.NEGATED),
        ("Effusion", guard.NEGATED),
    ]


def test_every_template_caption_passes_its_own_guard() -> None:
    """All label states of four findings under the default templates: the guard never rejects a
    template (a rejection then keeps a text that is correct by construction)."""
    labels = ("Cardiomegaly", "Pleural Effusion", "Edema", "Support Devices")
    cfg = CaptionConfig(labels=labels, templates=(*CHEX.templates, "Chest radiograph showing {findings}."))
    vocab = guard.Vocabulary.of(cfg)
    n = 0
    for states in itertools.product(("1.0", "-1.0", "0.0", ""), repeat=len(labels)):
        for key in ("a", "b", "c"):
            cap = make_caption(dict(zip(labels, states, strict=True)), cfg, key)
            if cap is None:
                continue
            assert _judge(cap.text, cap, cfg, vocab) == "", cap.text
            n += 1
    assert n > 500


def test_configured_phrases_are_cues() -> None:
    cfg = CaptionConfig(
        labels=("Cardiomegaly", "Edema", "Pneumothorax"),
        templates=("{findings}.",),
        uncertain_phrase="{label} not excluded",
        negative_phrase="absence of {label}",
    )
    vocab = guard.Vocabulary.of(cfg)
    cap = make_caption({"Cardiomegaly": "1", "Edema": "-1", "Pneumothorax": "0"}, cfg, "k")
    assert cap is not None and cap.text == "Cardiomegaly, edema not excluded and absence of pneumothorax."
    want = guard.expected(cap.positive, cap.uncertain, cap.negative)
    assert guard.check(cap.text, want, vocab) == ""
    assert guard.check("Cardiomegaly; edema not excluded; pneumothorax.", want, vocab) == guard.CHANGED


def test_no_finding_caption_may_keep_or_drop_its_no_finding_name() -> None:
    cap = make_caption({"Edema": "0.0", "Pneumothorax": "0.0"}, CHEX, "k")
    assert cap is not None and cap.text == "No finding. No edema and no pneumothorax."
    want, optional, normal = guard_spec(cap, CHEX)
    assert optional == {"No Finding": guard.PRESENT} and normal == "No Finding"
    assert guard.check(cap.text, want, VOCAB, optional, normal) == ""
    assert guard.check("No acute abnormality; no edema or pneumothorax.", want, VOCAB, optional, normal) == ""
    assert guard.check("No edema or pneumothorax; lungs unremarkable.", want, VOCAB, optional, normal) == ""
    assert (
        guard.check("No finding; mild edema, no pneumothorax.", want, VOCAB, optional, normal)
        == guard.CHANGED
    )
    assert guard.check("No finding. No edema and no pneumothorax.", want, VOCAB) == guard.ADDED
    # with nothing else to name, the normal statement itself must stay
    nf = make_caption({"No Finding": "1.0"}, CHEX, "k")
    assert nf is not None and nf.text == "No finding."
    assert _judge("No finding.", nf, CHEX, VOCAB) == ""
    assert _judge("Normal chest radiograph.", nf, CHEX, VOCAB) == ""
    assert _judge("lorem ipsum dolor", nf, CHEX, VOCAB) == guard.MISSING
    assert _judge("Abnormal study.", nf, CHEX, VOCAB) == guard.MISSING


def test_rewrite_prompt_schema_and_answers() -> None:
    cfg = LlmConfig(model="m", max_tokens=2048)
    pid = rewrite_prompt_id(cfg)
    assert pid.startswith("caption-rewrite-v1+") and pid == rewrite_prompt_id(LlmConfig(model="other"))
    assert pid != rewrite_prompt_id(LlmConfig(model="m", seed=1))
    assert pid != rewrite_prompt_id(LlmConfig(model="m", max_tokens=100))  # bounds the answer
    text = "Findings: cardiomegaly, possible edema and no pneumothorax."
    assert rewrite_schema(text)["properties"]["text"]["maxLength"] == max_chars(text) == 128
    assert max_chars("x" * 5000) == 1024
    # the key: template text, prompt id, model id (and never a structurer key)
    k = rewrite_key(text, pid, "m")
    assert k != rewrite_key(text + " ", pid, "m") and k != rewrite_key(text, pid, "m2")
    assert k != rewrite_key(text, "caption-rewrite-v2+x", "m")
    assert k != cache_key(text, "radiology", "en", "x", pid, "m")
    ok = Completion('{"text": "Cardiomegaly,\\n possible edema."}', "stop")
    assert parse_answer(ok, text) == ("Cardiomegaly, possible edema.", [])
    assert parse_answer(Completion(None, "rejected", error="http_400"), text) == (None, ["rejected:http_400"])
    assert parse_answer(Completion('{"text": "abc', "length"), text) == (None, ["truncated", "json"])
    assert parse_answer(Completion('{"text": "  "}', "stop"), text) == (None, ["schema"])
    assert parse_answer(Completion('{"text": "a", "x": 1}', "stop"), text) == (None, ["schema"])
    assert parse_answer(Completion('["a"]', "stop"), text) == (None, ["schema"])


def test_findings_of_the_report_vocabulary_outside_the_labels_count_as_added() -> None:
    cfg = CaptionConfig(labels=("Cardiomegaly", "Edema"), templates=("{findings}.",))
    vocab = guard.Vocabulary.of(cfg)
    want = guard.expected(("Cardiomegaly",), ("Edema",), ())
    assert guard.check("Cardiomegaly and possible edema.", want, vocab) == ""
    for extra in ("a small pleural effusion", "a nodule", "a central line", "no pneumothorax"):
        assert guard.check(f"Cardiomegaly and possible edema with {extra}.", want, vocab) == guard.ADDED
    # a label named otherwise is still the same finding, not an added one
    named = CaptionConfig(labels=("Cardiomegaly",), names={"Cardiomegaly": "enlarged heart"})
    nv = guard.Vocabulary.of(named)
    assert guard.check("Enlarged heart (cardiomegaly).", guard.expected(("Cardiomegaly",), (), ()), nv) == ""
    ecg = guard.Vocabulary.of(CaptionConfig(labels=("Atrial Fibrillation",), report_type="cardiology"))
    af = guard.expected(("Atrial Fibrillation",), (), ())
    assert guard.check("Atrial fibrillation with left axis deviation.", af, ecg) == guard.ADDED
