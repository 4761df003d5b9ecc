"""The learned part of report labelling: per-label logistic regression over n-grams + rule outputs.

A :class:`LabelModel` holds, for one report domain (``ecg`` or ``cxr``), a feature vocabulary
with IDF weights and, per label, a *mode* chosen on the dev split by cross-validation
(``bench/train_label_model.py``; provenance in ``workers/resources/labels_model/README.md``):

- ``rules``: the rule path decides alone (the model is not better, or too few examples);
- ``stack``: a logistic regression over the report's word n-grams, character n-grams of long
  words and the rule path's own outputs (label × assertion, the normal flag) decides.

Features (:func:`featurize`) are computed here in plain Python + NumPy, so no scikit-learn is
needed at run time; training uses scikit-learn with the same feature function. Text is folded
(lower case, umlauts transliterated, digits as ``0``) and split into statements (sentences,
lines, ``;``), so n-grams never cross a statement.

Negation stays with the rules: the model never adds a label that the rule path found only
negated, and it only ever adds findings as ``present``.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: folder of the shipped models (``<domain>.json.gz``)
MODEL_DIR = Path(__file__).resolve().parents[1] / "resources" / "labels_model"
DOMAINS: tuple[str, ...] = ("ecg", "cxr")
FEATURE_VERSION = "f2"

_FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "é": "e", "á": "a", "å": "a"})
_DIGITS = re.compile(r"\d+")
_STATEMENTS = re.compile(r"(?:[.;:!?](?=\s|$)|\n|\s{3,})+")
_WORD = re.compile(r"[a-z0#]+(?:[-/(][a-z0#)]+)*")
#: a word that opens a negated scope (to the end of the statement or a terminator)
_NEG_CUES = frozenset(
    "no not without kein keine keinen keiner keines nicht ohne ingen inga inte ej nor".split()
)
_TERMINATORS = frozenset("but however although though except aber jedoch allerdings men dock".split())


def fold(text: str) -> str:
    """Lower case, umlauts transliterated (``ischÄmie`` → ``ischaemie``), digits as ``0``."""
    return _DIGITS.sub("0", text.lower().translate(_FOLD))


def featurize(text: str, rule_features: tuple[str, ...] = (), char_min_len: int = 7) -> dict[str, float]:
    """Feature counts of one report: word 1-3-grams per statement (``w:``; a word in the scope of
    a negation cue is written ``!word``), character 4-grams of words of ``char_min_len`` letters
    or more (``c:``, German compounds), and the rule outputs (``r:``, count 1)."""
    feats: dict[str, float] = {}
    for statement in _STATEMENTS.split(fold(text)):
        words = _WORD.findall(statement)
        negated = False
        for i, w in enumerate(words):
            if w in _TERMINATORS:
                negated = False
            elif w in _NEG_CUES:
                negated = True
            elif negated:
                words[i] = "!" + w
        for n in (1, 2, 3):
            for i in range(len(words) - n + 1):
                key = "w:" + " ".join(words[i : i + n])
                feats[key] = feats.get(key, 0.0) + 1.0
        for w in words:
            if len(w) >= char_min_len and w[0] != "!":
                padded = f"<{w}>"
                for i in range(len(padded) - 3):
                    key = "c:" + padded[i : i + 4]
                    feats[key] = feats.get(key, 0.0) + 1.0
    for r in rule_features:
        feats["r:" + r] = 1.0
    return feats


def rule_features(structured: dict, context_sections: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """The rule path's outputs as features: ``label=pos|unc|neg`` per finding (findings in
    ``context_sections`` get ``ctx``) and ``normal`` when the normal flag is set."""
    out = set()
    for f in structured.get("findings", []):
        a = f.get("assertion")
        kind = "pos" if a in ("present", "historical") else "unc" if a == "uncertain" else "neg"
        if f.get("section") in context_sections:
            kind = "ctx"
        out.add(f"{f['label']}={kind}")
    if structured.get("normal"):
        out.add("normal")
    return tuple(sorted(out))


@dataclass(frozen=True)
class LabelHead:
    """One label's decision: ``mode`` (``rules``/``stack``), threshold, bias and sparse weights."""

    mode: str
    threshold: float
    bias: float
    index: np.ndarray  # feature indices with a weight
    weight: np.ndarray


