"""The rule path of report structuring: medspaCy sections, target findings and ConText assertions.

``structure_with_rules`` returns a dict valid under :data:`schemas.report_schema.REPORT_JSON_SCHEMA`
(the LLM path fills the same schema and falls back to this one).

Conventions:
- Sections: headings found by the medspaCy sectionizer (:data:`workers.report.nlp.rules.SECTION_RULES`),
  mapped onto ``SECTION_NAMES``; text before the first heading is ``findings`` when the report
  has no heading at all (ECG statements, impression-only reports), ``other`` otherwise.
- Findings: one entry per (label, assertion, section), in order of first mention, with the
  matched words as ``evidence``; a matched span also yields every other label whose patterns
  occur inside it (:func:`span_labels`). Radiology reports get chest-radiograph labels, cardiology
  reports ECG labels, ``other`` both.
- Assertion from ConText: negated > family > uncertain (incl. hypothetical) > historical > present.
- ``normal``: radiology: no present/uncertain/historical finding outside indication/history/
  comparison/technique (then ``no_finding`` is added as present); cardiology: a normal-ECG
  statement that is not negated, or sinus rhythm with no other statement than
  :data:`BENIGN_ECG`.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from functools import lru_cache

from schemas.labels import CXR_LABELS, ECG_LABELS
from schemas.report_schema import REPORT_SCHEMA_VERSION, SECTION_NAMES
from workers.report.nlp.pipeline import get_nlp

REPORT_TYPES: tuple[str, ...] = ("radiology", "cardiology", "other")
#: target vocabularies per report type (``workers.report.nlp.pipeline.get_nlp(domains=...)``)
_DOMAINS: dict[str, tuple[str, ...]] = {
    "radiology": ("cxr",),
    "cardiology": ("ecg",),
    "other": ("cxr", "ecg"),
}
#: sections whose findings describe the request, not the study
CONTEXT_SECTIONS = frozenset({"indication", "history", "comparison", "technique"})
POSITIVE_ASSERTIONS = frozenset({"present", "uncertain", "historical"})

_CXR = frozenset(CXR_LABELS)
_ECG = frozenset(ECG_LABELS)
_IN_SPAN_NEGATION = re.compile(r"\b(?:not|no|without|kein\w*|nicht|ingen|inga|inte|ej)\b", re.IGNORECASE)
_IN_SPAN_UNCERTAIN = re.compile(
    r"\b(?:possible|possibly|probable|probably|likely|suspected|wahrscheinlich|möglich\w*|moeglich\w*|"
    r"verdacht|fraglich\w*|sannolik\w*|möjlig\w*|misstänkt)\b",
    re.IGNORECASE,
)
_WIDE_GAP = re.compile(r"[ \t]{3,}")

_TYPE_SYNONYMS = {
    "radiology": "radiology", "rad": "radiology", "cxr": "radiology", "xray": "radiology", "x-ray": "radiology",
    "ct": "radiology", "mr": "radiology", "mri": "radiology", "imaging": "radiology", "radiologie": "radiology",
    "cardiology": "cardiology", "ecg": "cardiology", "ekg": "cardiology", "cardio": "cardiology",
    "kardiologie": "cardiology",
}  # fmt: skip


def normalise_report_type(value: str) -> str:
    """Map a configured/recorded report type onto ``radiology``/``cardiology``/``other``."""
    return _TYPE_SYNONYMS.get((value or "").strip().lower(), "other")


def prepare_nlp_text(text: str) -> str:
    """Text as the pipeline sees it: runs of ≥ 3 blanks (line breaks flattened by the PTB-XL
    export) become line breaks, so statement lists split into sentences."""
    return _WIDE_GAP.sub("\n", text).strip()


#: an ECG's explicit overall statement, a whole line or sentence ("Abnormal ECG", "Borderline
#: ECG", "Otherwise normal ECG", "Normal ECG": MIMIC-IV-ECG machine statements end with one)
_OVERALL_ECG = re.compile(
    r"(?:^|(?<=[.;])\s)[ \t]*(?:(?P<normal>(?:otherwise\s+)?normal)|(?P<abnormal>abnormal|borderline))"
    r"\s+(?:ecg|ekg|electrocardiogram)[ \t]*(?=[.;]|$)",
    re.IGNORECASE | re.MULTILINE,
)


def overall_ecg_statement(text: str) -> bool | None:
    """The ``normal`` verdict of an ECG's explicit overall statement (the last one, if several):
    ``True`` for "Normal ECG"/"Otherwise normal ECG", ``False`` for "Abnormal ECG"/"Borderline
    ECG", ``None`` without one. It decides ``normal`` over the rules' inference and the learned
    head."""
    verdict = None
    for m in _OVERALL_ECG.finditer(text):
        verdict = m.group("normal") is not None
    return verdict


#: labels whose own wording may contain a negation word ("no definite pathology")
_NORMAL_LABELS = frozenset({"normal_ecg", "no_finding"})
#: ECG statements that do not make an ECG abnormal (for the inferred ``normal`` flag)
BENIGN_ECG = frozenset({"normal_ecg", "sinus_rhythm", "sinus_arrhythmia"})


def _negated(ent) -> bool:
    if ent.label_ in _NORMAL_LABELS:
        # only a negation outside the phrase counts ("no definite pathology" is itself the
        # normal statement)
        return any(
            m.category == "NEGATED_EXISTENCE" and not (ent.start <= m._start and m._end <= ent.end)
            for m in ent._.modifiers
        )
    return bool(ent._.is_negated or _IN_SPAN_NEGATION.search(ent.text))


def _assertion(ent) -> str:
    if _negated(ent):
        return "negated"
    if ent._.is_family:
        return "family"
    if ent._.is_uncertain or ent._.is_hypothetical or _IN_SPAN_UNCERTAIN.search(ent.text):
        return "uncertain"
    if ent._.is_historical:
        return "historical"
    return "present"


@lru_cache(maxsize=1)
def _label_regexes() -> dict[str, re.Pattern]:
    """Each label's target patterns as one compiled regex (for co-labels of a matched span)."""
    from workers.report.nlp.vocab import CXR_TARGETS, ECG_TARGETS

    return {
        label: re.compile(r"(?<![^\W_])(?:" + "|".join(f"(?:{p})" for p in patterns) + ")", re.IGNORECASE)
        for table in (CXR_TARGETS, ECG_TARGETS)
        for label, patterns in table.items()
    }


