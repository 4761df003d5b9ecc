"""Places and institutions: street addresses, ZIP codes, cities, states, hospitals and clinics.

Street addresses and "City, ST 12345" by shape; cities from the place dictionary (a place that is
also a word, "Normal", "Mobile", counts only after a cue such as "from" / "in" / "aus" or before
a state); institutions as capitalised names around an institution word ("Hospital", "Medical
Center", "Klinikum", "-krankenhaus"), in any letter case.
"""

from __future__ import annotations

import re
from functools import lru_cache

from workers.deid.clinical import clinical_words
from workers.deid.lexicon import Lexicon, lexicon
from workers.deid.spans import Span

_STREET_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Ter|"
    r"Parkway|Pkwy|Circle|Cir|Highway|Hwy|Square|Sq|Trail|Trl)\.?"
)
_STREET_FULL = (
    r"(?:street|avenue|road|boulevard|lane|drive|court|terrace|parkway|highway|circle|square|trail|way)"
)
_ORDINAL = r"\d{1,3}(?:st|nd|rd|th)"
_DE_SUFFIX = r"(?:straße|strasse|str\.|weg|gasse|platz|allee|chaussee)"
_CAP = r"[A-ZÄÖÜ][a-zäöüß'’]+"
_STATE_ABBR = (
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND OH "
    "OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC"
).split()
_STATE = r"(?:" + "|".join(_STATE_ABBR) + r")"
_ADDRESS_PATTERNS = (
    re.compile(
        r"\b\d{1,6}[A-Za-z]?\s+(?:(?:[NSEW]|North|South|East|West)\.?\s+)?(?:(?:[A-Z][A-Za-z'-]+|"
        + _ORDINAL
        + r")\.?\s+){1,4}"
        + _STREET_SUFFIX
        + r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|#)\.?\s*[A-Za-z0-9-]+)?(?![A-Za-z])"
    ),
    re.compile(
        r"\b\d{1,6}[a-z]?\s+(?:(?:[nsew]|north|south|east|west)\.?\s+)?(?:(?:[a-z][a-z'-]+|"
        + _ORDINAL
        + r")\.?\s+){1,3}"
        + _STREET_FULL
        + r"\b",
        re.IGNORECASE,
    ),
    re.compile(
        r"\b[A-ZÄÖÜ][a-zäöüß]*(?:-[A-ZÄÖÜ]?[a-zäöüß]+)*?-?"
        + _DE_SUFFIX
        + r"\s+\d{1,4}(?:\s?[a-z](?!\w))?(?!\w)",
        re.IGNORECASE,
    ),
    re.compile(
        r"\b(?:"
        + _CAP
        + r"\s+){1,3}(?:Straße|Strasse|Str\.|Weg|Gasse|Platz|Allee|Ring|Damm)\s+\d{1,4}(?:\s?[a-z](?!\w))?(?!\w)"
    ),
    re.compile(
        r"\b(?:Am|An\s+der|An\s+den|Im|Auf\s+dem|Auf\s+der|Zum|Zur|In\s+der)\s+"
        + _CAP
        + r"\s+\d{1,4}[a-z]?\b"
    ),
    re.compile(r"\b(?:[A-Z][a-z]+\s){0,2}[A-Z][a-z]+,?\s*" + _STATE + r"\.?\s+\d{5}(?:-\d{4})?\b"),
    re.compile(
        r"(?<![\d.])(?:D-|A-|CH-)?\d{5}\s+(?:Bad\s+)?[A-ZÄÖÜ][a-zäöüß]+(?:[\s-](?:am|an der|im|ob der)\s[A-ZÄÖÜ][a-zäöüß]+)?\b"
    ),
    re.compile(  # any case, abbreviated suffix: a direction or an ordinal, or an unambiguous suffix
        r"\b\d{1,6}[ \t]+(?:(?:(?:[nsew]|north|south|east|west)\.?[ \t]+)(?:(?:[a-z][a-z'-]+|"
        + _ORDINAL
        + r")[ \t]+){1,3}"
        r"(?:st|ave|blvd|rd|ln|dr|ct|way|pl|pkwy|hwy|cir|ter|trl)|(?:" + _ORDINAL + r")[ \t]+"
        r"(?:st|ave|blvd|rd|ln|dr|ct|way|pl|pkwy|hwy|cir|ter|trl)|(?:[a-z][a-z'-]+[ \t]+){1,3}(?:ave|blvd|pkwy|hwy))"
        r"\.?(?![a-z0-9])",
        re.IGNORECASE,
    ),
    re.compile(  # lower-case "am mühlbach 124" after a comma or "wohnt/wohnhaft"
        r"(?:(?<=, )|(?<=wohnt )|(?<=wohnhaft ))(?:am|an\s+der|im|auf\s+dem|zum|zur|in\s+der)\s+[a-zäöüß]{4,}\s+\d{1,4}[a-z]?\b"
    ),
    re.compile(  # ... alone in brackets: "zuhause (am mühlbach 108a)" (not "(im mittel 45 ms)")
        r"(?<=\()[ \t]*(?:am|an\s+der|im|auf\s+dem|zum|zur|in\s+der)\s+"
        r"(?!(?:wesentlichen|mittel|schnitt|durchschnitt|verlauf|vergleich|rahmen|bereich|abstand|intervall|"
        r"alter|median|maximum|minimum)\b)[a-zäöüß]{4,}\s+\d{1,4}[a-z]?(?=[ \t]*\))"
    ),
    re.compile(  # lower-case "at the corner of 3513 harbor st." after a place preposition
        r"(?:(?<=\bat )|(?<=\bon )|(?<=\bof )|(?<=\boff )|(?<=\bnear )|(?<=\bfrom )|(?<=\bto ))\d{2,6}[ \t]+"
        r"(?:(?!(?:leads?|beats?|views?|degrees?|units?|times?|images?|mg|mm|cm)\b)[a-z][a-z'-]{2,}[ \t]+){1,2}"
        r"(?:st|rd|dr|ln|ct|pl|ter|cir)\.?(?=[ \t]*(?:[,;)]|and\b|$|\.[ \t]|\.$))"
    ),
    re.compile(r"\b(?:P\.?\s?O\.?\s+Box|Postfach)\s+\d+\b", re.IGNORECASE),
    re.compile(r"(?<![\d-])\d{5}-\d{4}(?![\d-])"),
    re.compile(
        r"\b(?:address|adresse|anschrift|wohnort|wohnhaft(?:\s+in)?|resides\s+(?:at|in)|lives\s+(?:at|in))\s*:?\s*"
        r"(?P<value>[^\n;]{2,80}?)(?=\s*(?:[;\n]|\.\s|\.$|$))",
        re.IGNORECASE,
    ),
)
_PLACE_CUE = re.compile(
    r"\b(?:from|in|to|at|near|of|between|nach|aus|in|bei|von|zwischen|wohnhaft|resident\s+of|lives\s+in|living\s+in|"
    r"returns?\s+from|traveled\s+from|travelled\s+from)[ \t]+$",
    re.IGNORECASE,
)
_STATE_NAMES = (
    "Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|Hawaii|Idaho|"
    "Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|Minnesota|"
    "Mississippi|Missouri|Montana|Nebraska|Nevada|New[ \t]+Hampshire|New[ \t]+Jersey|New[ \t]+Mexico|"
    "New[ \t]+York|North[ \t]+Carolina|North[ \t]+Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|"
    "Rhode[ \t]+Island|South[ \t]+Carolina|South[ \t]+Dakota|Tennessee|Texas|Utah|Vermont|Virginia|"
    "Washington|West[ \t]+Virginia|Wisconsin|Wyoming"
)
_BEFORE_STATE = re.compile(
    r",?[ \t]+(?:" + _STATE + r"\b|(?i:[a-z]+)\.?[ \t]+\d{5}\b)|,[ \t]*(?i:" + _STATE_NAMES + r")\b"
)
#: "franklin, mi": a lower-case state code after a comma (the place must be no English word)
_BEFORE_STATE_CODE_LOWER = re.compile(r",[ \t]*(?:" + _STATE.lower() + r")\b(?![ \t]*[-/(])")
#: a lower-case state code after a lower-case place ("franklin, oh.") only before a stop or a ZIP
_BEFORE_STATE_LOWER = re.compile(
    r",?[ \t]+(?:"
    + _STATE.lower()
    + r"|indiana|ohio|illinois|kentucky|michigan)(?=[ \t]*(?:[.;)\n]|$|\d{5}))"
    + r"|,[ \t]*(?:"
    + _STATE_NAMES.lower()
    + r")\b"
)
#: cues after which a place that is also a word ("born in franklin") is a place in any case
_STRONG_PLACE_CUE = re.compile(
    r"\b(?:born\s+in|lives\s+in|living\s+in|resident\s+of|moved\s+(?:to|from)|returns?\s+from|returned\s+(?:to|from)|"
    r"travell?ed\s+(?:to|from)|native\s+of|relocated\s+(?:to|from)|home\s+in|wohnhaft\s+in|wohnt\s+in|"
    r"kommt\s+aus|stammt\s+aus|geboren\s+in|lebt\s+in|aus|nach|in\s+der\s+nähe\s+von|"
    r"(?:originally|formerly|recently|visiting(?:\s+\w+){0,2})\s+(?:from|of|in)|relocated\s+(?:to|from)|"
    r"umzug\s+(?:von|nach|aus)|hausbesuch\s+in|von\s+[\w-]+(?:\s+[\w-]+)?\s+nach|"
    r"(?:hospital|center|centre|clinic|health|network|institute|klinikum|krankenhaus|klinik|praxis)\s+(?:in|of)|"
    r"(?:man|woman|gentleman|lady|male|female|patient|pt|resident|veteran|farmer|retiree)\s+from)[ \t]+$",
    re.IGNORECASE,
)
_AFTER_ADDRESS = re.compile(
    r"(?:\b(?:street|st|avenue|ave|road|rd|drive|dr|lane|ln|boulevard|blvd|court|ct|way|place|pl|parkway|"
    r"highway|hwy|str|straße|strasse|weg|gasse|platz|allee)\.?,?|\b\d{1,4}[a-z]?,|\b\d{5})[ \t]+$",
    re.IGNORECASE,
)
_AFTER_PLACE = re.compile(r"[ \t]+(?:resident|residents|native|area|county|einwohner)\b", re.IGNORECASE)
_BAD_TOWN = re.compile(
    r"\b(?:Bad|BAD|(?:(?<=aus )|(?<=, )|(?<=in )|(?<=\d{5} )|(?<=von )|(?<=nach ))bad)[ \t]+(?:[A-ZÄÖÜ][a-zäöüß]+|(?<=bad )[a-zäöüß]{4,})(?:[ \t]+(?:am|an\s+der|im|vor\s+der)[ \t]+[A-ZÄÖÜ][a-zäöüß]+)?\b"
)
_BEFORE_ZIP = re.compile(r",?[ \t]+(?:[A-Za-z]{2}|[A-Za-z]+)\.?,?[ \t]+\d{5}(?:-\d{4})?\b")
_AFTER_INST = re.compile(
    r"(?:hospital|center|centre|clinic|health|network|system|klinikum|krankenhaus|institute|praxis|zentrum)"
    r"[ \t]*[,(][ \t]*$",
    re.IGNORECASE,
)
_DISTRICT = r"(?:nord|süd|sued|ost|west|mitte|zentrum|innenstadt|north|south|east|downtown)"
#: a word, without a district suffix ("Stuttgart-Nord": the place is "Stuttgart")
_PLACE_WORD = re.compile(r"[^\W\d_]+(?:(?!-(?i:" + _DISTRICT + r")\b)[-'’][^\W\d_]+)*")
_DISTRICT_AFTER = re.compile(r"-(?i:" + _DISTRICT + r"|west)\b")
#: two places joined: "between Carmel and Lafayette", "von Esslingen nach Waiblingen"
_PLACE_JOIN = re.compile(r"[ \t]+(?:and|und|or|oder|&|to|bis|nach)[ \t]+|[ \t]*[/–][ \t]*", re.IGNORECASE)
_MONTHS = frozenset(
    "january february march april may june july august september october november december januar februar "
    "märz mai juni juli oktober dezember".split()
)

