"""Scores of a text de-identifier on the benchmark corpus (``bench/deid_corpus.py``).

A system is a function ``text -> list of (start, end)`` redacted character spans (kept
placeholders such as ``XXXX`` excluded). Scores:

- recall per type: identifying tokens fully inside a redacted span / all identifying tokens;
- strict leaks: items with at least one identifying token not fully redacted;
- over-redaction: protected clinical controls that any redacted span touches;
- collateral: words of the real reports touched by a redacted span (date-shaped words, which a
  de-identifier must shift, excluded) / all words.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

try:
    from bench.deid_corpus import OTHER_TYPES, SAFE_HARBOR, Example
except ImportError:  # pragma: no cover
    from deid_corpus import OTHER_TYPES, SAFE_HARBOR, Example

Spans = Sequence[tuple[int, int]]
System = Callable[[str], Spans]
_DATE_WORD = re.compile(r"^\(?\d{1,2}\s*[:./-]\s*\d{1,2}\s*[:./-]\s*\d{2,4}[.,;)]*$")


@dataclass
class Scores:
    tokens: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))  # hit, total
    items: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))  # leaked, total
    by_source: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    controls: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))  # hit, total
    collateral: list[int] = field(default_factory=lambda: [0, 0])  # words touched, words
    leaked_templates: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def recall(self, types: Iterable[str]) -> float:
        hit = sum(self.tokens[t][0] for t in types if t in self.tokens)
        tot = sum(self.tokens[t][1] for t in types if t in self.tokens)
        return hit / tot if tot else float("nan")

    def leak_rate(self) -> float:
        leaked = sum(v[0] for v in self.items.values())
        total = sum(v[1] for v in self.items.values())
        return leaked / total if total else float("nan")

    def over_redaction(self) -> float:
        hit = sum(v[0] for v in self.controls.values())
        total = sum(v[1] for v in self.controls.values())
        return hit / total if total else float("nan")

    def collateral_rate(self) -> float:
        return self.collateral[0] / self.collateral[1] if self.collateral[1] else float("nan")

    def summary(self) -> dict[str, float]:
        out = {
            "recall_safe_harbor": self.recall(SAFE_HARBOR),
            "recall_institution": self.recall(("institution",)),
            "recall_time": self.recall(("time",)),
            "strict_leak_rate": self.leak_rate(),
            "items": sum(v[1] for v in self.items.values()),
            "items_leaked": sum(v[0] for v in self.items.values()),
            "over_redaction": self.over_redaction(),
            "controls": sum(v[1] for v in self.controls.values()),
            "collateral": self.collateral_rate(),
        }
        for t in (*SAFE_HARBOR, *OTHER_TYPES):
            out[f"recall.{t}"] = self.recall((t,))
        return out


class _Cover:
    """Fast 'is [a, b) inside one span' / 'does [a, b) touch a span' queries."""

    def __init__(self, spans: Spans) -> None:
        merged: list[list[int]] = []
        for s, e in sorted(spans):
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        self.starts = [s for s, _ in merged]
        self.spans = merged

    def covers(self, a: int, b: int) -> bool:
        i = bisect_right(self.starts, a) - 1
        return i >= 0 and self.spans[i][1] >= b

    def touches(self, a: int, b: int) -> bool:
        i = bisect_right(self.starts, b - 1) - 1
        return i >= 0 and self.spans[i][1] > a


def score_examples(examples: Sequence[Example], system: System, scores: Scores | None = None) -> Scores:
    scores = scores or Scores()
    for ex in examples:
        cover = _Cover(system(ex.text))
        for item in ex.phi:
            hits = [cover.covers(a, b) for a, b in item.tokens]
            scores.tokens[item.type][0] += sum(hits)
            scores.tokens[item.type][1] += len(hits)
            leaked = not all(hits)
            scores.items[item.type][0] += leaked
            scores.items[item.type][1] += 1
            if item.source:
                scores.by_source[item.source][0] += leaked
                scores.by_source[item.source][1] += 1
            if leaked:
                scores.leaked_templates[ex.template] += 1
        for c in ex.controls:
            scores.controls[c.kind][0] += cover.touches(c.start, c.end)
            scores.controls[c.kind][1] += 1
    return scores


def score_collateral(texts: Sequence[str], system: System, scores: Scores | None = None) -> Scores:
    scores = scores or Scores()
    for text in texts:
        cover = _Cover(system(text))
        for m in re.finditer(r"\S+", text):
            scores.collateral[1] += 1
            if cover.touches(m.start(), m.end()) and not _DATE_WORD.match(m.group(0)):
                scores.collateral[0] += 1
    return scores