def span_labels(label: str, text: str, allowed: frozenset[str]) -> list[str]:
    """The matched label first, then every other allowed label whose patterns also occur in the
    span ("airspace opacities" is airspace disease *and* a lung opacity; the target matcher
    keeps only the longest match, so the shorter readings are recovered here)."""
    out = [label]
    for other, rx in _label_regexes().items():
        if other != label and other in allowed and rx.search(text):
            out.append(other)
    return out


_MI_LABELS = frozenset(
    {"myocardial_infarction", "anterior_mi", "inferior_mi", "lateral_mi", "posterior_mi", "septal_mi"}
)
_MI_REGIONS = (
    ("anterior_mi", re.compile(r"\bantero|\banterior", re.IGNORECASE)),
    ("inferior_mi", re.compile(r"\binfero|\binferior|hinterwand", re.IGNORECASE)),
    (
        "lateral_mi",
        re.compile(r"(?<!antero)(?<!antero-)(?<!infero)(?<!infero-)\b(?:hoch)?lateral", re.IGNORECASE),
    ),
    ("posterior_mi", re.compile(r"(?<!infero)(?<!infero-)\bposterior", re.IGNORECASE)),
)


def mi_regions(label: str, text: str) -> list[str]:
    """An infarction statement naming several regions ("anterior and inferior infarcts") yields
    one label per region; a generic one stays ``myocardial_infarction``."""
    found = [lab for lab, rx in _MI_REGIONS if rx.search(text)]
    if label == "myocardial_infarction" and found:
        return found
    return [label] + [lab for lab in found if lab != label and label == "myocardial_infarction"]


