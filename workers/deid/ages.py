"""Ages over 89 (HIPAA Safe Harbor): written as digits or words, English or German → ``90+``."""

from __future__ import annotations

import re

from workers.deid.spans import Span

_UNIT = r"(?:years?|yrs?|y/o|yo|y\.o\.|y\b|y(?=[\s-]*(?:old|o\b))|jahre?n?|j\.|jähr\w*|jaehr\w*|år|ans?|a\.)"
_AGE_PATTERNS = (
    re.compile(r"(?<![\d.,])(?P<n>\d{2,3})(?=\s*-?\s*" + _UNIT + r"(?![a-zäöü]))", re.IGNORECASE),
    re.compile(
        r"\b(?:age|aged|alter|ålder|im\s+alter\s+von|age\s+of|now|jetzt)\s*(?:[:=]|is|was|of|ist|von)?\s*(?P<n>\d{2,3})(?![\d]|[.,]\d|\s*(?:%|mm|cm|kg|mg|ml|bpm|/min|ms))",
        re.IGNORECASE,
    ),
    re.compile(r"\b(?:in\s+(?:his|her|their)\s+)(?P<n>\d{2,3})(?=s\b)", re.IGNORECASE),
    re.compile(r"(?<![\d.,])(?P<n>\d{2,3})\.[ \t]*lebensjahr", re.IGNORECASE),
    re.compile(
        r"\b(?:patient|pt|patientin|man|woman|male|female|lady|gentleman|mann|frau|herr|resident|veteran)"
        r"[ \t]*[(,][ \t]*(?P<n>\d{2,3})[ \t]*[),]",
        re.IGNORECASE,
    ),
    re.compile(
        r"\b(?:patient|pt|patientin|he|she|who|er|sie)\s+(?:is|was|ist|war)\s+(?:now\s+|jetzt\s+)?(?P<n>\d{2,3})(?=\s*(?:[.,;)]|$))",
        re.IGNORECASE,
    ),
    re.compile(r"(?<![\d.,])(?P<n>\d{2,3})(?=[ \t]*(?:-?[ \t]*(?:year|yr)[ \t-]*old|-?jährige?[rn]?))"),
)
_TENS = r"(?:ninety|one[ \t-]+hundred(?:[ \t-]+and)?|hundred|neunzig|hundert)"
_WORD_AGE = re.compile(
    r"\b(?P<n>" + _TENS + r"(?:[ \t-]+(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve))?"
    r"|(?:ein|zwei|drei|vier|fünf|sechs|sieben|acht|neun)und(?:neunzig))"
    r"(?=[ \t-]*(?:years?|yrs?|y/?o|y(?=[ \t]*[),;])|j(?=\.)|jahre?|-?jährig|old)\b|[ \t]*y\.[ \t]?o\.|\s*$|[ \t]*[,.;)])",
    re.IGNORECASE,
)


def age_spans(text: str, has_digit: bool = True) -> list[Span]:
    out = []
    for pat in _AGE_PATTERNS if has_digit else ():
        for m in pat.finditer(text):
            if 89 < int(m["n"]) < 150:
                out.append(Span(m.start("n"), m.end("n"), "age", "90+", 45))
    low = text.lower()
    if "ninety" not in low and "hundred" not in low and "neunzig" not in low and "hundert" not in low:
        return out
    for m in _WORD_AGE.finditer(text):
        out.append(Span(m.start("n"), m.end("n"), "age", "90+", 45))
    return out