# institutions
_INST_HEAD = (
    r"(?:hospitals?|medical\s+(?:center|centre|group|clinic)|health(?:care)?(?:\s+(?:system|network|center|centre))?|"
    r"clinics?|infirmary|institute|heart\s+(?:center|institute)|cancer\s+(?:center|institute)|"
    r"rehabilitation\s+(?:center|hospital)|nursing\s+home|hospice|sanatorium|"
    r"klinikum|kliniken|klinik|krankenhaus|spital|hospital|herz-?zentrum|zentrum|praxis|gemeinschaftspraxis|"
    r"medizinisches\s+versorgungszentrum|mvz)"
)
_GENERIC_INST = frozenset(
    """
    the a an of and & st st. saint hospital hospitals medical center centre health healthcare system network
    clinic clinics institute infirmary heart cancer rehabilitation nursing home hospice regional memorial
    general community university universitäts universitätsklinikum klinikum kliniken klinik krankenhaus
    spital zentrum herz herzzentrum praxis städtisches städtische kreiskrankenhaus kreisklinik stadt kreis
    für fur der die das am an im in at to from this that our outside local other same prior previous his her
    their patient mental public private emergency department cardiology radiology
    """.split()
)
_INST_COMPOUND = re.compile(
    r"(?<![\w-])[A-ZÄÖÜa-zäöü][\w-]*?(?:klinikum|krankenhaus|hospital|klinik|kliniken|spital|herzzentrum|zentrum)"
    r"(?![\w-])",
    re.IGNORECASE,
)
_INST_WORD = re.compile(r"(?:St\.|Sankt|[^\W\d_][\w'’-]*|&)")
_NOT_INST_AFTER = re.compile(
    r"[ \t]+(?:course|stay|admission|day|days|bed|visit|acquired|discharge|follow-up|records?|policy|"
    r"aufenthalt|aufnahme)\b",
    re.IGNORECASE,
)


