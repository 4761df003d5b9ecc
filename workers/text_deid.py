"""Rule-based de-identification of free-text reports (no downloaded model).

Recall first: a missed identifier is worse than an over-redacted word. Detectors run over the
whole text, produce candidate spans with a category and a replacement, overlaps are resolved by
priority (then length), and the text is rebuilt. What is replaced:

- ``placeholder``: ``XXXX``-style tokens of already-scrubbed sources (Indiana/OpenI), ``[** **]``
  (MIMIC-III) and ``___`` (MIMIC-IV): *kept* as they are, counted, and shielded from other rules.
- ``email``, ``url``: ``[EMAIL]``, ``[URL]``.
- ``id``: medical record / accession / account / case numbers after a keyword, and any run of
  ≥ 6 digits (or letters + ≥ 5 digits), and 5-digit standalone numbers: ``[ID]``.
- ``phone``: phone/fax/pager numbers (keyword-triggered or by shape): ``[PHONE]``.
- ``date``: shifted by ``pseudo.date_shift_days(patient)`` (the offset DICOM and ECG use) and
  written back in the *same format* (ISO, US ``03/12/2019``, German ``12.03.2019``, month names
  in English or German, with or without year, 2- or 4-digit years, DICOM ``20190312``). A
  date-shaped string that is no valid date becomes ``[DATE]``.
- ``age``: ages over 89 become ``90+`` (HIPAA Safe Harbor).
- ``address``: street addresses, US ``City, ST 12345``, German ``12345 Stadt``, address labels.
- ``name``: titles (Dr., Mr., Herr, Frau, Prof. ...), signature/role labels ("Signed by:",
  "Befundet von:", "Patient:"), and lists of common given names/surnames
  (``workers/resources/deid_names.json``): ``[NAME]``.

The returned counts are per category and never contain the values.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

from workers.pseudonym import Pseudonymizer

CATEGORIES: tuple[str, ...] = ("name", "date", "age", "phone", "email", "url", "id", "address", "placeholder")

_RESOURCES = Path(__file__).resolve().parent / "resources"

# ---------------------------------------------------------------------------------------------
# spans


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    category: str
    replacement: str
    priority: int


#: categories whose replacement is a fixed token: an overlapped span keeps its free parts
_SPLITTABLE = frozenset({"name", "address", "id", "phone"})


def _resolve(spans: list[_Span], text: str) -> list[_Span]:
    """Non-overlapping spans: higher priority first, then longer, then earlier.

    A lower-priority redaction overlapping a kept span is not dropped (recall first): its parts
    outside the kept spans are still redacted when they contain a letter or digit.
    """
    chosen: list[_Span] = []
    for s in sorted(spans, key=lambda s: (-s.priority, -(s.end - s.start), s.start)):
        if s.end <= s.start:
            continue
        overlaps = sorted((c.start, c.end) for c in chosen if s.start < c.end and c.start < s.end)
        if not overlaps:
            chosen.append(s)
            continue
        if s.category not in _SPLITTABLE:
            continue
        pos = s.start
        for b, e in overlaps + [(s.end, s.end)]:
            lo, hi = pos, min(b, s.end)
            while lo < hi and not text[lo].isalnum():
                lo += 1
            while hi > lo and not text[hi - 1].isalnum():
                hi -= 1
            if hi > lo and not any(lo < ce and cb < hi for cb, ce in ((c.start, c.end) for c in chosen)):
                chosen.append(_Span(lo, hi, s.category, s.replacement, s.priority))
            pos = max(pos, e)
    return sorted(chosen, key=lambda s: s.start)


# ---------------------------------------------------------------------------------------------
# placeholders, e-mail, URLs

_PLACEHOLDER = re.compile(r"\bX{2,}\b|\[\*\*.*?\*\*\]|(?<!_)_{3,}(?!_)")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_URL = re.compile(
    r"\b(?:https?://|ftp://|www\.)[^\s<>\"']+"
    r"|\b[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:com|org|net|edu|gov|de|at|ch|uk|io|info|eu|nl|se|fr)"
    r"(?:/[^\s<>\"']*)?\b",
    re.IGNORECASE,
)

# ---------------------------------------------------------------------------------------------
# identifiers

_ID_KEYWORD = re.compile(
    r"(?:\b(?:mrn|mr\s?#|mr\s?no\.?|med(?:ical)?\.?\s+rec(?:ord)?\.?(?:\s+(?:number|no\.?|nr\.?|#))?"
    r"|record\s+(?:number|no\.?|#)|accession(?:\s+(?:number|no\.?|nr\.?|#))?|acc\.?\s?(?:no\.?|#)"
    r"|account(?:\s+(?:number|no\.?|#))?|acct\.?(?:\s?(?:no\.?|#))?|patient\s+(?:id|number|no\.?)"
    r"|pat(?:ienten)?[.-]?\s?(?:nr|no|id|nummer)\.?|pid|fall(?:nummer|-?nr\.?)|auftrags?(?:nummer|-?nr\.?)"
    r"|case\s+(?:id|number|no\.?|#)|encounter\s+(?:id|number|no\.?|#)|visit\s+(?:id|number|no\.?|#)"
    r"|order\s+(?:id|number|no\.?|#)|ssn|social\s+security(?:\s+number)?|insurance\s+(?:id|number|no\.?|#)"
    r"|versicherten-?(?:nummer|nr\.?)|kennung|befund-?nr\.?|study\s+(?:id|number)|exam\s+(?:id|number|no\.?)"
    r"|ref(?:erence)?\s+(?:number|no\.?|#)|id)"
    r"|#)\s*[:#.=]?\s*(?:is\s+)?"
    r"(?P<value>(?=[A-Za-z0-9/.-]*\d)[A-Za-z0-9][A-Za-z0-9/.-]{2,}[A-Za-z0-9])",
    re.IGNORECASE,
)
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
_LONG_DIGITS = re.compile(r"(?<![\d.,])\d{6,}(?![\d]|[.,]\d)")
_ALNUM_ID = re.compile(r"\b(?=[A-Za-z]{0,5}-?\d)[A-Za-z]{1,5}-?\d{5,}[A-Za-z]?\b|\b\d{5,}[A-Za-z]{1,3}\b")
_UNIT_AFTER = r"\s*(?:mg|ml|g|kg|iu|ie|units?|einheiten|%|mm|cm|ms|µg|mcg|ng|pg|mmol|µl|/)"
_FIVE_DIGITS = re.compile(r"(?<![\d.,/-])\d{5}(?![\d]|[.,]\d)(?!" + _UNIT_AFTER + r")", re.IGNORECASE)

# ---------------------------------------------------------------------------------------------
# phone numbers

_PHONE_KEYWORD = re.compile(
    r"\b(?:tel(?:ephone|efon)?|phone|fax|telefax|pager|beeper|pgr|mobile|mob|cell|handy|call|contact|ext)"
    r"\.?\s*(?:no\.?|nr\.?|number|#)?\s*[:.]?\s*(?P<value>\+?\(?\d[\d\s()./-]{2,}\d)(?![\d.]*\s*(?:mg|ml|%))",
    re.IGNORECASE,
)
_PHONE_SHAPES = (
    re.compile(r"(?<![\w.])(?:\+?1[\s.-]?)?\(\d{3}\)\s?\d{3}[\s.-]?\d{4}(?![\w])"),
    re.compile(r"(?<![\w./-])(?:\+?1[\s.-])?\d{3}[\s.-]\d{3}[\s.-]\d{4}(?![\w]|[./-]\d)"),
    re.compile(r"(?<![\w.+/-])\+\d{1,3}[\s.-]?\(?\d{1,5}\)?(?:[\s.-]?\d{2,5}){2,4}(?![\w])"),
    re.compile(r"(?<![\w./-])0\d{2,5}\s?[/-]\s?\d{3,9}(?:[\s-]\d{1,5})?(?![\w]|[./-]\d)"),
    re.compile(r"(?<![\w./-])\d{3}-\d{4}(?![\w]|[./-]\d)"),
)

# ---------------------------------------------------------------------------------------------
# dates

_MONTHS_EN = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12,
}  # fmt: skip
_MONTHS_EN_ABBR = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10,
    "nov": 11, "dec": 12,
}  # fmt: skip
_MONTHS_DE = {
    "januar": 1, "jänner": 1, "februar": 2, "märz": 3, "maerz": 3, "april": 4, "mai": 5, "juni": 6,
    "juli": 7, "august": 8, "september": 9, "oktober": 10, "november": 11, "dezember": 12,
}  # fmt: skip
_MONTHS_DE_ABBR = {"jan": 1, "feb": 2, "mär": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "okt": 10,
                   "nov": 11, "dez": 12}  # fmt: skip
_EN_NAMES = [n.capitalize() for n in _MONTHS_EN]
_EN_ABBR = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_DE_NAMES = ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
             "November", "Dezember"]  # fmt: skip
_DE_ABBR = ["Jan", "Feb", "Mär", "Apr", "Mai", "Jun", "Jul", "Aug", "Sep", "Okt", "Nov", "Dez"]

_FULL_MONTHS = frozenset(_MONTHS_EN) | frozenset(_MONTHS_DE)
_MONTH_WORDS = sorted(
    set(_MONTHS_EN) | set(_MONTHS_EN_ABBR) | set(_MONTHS_DE) | set(_MONTHS_DE_ABBR), key=len, reverse=True
)
_MONTH_RE = r"(?P<month>" + "|".join(re.escape(m) for m in _MONTH_WORDS) + r")(?![a-zäöüß])\.?"
_YEAR4 = r"(?:1[89]\d\d|20\d\d|21\d\d)"

_DATE_ISO = re.compile(
    r"(?<![\d.])(?P<y>" + _YEAR4 + r")(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})(?![\d])"
)
_DATE_NUM = re.compile(
    r"(?<![\d.,/-])(?P<a>\d{1,2})(?P<sep>[./-])(?P<b>\d{1,2})(?P=sep)(?P<y>"
    + _YEAR4
    + r"|\d{2})(?![\d]|[.,/-]\d)"
)
_DATE_COMPACT = re.compile(
    r"(?<![\d.])(?P<y>(?:19|20)\d\d)(?P<m>0[1-9]|1[0-2])(?P<d>0[1-9]|[12]\d|3[01])(?!\d)"
)
# "March 12, 2019", "Mar. 12th 2019", "March 12" (no year)
_DATE_MDY = re.compile(
    r"\b"
    + _MONTH_RE
    + r"\s+(?P<d>\d{1,2})(?P<ord>st|nd|rd|th)?(?:(?P<comma>,?\s+)(?P<y>"
    + _YEAR4
    + r"))?(?![\d:])",
    re.IGNORECASE,
)
# "12 March 2019", "12. März 2019", "12th of March 2019", "12 March" (no year)
_DATE_DMY = re.compile(
    r"(?<![\d.])(?P<d>\d{1,2})(?P<suffix>\.|st|nd|rd|th)?(?P<of>\s+of)?\s+" + _MONTH_RE
    + r"(?:(?P<comma>,?\s+)(?P<y>" + _YEAR4 + r"))?(?![\d])",
    re.IGNORECASE,
)  # fmt: skip
# "March 2019", "März 2019" (month-year)
_DATE_MY = re.compile(r"\b" + _MONTH_RE + r"(?P<comma>,?\s+)(?P<y>" + _YEAR4 + r")\b", re.IGNORECASE)
# year-less numeric dates after a cue: "on 3/12", "am 12.03.", "vom 12.3."
# "28:4:92", "20 & 21:3:92" (PTB-XL English reports: day:month:year; never a time, the last
# field is a year: 4 digits or > 59)
_DATE_COLON = re.compile(
    r"(?<![\d:])(?:(?P<d0>\d{1,2})\s*(?:&|and|und|,)\s*)?(?P<d>\d{1,2}):(?P<m>\d{1,2}):(?P<y>\d{4}|\d{2})(?![\d:])"
)
_DATE_CUE_NUM = re.compile(
    r"\b(?:on|dated|date|am|vom|seit|bis|from|since|until)\s+(?P<a>\d{1,2})(?P<sep>[./])(?P<b>\d{1,2})(?P<dot>\.)?"
    r"(?![\d]|[./]\d)",
    re.IGNORECASE,
)


def _two_digit_year(yy: int) -> int:
    return 2000 + yy if yy <= 40 else 1900 + yy


def _month_of(word: str) -> tuple[int, str]:
    """Month number and naming style (``en``/``en_abbr``/``de``/``de_abbr``) of a month word."""
    w = word.lower().rstrip(".")
    if w in _MONTHS_EN:
        return _MONTHS_EN[w], "en"
    if w in _MONTHS_DE:
        return _MONTHS_DE[w], "de"
    if w in _MONTHS_EN_ABBR:
        return _MONTHS_EN_ABBR[w], "en_abbr"
    return _MONTHS_DE_ABBR[w], "de_abbr"


def _month_word(month: int, style: str, like: str) -> str:
    """The name of ``month`` in the naming style and letter case of the original word ``like``."""
    table = {"en": _EN_NAMES, "en_abbr": _EN_ABBR, "de": _DE_NAMES, "de_abbr": _DE_ABBR}[style]
    word = table[month - 1]
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like.islower():
        return word.lower()
    return word


def _ordinal(day: int) -> str:
    if 10 <= day % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def _pad(value: int, like: str) -> str:
    """``value`` written as wide as ``like`` (two-digit fields stay two digits)."""
    return f"{value:02d}" if len(like) == 2 else str(value)


def _fmt_year(year: int, like: str) -> str:
    return f"{year % 100:02d}" if len(like) == 2 else f"{year:04d}"


class _DateShifter:
    """Finds dates and writes them back shifted by ``days`` in their original format."""

    _REF_YEAR = 2000  # leap year used to shift dates written without a year

    def __init__(self, days: int) -> None:
        self.delta = timedelta(days=days)

    def _shift(self, y: int, m: int, d: int) -> date | None:
        try:
            return date(y, m, d) + self.delta
        except ValueError:
            return None

    def spans(self, text: str) -> list[_Span]:
        out: list[_Span] = []

        def yearless_ok(m: re.Match) -> bool:
            # "2 may represent", "mar 3" in lower case: only full month names (not "may") count
            word = m["month"]
            return (
                m["y"] is not None
                or word[:1].isupper()
                or (word.lower() in _FULL_MONTHS and word.lower() != "may")
            )

        def add(m: re.Match, repl: str | None, prio: int = 70) -> None:
            out.append(_Span(m.start(), m.end(), "date", repl if repl is not None else "[DATE]", prio))

        for m in _DATE_ISO.finditer(text):
            new = self._shift(int(m["y"]), int(m["m"]), int(m["d"]))
            repl = None
            if new:
                repl = f"{new.year:04d}{m['sep']}{_pad(new.month, m['m'])}{m['sep']}{_pad(new.day, m['d'])}"
            add(m, repl, 72)
        for m in _DATE_COMPACT.finditer(text):
            new = self._shift(int(m["y"]), int(m["m"]), int(m["d"]))
            if new:
                add(m, f"{new.year:04d}{new.month:02d}{new.day:02d}", 71)
        for m in _DATE_NUM.finditer(text):
            a, b, ys = int(m["a"]), int(m["b"]), m["y"]
            year = int(ys) if len(ys) == 4 else _two_digit_year(int(ys))
            if m["sep"] == ".":  # German/European: D.M.Y
                order = [("d", "m")]
            else:  # US first, European if the US reading is impossible
                order = [("m", "d"), ("d", "m")]
            repl = None
            for first, _second in order:
                mo, dy = (a, b) if first == "m" else (b, a)
                new = self._shift(year, mo, dy)
                if new:
                    fa, fb = (new.month, new.day) if first == "m" else (new.day, new.month)
                    repl = (
                        f"{_pad(fa, m['a'])}{m['sep']}{_pad(fb, m['b'])}{m['sep']}{_fmt_year(new.year, ys)}"
                    )
                    break
            add(m, repl)
        for m in _DATE_MDY.finditer(text):
            if not yearless_ok(m):
                continue
            month, style = _month_of(m["month"])
            new = self._shift(int(m["y"]) if m["y"] else self._REF_YEAR, month, int(m["d"]))
            repl = None
            if new:
                dot = "." if text[m.end("month") : m.end("month") + 1] == "." else ""
                gap = text[m.end("month") + len(dot) : m.start("d")]
                suffix = _ordinal(new.day) if m["ord"] else ""
                repl = f"{_month_word(new.month, style, m['month'])}{dot}{gap}{_pad(new.day, m['d'])}{suffix}"
                if m["y"]:
                    repl += m["comma"] + f"{new.year:04d}"
            add(m, repl, 69)
        for m in _DATE_DMY.finditer(text):
            if not yearless_ok(m):
                continue
            month, style = _month_of(m["month"])
            year = int(m["y"]) if m["y"] else self._REF_YEAR
            new = self._shift(year, month, int(m["d"]))
            repl = None
            if new:
                suffix = m["suffix"] or ""
                if suffix and suffix != ".":
                    suffix = _ordinal(new.day)
                month_like = text[m.start("month") : m.end("month")]
                dot = "." if text[m.end("month") : m.end("month") + 1] == "." else ""
                between = text[m.end("d") + len(m["suffix"] or "") : m.start("month")]
                repl = f"{_pad(new.day, m['d'])}{suffix}{between}{_month_word(new.month, style, month_like)}{dot}"
                if m["y"]:
                    repl += m["comma"] + f"{new.year:04d}"
            add(m, repl, 69)
        for m in _DATE_MY.finditer(text):
            month, style = _month_of(m["month"])
            new = self._shift(int(m["y"]), month, 15)
            if new:
                month_like = text[m.start("month") : m.end("month")]
                dot = "." if text[m.end("month") : m.end("month") + 1] == "." else ""
                add(m, f"{_month_word(new.month, style, month_like)}{dot}{m['comma']}{new.year:04d}", 68)
        for m in _DATE_COLON.finditer(text):
            ys = m["y"]
            if len(ys) == 2 and int(ys) < 60:
                continue  # could be a time of day
            year = int(ys) if len(ys) == 4 else _two_digit_year(int(ys))
            new = self._shift(year, int(m["m"]), int(m["d"]))
            if new is None:
                add(m, None)
                continue
            repl = f"{_pad(new.day, m['d'])}:{_pad(new.month, m['m'])}:{_fmt_year(new.year, ys)}"
            if m["d0"]:
                first = self._shift(year, int(m["m"]), int(m["d0"]))
                between = text[m.end("d0") : m.start("d")]
                if first is None:
                    repl = "[DATE]" + between + repl
                elif (first.month, first.year) == (new.month, new.year):
                    repl = f"{_pad(first.day, m['d0'])}{between}{repl}"
                else:
                    repl = f"{first.day}:{first.month}:{_fmt_year(first.year, ys)}{between}{repl}"
            add(m, repl, 71)
        for m in _DATE_CUE_NUM.finditer(text):
            a, b = int(m["a"]), int(m["b"])
            mo, dy = (b, a) if m["sep"] == "." else (a, b)
            new = self._shift(self._REF_YEAR, mo, dy)
            if new is None:
                continue
            fa, fb = (new.day, new.month) if m["sep"] == "." else (new.month, new.day)
            start = m.start("a")
            repl = f"{_pad(fa, m['a'])}{m['sep']}{_pad(fb, m['b'])}{m['dot'] or ''}"
            out.append(_Span(start, m.end(), "date", repl, 67))
        return out


# ---------------------------------------------------------------------------------------------
# ages over 89

_AGE_PATTERNS = (
    re.compile(r"(?<![\d.])(?P<n>\d{2,3})(?=\s*-?\s*(?:years?|yrs?|y)[\s-]*(?:old|o\b|/o))", re.IGNORECASE),
    re.compile(
        r"(?<![\d.])(?P<n>\d{2,3})(?=\s*(?:yo|y/o|y\.o\.|yr\.?\s*old|j\.|jahre?n?\b|-?jährig|-?jaehrig|år))",
        re.IGNORECASE,
    ),
    re.compile(r"\b(?:age|aged|alter|ålder)\s*[:=]?\s*(?P<n>\d{2,3})(?![\d.])", re.IGNORECASE),
    re.compile(r"\b(?:in\s+(?:his|her|their)\s+)(?P<n>\d{2,3})(?=s\b)", re.IGNORECASE),
)

# ---------------------------------------------------------------------------------------------
# addresses

_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|"
    r"Parkway|Pkwy|Circle|Cir|Highway|Hwy|Square|Sq|Trail|Trl)\.?"
)
_ADDRESS_PATTERNS = (
    re.compile(
        r"\b\d{1,6}[A-Za-z]?\s+(?:[NSEW]\.?\s+)?(?:[A-Z][A-Za-z'-]+\.?\s+){1,4}"
        + _STREET_SUFFIX
        + r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|#)\.?\s*[A-Za-z0-9-]+)?(?![A-Za-z])"
    ),  # fmt: skip
    re.compile(
        r"\b[A-ZÄÖÜ][a-zäöüß-]*(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|chaussee|steig|pfad)"
        r"\s+\d{1,4}\s?[a-z]?\b"
    ),
    re.compile(
        r"\b(?:[A-ZÄÖÜ][a-zäöüß-]+\s+){1,3}(?:Straße|Strasse|Str\.|Weg|Gasse|Platz|Allee|Ring|Damm)\s+\d{1,4}\s?[a-z]?\b"
    ),
    re.compile(r"\b(?:[A-Z][a-z]+\s){0,2}[A-Z][a-z]+,\s*[A-Z]{2}\.?\s+\d{5}(?:-\d{4})?\b"),
    re.compile(
        r"(?<![\d.])(?:D-|A-|CH-)?\d{4,5}\s+[A-ZÄÖÜ][a-zäöüß]+(?:[\s-](?:am|an der|im|ob der)\s[A-ZÄÖÜ][a-zäöüß]+)?\b"
    ),
    re.compile(r"\b(?:P\.?\s?O\.?\s+Box|Postfach)\s+\d+\b", re.IGNORECASE),
    re.compile(
        r"\b(?:address|adresse|anschrift|wohnort|wohnhaft(?:\s+in)?)\s*:\s*(?P<value>[^\n]{2,80})",
        re.IGNORECASE,
    ),
)

# ---------------------------------------------------------------------------------------------
# names

_NAME_TOKEN = (
    r"(?:[A-ZÄÖÜ][a-zäöüßéèáàçñ'’]+(?:-[A-ZÄÖÜ][a-zäöüßéèáàçñ'’]+)?|[A-ZÄÖÜ]\.|[A-ZÄÖÜ]{2,}(?![a-z]))"
)
_PARTICLE = r"(?:van|von|de|der|den|la|le|du|di|da|dos|del|ter|zu|vom|mc|mac|o')"
_NAME_SEQ = _NAME_TOKEN + r"(?:[ \t]+(?:" + _PARTICLE + r"[ \t]+)*" + _NAME_TOKEN + r"){0,3}"
_TITLE = re.compile(
    r"(?:\b(?:dr|drs|dres|mr|mrs|ms|mx|miss|prof|professor|doctor|herr|frau|sr|sra|pd|oa|oä|ca)\.?"
    r"|\b(?:Hr|Fr|Mme|Mlle)\.)"
    r"(?:[ \t]+(?:med|rer\.?\s?nat|phil|habil|univ)\.?)*[ \t]+(?=\S)",
    re.IGNORECASE,
)
_ROLE_LABEL = re.compile(
    r"(?:\b(?:electronically\s+)?(?:signed|dictated|transcribed|reviewed|verified|approved|read|reported|"
    r"interpreted|attested|authenticated|confirmed|performed|prepared|typed|entered)(?:\s+(?:and|&)\s+\w+)?\s+by"
    r"|\b(?:patient(?:'s)?\s+name|patient(?:in)?|pat\.|pt\.?|name|vorname|nachname|name,\s*vorname|befundet\s+von|"
    r"befundende?r?\s+ärztin|befundende?r?\s+arzt|arzt|ärztin|radiologist|radiologe|radiologin|cardiologist|"
    r"kardiologe|kardiologin|physician|attending|resident|fellow|technologist|tech|referring(?:\s+physician)?|"
    r"ordering(?:\s+physician)?|requesting(?:\s+physician)?|zuweiser|überweiser|einsender|unterschrift|gez|"
    r"signature|cc|copy\s+to|kopie\s+an|provider|nurse|pflege|untersucher|operator|reader|contact|kontakt|"
    r"mother|father|son|daughter|wife|husband|spouse|sister|brother|mutter|vater|sohn|tochter|ehefrau|ehemann))"
    r"\s*[:]?[ \t]+(?=\S)",
    re.IGNORECASE,
)
_ROLE_NEEDS_COLON = {
    "pat",
    "name",
    "pt",
    "patient",
    "patientin",
    "cc",
    "tech",
    "contact",
    "kontakt",
    "nurse",
    "reader",
}
#: capitalised words that follow "Patient"/"Name" in headings, not names
_HEADING_WORDS = frozenset(
    "information history data details demographics identification instructions education care safety "
    "position positioning preparation status summary name number id age sex gender record records "
    "was is has had who with and the has presents denies reports states complains".split()
)
_NAME_STOP = {
    "the", "a", "an", "and", "or", "of", "with", "without", "to", "in", "on", "at", "for", "is", "was", "has",
    "had", "who", "which", "der", "die", "das", "und", "oder", "mit", "ohne", "ist", "war", "hat", "ein",
    "eine", "male", "female", "man", "woman", "year", "years", "old", "yo", "männlich", "weiblich", "jahre",
    "no", "none", "not", "nicht", "kein", "keine", "unknown", "n/a", "na", "normal", "patient", "pt", "mm",
    "cm", "reports", "report", "states", "denies", "presents", "complains", "findings", "impression",
}  # fmt: skip


@lru_cache(maxsize=1)
def _name_lists() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(unambiguous given names ∪ surnames, ambiguous ones, all given names), as written."""
    data = json.loads((_RESOURCES / "deid_names.json").read_text(encoding="utf-8"))
    strong = frozenset(data["first_names"]) | frozenset(data["surnames"])
    weak = frozenset(data["ambiguous_first_names"]) | frozenset(data["ambiguous_surnames"])
    given = frozenset(data["first_names"]) | frozenset(data["ambiguous_first_names"])
    return strong, weak, given