def _allowed_labels(report_type: str) -> frozenset[str]:
    if report_type == "radiology":
        return _CXR
    if report_type == "cardiology":
        return _ECG
    return _CXR | _ECG


def structure_docs(docs, report_types: list[str], languages: list[str], learned: bool = True) -> list[dict]:
    """Structured JSON of already-processed spaCy docs (see :func:`structure_with_rules`)."""
    return [
        _structure_doc(d, t, lang, learned) for d, t, lang in zip(docs, report_types, languages, strict=True)
    ]


#: report type → label-model domain (``workers.report.label_model``); ``other`` stays rules-only
_MODEL_DOMAIN = {"radiology": "cxr", "cardiology": "ecg"}
#: label whose head sets the ``normal`` flag, per report type
_NORMAL_HEAD = {"radiology": "normal", "cardiology": "normal_ecg"}


def model_text(structured: dict, text: str) -> str:
    """The text the label model reads: radiology without the request sections (indication,
    history, comparison, technique), cardiology whole."""
    if structured["report_type"] != "radiology":
        return text
    return "\n".join(v for k, v in structured["sections"].items() if k not in CONTEXT_SECTIONS)


def apply_label_model(structured: dict, text: str, model) -> dict:
    """Combine the rule findings with a :class:`workers.report.label_model.LabelModel` (in place).

    For each label the model decides (``stack`` mode): a positive decision that the rules lack
    adds a ``present`` finding (evidence: the n-gram that weighs most), unless the rules found
    the label only negated; a negative decision removes the rules' positive findings of that
    label outside the request sections. The normal label's head sets ``normal``.
    """
    from workers.report.label_model import rule_features

    rtype = structured["report_type"]
    ctx = CONTEXT_SECTIONS if rtype == "radiology" else frozenset()
    rules = rule_features(structured, ctx)
    feats = model.features(model_text(structured, text), rules)
    decisions = model.decide(feats)
    if not decisions:
        return structured
    findings = structured["findings"]
    default_section = "impression" if "impression" in structured["sections"] else "findings"
    normal_head = _NORMAL_HEAD.get(rtype)
    for label, (positive, _p) in sorted(decisions.items()):
        if label == normal_head:
            structured["normal"] = positive
            if rtype == "radiology":
                findings[:] = [f for f in findings if f["label"] != "no_finding"]
                if positive:
                    findings.append(
                        {"label": "no_finding", "assertion": "present", "section": default_section}
                    )
            continue

        def counts(f, label=label):
            return f["label"] == label and f.get("section") not in ctx

        rule_pos = any(counts(f) and f["assertion"] in POSITIVE_ASSERTIONS for f in findings)
        if positive and not rule_pos:
            if any(counts(f) and f["assertion"] in ("negated", "family") for f in findings):
                continue  # negation stays with the rules
            evidence = model.evidence(feats, label) or "learned"
            findings.append(
                {
                    "label": label,
                    "assertion": "present",
                    "section": default_section,
                    "evidence": evidence[:200],
                }
            )
        elif not positive and rule_pos:
            findings[:] = [f for f in findings if not (counts(f) and f["assertion"] in POSITIVE_ASSERTIONS)]
    return structured


