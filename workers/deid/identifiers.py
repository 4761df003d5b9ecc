"""Contact details and identifiers: e-mail, URLs, phone/fax, MRN, accession, account, SSN,
licence, device and serial numbers, kept placeholders of scrubbed sources.

A keyword ("MRN", "Acc", "Fallnummer", "serial number", "DEA") makes the next token with a digit
an identifier; without a keyword, long digit runs, letter-digit mixtures and 5-digit numbers are
identifiers by shape (*protectable*: a lab value such as "WBC 12500" keeps its number).
"""

from __future__ import annotations

import re

from workers.deid.spans import Span

PLACEHOLDER = re.compile(r"\bX{2,}\b|\[\*\*.*?\*\*\]|(?<!_)_{3,}(?!_)")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_URL = re.compile(
    r"\b(?:https?://|ftp://|www\.)[^\s<>\"']+"
    r"|\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:com|org|net|edu|gov|de|at|ch|uk|io|info|eu|nl|se|fr)"
    r"(?:/[^\s<>\"']*)?\b",
    re.IGNORECASE,
)
_URL_HINT = re.compile(
    r"://|www\.|\.(?:com|org|net|edu|gov|de|at|ch|uk|io|info|eu|nl|se|fr)\b", re.IGNORECASE
)
_DIGIT = re.compile(r"\d")
_ID_KEYWORD = re.compile(
    r"(?:\b(?:mrn|mr\s?#|mr\s?no\.?|med(?:ical)?\.?\s+rec(?:ord)?\.?(?:\s+(?:number|no\.?|nr\.?|#))?"
    r"|record\s+(?:number|no\.?|#)|accession(?:\s+(?:number|no\.?|nr\.?|#))?|acc\.?(?:\s?(?:no\.?|#))?"
    r"|account(?:\s+(?:number|no\.?|#))?|acct\.?(?:\s?(?:no\.?|#))?|patient\s+(?:id|number|no\.?)"
    r"|pat(?:ienten)?[.-]{0,2}\s?(?:nr|no|id|nummer)\.?|pid|fall(?:nummer|-?nr\.?)|auftrags?(?:nummer|-?nr\.?)"
    r"|(?:patient\s+)?identifier|encounter(?:\s+(?:id|number|no\.?|#))?"
    r"|case\s+(?:id|number|no\.?|#)|encounter\s+(?:id|number|no\.?|#)|visit\s+(?:id|number|no\.?|#)"
    r"|order\s+(?:id|number|no\.?|#)|ssn|social\s+security(?:\s+(?:number|no\.?|#))?"
    r"|(?:insurance|health\s+plan|member|policy|billing|beneficiary)\s+(?:id|number|no\.?|#|account)"
    r"|versicherten-?(?:nummer|nr\.?)|versicherungs-?(?:nummer|nr\.?)|kennung|befund-?nr\.?"
    r"|[a-zäöüß]{3,}(?:nummer|-nr\.?)|aufnahme-?nr\.?|id-?nr\.?|ref\.?\s?(?:no\.?|nr\.?|#)"
    r"|mr(?=[ \t]*[:#]?[ \t]*\d)|fall|versicherung|visit|chart(?:\s+id)?"
    r"|study\s+(?:id|number)|exam\s+(?:id|number|no\.?)|ref(?:erence)?\s+(?:number|no\.?|#)"
    r"|licen[cs]e(?:\s+(?:number|no\.?|#))?|lic\.?\s?(?:no\.?|#)?|dea(?:\s?(?:no\.?|#))?|npi|approbation"
    r"|serial(?:\s+(?:number|no\.?|#))?|s/n|sn|seriennummer|serien-?nr\.?|device\s+(?:id|serial|number)"
    r"|model/serial|udi|lot\s?(?:no\.?|#)|charge(?:n-?nr\.?)?|geräte-?(?:nummer|nr\.?|id)|id)"
    r"|#)\s*[:#.=]?\s*(?:is\s+|number\s+|no\.?\s+)?"
    r"(?P<value>(?=[A-Za-z0-9/.-]*\d)[A-Za-z0-9][A-Za-z0-9/.-]{2,}[A-Za-z0-9](?:[ \t]\d{2}[ \t]\d{4}\b)?)",
    re.IGNORECASE,
)
_SSN = re.compile(r"(?<![\d-])\d{3}([- ])\d{2}\1\d{4}(?![\d-])")
_LONG_DIGITS = re.compile(r"(?<![\d.,])\d{6,}(?![\d]|[.,]\d)")
_ALNUM_ID = re.compile(r"\b(?=[A-Za-z]{0,5}-?\d)[A-Za-z]{1,5}-?\d{5,}[A-Za-z]?\b|\b\d{5,}[A-Za-z]{1,3}\b")
# letter-digit mixtures with at least four digits: "7A21-33K9", "AB1234C567", "DX22-37476"
_MIXED_ID = re.compile(
    r"(?<![\w-])(?=(?:[A-Za-z-]*\d){4})(?=[\w-]*[A-Za-z])[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*(?![\w-])"
)
_DASHED_NUMBER = re.compile(
    r"(?<![\w.,/-])(?:\d{2,4}-\d{5,}|\d{3}-\d{2}-\d{2,3}|\d{2,3}-\d{2,3}-\d{2,3}-\d{2,4})(?![\w-]|[./]\d)"
)
_UNIT_AFTER = r"\s*(?:mg|ml|g|kg|iu|ie|units?|einheiten|%|mm|cm|ms|µg|mcg|ng|pg|mmol|µl|/|u/l|iu/l)"
_FIVE_DIGITS = re.compile(r"(?<![\d.,/-])\d{5}(?![\d]|[.,]\d)(?!" + _UNIT_AFTER + r")", re.IGNORECASE)