_CAP_WORD = re.compile(r"\b[A-ZÄÖÜ][a-zäöüßéèáàçñ'’]+(?:-[A-ZÄÖÜ][a-zäöüßéèáàçñ'’]+)?\b")
_INITIAL_BEFORE = re.compile(r"(?:\b[A-ZÄÖÜ]\.\s*){1,2}$")
_NAME_FIELD_END = re.compile(
    r"\n|\t| {2,}|[;|]|\b\d|(?<=[a-z]{3})\.\s|\s[A-Z][A-Za-z]{1,20}\s?:|\s(?:DOB|MRN|Geb\.|geb\.|geboren|Sex|Age|Alter)\b"
)


def _name_after(text: str, pos: int, lower_mode: bool, max_tokens: int = 4) -> int:
    """End of the name that starts at ``pos`` (``pos`` if none): capitalised tokens/initials, or
    in a lower-case text the next word(s) that are not function words. Titles are skipped."""
    while True:
        t = _TITLE.match(text, pos)
        if not t:
            break
        pos = t.end()
    if lower_mode:
        m = re.compile(r"[a-zäöüß][a-zäöüß'’-]+(?:\s+[a-zäöüß][a-zäöüß'’-]+)?").match(text, pos)
        if not m:
            return pos
        words = m.group(0).split()
        keep = []
        for w in words:
            if w.lower() in _NAME_STOP:
                break
            keep.append(w)
        if not keep:
            return pos
        return pos + len(" ".join(keep)) if len(keep) == len(words) else pos + len(keep[0])
    m = re.compile(_NAME_SEQ).match(text, pos)
    if not m:
        return pos
    toks = re.findall(r"\S+", m.group(0))[:max_tokens]
    while toks and toks[0].lower().rstrip(".") in _NAME_STOP:
        return pos
    end = pos
    for tok in toks:
        idx = text.index(tok, end)
        end = idx + len(tok)
    # "Smith, John" / "Smith, J."
    tail = re.compile(r",\s*(" + _NAME_TOKEN + r")(?:\s+" + _NAME_TOKEN + r")?").match(text, end)
    if tail:
        end = tail.end()
    return end