def _structure_doc(doc, report_type: str, language: str, learned: bool = True) -> dict:
    rtype = normalise_report_type(report_type)
    has_headings = any(sec.category is not None for sec in doc._.sections)
    default_section = "other" if has_headings else "findings"

    sections: dict[str, str] = {}
    for sec in doc._.sections:
        name = sec.category if sec.category in SECTION_NAMES else default_section
        body_text = doc[sec.body_start : sec.body_end].text.strip()
        if body_text:
            sections[name] = f"{sections[name]}\n{body_text}" if name in sections else body_text

    allowed = _allowed_labels(rtype)
    findings: list[dict] = []
    seen: set[tuple[str, str, str]] = set()
    for ent in doc.ents:
        if ent.label_ not in allowed:
            continue
        section = ent._.section_category
        section = section if section in SECTION_NAMES else default_section
        assertion = _assertion(ent)
        # co-labels for chest radiographs only: ECG statements are coded as whole phrases
        if ent.label_ in _CXR:
            labels = span_labels(ent.label_, ent.text, allowed & _CXR)
        elif ent.label_ in _MI_LABELS:
            labels = mi_regions(ent.label_, ent.text)
        else:
            labels = [ent.label_]
        for label in labels:
            key = (label, assertion, section)
            if key in seen:
                continue
            seen.add(key)
            findings.append(
                {"label": label, "assertion": assertion, "section": section, "evidence": ent.text[:200]}
            )

    if rtype == "cardiology":
        positive = {f["label"] for f in findings if f["assertion"] in POSITIVE_ASSERTIONS}
        if "complete_left_bundle_branch_block" in positive and "left_ventricular_hypertrophy" in positive:
            # LVH voltage criteria do not apply under a complete LBBB (PTB-XL codes LVH in 2 of
            # the 12 dev reports stating both, "linksschenkelblock ... linkshypertrophie möglich")
            findings[:] = [f for f in findings if f["label"] != "left_ventricular_hypertrophy"]
            positive.discard("left_ventricular_hypertrophy")
        stated = any(
            f["label"] == "normal_ecg" and f["assertion"] in ("present", "uncertain") for f in findings
        )
        inferred = "sinus_rhythm" in positive and not (positive - BENIGN_ECG)
        normal = stated or inferred
    else:
        normal = not any(
            f["assertion"] in POSITIVE_ASSERTIONS and f["section"] not in CONTEXT_SECTIONS
            for f in findings
            if f["label"] in _CXR
        )
        if rtype == "radiology" and normal:
            findings.append({"label": "no_finding", "assertion": "present", "section": "impression"
                             if "impression" in sections else default_section})  # fmt: skip
    structured = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "report_type": rtype,
        "language": (language or "und")[:8],
        "sections": sections,
        "findings": findings,
        "normal": normal,
    }
    domain = _MODEL_DOMAIN.get(rtype)
    if learned and domain:
        from workers.report.label_model import load_model

        model = load_model(domain)
        if model is not None:
            apply_label_model(structured, doc.text, model)
    if rtype == "cardiology":
        verdict = overall_ecg_statement(doc.text)
        if verdict is not None:
            structured["normal"] = verdict
    return structured


@contextlib.contextmanager
def _quiet():
    """Silence spaCy W036 (medspaCy keeps an empty token Matcher when all its rules are regexes)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\[W036\]")
        yield


def structure_with_rules(text: str, report_type: str, language: str, learned: bool = True) -> dict:
    """Sections, findings with assertions and the normal flag of one de-identified report.

    Args:
        text: de-identified report text.
        report_type: ``radiology``/``cardiology``/``other`` (synonyms such as ``ecg`` accepted).
        language: ISO 639-1 code recorded in the output (rules cover en/de/sv).
        learned: combine with the shipped label model (:func:`apply_label_model`); ``False``
            gives the rules alone.

    Returns:
        A dict valid under :data:`schemas.report_schema.REPORT_JSON_SCHEMA`.
    """
    rtype = normalise_report_type(report_type)
    with _quiet():
        doc = get_nlp(domains=_DOMAINS[rtype])(prepare_nlp_text(text))
    return _structure_doc(doc, rtype, language, learned)


def structure_many(
    texts: list[str],
    report_types: list[str],
    languages: list[str],
    batch_size: int = 64,
    learned: bool = True,
) -> list[dict]:
    """Batch form of :func:`structure_with_rules` (``nlp.pipe``), same output per report."""
    rtypes = [normalise_report_type(t) for t in report_types]
    docs: list = [None] * len(texts)
    with _quiet():
        for rtype in sorted(set(rtypes)):
            idx = [i for i, t in enumerate(rtypes) if t == rtype]
            nlp = get_nlp(domains=_DOMAINS[rtype])
            for i, doc in zip(
                idx, nlp.pipe((prepare_nlp_text(texts[i]) for i in idx), batch_size=batch_size), strict=True
            ):
                docs[i] = doc
    return structure_docs(docs, rtypes, languages, learned)