class LabelModel:
    """A loaded per-domain model (see the module docstring)."""

    def __init__(self, data: dict) -> None:
        if data.get("feature_version") != FEATURE_VERSION:
            raise ValueError(
                f"label model feature version {data.get('feature_version')!r} != {FEATURE_VERSION}"
            )
        self.version: str = data["version"]
        self.domain: str = data["domain"]
        self.char_min_len: int = int(data.get("char_min_len", 7))
        self.rule_weight: float = float(data.get("rule_weight", 1.0))
        self.vocab: dict[str, int] = {f: i for i, f in enumerate(data["features"])}
        self.idf = np.asarray(data["idf"], dtype=np.float64)
        self._idf: list[float] = self.idf.tolist()
        self.heads: dict[str, LabelHead] = {}
        for label, h in data["labels"].items():
            self.heads[label] = LabelHead(
                h["mode"],
                float(h["threshold"]),
                float(h["bias"]),
                np.asarray(h["index"], dtype=np.int64),
                np.asarray(h["weight"], dtype=np.float64),
            )
        n = len(self.idf)
        labels = sorted(self.heads)
        self.labels: tuple[str, ...] = tuple(labels)
        # dense (features × labels) weight matrix: one product per report
        self._w = np.zeros((n, len(labels)), dtype=np.float64)
        for j, lab in enumerate(labels):
            h = self.heads[lab]
            self._w[h.index, j] = h.weight
        self._b = np.asarray([self.heads[lab].bias for lab in labels])
        self._weights_cache: dict[str, dict[int, float]] = {}

    @classmethod
    def load(cls, path: Path) -> LabelModel:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return cls(json.load(f))

    def vector(self, feats: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Indices and values of the known features: text n-grams as TF-IDF (sublinear tf,
        L2-normalised over the text block), rule outputs as ``rule_weight`` (own block)."""
        idx, val, ridx = [], [], []
        lookup, idf, log = self.vocab, self._idf, math.log
        for f, c in feats.items():
            i = lookup.get(f)
            if i is None:
                continue
            if f[0] == "r":
                ridx.append(i)
            else:
                idx.append(i)
                val.append((1.0 + log(c)) * idf[i])
        norm = math.sqrt(sum(v * v for v in val)) or 1.0
        return (
            np.asarray(idx + ridx, dtype=np.int64),
            np.asarray([v / norm for v in val] + [self.rule_weight] * len(ridx), dtype=np.float64),
        )

    def features(self, text: str, rules: tuple[str, ...]) -> dict[str, float]:
        """:func:`featurize` with this model's settings."""
        return featurize(text, rules, self.char_min_len)

    def predict_proba(self, feats: dict[str, float]) -> dict[str, float]:
        """Probability per label (every label of the model, whatever its mode)."""
        idx, val = self.vector(feats)
        z = val @ self._w[idx] + self._b if len(idx) else self._b.copy()
        p = 1.0 / (1.0 + np.exp(-z))
        return dict(zip(self.labels, p.tolist(), strict=True))

    def evidence(self, feats: dict[str, float], label: str) -> str:
        """The word n-gram among ``feats`` that pushes ``label`` up most (the finding's evidence)."""
        w = self._head_weights(label)
        best, best_w = "", 0.0
        for f in feats:
            if f[0] != "w":
                continue
            i = self.vocab.get(f)
            if i is not None and w.get(i, 0.0) * self._idf[i] > best_w:
                best, best_w = f[2:], w[i] * self._idf[i]
        return best

    def _head_weights(self, label: str) -> dict[int, float]:
        cached = self._weights_cache.get(label)
        if cached is None:
            h = self.heads[label]
            cached = self._weights_cache[label] = dict(zip(h.index.tolist(), h.weight.tolist(), strict=True))
        return cached

    def decide(self, feats: dict[str, float]) -> dict[str, tuple[bool, float]]:
        """``label → (positive, probability)`` for the labels in ``stack`` mode."""
        proba = self.predict_proba(feats)
        return {
            lab: (proba[lab] >= h.threshold, proba[lab]) for lab, h in self.heads.items() if h.mode == "stack"
        }


def model_versions(model_dir: str = "") -> dict[str, str]:
    """Version of each shipped domain model (``none`` when absent or unusable)."""
    out = {}
    for domain in DOMAINS:
        m = load_model(domain, model_dir)
        out[domain] = m.version if m is not None else "none"
    return out


@lru_cache(maxsize=4)
def load_model(domain: str, model_dir: str = "") -> LabelModel | None:
    """The shipped model of ``domain`` (``None`` when absent: the rules then decide alone)."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown label model domain {domain!r}")
    path = Path(model_dir or MODEL_DIR) / f"{domain}.json.gz"
    if not path.exists():
        log.info("no label model at %s: rules only", path)
        return None
    try:
        return LabelModel.load(path)
    except ValueError as exc:  # a model of another feature version: retrain (tests pin the shipped one)
        log.error("label model %s not usable (%s): rules only", path, exc)
        return None
