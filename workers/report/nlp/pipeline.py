"""The medspaCy pipeline of the rule path, built once per process (module-level lazy cache).

Components (no downloaded model): medspaCy tokenizer → sentence splitter → medspaCy
``TargetMatcher`` (:mod:`workers.report.nlp.vocab`, one regex rule per label) → medspaCy ``ConText``
(its default English modifiers + :data:`workers.report.nlp.rules.CONTEXT_RULES`) → medspaCy
``Sectionizer`` (:data:`workers.report.nlp.rules.SECTION_RULES`, headings at a line start).

Sentence splitter: spaCy's rule-based ``sentencizer`` plus a boundary after every line break
(``"fast"``, the default), or medspaCy's PyRuSH (``"pyrush"``). PyRuSH is a pure-Python rule
engine: ≈ 20 ms per Indiana report against < 1 ms (``bench/bench_reports.py --pyrush``), and the
label scores of ``medcorpus eval-labels`` do not improve with it (dev split, micro F1: Indiana
0.917 with either, PTB-XL 0.808 fast vs 0.808 PyRuSH), so the fast splitter is the default.

Speed fix: medspaCy 1.3.1's ``RegexMatcher`` recomputes ``doc.text_with_ws`` (a walk over all
tokens) for *every* regex rule; :func:`_patch_regex_matcher` hoists it out of the loop. Results
are identical (same matches, same order); only the repeated work is gone.
"""

from __future__ import annotations

import os
import threading
import warnings

os.environ.setdefault("LOGURU_LEVEL", "WARNING")  # PyRuSH logs DEBUG per token otherwise

_LOCK = threading.Lock()
_NLP: dict[tuple, object] = {}
DOMAINS: tuple[str, ...] = ("cxr", "ecg")

#: version of the rules and of the shipped label-model generation (``workers.report.label_model``,
#: ``labels-N``: bump on retraining); recorded in each report's metadata
RULES_VERSION = "rules-3+labels-2"
SENTENCE_SPLITTERS = ("fast", "pyrush")
#: abbreviations whose full stop does not end a sentence (lower case, without the final stop)
ABBREVIATIONS = frozenset(
    "v.a vd.a v.a.d z.n z.b u.a ca bzw evtl ggf fragl mögl wahrsch li re bds re.-li li.-re dr prof med "
    "e.g i.e vs approx cf no nr st pat".split()
)


def _patch_regex_matcher() -> None:
    """Make medspaCy's RegexMatcher read the doc text once per doc instead of once per rule."""
    from medspacy.common import regex_matcher as rm

    if getattr(rm.RegexMatcher, "_medcorpus_patched", False):
        return

    def __call__(self, doc):  # same logic as medspacy 1.3.1 RegexMatcher.__call__
        text = doc.text_with_ws
        matches = []
        for match_id, patterns in self._patterns.items():
            for pattern in patterns:
                on_match = self._callbacks[match_id]
                for re_match in pattern.finditer(text):
                    span = doc.char_span(re_match.start(), re_match.end())
                    if span is None:
                        start = rm.get_token_for_char(doc, re_match.start(), resolve=self.resolve_start)
                        end = rm.get_token_for_char(doc, re_match.end(), resolve=self.resolve_end)
                        span = doc[start.i : len(doc) if end is None else end.i]
                    if len(span):
                        matches.append((match_id, span.start, span.end))
                    if on_match is not None:
                        on_match(self, doc, len(matches) - 1, matches)
        return matches

    rm.RegexMatcher.__call__ = __call__
    rm.RegexMatcher._medcorpus_patched = True


def _register_newline_sentences() -> None:
    from spacy.language import Language

    if "medcorpus_newline_sentences" in Language.factories:
        return

    @Language.component("medcorpus_newline_sentences")
    def newline_sentences(doc):
        """A token after a line break starts a sentence (headings, list items, statements); a
        token after an abbreviation's full stop ("V.a.", "Z.n.", "Dr.", "ca.") does not."""
        for i in range(1, len(doc)):
            prev = doc[i - 1]
            if "\n" in prev.text or "\n" in prev.whitespace_:
                doc[i].is_sent_start = True
            elif prev.text == "." and i >= 2 and doc[i - 2].lower_.rstrip(".") in ABBREVIATIONS:
                doc[i].is_sent_start = False
            elif prev.text.endswith(".") and prev.lower_.rstrip(".") in ABBREVIATIONS:
                doc[i].is_sent_start = False
        return doc


def _target_rules(domains: tuple[str, ...]):
    from medspacy.target_matcher import TargetRule

    from workers.report.nlp.vocab import CXR_TARGETS, ECG_TARGETS

    rules = []
    for domain, table in (("cxr", CXR_TARGETS), ("ecg", ECG_TARGETS)):
        if domain not in domains:
            continue
        for label, patterns in table.items():
            # one rule per label (fewer, larger alternations are faster); matches start at a
            # word boundary ("stent" must not match inside "consistent")
            combined = r"(?<![^\W_])(?:" + "|".join(f"(?:{p})" for p in patterns) + ")"
            rules.append(TargetRule(literal=f"{domain}:{label}", category=label, pattern=combined))
    return rules


