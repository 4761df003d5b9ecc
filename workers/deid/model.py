"""The statistical member of the ensemble: a small logistic-regression token model for names.

Each word token gets sparse features (letter case and shape, suffix, dictionary memberships,
whether it is an ordinary word, the neighbouring words and their classes); a linear model trained
on synthetic PHI from the *dev* templates of the benchmark (``bench/deid_train_model.py``) gives
P(name). Tokens above the threshold become ``[NAME]`` spans that the clinical allow-list may veto.
The weights ship as ``workers/resources/deid/token_model.json.gz`` (a few thousand features); no
downloaded model, pure Python at run time.
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

from workers.deid.clinical import ECG_CODES
from workers.deid.lexicon import Lexicon, lexicon
from workers.deid.names import CLINICAL_FOLLOWERS
from workers.deid.spans import Span, is_mixed, tokenize

log = logging.getLogger(__name__)

MODEL_PATH = Path(__file__).resolve().parents[1] / "resources" / "deid" / "token_model.json.gz"
#: dictionary features (dropped at random while training, so unknown names are learnt too)
DICT_FEATURES = frozenset({"given", "surname", "strongname", "weakname", "place"})
#: the model's probability a lower-case token needs
LOWER_THRESHOLD = 0.9
_TITLES = frozenset("dr mr mrs ms miss prof herr frau doctor".split())
#: never scored: titles, credentials, report words that are capitalised by habit
_NEVER = _TITLES | frozenset("md rn pa np do phd dres med univ patient patientin pt pat".split()) | ECG_CODES


@dataclass(frozen=True, eq=False)
class TokenModel:
    version: str
    threshold: float
    bias: float
    weights: dict[str, float]


@lru_cache(maxsize=1)
def load_model(path: Path = MODEL_PATH) -> TokenModel | None:
    """The shipped model, or ``None`` (rules only) if the file is missing."""
    if not path.exists():
        log.warning("token model %s missing: rule-based de-identification only", path.name)
        return None
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    return TokenModel(data["version"], float(data["threshold"]), float(data["bias"]), data["weights"])


def _shape(tok: str) -> str:
    s = re.sub(r"[A-ZÄÖÜ]", "X", tok)
    s = re.sub(r"[a-zäöüßéèáàçñśł]", "x", s)
    s = re.sub(r"\d", "d", s)
    return re.sub(r"(.)\1+", r"\1\1", s)


@lru_cache(maxsize=65536)
def _cls(tok: str) -> str:
    """A coarse class of a neighbouring token."""
    lex = lexicon()
    if not tok[:1].isalnum():
        return "p" + tok if tok in ".,:;()'-/" else "p"
    low = tok.lower()
    if any(c.isdigit() for c in tok):
        return "num"
    if low in _TITLES:
        return "title"
    if low in lex.stop or lex.is_word(low):
        return "w:" + low if len(low) <= 14 else "word"
    if low in lex.given:
        return "given"
    if low in lex.surnames:
        return "surname"
    return "oov" + ("C" if tok[:1].isupper() else "l")


@lru_cache(maxsize=65536)
def _static(tok: str) -> tuple[str, ...]:
    """Features of a token on its own."""
    lex = lexicon()
    low = tok.lower()
    f = ["b", "shape=" + _shape(tok), "suf3=" + low[-3:], "suf2=" + low[-2:], "len=" + str(min(len(tok), 12))]
    in_words = lex.is_word(low) or low in lex.stop
    f.append("word" if in_words else "oov")
    if in_words:
        f.append("w=" + low)
    else:  # character n-grams: what an unknown word looks like (a name, a Latin term, a code)
        f += ["suf4=" + low[-4:], "pre3=" + low[:3]]
        padded = "^" + low + "$"
        f += ["c3=" + padded[k : k + 3] for k in range(len(padded) - 2)]
    for flag, table in (
        ("given", lex.given),
        ("surname", lex.surnames),
        ("strongname", lex.strong_names),
        ("weakname", lex.weak_names),
        ("place", lex.places),
    ):
        if low in table:
            f.append(flag)
    return tuple(f)


def token_features(toks: list[str], i: int, lex: Lexicon, mixed: bool) -> list[str]:
    """Sparse features of token ``i`` (strings; shared by training and inference)."""
    tok = toks[i]
    f = list(_static(tok))
    f.append("mixed" if mixed else "onecase")
    prev = toks[i - 1] if i > 0 else "<s>"
    prev2 = toks[i - 2] if i > 1 else "<s>"
    nxt = toks[i + 1] if i + 1 < len(toks) else "</s>"
    nxt2 = toks[i + 2] if i + 2 < len(toks) else "</s>"
    initial = prev in ("<s>", ".", ":", "!", "?")
    f.append(
        ("cap" if tok[:1].isupper() else "low") + ("_init" if initial else "_mid") + ("_mx" if mixed else "")
    )
    cp = prev if prev == "<s>" else _cls(prev)
    cn = nxt if nxt == "</s>" else _cls(nxt)
    f.append("p1=" + cp)
    f.append("p2=" + (prev2 if prev2 == "<s>" else _cls(prev2)))
    f.append("n1=" + cn)
    f.append("n2=" + (nxt2 if nxt2 == "</s>" else _cls(nxt2)))
    f.append(f"p1n1={cp}|{cn}")
    return f


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -30 else 0.0


def candidates(text: str) -> tuple[list[tuple[int, int, str]], list[str], bool, list[int]]:
    """Tokens of ``text`` as (start, end, string), their strings, whether the text is mixed-case,
    and the indices the model scores (stop words, titles and, in a mixed-case text, common
    lower-case words are skipped)."""
    lex = lexicon()
    spans = tokenize(text)
    toks = [t[2] for t in spans]
    mixed = is_mixed(text)
    idx = [i for i, tok in enumerate(toks) if _scored(tok, mixed, lex)]
    return spans, toks, mixed, idx


@lru_cache(maxsize=65536)
def _scored_key(tok: str, mixed: bool) -> bool:
    lex = lexicon()
    if len(tok) < 2 or not any(c.isalpha() for c in tok):
        return False
    low = tok.lower()
    if (low in lex.stop and not tok[:1].isupper()) or low in _NEVER:
        return False
    if mixed and tok.isupper() and len(tok) <= 3:
        return False  # abbreviations: "NG", "LAO", "SVC"
    if low in lex.countries:
        return False
    return not (
        mixed and tok.islower() and lex.is_word(low) and low not in lex.given and low not in lex.surnames
    )


def _scored(tok: str, mixed: bool, lex: Lexicon) -> bool:
    return _scored_key(tok, mixed)


@lru_cache(maxsize=65536)
def _static_score(tok: str, model: TokenModel) -> float:
    """The summed weights of a token's own features (cached: most tokens recur)."""
    w = model.weights
    return sum(w.get(x, 0.0) for x in _static(tok))