def _name_spans(text: str) -> list[_Span]:
    spans: list[_Span] = []
    strong, weak, given = _name_lists()
    lower_mode = not any(c.isupper() for c in text)

    for m in _TITLE.finditer(text):
        end = _name_after(text, m.end(), lower_mode)
        if end > m.end():
            spans.append(_Span(m.end(), end, "name", "[NAME]", 40))
    for m in _ROLE_LABEL.finditer(text):
        label = m.group(0).strip().lower().rstrip(":").strip().rstrip(".")
        start = m.end()
        if label in _ROLE_NEEDS_COLON and ":" not in m.group(0):
            # "Patient Zyxwickham seen": without a colon only a capitalised, non-heading word
            nxt = _CAP_WORD.match(text, start)
            if lower_mode or not nxt or nxt.group(0).lower() in _HEADING_WORDS:
                continue
        field_end = _NAME_FIELD_END.search(text, start)
        limit = field_end.start() if field_end else len(text)
        end = _name_after(text, start, lower_mode)
        if ":" in m.group(0) and not lower_mode:
            # an explicit "Name:" field: everything up to the end of the field is the name
            seg = text[start:limit].rstrip(" .,")
            if seg and seg.split()[0].lower() not in _NAME_STOP and len(seg) <= 60:
                end = max(end, start + len(seg))
        end = min(end, max(limit, start)) if end > start and limit > start else end
        if end > start:
            spans.append(_Span(start, end, "name", "[NAME]", 41))
    if not lower_mode:
        words = list(_CAP_WORD.finditer(text))
        for i, w in enumerate(words):
            tok = w.group(0)
            base = tok.split("-")[0]
            if tok in strong or base in strong:
                start, end = w.start(), w.end()
                # extend over a neighbouring capitalised word (first + last name), or initials
                if i + 1 < len(words) and re.fullmatch(r"[ \t]+", text[w.end() : words[i + 1].start()]):
                    if base in given or words[i + 1].group(0) in strong | weak:
                        end = words[i + 1].end()
                if i > 0 and re.fullmatch(r"[ \t]+|,[ \t]*", text[words[i - 1].end() : w.start()] or "-"):
                    prev = words[i - 1].group(0)
                    if prev in given or prev in weak:
                        start = words[i - 1].start()
                init = _INITIAL_BEFORE.search(text, 0, start)
                if init:
                    start = init.start()
                spans.append(_Span(start, end, "name", "[NAME]", 39))
            elif tok in weak:
                nxt = words[i + 1] if i + 1 < len(words) else None
                prv = words[i - 1] if i > 0 else None
                ok_next = (
                    nxt is not None
                    and re.fullmatch(r"[ \t]+", text[w.end() : nxt.start()])
                    and (nxt.group(0) in strong or nxt.group(0) in weak)
                )
                ok_prev = (
                    prv is not None
                    and re.fullmatch(r"[ \t]+", text[prv.end() : w.start()])
                    and (prv.group(0) in given)
                )
                init = _INITIAL_BEFORE.search(text, 0, w.start())
                if ok_next:
                    spans.append(_Span(w.start(), nxt.end(), "name", "[NAME]", 38))
                elif ok_prev:
                    spans.append(_Span(prv.start(), w.end(), "name", "[NAME]", 38))
                elif init:
                    spans.append(_Span(init.start(), w.end(), "name", "[NAME]", 38))
    return _merge_names(spans)


