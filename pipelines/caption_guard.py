"""The guard on LLM-rewritten captions: a rewrite may change the words, never the findings.

A label-derived caption (``pipelines.captions``) names each finding of its label set in one of
three states: positive (``cardiomegaly``), uncertain (``possible edema``) or negated
(``no pneumothorax``). A rewrite (``workers.llm.rewrite``) is accepted only if

- it names every positive, uncertain and negated finding of the caption, by its configured name
  (``missing_finding``);
- it names no other finding of the label set, the no-finding label included, nor any other
  label of the structured-report vocabulary of the caption's report type
  (``schemas.labels``, e.g. ``pleural effusion``, ``nodule``, ``central line``)
  (``added_finding``);
- every mention keeps its state (``changed_assertion``): a positive is neither negated nor
  hedged, an uncertain one stays hedged, a negated one stays negated.

A no-finding caption's rewrite must also still state a normal study (the no-finding label's
name or a phrase of :data:`NORMAL`, ``missing_finding`` otherwise). Otherwise the template text is kept and the reason code is recorded. The analysis is a small
deterministic scanner, not NLP: text → lower-case word tokens (hyphens and commas are
separators) and clause breaks (``. ; : ! ?`` and the words in :data:`CLAUSE_WORDS`); finding
names are matched as whole token sequences, longest first, without overlaps; a mention's state
comes from a cue in :data:`POSTFIX` between it and the next mention, else from the nearest
prefix cue (:data:`NEGATION`, :data:`HEDGE`, and the configured ``uncertain_phrase`` /
``negative_phrase`` words) earlier in its clause, else it is positive. "No edema, pneumothorax
or fracture" negates all three; "Cardiomegaly and possible edema" is positive + uncertain.
Where the scanner cannot tell, it errs towards rejecting (a kept template is always correct).
A template that does not pass its own guard (exotic configured phrases) is never sent to the
model (``template_unguarded``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pipelines.config import CaptionConfig
from schemas.labels import ALL_LABELS, CXR_LABELS, ECG_LABELS

PRESENT, UNCERTAIN, NEGATED = "present", "uncertain", "negated"
#: reason codes of a rejected rewrite (besides the model-side ones: rejected:http_4xx, truncated, json)
MISSING, ADDED, CHANGED, UNGUARDED = (
    "missing_finding",
    "added_finding",
    "changed_assertion",
    "template_unguarded",
)

CLAUSE_WORDS = frozenset({"but", "however", "although", "though", "whereas", "while", "with"})
NEGATION: tuple[tuple[str, ...], ...] = (
    ("no",),
    ("not",),
    ("without",),
    ("negative", "for"),
    ("free", "of"),
    ("absence", "of"),
    ("nor",),
    ("neither",),
)
HEDGE: tuple[tuple[str, ...], ...] = (
    ("possible",),
    ("possibly",),
    ("probable",),
    ("probably",),
    ("suspected",),
    ("suspicious", "for"),
    ("suspicion", "of"),
    ("questionable",),
    ("likely",),
    ("may",),
    ("might",),
    ("could",),
    ("uncertain",),
    ("equivocal",),
    ("cannot", "exclude"),
    ("cannot", "rule", "out"),
    ("can", "not", "exclude"),
    ("can", "not", "rule", "out"),
)
POSTFIX: tuple[tuple[tuple[str, ...], str], ...] = (
    (("cannot", "be", "excluded"), UNCERTAIN),
    (("can", "not", "be", "excluded"), UNCERTAIN),
    (("cannot", "be", "ruled", "out"), UNCERTAIN),
    (("not", "excluded"), UNCERTAIN),
    (("not", "ruled", "out"), UNCERTAIN),
    (("is", "suspected"), UNCERTAIN),
    (("is", "possible"), UNCERTAIN),
    (("may", "be"), UNCERTAIN),
    (("is", "likely"), UNCERTAIN),
    (("absent",), NEGATED),
    (("excluded",), NEGATED),
    (("ruled", "out"), NEGATED),
    (("not", "seen"), NEGATED),
    (("not", "present"), NEGATED),
)
#: phrases that state a normal study (a no-finding caption's rewrite needs one, or the label's name)
NORMAL: tuple[tuple[str, ...], ...] = (
    ("normal",),
    ("unremarkable",),
    ("no", "acute"),
    ("no", "abnormality"),
    ("no", "abnormalities"),
    ("no", "findings"),
    ("no", "significant"),
    ("no", "active", "disease"),
)
#: mentions of report-vocabulary findings outside the configured labels carry this prefix
VOCAB_PREFIX = "vocabulary:"
_VOCABULARY = {"radiology": CXR_LABELS, "cardiology": ECG_LABELS}
_TOKEN = re.compile(r"[^\W_]+|[.;:!?]")
_BREAK = frozenset(".;:!?")


def tokens(text: str) -> list[str]:
    """Lower-case word tokens and clause-break punctuation."""
    return _TOKEN.findall(text.lower())


def _phrase_cue(phrase: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The words before and after ``{label}`` of a configured phrase (``possible {label}``)."""
    before, _, after = phrase.partition("{label}")
    return tuple(tokens(before)), tuple(tokens(after))