@lru_cache(maxsize=65536)
def _context(tok: str) -> str:
    return tok if tok in ("<s>", "</s>") else _cls(tok)


def token_scores(text: str, model: TokenModel) -> list[tuple[int, int, float]]:
    """(start, end, P(name)) of the candidate tokens of ``text``: the same sum as over
    :func:`token_features`, with the token's own part cached."""
    matches, toks, mixed, idx = candidates(text)
    w = model.weights
    n = len(toks)
    case = "mixed" if mixed else "onecase"
    w_case = w.get(case, 0.0)
    mx = "_mx" if mixed else ""
    out = []
    for i in idx:
        tok = toks[i]
        prev = toks[i - 1] if i > 0 else "<s>"
        prev2 = toks[i - 2] if i > 1 else "<s>"
        nxt = toks[i + 1] if i + 1 < n else "</s>"
        nxt2 = toks[i + 2] if i + 2 < n else "</s>"
        initial = prev in ("<s>", ".", ":", "!", "?")
        cp, cn = _context(prev), _context(nxt)
        score = model.bias + _static_score(tok, model) + w_case
        score += w.get(("cap" if tok[:1].isupper() else "low") + ("_init" if initial else "_mid") + mx, 0.0)
        score += w.get("p1=" + cp, 0.0) + w.get("p2=" + _context(prev2), 0.0) + w.get("n1=" + cn, 0.0)
        score += w.get("n2=" + _context(nxt2), 0.0) + w.get(f"p1n1={cp}|{cn}", 0.0)
        out.append((matches[i][0], matches[i][1], _sigmoid(score)))
    return out


def model_spans(text: str, threshold: float | None = None) -> list[Span]:
    """``[NAME]`` spans of tokens the model scores above ``threshold`` (protectable)."""
    model = load_model()
    if model is None:
        return []
    th = model.threshold if threshold is None else threshold
    mixed = is_mixed(text)
    lex = lexicon()
    out = []
    for s, e, p in token_scores(text, model):
        # a lower-case token, or an upper-case one in ordinary text, needs more evidence: clinical
        # words and abbreviations ("INJAS", "brady") look alike
        tok = text[s:e]
        odd_case = tok.islower() or (mixed and tok.isupper())
        low = tok.lower()
        plain_word = lex.is_word(low) and low not in lex.given and low not in lex.surnames
        need = max(th, LOWER_THRESHOLD) if odd_case or plain_word else th
        if p >= need and not CLINICAL_FOLLOWERS.match(text, e):
            out.append(Span(s, e, "name", "[NAME]", 37, True))
    return out
