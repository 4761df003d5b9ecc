"""Deterministic benchmark corpus for free-text de-identification.

Surrogate PHI is rendered into the phrasing templates of ``bench/deid_templates.py`` and inserted
into *real* report sentences that are read at run time from the shared sample data (Indiana chest
X-ray reports, CC BY-NC-ND, and PTB-XL ECG reports, CC BY 4.0); no report text is copied into the
repository. The same seed gives the same examples.

Each example records, for every inserted PHI item, its type and the character spans of its
*identifying tokens* (a name's parts, a date's day, month and year, a phone number's digit groups,
...; titles, street suffixes and state codes are not identifying), and for every protected clinical
control the span of the term. Real reports are split by a hash of their text into a dev and a test
half: dev sentences carry dev templates, test sentences test templates.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path

try:  # imported as ``bench.deid_corpus`` or with bench/ on sys.path
    from bench.deid_templates import CONTROL_DEV, CONTROL_TEST, CONTROLS, DEV, TEST
except ImportError:  # pragma: no cover
    from deid_templates import CONTROL_DEV, CONTROL_TEST, CONTROLS, DEV, TEST

SAFE_HARBOR = (
    "name_patient", "name_clinician", "date", "age", "phone", "fax", "email", "url", "mrn", "accession",
    "account", "ssn", "license", "device", "street", "city", "zip",
)  # fmt: skip
OTHER_TYPES = ("institution", "time")
SLOT_TYPE = {
    "PATIENT": "name_patient", "CLINICIAN": "name_clinician", "ODDNAME": "name_patient", "DATE": "date",
    "YLDATE": "date", "TIME": "time", "AGE": "age", "PHONE": "phone", "FAX": "fax", "EMAIL": "email",
    "URL": "url", "MRN": "mrn", "ACC": "accession", "ACCOUNT": "account", "SSN": "ssn", "LICENSE": "license",
    "DEVICE": "device", "STREET": "street", "CITY": "city", "ZIP": "zip", "INST": "institution",
    "STATE": "state",
}  # fmt: skip


@dataclass(frozen=True)
class PhiItem:
    """One inserted identifier: its type and the spans of its identifying tokens."""

    type: str
    start: int
    end: int
    tokens: tuple[tuple[int, int], ...]
    source: str = ""  # where a name came from: common / rare / word / odd


@dataclass(frozen=True)
class Control:
    """One protected clinical term."""

    kind: str
    start: int
    end: int


@dataclass(frozen=True)
class Example:
    text: str
    lang: str
    template: str
    split: str
    casing: str
    phi: tuple[PhiItem, ...]
    controls: tuple[Control, ...]
    base: tuple[int, int]  # span of the real report text (before the insertion point) kept as is


# ---------------------------------------------------------------------------------------------
# surrogate values (invented or common; none is a real patient)

_GIVEN_COMMON = (
    "James", "Mary", "Robert", "Patricia", "Michael", "Linda", "William", "Elizabeth", "David", "Susan",
    "Jennifer", "Thomas", "Karen", "Daniel", "Nancy", "Matthew", "Betty", "Anthony", "Sandra", "Paul",
    "Klaus", "Ursula", "Jürgen", "Monika", "Wolfgang", "Sabine", "Uwe", "Renate", "Stefan", "Petra",
)  # fmt: skip
_SURNAME_COMMON = (
    "Johnson", "Williams", "Garcia", "Rodriguez", "Martinez", "Anderson", "Thompson", "Moore", "Jackson",
    "Harris", "Sanchez", "Ramirez", "Lewis", "Robinson", "Walker", "Schneider", "Fischer", "Meyer",
    "Wagner", "Becker", "Schulz", "Hoffmann", "Krüger", "Schäfer", "Neumann", "Zimmermann", "Braun",
)  # fmt: skip
_GIVEN_RARE = (
    "Aiko", "Santiago", "Oluwaseun", "Thandiwe", "Kofi", "Ngozi", "Xiomara", "Anneliese", "Bartholomäus",
    "Eero", "Siobhan", "Ravindra", "Yusuf", "Leilani", "Dagmar", "Ignatius", "Zofia", "Tadeusz", "Priya",
    "Mei-Ling", "Anne-Marie", "Jean-Luc", "Hans-Jörg",
)  # fmt: skip
_SURNAME_RARE = (
    "Sandoval", "Ibekwe", "Okonkwo", "Vorlund", "Quaxley", "Nakamura-Lind", "O'Brien", "McAllister",
    "MacPherson", "D'Angelo", "Oyelaran", "Wiśniewski", "Kowalczyk", "Tjernström", "Abernathy-Cole",
    "Brumbleforth", "Van der Berg", "de la Cruz", "Achterberg", "Szczepański", "Obuya", "Haraldsen",
    "Müller-Lüdenscheid", "Nguyen", "Papadopoulos",
)  # fmt: skip
_GIVEN_WORD = (
    "Hope",
    "Cliff",
    "Will",
    "Rose",
    "Grant",
    "Joy",
    "Faith",
    "Dawn",
    "Mark",
    "Bill",
    "Summer",
    "Art",
)
_SURNAME_WORD = (
    "Baker",
    "Young",
    "White",
    "Hill",
    "Field",
    "Stone",
    "Brook",
    "Wood",
    "Park",
    "Price",
    "Bell",
)
_SYLL = ("ka", "lo", "ven", "dra", "mi", "sto", "rel", "qua", "zen", "bor", "tis", "an", "wick", "ham", "ul")

_STREET_NAMES = ("Evergreen", "Maple", "Meridian", "College", "Lakeview", "Washington", "Birch", "Harbor",
                 "Linden", "Sunset", "Pennsylvania", "Orchard")  # fmt: skip
_STREET_SUFFIX = ("Street", "St.", "Avenue", "Ave", "Road", "Drive", "Lane", "Boulevard", "Court", "Way")
_DE_STREETS = ("Hauptstraße", "Bahnhofstr.", "Lindenweg", "Schillerplatz", "Goethestraße", "Am Mühlbach",
               "Friedrich-Ebert-Allee", "Gartenstraße", "Kirchgasse", "Rosenweg")  # fmt: skip
_CITIES_US = ("Indianapolis", "Carmel", "Bloomington", "Fort Wayne", "Evansville", "Lafayette", "Muncie",
              "Terre Haute", "Kokomo", "South Bend", "Springfield", "Columbus", "Franklin", "Greenwood")  # fmt: skip
_CITIES_DE = ("Stuttgart", "Tübingen", "Freiburg", "Ludwigsburg", "Bad Homburg", "Waiblingen", "Heilbronn",
              "Offenburg", "Reutlingen", "Esslingen", "Bad Krozingen", "Sindelfingen")  # fmt: skip
_STATES = ("IN", "IL", "OH", "KY", "MI", "Indiana", "Ohio")
_INST_EN = ("St. Vincent Hospital", "Riverside Medical Center", "Methodist Hospital", "Community Health Network",
            "Franciscan Health", "Mercy General Hospital", "Lakeview Regional Medical Center",
            "Parkview Heart Institute", "Eskenazi Health", "Good Samaritan Hospital", "Wishard Memorial Hospital",
            "Union Hospital Clinic", "Saint Joseph Regional Medical Center", "Hendricks Regional Health")  # fmt: skip
_INST_DE = ("Klinikum Stuttgart", "Universitätsklinikum Tübingen", "Kreiskrankenhaus Waiblingen",
            "Herz-Zentrum Bad Krozingen", "Robert-Bosch-Krankenhaus", "Marienhospital Stuttgart",
            "Klinikum Ludwigsburg", "Städtisches Klinikum Karlsruhe", "Diakonie-Klinikum Schwäbisch Hall",
            "Universitäts-Herzzentrum Freiburg", "Kardiologische Praxis Dr. Vogt")  # fmt: skip
#: words of a value that do not identify (titles, generic institution/street words, state codes)
_GENERIC = frozenset(
    "dr dr. st st. street avenue ave road rd drive dr lane ln boulevard blvd court ct way of the and hospital "
    "medical center centre health network regional memorial clinic institute heart general saint community "
    "klinikum universitätsklinikum kreiskrankenhaus krankenhaus herz zentrum städtisches praxis kardiologische "
    "universitäts herzzentrum diakonie marienhospital am mr mrs ms in il oh ky mi indiana ohio "
    "apt suite unit".split()
)

_EN_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
              "November", "December")  # fmt: skip
_DE_MONTHS = ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
              "November", "Dezember")  # fmt: skip
_ONES = ("", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _invented(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLL) for _ in range(rng.randint(2, 3))).capitalize()


def _pick_name_parts(rng: random.Random) -> tuple[str, str, str]:
    """(given, surname, source) from one of four pools."""
    r = rng.random()
    if r < 0.35:
        return rng.choice(_GIVEN_COMMON), rng.choice(_SURNAME_COMMON), "common"
    if r < 0.65:
        return rng.choice(_GIVEN_RARE), rng.choice(_SURNAME_RARE), "rare"
    if r < 0.85:
        return rng.choice(_GIVEN_WORD), rng.choice(_SURNAME_WORD + _SURNAME_COMMON), "word"
    return _invented(rng), _invented(rng), "invented"


def _name(rng: random.Random) -> tuple[str, str]:
    """A person name in one of the orders and casings of clinical text."""
    g, s, source = _pick_name_parts(rng)
    form = rng.choice(("first last", "first last", "last, first", "first m. last", "initial last", "last",
                       "first", "LAST, FIRST", "FIRST LAST", "lower"))  # fmt: skip
    if form == "first last":
        v = f"{g} {s}"
    elif form == "last, first":
        v = f"{s}, {g}"
    elif form == "first m. last":
        v = f"{g} {rng.choice('ABCDEHJKLMPRSTW')}. {s}"
    elif form == "initial last":
        v = f"{g[0]}. {s}"
    elif form == "last":
        v = s
    elif form == "first":
        v = g
    elif form == "LAST, FIRST":
        v = f"{s}, {g}".upper()
    elif form == "FIRST LAST":
        v = f"{g} {s}".upper()
    else:
        v = f"{g} {s}".lower()
    return v, source


def _odd_name(rng: random.Random) -> str:
    """An identifier-shaped name (letters with digits), as pseudonymised exports write them."""
    letters = "bcdfghjklmnpqrstvwxz"
    return (
        "".join(rng.choice(letters) for _ in range(3)).capitalize()
        + f"{rng.randint(0, 999):03d}"
        + _invented(rng)
    )


def _date(rng: random.Random, lang: str, yearless: bool) -> str:
    d = date(1950, 1, 1) + timedelta(days=rng.randint(0, 27000))
    if yearless:
        fmts = ("{m}/{d}", "{d}.{m}.", "{d:02d}.{m:02d}.", "{M} {d}", "{d}. {DM}", "{d} {M}")
    elif lang == "de":
        fmts = (
            "{d:02d}.{m:02d}.{y}",
            "{d}.{m}.{yy:02d}",
            "{d}. {DM} {y}",
            "{y}-{m:02d}-{d:02d}",
            "{d:02d}.{m:02d}.{yy:02d}",
        )
    else:
        fmts = ("{m}/{d}/{y}", "{m:02d}/{d:02d}/{yy:02d}", "{y}-{m:02d}-{d:02d}", "{M} {d}, {y}", "{Mb} {d}, {y}",
                "{d} {M} {y}", "{d:02d}-{MB}-{y}", "{d:02d}{MB}{y}", "{y}{m:02d}{d:02d}", "{M} {d}th, {y}",
                "{m}-{d}-{y}", "{Mb}. {d}, {y}")  # fmt: skip
    f = rng.choice(fmts)
    if yearless and lang == "de" and "{M}" in f:
        f = f.replace("{M}", "{DM}")
    return f.format(
        d=d.day,
        m=d.month,
        y=d.year,
        yy=d.year % 100,
        M=_EN_MONTHS[d.month - 1],
        Mb=_EN_MONTHS[d.month - 1][:3],
        MB=_EN_MONTHS[d.month - 1][:3].upper(),
        DM=_DE_MONTHS[d.month - 1],
    )


def _number_words(n: int) -> str:
    tens = {9: "ninety", 10: "one hundred"}
    if n >= 100:
        return "one hundred" + (f" {_ONES[n - 100]}" if n > 100 else "")
    return tens[n // 10] + (f"-{_ONES[n % 10]}" if n % 10 else "")


def _age(rng: random.Random, slot_context: str) -> str:
    n = rng.randint(90, 106)
    if rng.random() < 0.12 and "Jahre" not in slot_context and "jährig" not in slot_context:
        return _number_words(n)
    return str(n)


def _time(rng: random.Random, lang: str) -> str:
    h, m = rng.randint(0, 23), rng.choice((0, 5, 10, 15, 20, 30, 35, 40, 45, 50, 55, 7, 23))
    h12 = h % 12 or 12
    ap = "am" if h < 12 else "pm"
    if lang == "de":
        return rng.choice((f"{h:02d}:{m:02d} Uhr", f"{h}.{m:02d} Uhr", f"{h}:{m:02d}", f"{h} Uhr"))
    return rng.choice((f"{h:02d}:{m:02d}", f"{h12}:{m:02d} {ap}", f"{h12}:{m:02d} {ap.upper()}", f"{h12} {ap}",
                       f"{h:02d}{m:02d} hours", f"{h:02d}{m:02d}h", f"{h12}:{m:02d}{ap[0]}"))  # fmt: skip


def _phone(rng: random.Random, lang: str) -> str:
    a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
    if lang == "de":
        return rng.choice((f"0711/{rng.randint(100000, 9999999)}", f"+49 711 {rng.randint(1000000, 9999999)}",
                           f"+49 (0)30 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
                           f"0171 {rng.randint(1000000, 9999999)}", f"07071-29-{rng.randint(10000, 99999)}"))  # fmt: skip
    return rng.choice((f"({a}) {b}-{c:04d}", f"{a}-{b}-{c:04d}", f"{a}.{b}.{c:04d}", f"{b}-{c:04d}",
                       f"+1 {a} {b} {c:04d}", f"1-{a}-{b}-{c:04d}", f"{a} {b} {c:04d}"))  # fmt: skip


def _id_value(rng: random.Random, kind: str) -> str:
    d = rng.randint
    if kind == "MRN":
        return rng.choice((f"{d(1000000, 99999999)}", f"A{d(1000000, 9999999)}", f"MR-{d(100000, 999999)}",
                           f"{d(100, 999)}-{d(10, 99)}-{d(10, 99)}", f"{d(10000, 99999)}"))  # fmt: skip
    if kind == "ACC":
        return rng.choice((f"DX{d(10, 99)}-{d(10000, 99999)}", f"{d(10000000, 99999999)}", f"RAD{d(100000, 999999)}",
                           f"CT-{d(2000, 2030)}-{d(1000, 99999)}", f"E{d(1000000, 9999999)}"))  # fmt: skip
    if kind == "ACCOUNT":
        return rng.choice((f"{d(100000000, 999999999)}", f"AC{d(100000, 9999999)}", f"{d(1000, 9999)}-{d(100000, 999999)}",
                           f"HP-{d(10000000, 99999999)}"))  # fmt: skip
    if kind == "SSN":
        a, b, c = d(100, 899), d(10, 99), d(1000, 9999)
        return rng.choice((f"{a}-{b}-{c}", f"{a} {b} {c}", f"{a}{b}{c}"))
    if kind == "LICENSE":
        return rng.choice((f"{rng.choice('ABFM')}{rng.choice('ABCDEFGHJKLM')}{d(1000000, 9999999)}",
                           f"{d(10, 99)}-{d(100000, 999999)}", f"G{d(10000, 99999)}", f"MD{d(100000, 999999)}"))  # fmt: skip
    # device / serial numbers
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    return rng.choice((
        f"{''.join(rng.choice(letters) for _ in range(3))}{d(100000, 999999)}{rng.choice(letters)}",
        f"{d(1, 9)}{rng.choice(letters)}{d(10, 99)}-{d(10, 99)}{rng.choice(letters)}{d(1, 9)}",
        f"SN{d(10000000, 99999999)}", f"{d(100000000, 999999999)}",
        f"{rng.choice(letters)}{rng.choice(letters)}{d(1000, 9999)}{rng.choice(letters)}{d(100, 999)}",
    ))  # fmt: skip


def _value(rng: random.Random, slot: str, lang: str, context: str) -> tuple[str, str]:
    """(surface string, name source) for one slot."""
    if slot in ("PATIENT", "CLINICIAN"):
        return _name(rng)
    if slot == "ODDNAME":
        return _odd_name(rng), "odd"
    if slot in ("DATE", "YLDATE"):
        return _date(rng, lang, slot == "YLDATE"), ""
    if slot == "TIME":
        return _time(rng, lang), ""
    if slot == "AGE":
        return _age(rng, context), ""
    if slot in ("PHONE", "FAX"):
        return _phone(rng, lang), ""
    if slot == "EMAIL":
        g, s, _ = _pick_name_parts(rng)
        dom = rng.choice(
            ("iuhealth.org", "klinikum-stuttgart.de", "gmail.com", "med.uni-tuebingen.de", "mail.com")
        )
        local = (
            re.sub(r"[^a-z]", "", g.lower()) + rng.choice((".", "_", "")) + re.sub(r"[^a-z]", "", s.lower())
        )
        return f"{local}@{dom}", ""
    if slot == "URL":
        return rng.choice((f"https://pacs.{rng.choice(('iuhealth', 'stvincent', 'uk-tuebingen'))}.org/study/{rng.randint(100, 99999)}",
                           f"www.{rng.choice(('riversidemed', 'herzpraxis-vogt', 'eskenazihealth'))}.{rng.choice(('com', 'de', 'org'))}",
                           f"http://portal.{rng.choice(('mercygeneral', 'klinikum-lb'))}.net/p?id={rng.randint(1000, 99999)}")), ""  # fmt: skip
    if slot in ("MRN", "ACC", "ACCOUNT", "SSN", "LICENSE", "DEVICE"):
        return _id_value(rng, slot), ""
    if slot == "STREET":
        if lang == "de":
            return f"{rng.choice(_DE_STREETS)} {rng.randint(1, 140)}{rng.choice(('', '', 'a'))}", ""
        n = rng.randint(1, 9999)
        if rng.random() < 0.3:
            k = rng.randint(1, 60)
            suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
            return f"{n} {rng.choice('NSEW')} {k}{suffix} {rng.choice(_STREET_SUFFIX)}", ""
        return (
            f"{n} {rng.choice(('', 'N ', 'West ', 'E. '))}{rng.choice(_STREET_NAMES)} {rng.choice(_STREET_SUFFIX)}",
            "",
        )
    if slot == "CITY":
        return rng.choice(_CITIES_DE if lang == "de" else _CITIES_US), ""
    if slot == "STATE":
        return rng.choice(_STATES), ""
    if slot == "ZIP":
        return (f"{rng.randint(10000, 99999)}" if lang == "de" else rng.choice((f"{rng.randint(46000, 47999)}",
                f"{rng.randint(46000, 47999)}-{rng.randint(1000, 9999)}"))), ""  # fmt: skip
    if slot == "INST":
        return rng.choice(_INST_DE if lang == "de" else _INST_EN), ""
    raise KeyError(slot)


def _identifying_tokens(value: str, typ: str, offset: int) -> tuple[tuple[int, int], ...]:
    out = []
    for m in re.finditer(r"[^\W_]+(?:['’][^\W_]+)?", value):
        tok = m.group(0)
        low = tok.lower()
        if typ in ("name_patient", "name_clinician") and len(tok) < 2:
            continue  # an initial alone
        if typ in ("institution", "street", "city") and low.rstrip(".") in _GENERIC:
            continue
        if typ == "street" and len(tok) == 1:
            continue  # N/S/E/W
        if typ in ("email", "url") and low in (
            "https",
            "http",
            "www",
            "com",
            "org",
            "net",
            "de",
            "study",
            "p",
            "id",
        ):
            continue
        out.append((offset + m.start(), offset + m.end()))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# real report sentences


@dataclass(frozen=True)
class RealReport:
    text: str
    lang: str
    source: str
    split: str


def _split_of(text: str) -> str:
    return "dev" if hashlib.sha256(text.encode()).digest()[0] % 2 == 0 else "test"


@lru_cache(maxsize=4)
def real_reports(data_dir: Path) -> tuple[RealReport, ...]:
    """All real reports (Indiana: the four text columns joined; PTB-XL: the report), deduplicated."""
    out: dict[str, RealReport] = {}
    with open(data_dir / "indiana_cxr/indiana_reports_partA.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            t = " \n".join(r[c] for c in ("indication", "comparison", "findings", "impression"))
            out.setdefault(t, RealReport(t, "en", "indiana", _split_of(t)))
    with open(data_dir / "ptbxl_ecg/ptbxl_database_subset_partA.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            t = r["report"]
            lang = "en" if re.search(r"\b(?:rhythm|sinus|normal ecg|the|and|with)\b", t) else "de"
            out.setdefault(t, RealReport(t, lang, "ptbxl", _split_of(t)))
    return tuple(out.values())


def _carriers(data_dir: Path, split: str, lang: str) -> list[str]:
    """Report texts of one split and language that can carry an insertion."""
    return [
        r.text for r in real_reports(data_dir) if r.split == split and r.lang == lang and len(r.text) >= 20
    ]


# ---------------------------------------------------------------------------------------------
# rendering

_SLOT = re.compile(r"\{([A-Z]+)\}")


def _render(template: str, lang: str, rng: random.Random, casing: str) -> tuple[str, list[PhiItem]]:
    """The phrase with its slots filled, and its PHI items (offsets relative to the phrase)."""
    parts: list[str] = []
    items: list[PhiItem] = []
    pos = 0
    cur = 0
    for m in _SLOT.finditer(template):
        lit = template[pos : m.start()]
        parts.append(lit)
        cur += len(lit)
        slot = m.group(1)
        value, source = _value(rng, slot, lang, template[m.end() : m.end() + 12])
        if casing == "lower":
            value = value.lower()
        elif casing == "upper":
            value = value.upper()
        typ = SLOT_TYPE[slot]
        if typ != "state":
            items.append(PhiItem(typ, cur, cur + len(value), _identifying_tokens(value, typ, cur), source))
        parts.append(value)
        cur += len(value)
        pos = m.end()
    parts.append(template[pos:])
    text = "".join(parts)
    if casing == "lower":
        text = text.lower()
    elif casing == "upper":
        text = text.upper()
    return text, items


def _insert(base: str, phrase: str, rng: random.Random) -> tuple[str, int]:
    """``base`` with ``phrase`` inserted at a sentence boundary; returns (text, phrase offset)."""
    bounds = [0, len(base)] + [m.end() for m in re.finditer(r"[.!?]\s+", base)]
    at = rng.choice(sorted(set(bounds)))
    before, after = base[:at], base[at:]
    sep_b = "" if not before or before.endswith((" ", "\n")) else " "
    sep_a = "" if not after or after.startswith((" ", "\n")) else " "
    return before + sep_b + phrase + sep_a + after, len(before) + len(sep_b)


def _shift(items: list[PhiItem], off: int) -> tuple[PhiItem, ...]:
    return tuple(
        PhiItem(i.type, i.start + off, i.end + off, tuple((a + off, b + off) for a, b in i.tokens), i.source)
        for i in items
    )


@dataclass(frozen=True)
class CorpusConfig:
    """What to generate."""

    data_dir: Path
    split: str = "test"
    per_template: int = 10
    seed: int = 16


def generate(cfg: CorpusConfig) -> list[Example]:
    """The PHI examples and the control examples of one split, deterministic for a seed."""
    templates = DEV if cfg.split == "dev" else TEST
    carriers_ctl = CONTROL_DEV if cfg.split == "dev" else CONTROL_TEST
    rng = random.Random(f"{cfg.seed}-{cfg.split}")
    pools = {lang: _carriers(cfg.data_dir, cfg.split, lang) for lang in ("en", "de")}
    out: list[Example] = []
    for tid, lang, template in templates:
        for _ in range(cfg.per_template):
            r = rng.random()
            casing = "lower" if r < 0.12 or (lang == "de" and r < 0.35) else ("upper" if r < 0.2 else "as-is")
            phrase, items = _render(template, lang, rng, casing)
            base = rng.choice(pools[lang])
            text, off = _insert(base, phrase, rng)
            out.append(Example(text, lang, tid, cfg.split, casing, _shift(items, off), (), (0, off)))
    for i, (kind, term) in enumerate(CONTROLS):
        de_term = (
            kind in ("vertebra",)
            and term.isupper()
            or any(c in term for c in "äöüß")
            or term
            in (
                "Herzschrittmacher",
                "Kalium 5.8 mmol/l",
                "Leukozyten 12500/µl",
                "Thrombozyten 250000",
            )
        )
        opts = [c for c in carriers_ctl if (c[0] == "de") == bool(de_term)] or list(carriers_ctl)
        lang, carrier = opts[i % len(opts)]
        a = carrier.index("{CONTROL}")
        phrase = carrier.replace("{CONTROL}", term)
        base = rng.choice(pools[lang])
        text, off = _insert(base, phrase, rng)
        out.append(
            Example(
                text,
                lang,
                f"control-{kind}",
                cfg.split,
                "as-is",
                (),
                (Control(kind, off + a, off + a + len(term)),),
                (0, off),
            )
        )
    return out
