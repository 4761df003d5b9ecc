"""Candidate PHI spans and their resolution into non-overlapping replacements."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_TOKEN = re.compile(r"[^\W_](?:[\w'’-]*[^\W_])?|\S")


_WORD_CAPITAL = re.compile(r"(?<![^\W\d_])[A-ZÄÖÜ]")
_WORD_LOWER = re.compile(r"(?<![^\W\d_])[a-zäöüß]")


def is_mixed(text: str) -> bool:
    """Whether words of ``text`` start with capitals and with small letters (ordinary writing);
    single-case texts (PTB-XL's lower case, upper-case headers) are read differently."""
    return _WORD_CAPITAL.search(text) is not None and _WORD_LOWER.search(text) is not None


@lru_cache(maxsize=8)
def tokenize(text: str) -> tuple[tuple[int, int, str], ...]:
    """Word and punctuation tokens of ``text`` as ``(start, end, string)`` (cached per text)."""
    return tuple((m.start(), m.end(), m.group(0)) for m in _TOKEN.finditer(text))


@dataclass(frozen=True)
class Span:
    """A candidate replacement of ``text[start:end]``.

    ``protectable``: found by weak evidence only (a dictionary word, an identifier *shape*, the
    token model), so the clinical allow-list may veto it; spans found through a label, a title,
    a context cue or a known identifier are never protectable.
    """

    start: int
    end: int
    category: str
    replacement: str
    priority: int
    protectable: bool = False


#: categories whose replacement is a fixed token: an overlapped span keeps its free parts
SPLITTABLE = frozenset({"name", "address", "id", "phone", "institution"})


def resolve(spans: list[Span], text: str) -> list[Span]:
    """Non-overlapping spans: higher priority first, then longer, then earlier.

    A lower-priority redaction overlapping a kept span is not dropped (recall first): its parts
    outside the kept spans are still redacted when they contain a letter or digit.
    """
    chosen: list[Span] = []
    for s in sorted(spans, key=lambda s: (-s.priority, -(s.end - s.start), s.start)):
        if s.end <= s.start:
            continue
        overlaps = sorted((c.start, c.end) for c in chosen if s.start < c.end and c.start < s.end)
        if not overlaps:
            chosen.append(s)
            continue
        if s.category not in SPLITTABLE:
            continue
        pos = s.start
        for b, e in overlaps + [(s.end, s.end)]:
            lo, hi = pos, min(b, s.end)
            while lo < hi and not text[lo].isalnum():
                lo += 1
            while hi > lo and not text[hi - 1].isalnum():
                hi -= 1
            if hi > lo and not any(lo < c.end and c.start < hi for c in chosen):
                chosen.append(Span(lo, hi, s.category, s.replacement, s.priority))
            pos = max(pos, e)
    return sorted(chosen, key=lambda s: s.start)


#: name particles that belong to the name between two name parts ("Van der Berg", "de la Cruz")
PARTICLES = frozenset("van von de der den la le du di da dos del ter zu vom y ten op".split())


def _joinable_gap(gap: str) -> bool:
    words = gap.split()
    return (not gap.strip(" \t")) or (
        "\n" not in gap and len(words) <= 2 and all(w.lower() in PARTICLES for w in words)
    )


def merge_same(spans: list[Span], category: str, replacement: str, text: str = "") -> list[Span]:
    """Union of overlapping or touching spans of one category (a name found in parts is one name);
    with ``text``, spans separated by blanks only are joined too."""
    merged: list[Span] = []
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and (s.start <= merged[-1].end or (text and _joinable_gap(text[merged[-1].end : s.start]))):
            last = merged[-1]
            merged[-1] = Span(
                last.start,
                max(last.end, s.end),
                category,
                replacement,
                max(last.priority, s.priority),
                last.protectable and s.protectable,
            )
        else:
            merged.append(s)
    return merged