_PHONE_KEYWORD = re.compile(
    r"\b(?:tel(?:ephone|efon)?|phone|faxed|gefaxt|fax|telefax|pager|beeper|pgr|mobile|mob|cell|handy|call|contact|ext|"
    r"reached\s+at|erreichbar\s+unter|rückruf|callback|durchwahl)"
    r"\.?\s*(?:no\.?|nr\.?|number|#)?\s*[:.]?\s*(?P<value>\+?\(?\d[\d\s()./-]{2,}\d)(?![\d.]*\s*(?:mg|ml|%))",
    re.IGNORECASE,
)
_PHONE_SHAPES = (
    re.compile(r"(?<![\w.])(?:\+?1[\s.-]?)?\(\d{3}\)\s?\d{3}[\s.-]?\d{4}(?![\w])"),
    re.compile(r"(?<![\w./-])(?:\+?1[\s.-])?\d{3}[\s.-]\d{3}[\s.-]\d{4}(?![\w]|[./-]\d)"),
    re.compile(r"(?<![\w.+/-])\+\d{1,3}[\s.-]?\(?\d{1,5}\)?(?:[\s.-]?\d{2,5}){2,4}(?![\w])"),
    re.compile(r"(?<![\w./-])0\d{2,5}\s?[/-]\s?\d{3,9}(?:[\s-]\d{1,5})?(?![\w]|[./-]\d)"),
    re.compile(r"(?<![\w./-])0\d{2,4}[ \t]\d{5,8}(?![\w]|[./-]\d)"),
    re.compile(r"(?<![\w./-])\d{3}-\d{4}(?![\w]|[./-]\d)"),
    re.compile(r"(?<![\w./-])0\d{2,5}-\d{1,4}-\d{2,6}(?![\w]|[./-]\d)"),  # "07071-29-88743"
)


def _value(m: re.Match, category: str, repl: str, prio: int) -> Span:
    return Span(m.start("value"), m.end("value"), category, repl, prio)


def placeholder_spans(text: str) -> list[Span]:
    return [Span(m.start(), m.end(), "placeholder", m.group(0), 100) for m in PLACEHOLDER.finditer(text)]


def contact_spans(text: str) -> list[Span]:
    """E-mail addresses, URLs and phone/fax numbers."""
    spans = []
    if "@" in text:
        spans += [Span(m.start(), m.end(), "email", "[EMAIL]", 90) for m in _EMAIL.finditer(text)]
    if _URL_HINT.search(text):
        spans += [Span(m.start(), m.end(), "url", "[URL]", 85) for m in _URL.finditer(text)]
    if _DIGIT.search(text):
        spans += [_value(m, "phone", "[PHONE]", 82) for m in _PHONE_KEYWORD.finditer(text)]
        for pat in _PHONE_SHAPES:
            spans += [Span(m.start(), m.end(), "phone", "[PHONE]", 60) for m in pat.finditer(text)]
    return spans


def id_spans(text: str) -> list[Span]:
    """Identifiers after a keyword (not protectable) and by shape (protectable)."""
    spans = [_value(m, "id", "[ID]", 80) for m in _ID_KEYWORD.finditer(text)]
    spans += [Span(m.start(), m.end(), "id", "[ID]", 79) for m in _SSN.finditer(text)]
    for pat, prio in (
        (_LONG_DIGITS, 30),
        (_ALNUM_ID, 29),
        (_MIXED_ID, 28),
        (_DASHED_NUMBER, 27),
        (_FIVE_DIGITS, 20),
    ):
        spans += [Span(m.start(), m.end(), "id", "[ID]", prio, True) for m in pat.finditer(text)]
    return spans