def _compound_prefix(word: str) -> str:
    """What precedes the institution word in a compound ("robert-bosch" of "robert-bosch-krankenhaus")."""
    return re.sub(_INST_HEAD + r"$", "", word, flags=re.I).strip("-")


def address_spans(text: str) -> list[Span]:
    out = []
    for pat in _ADDRESS_PATTERNS:
        for m in pat.finditer(text):
            if "value" in pat.groupindex:
                out.append(Span(m.start("value"), m.end("value"), "address", "[ADDRESS]", 68))
            else:
                out.append(Span(m.start(), m.end(), "address", "[ADDRESS]", 68))
    return out


def address_label_spans(text: str) -> list[Span]:
    """Only the labelled address fields ("Address: ...") of a text without digits."""
    m_all = _ADDRESS_PATTERNS[-1].finditer(text)
    return [Span(m.start("value"), m.end("value"), "address", "[ADDRESS]", 68) for m in m_all]


@lru_cache(maxsize=1)
def _place_first_words() -> frozenset[str]:
    return frozenset(re.split(r"[ \t]+", p)[0] for p in lexicon().places)


def city_spans(text: str) -> list[Span]:
    """Places from the dictionary: strong ones alone, ambiguous ones after a cue or before a state."""
    lex = lexicon()
    first = _place_first_words()
    words = list(_PLACE_WORD.finditer(text))
    out = []
    hits: list[tuple[int, int, str, bool, bool]] = []  # dictionary places: start, end, word, capital, found
    i = 0
    while i < len(words):
        if words[i].group(0).lower() not in first:
            i += 1
            continue
        hit = _longest_place(text, words, i, lex)
        if hit is None:
            i += 1
            continue
        n, seg = hit
        s, e = words[i].start(), words[i + n - 1].end()
        low = re.sub(r"[ \t]+", " ", seg.lower())
        cap = seg[:1].isupper()
        e, ok = _judge_place(text, s, e, seg, n, lex)
        if ok is None:  # before a zip code: part of an address
            out.append(Span(s, e, "address", "[ADDRESS]", 48))
            i += n
            continue
        if low not in lex.stop:
            hits.append((s, e, low, cap, ok))
            if ok:
                out.append(Span(s, e, "address", "[ADDRESS]", 48, True))
        i += n
    out += _joined_places(text, hits)
    out += _bad_town_spans(text, lex)
    return out