def _merge_names(spans: list[_Span]) -> list[_Span]:
    """Union of overlapping or touching name spans (a name found twice in parts is one name)."""
    merged: list[_Span] = []
    for s in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and s.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = _Span(
                last.start, max(last.end, s.end), "name", "[NAME]", max(last.priority, s.priority)
            )
        else:
            merged.append(s)
    return merged


# ---------------------------------------------------------------------------------------------


def _value_span(m: re.Match, category: str, repl: str, prio: int) -> _Span:
    return _Span(m.start("value"), m.end("value"), category, repl, prio)


def _known_spans(text: str, known: tuple[str, ...]) -> list[_Span]:
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
    # short parts and short numbers ("12", "6000": row numbers, not identifiers) are too generic
    parts = {p for p in parts if len(p) >= 3 and not (re.fullmatch(r"[\d.]+", p) and len(p) < 5)}
    spans = []
    for p in sorted(parts, key=len, reverse=True):
        for m in re.finditer(r"(?<![^\W_])" + re.escape(p) + r"(?![^\W_])", text, re.IGNORECASE):
            category = "id" if any(ch.isdigit() for ch in p) else "name"
            spans.append(_Span(m.start(), m.end(), category, "[ID]" if category == "id" else "[NAME]", 95))
    return spans