@dataclass(frozen=True)
class Vocabulary:
    """The finding names of one caption config (label → tokens) and its cue lists."""

    names: dict[str, tuple[str, ...]]
    prefix: tuple[tuple[tuple[str, ...], str], ...]
    postfix: tuple[tuple[tuple[str, ...], str], ...]

    @classmethod
    def of(cls, cfg: CaptionConfig) -> Vocabulary:
        labels = [*cfg.labels, *((cfg.no_finding_label,) if cfg.no_finding_label else ())]
        names = {x: tuple(tokens(cfg.names.get(x) or x.lower())) for x in labels}
        names = {k: v for k, v in names.items() if v}
        # the report vocabulary of the caption's type, beyond the configured labels: named, it
        # is an added finding (a rewrite of a 3-label caption must not bring in "pleural effusion")
        known = set(names.values()) | {re.sub(r"[^a-z0-9]+", "_", x.lower()).strip("_") for x in labels}
        for label in _VOCABULARY.get(cfg.report_type, ALL_LABELS):
            words = tuple(label.split("_"))
            if label not in known and words not in known:
                names[f"{VOCAB_PREFIX}{label}"] = words
        (ub, ua), (nb, na) = _phrase_cue(cfg.uncertain_phrase), _phrase_cue(cfg.negative_phrase)
        prefix = [(c, NEGATED) for c in NEGATION] + [(c, UNCERTAIN) for c in HEDGE]
        prefix += [(c, s) for c, s in ((ub, UNCERTAIN), (nb, NEGATED)) if c]
        postfix = list(POSTFIX) + [(c, s) for c, s in ((ua, UNCERTAIN), (na, NEGATED)) if c]
        # longest cue first: "can not exclude" before "not"
        prefix.sort(key=lambda cs: -len(cs[0]))
        postfix.sort(key=lambda cs: -len(cs[0]))
        return cls(names, tuple(prefix), tuple(postfix))


def _match(toks: list[str], i: int, cues: Iterable[tuple[tuple[str, ...], str]]) -> tuple[int, str]:
    for cue, state in cues:
        if tuple(toks[i : i + len(cue)]) == cue:
            return len(cue), state
    return 0, ""


def mentions(text: str, vocab: Vocabulary) -> list[tuple[str, str]]:
    """``(label, state)`` of every finding name in ``text``, in text order."""
    toks = tokens(text)
    by_len = sorted(vocab.names.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    spans: list[tuple[int, int, str]] = []  # (start, end, label)
    cues: list[tuple[int, str]] = []  # (position, state) of prefix cues
    breaks = [i for i, t in enumerate(toks) if t in _BREAK or t in CLAUSE_WORDS]
    i = 0
    while i < len(toks):
        hit = next((lab for lab, nm in by_len if tuple(toks[i : i + len(nm)]) == nm), None)
        if hit is not None:
            spans.append((i, i + len(vocab.names[hit]), hit))
            i += len(vocab.names[hit])
            continue
        n, state = _match(toks, i, vocab.prefix)
        if n:
            cues.append((i, state))
        i += max(n, 1)
    out = []
    for k, (start, end, label) in enumerate(spans):
        clause_start = max([b for b in breaks if b < start], default=-1)
        nxt = [spans[k + 1][0]] if k + 1 < len(spans) else []
        stop = min([b for b in breaks if b >= end] + nxt + [len(toks)])
        state = ""
        for j in range(end, stop):
            n, state = _match(toks, j, vocab.postfix)
            if n:
                break
        if not state:
            before = [s for pos, s in cues if clause_start < pos < start]
            state = before[-1] if before else PRESENT
        out.append((label, state))
    return out


def expected(positive: Iterable[str], uncertain: Iterable[str], negative: Iterable[str]) -> dict[str, str]:
    """label → the state a caption of these labels must give it."""
    return {
        **{x: PRESENT for x in positive},
        **{x: UNCERTAIN for x in uncertain},
        **{x: NEGATED for x in negative},
    }


def states_normal(text: str, vocab: Vocabulary, no_finding_label: str) -> bool:
    """Whether ``text`` states a normal study: the no-finding label's name, or a phrase of
    :data:`NORMAL` (``normal``, ``unremarkable``, ``no acute``, ...)."""
    if any(label == no_finding_label for label, _ in mentions(text, vocab)):
        return True
    toks = tokens(text)
    return any(tuple(toks[i : i + len(p)]) == p for i in range(len(toks)) for p in NORMAL)


def check(
    text: str,
    want: dict[str, str],
    vocab: Vocabulary,
    optional: dict[str, str] | None = None,
    normal: str = "",
) -> str:
    """``""`` if ``text`` states exactly the findings ``want`` (label → state), else the reason
    code. ``optional`` labels (the no-finding label of a no-finding caption) may be named, in
    their state, but need not be. ``normal`` (the no-finding label, for a no-finding caption):
    the text must also state a normal study (:func:`states_normal`), so that a caption with
    nothing else to name is not replaced by text that names nothing."""
    allowed = {**(optional or {}), **want}
    found = mentions(text, vocab)
    if any(label not in allowed for label, _ in found):
        return ADDED
    if set(want) - {label for label, _ in found}:
        return MISSING
    if normal and not states_normal(text, vocab, normal):
        return MISSING
    if any(allowed[label] != state for label, state in found):
        return CHANGED
    return ""
