"""The versioned prompt and generation schema of the LLM report structurer.

The chat is ``[system, user]``. The system message is the same for every report (instructions,
section names, label and assertion vocabularies), so vLLM's automatic prefix caching computes its
KV cache once and reuses it for every request; only the user message (report type, language and
the report text) differs. Bump :data:`PROMPT_VERSION` whenever the wording changes; the cache key
additionally carries :func:`prompt_fingerprint`, so a forgotten bump cannot serve stale results.

The *generation schema* handed to vLLM structured outputs is a tightened copy of
:data:`schemas.report_schema.REPORT_JSON_SCHEMA`: ``schema_version``/``report_type``/``language``
become constants, labels are restricted to the vocabulary of the report type, and strings and
arrays get upper bounds so that even a weak model cannot generate forever. Every instance valid
under the generation schema is valid under the report schema (the converse does not hold).
Outputs are always validated against the report schema itself.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

from schemas.canonical import canonical_bytes
from schemas.labels import ALL_LABELS, ASSERTIONS, CXR_LABELS, ECG_LABELS
from schemas.report_schema import REPORT_JSON_SCHEMA, REPORT_SCHEMA_VERSION, SECTION_NAMES

#: bump on any change of the wording below (the fingerprint catches forgotten bumps)
PROMPT_VERSION = "report-structurer-v3"

REPORT_TYPES: tuple[str, ...] = ("radiology", "cardiology", "other")

_LABELS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "radiology": CXR_LABELS,
    "cardiology": ECG_LABELS,
    "other": ALL_LABELS,
}

SYSTEM_PROMPT = (
    "You restructure one de-identified clinical report (a radiology or an ECG/cardiology report, "
    "in any language) into JSON.\n"
    "Rules:\n"
    "- Output one JSON object and nothing else.\n"
    "- sections: copy the report text into the matching sections, verbatim, in the original "
    "language; leave out sections that are absent. Section names: " + ", ".join(SECTION_NAMES) + ".\n"
    "- findings: one item per finding stated in the report, with label (from the vocabulary "
    "below), assertion (present, negated, uncertain, historical or family), the section it "
    "comes from, and evidence (the shortest verbatim phrase that states it).\n"
    "- Use only labels from the vocabulary of the given report type; skip findings that have "
    "no matching label. Never invent findings.\n"
    "- assertion: uncertain for possible, probable, suspected or cannot-be-excluded findings; "
    "historical for old or prior ones; negated for absent, resolved or removed ones.\n"
    "- Findings named only as the reason for the study go in the indication or history section.\n"
    "- Infarcts: use the region label (anterior_mi also for anteroseptal and anterolateral, "
    "inferior_mi also for inferolateral and inferoposterior); myocardial_infarction when no "
    "region is named. Axis statements (German Linkstyp, Rechtstyp) are left_axis_deviation and "
    "right_axis_deviation.\n"
    "- normal: true only if the report states a normal study with no abnormal finding (an ECG "
    "with sinus rhythm and no other abnormal statement is normal).\n"
    "- schema_version, report_type and language: copy the values given with the report.\n"
    "Assertions: " + ", ".join(ASSERTIONS) + ".\n"
    "Radiology labels: " + ", ".join(CXR_LABELS) + ".\n"
    "ECG labels: " + ", ".join(ECG_LABELS) + ".\n"
)

USER_TEMPLATE = (
    "schema_version: {schema_version}\nreport_type: {report_type}\nlanguage: {language}\n"
    "Report:\n<<<\n{text}\n>>>"
)


@dataclass(frozen=True)
class GenerationBounds:
    """Upper bounds written into the generation schema (characters / items).

    ``max_section_chars`` bounds every section string, ``max_findings`` the findings array,
    ``max_evidence_chars`` each evidence string (the report schema allows 200).
    """

    max_section_chars: int = 2000
    max_findings: int = 32
    max_evidence_chars: int = 160

    def fit(self, text_chars: int) -> GenerationBounds:
        """These bounds tightened for a report of ``text_chars`` characters.

        Sections and evidence are verbatim copies of the report, so they never need more than
        its length, rounded up to a power of two >= 64 (few distinct grammars); findings get
        one per 6 characters (an abbreviation such as ``LVH`` plus a separator), at least 8.
        A weak model that writes every string to its bound then still ends within a budget
        that scales with the report instead of with the largest report.
        """
        q = 64
        while q < text_chars:
            q *= 2
        return GenerationBounds(
            max_section_chars=min(self.max_section_chars, q),
            max_findings=min(self.max_findings, max(8, q // 6)),
            max_evidence_chars=min(self.max_evidence_chars, q),
        )

    def compact(self) -> GenerationBounds:
        """Tighter bounds for the one retry of an invalid output (fewer tokens, same schema)."""
        return GenerationBounds(
            max_section_chars=max(16, self.max_section_chars // 4),
            max_findings=max(1, self.max_findings // 4),
            max_evidence_chars=max(8, self.max_evidence_chars // 4),
        )


def build_messages(text: str, report_type: str, language: str) -> list[dict[str, str]]:
    """The chat messages for one report: the shared system prefix, then the report."""
    if report_type not in REPORT_TYPES:
        raise ValueError(f"unknown report type {report_type!r}")
    user = USER_TEMPLATE.format(
        schema_version=REPORT_SCHEMA_VERSION, report_type=report_type, language=language, text=text
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def generation_schema(report_type: str, language: str, bounds: GenerationBounds) -> dict:
    """The JSON Schema given to vLLM structured outputs for one report (a subset of the report schema)."""
    if report_type not in REPORT_TYPES:
        raise ValueError(f"unknown report type {report_type!r}")
    schema = copy.deepcopy(REPORT_JSON_SCHEMA)
    for key in ("$schema", "$id", "title"):
        schema.pop(key, None)
    props = schema["properties"]
    props["report_type"] = {"type": "string", "enum": [report_type]}
    # language is bounded to 8 characters by the report schema; a longer tag is cut, not invented
    props["language"] = {"type": "string", "enum": [language[:8]]}
    for name in SECTION_NAMES:
        props["sections"]["properties"][name] = _bounded_string(bounds.max_section_chars)
    props["findings"]["maxItems"] = bounds.max_findings
    item = props["findings"]["items"]["properties"]
    item["label"] = {"type": "string", "enum": list(_LABELS_BY_TYPE[report_type])}
    item["evidence"] = _bounded_string(min(200, bounds.max_evidence_chars))
    return schema


def _bounded_string(max_chars: int) -> dict:
    """A JSON string of at most ``max_chars`` characters.

    Needs the ``guidance`` (llguidance) structured-output backend: xgrammar 0.2.8 compiles
    ``maxLength`` to a character class that admits raw control characters (invalid JSON), and its
    equivalent anchored ``pattern`` fails to compile above 128 repetitions with the grammar cache
    on (as in vLLM); without any bound a weak model writes one string until ``max_tokens``.
    """
    return {"type": "string", "maxLength": max_chars}


def prompt_fingerprint(bounds: GenerationBounds, sampling: dict) -> str:
    """sha256 (hex) of everything that shapes an output besides the text and the model.

    Covers the system prompt, the user template, the generation schemas of every report type
    (under ``bounds``, ``bounds.compact()`` and the per-report fit at a few lengths) and the
    sampling parameters.
    """
    material = {
        "version": PROMPT_VERSION,
        "system": SYSTEM_PROMPT,
        "user": USER_TEMPLATE,
        "schemas": {
            rt: [
                generation_schema(rt, "xx", b)
                for b in (bounds, bounds.compact(), *(bounds.fit(n) for n in (1, 100, 1000, 10_000)))
            ]
            for rt in REPORT_TYPES
        },
        "sampling": sampling,
    }
    return hashlib.sha256(canonical_bytes(material)).hexdigest()


def prompt_id(bounds: GenerationBounds, sampling: dict) -> str:
    """``PROMPT_VERSION`` plus a short fingerprint, e.g. ``report-structurer-v1+3fa2c01b9e7d``."""
    return f"{PROMPT_VERSION}+{prompt_fingerprint(bounds, sampling)[:12]}"