def find_phi_spans(
    text: str, patient: str, pseudo: Pseudonymizer, known_identifiers: tuple[str, ...] = ()
) -> list[tuple[int, int, str, str]]:
    """All resolved PHI spans of ``text`` as ``(start, end, category, replacement)`` (for audits/tests)."""
    spans: list[_Span] = _known_spans(text, known_identifiers)
    spans += [_Span(m.start(), m.end(), "placeholder", m.group(0), 100) for m in _PLACEHOLDER.finditer(text)]
    spans += [_Span(m.start(), m.end(), "email", "[EMAIL]", 90) for m in _EMAIL.finditer(text)]
    spans += [_Span(m.start(), m.end(), "url", "[URL]", 85) for m in _URL.finditer(text)]
    spans += [_value_span(m, "phone", "[PHONE]", 82) for m in _PHONE_KEYWORD.finditer(text)]
    spans += [_value_span(m, "id", "[ID]", 80) for m in _ID_KEYWORD.finditer(text)]
    spans += [_Span(m.start(), m.end(), "id", "[ID]", 79) for m in _SSN.finditer(text)]
    spans += _DateShifter(pseudo.date_shift_days(patient)).spans(text)
    for pat in _PHONE_SHAPES:
        spans += [_Span(m.start(), m.end(), "phone", "[PHONE]", 60) for m in pat.finditer(text)]
    for pat in _ADDRESS_PATTERNS:
        for m in pat.finditer(text):
            if "value" in pat.groupindex:
                spans.append(_value_span(m, "address", "[ADDRESS]", 50))
            else:
                spans.append(_Span(m.start(), m.end(), "address", "[ADDRESS]", 50))
    for pat in _AGE_PATTERNS:
        for m in pat.finditer(text):
            if int(m["n"]) > 89:
                spans.append(_Span(m.start("n"), m.end("n"), "age", "90+", 45))
    spans += _name_spans(text)
    spans += [_Span(m.start(), m.end(), "id", "[ID]", 30) for m in _LONG_DIGITS.finditer(text)]
    spans += [_Span(m.start(), m.end(), "id", "[ID]", 29) for m in _ALNUM_ID.finditer(text)]
    spans += [_Span(m.start(), m.end(), "id", "[ID]", 20) for m in _FIVE_DIGITS.finditer(text)]
    return [(s.start, s.end, s.category, s.replacement) for s in _resolve(spans, text)]


def deidentify_text(
    text: str, patient: str, pseudo: Pseudonymizer, known_identifiers: tuple[str, ...] = ()
) -> tuple[str, dict[str, int]]:
    """De-identify one report.

    Args:
        text: the report text (already decoded and normalised to NFC, ``\\n`` line ends).
        patient: the patient *pseudonym* (``pseudo.patient(...)``, ``""`` if unknown); it selects
            the date offset, so dates move exactly like this patient's DICOM and ECG dates.
        pseudo: the build's pseudonymisation service.
        known_identifiers: raw identifiers known from structured fields of the same record
            (patient/physician names, patient ID, accession): removed wherever they occur.

    Returns:
        ``(text, counts)``: the de-identified text and the number of replacements per category
        of :data:`CATEGORIES` (placeholders are kept and counted). Never the values.
    """
    counts = dict.fromkeys(CATEGORIES, 0)
    parts: list[str] = []
    pos = 0
    for start, end, category, repl in find_phi_spans(text, patient, pseudo, known_identifiers):
        parts.append(text[pos:start])
        parts.append(repl)
        counts[category] += 1
        pos = end
    parts.append(text[pos:])
    return "".join(parts), counts