def _context_rules():
    from medspacy.context import ConTextRule

    from workers.report.nlp.rules import CONTEXT_RULES

    return [
        ConTextRule(literal=f"mc:{i}", category=cat, pattern=regex, direction=direction, max_scope=scope)
        for i, (regex, cat, direction, scope) in enumerate(CONTEXT_RULES)
    ]


#: medspaCy default rules replaced: ": no"/": none" (backward, "Pneumothorax: no") also matched
#: "FINDINGS: No cardiomegaly." and overrode the forward "no", leaving the finding present
_REPLACED_DEFAULTS = frozenset({": no", ": none"})


def _default_context_rules():
    """medspaCy's packaged ConText rules, with the colon rules re-anchored to a line/clause end."""
    from pathlib import Path

    import medspacy.context as mc
    from medspacy.context import ConTextRule

    # the path ConText(rules="default") uses (medspacy/../resources/en/context_rules.json)
    default = Path(mc.__file__).resolve().parents[2] / "resources" / "en" / "context_rules.json"
    rules = [r for r in ConTextRule.from_json(str(default)) if r.literal not in _REPLACED_DEFAULTS]
    rules.append(
        ConTextRule(
            literal="mc:colon-no",
            category="NEGATED_EXISTENCE",
            pattern=r":\s*(?:no|none)(?=\s*(?:[.,;\n]|$))",
            direction="BACKWARD",
        )
    )
    return rules


def _section_rules():
    from medspacy.section_detection import SectionRule

    from workers.report.nlp.rules import SECTION_RULES

    rules = []
    for regex, category in SECTION_RULES:
        # a heading at the start of a line, followed by a colon or the end of the line
        pattern = r"(?m)^[ \t]*" + regex + r"[ \t]*(?::|(?=\n)|$)"
        rules.append(SectionRule(literal=f"sec:{category}:{len(rules)}", category=category, pattern=pattern))
    # any other upper-case heading line ("SECTION HEADING:", "CLINICAL DATA:") opens an "other"
    # section, so its text does not run into the previous section
    known = "|".join(f"(?:{regex})" for regex, _ in SECTION_RULES)
    catch_all = (
        r"(?m)^[ \t]*(?!(?:"
        + known
        + r")[ \t]*(?::|\n|$))(?-i:[A-Z][A-Z0-9 /&()'-]{1,40})[ \t]*:(?=[ \t]*(?:\n|$))"
    )
    rules.append(SectionRule(literal="sec:other:heading", category="other", pattern=catch_all))
    return rules


def build_nlp(sentences: str = "fast", domains: tuple[str, ...] = DOMAINS):
    """Build a fresh pipeline (use :func:`get_nlp` for the shared one).

    ``sentences``: ``"fast"`` (spaCy sentencizer + line breaks) or ``"pyrush"`` (medspaCy default).
    ``domains``: target vocabularies to load, ``"cxr"`` and/or ``"ecg"``; one pipeline per report
    type keeps an ECG phrase ("dual-chamber pacemaker" rhythm) from hiding a chest finding
    ("pacemaker" device), since the target matcher keeps only the longest overlapping match.
    """
    if not domains or set(domains) - set(DOMAINS):
        raise ValueError(f"unknown target domains {domains!r}")
    import medspacy

    # medspaCy's matchers hold an empty spaCy Matcher when all rules are regexes (harmless)
    warnings.filterwarnings("ignore", message=r"\[W036\]")
    if sentences not in SENTENCE_SPLITTERS:
        raise ValueError(f"unknown sentence splitter {sentences!r}")
    _patch_regex_matcher()
    if sentences == "pyrush":
        nlp = medspacy.load(medspacy_enable=["medspacy_tokenizer", "medspacy_pyrush"])
    else:
        _register_newline_sentences()
        nlp = medspacy.load(medspacy_enable=["medspacy_tokenizer"])
        nlp.add_pipe("sentencizer")
        nlp.add_pipe("medcorpus_newline_sentences")
    matcher = nlp.add_pipe("medspacy_target_matcher")
    matcher.add(_target_rules(tuple(domains)))
    context = nlp.add_pipe("medspacy_context", config={"rules": None, "max_scope": None})
    context.add(_default_context_rules())
    context.add(_context_rules())
    sectionizer = nlp.add_pipe("medspacy_sectionizer", config={"rules": None})
    sectionizer.add(_section_rules())
    return nlp


def get_nlp(sentences: str = "fast", domains: tuple[str, ...] = DOMAINS):
    """The process-wide pipeline for these target domains, built on first use (thread-safe)."""
    key = (sentences, tuple(sorted(domains)))
    nlp = _NLP.get(key)
    if nlp is None:
        with _LOCK:
            nlp = _NLP.get(key)
            if nlp is None:
                nlp = _NLP[key] = build_nlp(sentences, key[1])
    return nlp
