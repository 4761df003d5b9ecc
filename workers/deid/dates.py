"""Dates (shifted by the patient's offset, written back in their own format) and clock times.

Formats: ISO, US ``03/12/2019``, German ``12.03.2019``, month names in English or German with or
without year, 2- or 4-digit years, DICOM ``20190312``, ``28-NOV-2006``, ``07JUL1996``, PTB-XL
``28:4:92``, and year-less ``9/30`` / ``12.3.`` after a cue ("Comparison:", "prior", "vom") or
alone in brackets ("(12.3.)", "(9/30)"). A
date-shaped string that is no valid date becomes ``[DATE]``. Clock times become ``[TIME]``.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from workers.deid.spans import Span

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
    r"\b(?:on|dated|date|am|vom|seit|bis|from|since|until|through|thru|of|comparison|compared\s+(?:to|with)|"
    r"prior(?:\s+(?:exam|study|film|ecg|ekg|tracing|radiograph)s?)?|vorbefund|voruntersuchung|zum|letzte[rnm]?|"
    r"seen|performed|done|obtained|acquired|admitted|discharged|born|geboren|aufgenommen|entlassen|untersucht|"
    r"visit|last|next|before|after|vor|nach|ab|bis\s+zum|began|begun|started|onset|beginning|beginn)"
    r"[ \t]*:?[ \t]*(?P<a>\d{1,2})(?P<sep>[./])(?P<b>\d{1,2})(?P<dot>\.)?"
    r"(?![\d]|[./]\d)"
    # "20.06." (two-digit day and month, both dots) needs no cue
    r"|(?<![\w.,:/-])(?P<a2>\d{2})(?P<sep2>\.)(?P<b2>\d{2})(?P<dot2>\.)(?![\w]|\.\d|,\d)"
    # "(12.3.)", "(3/12)": a year-less date alone in brackets needs no cue
    r"|(?<=\()[ \t]*(?P<a3>\d{1,2})(?P<sep3>[./])(?P<b3>\d{1,2})(?P<dot3>\.)?(?=[ \t]*\))",
    re.IGNORECASE,
)
# "28-NOV-2006", "28 Nov 06", "07JUL1996", "07-jul-96"
_DATE_DMY_HYPHEN = re.compile(
    r"(?<![\w.])(?P<d>\d{1,2})(?P<sep>[-/ ]?)" + _MONTH_RE.replace("(?![a-zäöüß])\\.?", "")
    + r"(?P=sep)(?P<y>" + _YEAR4 + r"|\d{2})(?![\w])",
    re.IGNORECASE,
)  # fmt: skip


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


def _yearless_ok(m: re.Match) -> bool:
    """Whether a month-name match counts as a date: with a year, a capitalised month, or (in lower
    case) a full month name other than "may" ("2 may represent", "mar 3" are no dates)."""
    word = m["month"]
    return (
        m["y"] is not None or word[:1].isupper() or (word.lower() in _FULL_MONTHS and word.lower() != "may")
    )


def _date_span(m: re.Match, repl: str | None, prio: int = 70) -> Span:
    """A ``date`` span over the whole match; ``None`` (no valid shifted date) writes ``[DATE]``."""
    return Span(m.start(), m.end(), "date", repl if repl is not None else "[DATE]", prio)


class DateShifter:
    """Finds dates and writes them back shifted by ``days`` in their original format."""

    _REF_YEAR = 2000  # leap year used to shift dates written without a year

    def __init__(self, days: int) -> None:
        self.delta = timedelta(days=days)

    def _shift(self, y: int, m: int, d: int) -> date | None:
        try:
            return date(y, m, d) + self.delta
        except ValueError:
            return None

    def spans(self, text: str) -> list[Span]:
        """Date spans of ``text`` with their shifted replacements, format by format (ISO, compact,
        numeric, month names, PTB-XL colon, ``28-NOV-2006``, year-less after a cue)."""
        out: list[Span] = []
        for finder in (
            self._iso_spans,
            self._compact_spans,
            self._numeric_spans,
            self._month_day_year_spans,
            self._day_month_year_spans,
            self._month_year_spans,
            self._colon_spans,
            self._hyphen_spans,
            self._cue_numeric_spans,
        ):
            out += finder(text)
        return out

    def _iso_spans(self, text: str) -> list[Span]:
        """``2019-03-12`` (also ``/`` or ``.``); an impossible date becomes ``[DATE]``."""
        out: list[Span] = []
        for m in _DATE_ISO.finditer(text):
            new = self._shift(int(m["y"]), int(m["m"]), int(m["d"]))
            repl = None
            if new:
                repl = f"{new.year:04d}{m['sep']}{_pad(new.month, m['m'])}{m['sep']}{_pad(new.day, m['d'])}"
            out.append(_date_span(m, repl, 72))
        return out

    def _compact_spans(self, text: str) -> list[Span]:
        """DICOM-style ``20190312``; an impossible date is no date here."""
        out: list[Span] = []
        for m in _DATE_COMPACT.finditer(text):
            new = self._shift(int(m["y"]), int(m["m"]), int(m["d"]))
            if new:
                out.append(_date_span(m, f"{new.year:04d}{new.month:02d}{new.day:02d}", 71))
        return out

    def _numeric_spans(self, text: str) -> list[Span]:
        """``03/12/2019`` (US, else European if the US reading is impossible), ``12.03.19`` (D.M.Y)."""
        out: list[Span] = []
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
            out.append(_date_span(m, repl))
        return out

    def _month_day_year_spans(self, text: str) -> list[Span]:
        """``March 12, 2019``, ``Mar. 12th 2019``, ``March 12`` (a year-less one shifted within 2000)."""
        out: list[Span] = []
        for m in _DATE_MDY.finditer(text):
            if not _yearless_ok(m):
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
            out.append(_date_span(m, repl, 69))
        return out

    def _day_month_year_spans(self, text: str) -> list[Span]:
        """``12 March 2019``, ``12. März 2019``, ``12th of March 2019``, ``12 March``."""
        out: list[Span] = []
        for m in _DATE_DMY.finditer(text):
            if not _yearless_ok(m):
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
            out.append(_date_span(m, repl, 69))
        return out

    def _month_year_spans(self, text: str) -> list[Span]:
        """``March 2019``, ``März 2019`` (shifted as the 15th of the month)."""
        out: list[Span] = []
        for m in _DATE_MY.finditer(text):
            month, style = _month_of(m["month"])
            new = self._shift(int(m["y"]), month, 15)
            if new:
                month_like = text[m.start("month") : m.end("month")]
                dot = "." if text[m.end("month") : m.end("month") + 1] == "." else ""
                repl = f"{_month_word(new.month, style, month_like)}{dot}{m['comma']}{new.year:04d}"
                out.append(_date_span(m, repl, 68))
        return out

    def _colon_spans(self, text: str) -> list[Span]:
        """PTB-XL ``28:4:92`` and ``20 & 21:3:92`` (day:month:year; a 2-digit year < 60 may be a time)."""
        out: list[Span] = []
        for m in _DATE_COLON.finditer(text):
            ys = m["y"]
            if len(ys) == 2 and int(ys) < 60:
                continue  # could be a time of day
            year = int(ys) if len(ys) == 4 else _two_digit_year(int(ys))
            new = self._shift(year, int(m["m"]), int(m["d"]))
            if new is None:
                out.append(_date_span(m, None))
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
            out.append(_date_span(m, repl, 71))
        return out

    def _hyphen_spans(self, text: str) -> list[Span]:
        """``28-NOV-2006``, ``28 Nov 06`` (4-digit year only), ``07JUL1996``, ``07-jul-96``."""
        out: list[Span] = []
        for m in _DATE_DMY_HYPHEN.finditer(text):
            if m["sep"] == " " and len(m["y"]) == 2:
                continue
            month, style = _month_of(m["month"])
            ys = m["y"]
            year = int(ys) if len(ys) == 4 else _two_digit_year(int(ys))
            new = self._shift(year, month, int(m["d"]))
            repl = None
            if new:
                word = _month_word(
                    new.month, style if style.endswith("abbr") else style + "_abbr", m["month"]
                )
                if len(m["month"]) > 4:
                    word = _month_word(new.month, style, m["month"])
                repl = f"{_pad(new.day, m['d'])}{m['sep']}{word}{m['sep']}{_fmt_year(new.year, ys)}"
            out.append(_date_span(m, repl, 71))
        return out

    def _cue_numeric_spans(self, text: str) -> list[Span]:
        """Year-less ``3/12`` or ``12.3.`` after a cue, ``20.06.``, or alone in brackets; the span
        starts at the date, not at the cue."""
        out: list[Span] = []
        for m in _DATE_CUE_NUM.finditer(text):
            g = "" if m["a"] is not None else ("2" if m["a2"] is not None else "3")
            if g == "3" and m["sep3"] == "." and not m["dot3"]:
                continue  # "(12.3)" is a decimal number
            sa, sb, sep = m["a" + g], m["b" + g], m["sep" + g]
            a, b = int(sa), int(sb)
            mo, dy = (b, a) if sep == "." else (a, b)
            new = self._shift(self._REF_YEAR, mo, dy)
            if new is None:
                continue
            fa, fb = (new.day, new.month) if sep == "." else (new.month, new.day)
            start = m.start("a" + g)
            repl = f"{_pad(fa, sa)}{sep}{_pad(fb, sb)}{m['dot' + g] or ''}"
            out.append(Span(start, m.end(), "date", repl, 67))
        return out


# ---------------------------------------------------------------------------------------------
# clock times

_TIMES = (
    # 10:31, 10:31:05, 3:45 pm, 14:30 Uhr, 14.30 Uhr, 3:45p (minutes two digits: "2:1 block" is no time)
    re.compile(
        r"(?<![\d:./])(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?:[ \t]*(?:[ap]\.?m\.?|[ap]\b|uhr\b|h\b|hrs\b|hours\b))?(?![\d:])",
        re.IGNORECASE,
    ),
    re.compile(r"(?<![\d:./])(?:[01]?\d|2[0-3])\.[0-5]\d[ \t]*(?:uhr|h)\b", re.IGNORECASE),
    re.compile(r"(?<![\d:./,])(?:1[0-2]|0?[1-9])[ \t]*(?:[ap]\.m\.|[ap]m\b)", re.IGNORECASE),
    re.compile(r"(?<![\d:./,])(?:[01]\d|2[0-3])[0-5]\d[ \t]*(?:hours|hrs|h)\b", re.IGNORECASE),
    re.compile(r"(?<![\d:./,])(?:[01]?\d|2[0-3])[ \t]*uhr\b", re.IGNORECASE),
    re.compile(
        r"\b(?:at|um|gegen|time|zeit|uhrzeit)[ \t]*:?[ \t]+(?P<v>(?:[01]\d|2[0-3])[0-5]\d)(?![\d.,:/])",
        re.IGNORECASE,
    ),
)


def time_spans(text: str) -> list[Span]:
    """Clock times (``[TIME]``); ratios such as "2:1" and durations are left alone."""
    out = []
    for pat in _TIMES:
        for m in pat.finditer(text):
            a, b = (m.start("v"), m.end("v")) if "v" in pat.groupindex else (m.start(), m.end())
            out.append(Span(a, b, "time", "[TIME]", 66))
    return out