def _longest_place(text: str, words: list[re.Match], i: int, lex: Lexicon) -> tuple[int, str] | None:
    """The longest dictionary place of 3, 2 or 1 blank-separated words starting at word ``i``:
    its number of words and its text; ``None`` if there is none."""
    for n in (3, 2, 1):
        if i + n > len(words):
            continue
        seg = text[words[i].start() : words[i + n - 1].end()]
        if n > 1 and not all(
            re.fullmatch(r"[ \t]+", text[words[k].end() : words[k + 1].start()]) for k in range(i, i + n - 1)
        ):
            continue
        low = re.sub(r"[ \t]+", " ", seg.lower())
        if low in lex.places:
            return n, seg
    return None


def _judge_place(text: str, s: int, e: int, seg: str, n: int, lex: Lexicon) -> tuple[int, bool | None]:
    """Whether dictionary place ``seg`` (``n`` words at ``text[s:e]``) is a place in its context.

    Returns its end (grown over a district suffix, "Stuttgart-Nord") and the verdict: ``None`` when
    a zip code follows (an address part), else whether a strong place, a cue (within 30 characters
    before), a comma before, or a state after makes it a place."""
    low = re.sub(r"[ \t]+", " ", seg.lower())
    cap = seg[:1].isupper()
    cue = _PLACE_CUE.search(text, max(0, s - 30), s) is not None or _AFTER_INST.search(
        text, max(0, s - 30), s
    )
    before_state = _BEFORE_STATE.match(text, e) is not None or (
        seg.islower() and _BEFORE_STATE_LOWER.match(text, e) is not None
    )
    strong_cue = _STRONG_PLACE_CUE.search(text, max(0, s - 30), s) is not None or (
        _AFTER_PLACE.match(text, e) is not None
    )
    strong_cue = strong_cue or _AFTER_ADDRESS.search(text, max(0, s - 30), s) is not None
    after_comma = re.search(r",[ \t]*$", text[max(0, s - 3) : s]) is not None
    if seg.islower() and not lex.is_word(low) and _BEFORE_STATE_CODE_LOWER.match(text, e):
        before_state = True  # "columbus, oh"
    district = _DISTRICT_AFTER.match(text, e)
    if district:  # "Stuttgart-Nord"
        e = district.end()
    if _BEFORE_ZIP.match(text, e):
        return e, None
    strong = low in lex.strong_places or (n > 1 and not lex.is_word(low))
    # lower-case text, an ordinary cue: a place that is also a person's name ("from franklin")
    name_place = (
        cue
        and seg.islower()
        and (low in lex.given or low in lex.surnames)
        and low not in _MONTHS
        and low not in clinical_words()
        and len(low) >= 5
    )
    ok = (
        (strong and (cap or cue or after_comma or strong_cue))
        or ((cue or before_state) and (cap or not lex.is_word(low)))
        or ((strong_cue or before_state) and (cap or seg.islower()))
        or name_place
    )
    return e, bool(ok)


