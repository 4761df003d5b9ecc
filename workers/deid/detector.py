"""The ensemble: rule detectors and the token model propose spans, the clinical allow-list vetoes
weak ones, overlaps are resolved by priority."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from workers.deid import ages, dates, identifiers, locations, names
from workers.deid.clinical import protected_ranges
from workers.deid.spans import Span, merge_same, resolve

log = logging.getLogger(__name__)
_DIGIT = re.compile(r"\d")
_AGE_AFTER_NAME = re.compile(r"(?:'s)?[ \t]*(?:\([ \t]*(?P<n>\d{2,3})[ \t]*\)|,[ \t]*(?P<n2>\d{2,3})[ \t]*,)")


@dataclass(frozen=True)
class DeidConfig:
    """Switches of the text de-identification (defaults are the release settings)."""

    use_model: bool = True
    model_threshold: float | None = None  # None: the threshold stored with the model
    allow_list: bool = True


DEFAULT = DeidConfig()


def _known_spans(text: str, known: tuple[str, ...]) -> list[Span]:
    """Occurrences of identifiers known from structured fields (names, IDs), case-insensitive.

    Person names are split into their parts (``Last^First`` DICOM form, ``Last, First``);
    parts shorter than 3 characters and numbers shorter than 5 digits are ignored."""
    parts: set[str] = set()
    for value in known:
        value = (value or "").strip()
        if not value:
            continue
        parts.add(value)
        parts.update(re.split(r"[\^,\s]+", value))
    parts = {p for p in parts if len(p) >= 3 and not (re.fullmatch(r"[\d.]+", p) and len(p) < 5)}
    spans = []
    for p in sorted(parts, key=len, reverse=True):
        for m in re.finditer(r"(?<![^\W_])" + re.escape(p) + r"(?![^\W_])", text, re.IGNORECASE):
            category = "id" if any(ch.isdigit() for ch in p) else "name"
            spans.append(Span(m.start(), m.end(), category, "[ID]" if category == "id" else "[NAME]", 95))
    return spans


def _veto(spans: list[Span], protected: list[tuple[int, int]]) -> list[Span]:
    """Drop protectable spans that touch a clinical term (they never carry a label)."""
    if not protected:
        return spans
    out = []
    for s in spans:
        if s.protectable and any(a < s.end and s.start < b for a, b in protected):
            # a name span may reach beyond the term ("Dr Hope Wilson disease"): keep the parts outside
            continue
        out.append(s)
    return out


def candidate_spans(
    text: str, shift_days: int, known: tuple[str, ...], cfg: DeidConfig = DEFAULT
) -> list[Span]:
    """All candidate spans before resolution."""
    spans = _known_spans(text, known)
    spans += identifiers.placeholder_spans(text)
    has_digit = _DIGIT.search(text) is not None
    spans += identifiers.contact_spans(text)
    if has_digit:
        spans += identifiers.id_spans(text)
        spans += dates.DateShifter(shift_days).spans(text)
        spans += dates.time_spans(text)
        spans += locations.address_spans(text)
    else:
        spans += locations.address_label_spans(text)
    spans += locations.institution_spans(text)
    spans += locations.city_spans(text)
    spans += ages.age_spans(text, has_digit)
    name = names.name_spans(text)
    if cfg.use_model:
        from workers.deid.model import model_spans

        name += model_spans(text, cfg.model_threshold)
    protected: list[tuple[int, int]] = []
    if cfg.allow_list and (any(s.protectable for s in spans) or any(s.protectable for s in name)):
        protected = protected_ranges(text)
        spans = _veto(spans, protected)
        name = _veto(name, protected)
    merged = merge_same([s for s in name if s.category == "name"], "name", "[NAME]", text)
    grown = names.expand_names(text, merged)  # the grown spans, then coordinated names
    grown, coordinated = grown[: len(merged)], grown[len(merged) :]
    if protected:  # growing a weak name never swallows a clinical term ("Known [Adams-Stokes] attack")
        grown = [
            g if not (g.protectable and any(a < g.end and g.start < b for a, b in protected)) else m
            for g, m in zip(grown, merged, strict=True)
        ]
        coordinated = _veto(coordinated, protected)
    grown += coordinated
    final_names = merge_same(grown, "name", "[NAME]", text)
    spans += final_names
    spans += [s for s in name if s.category != "name"]
    if has_digit:  # a bare number in brackets after a name is an age: "Ibekwe (93)", "Meyer, 101,"
        for s in final_names:
            m = _AGE_AFTER_NAME.match(text, s.end)
            g = "n" if m and m["n"] else "n2"
            if m and 89 < int(m[g]) < 150:
                spans.append(Span(m.start(g), m.end(g), "age", "90+", 45))
    return spans


def find_spans(
    text: str, shift_days: int, known: tuple[str, ...] = (), cfg: DeidConfig = DEFAULT
) -> list[Span]:
    """Resolved, non-overlapping spans sorted by position."""
    return resolve(candidate_spans(text, shift_days, known, cfg), text)