def _joined_places(text: str, hits: list[tuple[int, int, str, bool, bool]]) -> list[Span]:
    """Dictionary places (start, end, word, capital, found) not found on their own but joined to a
    found place of the same case by "and", "or", "to", "nach", "/"."""
    out = []
    for k, (s, e, low, cap, ok) in enumerate(hits):
        if ok or low in _MONTHS or low in clinical_words():
            continue
        for k2 in (k - 1, k + 1):
            if not 0 <= k2 < len(hits) or not hits[k2][4] or hits[k2][3] != cap:
                continue
            a, b = (hits[k2][1], s) if k2 < k else (e, hits[k2][0])
            if _PLACE_JOIN.fullmatch(text, a, b):
                out.append(Span(s, e, "address", "[ADDRESS]", 48, True))
                break
    return out


def _bad_town_spans(text: str, lex: Lexicon) -> list[Span]:
    """German spa towns not in the dictionary: "Bad Krozingen" (the second word no ordinary word)."""
    out = []
    for m in _BAD_TOWN.finditer(text):
        words = m.group(0).split()
        if not lex.is_word(words[1].lower()) and m.group(0).lower() not in lex.places:
            out.append(Span(m.start(), m.end(), "address", "[ADDRESS]", 48, True))
    return out


def institution_spans(text: str) -> list[Span]:
    """Hospitals, clinics and practices with their proper-name part, in any letter case."""
    out = []
    heads = [(m.start(), m.end()) for m in re.finditer(r"\b" + _INST_HEAD + r"\b", text, re.IGNORECASE)]
    heads += [(m.start(), m.end()) for m in _INST_COMPOUND.finditer(text)]
    for hs, he in heads:
        generic_use = _NOT_INST_AFTER.match(text, he) is not None  # "hospital course", "Klinikaufenthalt"
        # words before the head: capitalised (or, in lower/upper-case text, non-stop) words
        start = hs
        for w in reversed(list(_INST_WORD.finditer(text, max(0, hs - 60), hs))):
            gap = text[w.end() : start]
            if not re.fullmatch(r"[ \t]+|[ \t]*-[ \t]*", gap):
                break
            tok = w.group(0)
            low = tok.lower()
            if low in (
                "the",
                "a",
                "an",
                "in",
                "at",
                "to",
                "from",
                "im",
                "am",
                "zum",
                "zur",
                "vom",
                "ins",
                "with",
                "and",
            ):
                break
            if not (tok[:1].isupper() or tok == "&" or (text[hs:he].islower() and low not in lexicon().stop)):
                break
            if low in lexicon().stop and low not in ("of", "&", "st.", "saint"):
                break
            start = w.start()
        # words after the head: "Klinikum Stuttgart", "Hospital of Indiana", "Herz-Zentrum Bad Krozingen"
        end = he
        for w in _INST_WORD.finditer(text, he, min(len(text), he + 50)):
            gap = text[end : w.start()]
            if not re.fullmatch(r"[ \t]+", gap):
                break
            tok = w.group(0)
            low = tok.lower()
            two = re.match(r"[ \t]+([^\W\d_]+)", text[w.end() : w.end() + 30])
            if two and f"{low} {two.group(1).lower()}" in lexicon().places:  # "schwäbisch hall"
                end = w.end() + two.end()
                break
            if (
                low in ("of", "für", "der", "am", "an", "bad", "st.", "sankt")
                or (tok[:1].isupper() and low not in lexicon().stop and not tok.isupper())
                or (
                    not text[hs:he].istitle()
                    and (low in lexicon().places or not lexicon().is_word(low))
                    and low not in lexicon().stop
                )
            ):
                if (
                    low in ("of", "für", "der", "am", "an")
                    and not text[w.end() : w.end() + 2].strip()[:1].isupper()
                ):
                    break
                end = w.end()
                continue
            break
        span_words = [w.group(0).lower() for w in _INST_WORD.finditer(text, start, end)]
        specific = [w for w in span_words if w not in _GENERIC_INST and not _INST_COMPOUND.fullmatch(w)]
        compound_specific = any(
            _INST_COMPOUND.fullmatch(w) and _compound_prefix(w) not in _GENERIC_INST and _compound_prefix(w)
            for w in span_words
        )
        if (specific or compound_specific) and not (generic_use and not compound_specific and start == hs):
            out.append(Span(start, end, "institution", "[INSTITUTION]", 49))
    return out
