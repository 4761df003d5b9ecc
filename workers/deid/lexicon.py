"""Dictionaries of the text de-identification, loaded once per process.

Files in ``workers/resources/deid/`` (see its README for sources and licences): census given names
and surnames, US/German/Austrian/Swiss places, and the lower-case English word list that marks
names and places which are also ordinary words (*ambiguous*: they count only with a cue). The
small hand-written lists of ``workers/resources/deid_names.json`` (German names) are merged in.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from spacy.lang.de.stop_words import STOP_WORDS as _DE_STOP
from spacy.lang.en.stop_words import STOP_WORDS as _EN_STOP

RESOURCES = Path(__file__).resolve().parents[1] / "resources"

#: German words frequent in reports that are also surnames or places (never names on their own)
GERMAN_COMMON = frozenset(
    """
    herz lunge befund befunde zustand kontrolle bild links rechts vorhof kammer block rhythmus sinus typ
    lage wert werte strom welle wellen zacke zacken zeit dauer frequenz schlag schläge extrasystole
    extrasystolen normal normale normales alter neu alt klein groß gross lang kurz hoch tief stark
    schwach voll leer weiß weiss schwarz braun bericht diagnose verdacht ausschluss zeichen hinweis
    untersuchung aufnahme vorstellung entlassung verlauf therapie medikation anamnese beschwerden
    schmerz schmerzen brust thorax abdomen niere nieren leber milz darm magen kopf hals arm bein fuss
    fuß hand rücken wirbelsäule gefäß gefäße klappe klappen stenose insuffizienz infarkt ischämie
    hypertrophie dilatation erguss pneumonie stauung ödem kardiomegalie schrittmacher sonde ableitung
    ableitungen lagetyp linkstyp rechtstyp steiltyp indifferenztyp sinusrhythmus vorhofflimmern
    wunsch kardiologe kardiologen kardiologin hausarzt hausärztin facharzt fachärztin empfohlen erfolgt
    geplant ambulant ambulante stationär stationäre niedergelassenen herzinsuffizienz
    """.split()
)
#: affixes and Latin anatomy of clinical text that the English word list lacks
EXTRA_WORDS = frozenset(
    """
    pre post op postop preop non anti co re sub bi tri semi mid para peri intra extra inter hemi multi ex
    vena cava venae arteria aortae pulmonalis dexter sinister sinistra dextra anterior posterior superior
    inferior medialis lateralis brady tachy thi ecg ekg lvh rvh lbbb rbbb lafb lahb
    """.split()
)
# the surnames above stay names next to a title or label; as bare capitalised nouns they are words
_GERMAN_NOUN_NAMES = frozenset(
    "herz lunge befund zustand kontrolle bild block rhythmus typ lage wert strom welle zacke zeit dauer "
    "frequenz schlag alter stein winter sommer engel horn busch vogel graf kaiser könig jung lang lange "
    "klein groß gross hoch stark braun schwarz weiß weiss".split()
)


@dataclass(frozen=True)
class Lexicon:
    """Lower-cased word sets used by the name, place and model detectors."""

    given: frozenset[str]
    surnames: frozenset[str]
    strong_names: frozenset[str]  # name parts that are no ordinary word
    weak_names: frozenset[str]  # name parts that are also words ("hope", "baker", "wilson"?)
    places: frozenset[str]  # single- and multi-word place names, lower-case
    strong_places: frozenset[str]
    words: frozenset[str]  # ordinary English words, stop words, German stop words
    stop: frozenset[str]
    countries: frozenset[str]

    def is_word(self, low: str) -> bool:
        """``low`` (lower-case) is an ordinary word, also inflected ("states", "walks", "appears")."""
        return _is_word(low)


def _read_flagged(name: str) -> tuple[set[str], set[str]]:
    """(all entries, ambiguous entries) of a ``name<TAB>a`` file, lower-cased."""
    all_, amb = set(), set()
    for line in (RESOURCES / "deid" / name).read_text(encoding="utf-8").splitlines():
        word, _, flag = line.partition("\t")
        if word:
            all_.add(word.lower())
            if flag == "a":
                amb.add(word.lower())
    return all_, amb


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    with gzip.open(RESOURCES / "deid" / "en_words.txt.gz", "rt", encoding="utf-8") as f:
        en_words = frozenset(f.read().split())
    stop = frozenset(w.lower() for w in _EN_STOP | _DE_STOP)
    given, given_amb = _read_flagged("given_names.txt")
    surnames, sur_amb = _read_flagged("surnames.txt")
    places, places_amb = _read_flagged("places.txt")
    data = json.loads((RESOURCES / "deid_names.json").read_text(encoding="utf-8"))
    given |= {n.lower() for n in data["first_names"] + data["ambiguous_first_names"]}
    surnames |= {n.lower() for n in data["surnames"] + data["ambiguous_surnames"]}
    hand_amb = {n.lower() for n in data["ambiguous_first_names"] + data["ambiguous_surnames"]}
    from workers.deid.clinical import clinical_words

    clinical = clinical_words()
    weak = given_amb | sur_amb | hand_amb | (clinical & (given | surnames)) | (_GERMAN_NOUN_NAMES & surnames)
    weak |= stop & (given | surnames)
    names = given | surnames
    all_words = en_words | stop | clinical | GERMAN_COMMON | EXTRA_WORDS
    weak |= {n for n in names if _inflected(n, all_words)}
    countries = {
        c.lower()
        for c in (RESOURCES / "deid" / "countries.txt").read_text(encoding="utf-8").splitlines()
        if c
    }
    return Lexicon(
        given=frozenset(given),
        surnames=frozenset(surnames),
        strong_names=frozenset(names - weak),
        weak_names=frozenset(weak & names),
        places=frozenset(places),
        strong_places=frozenset(places - places_amb - clinical - stop - names),
        words=frozenset(all_words | countries),
        stop=stop,
        countries=frozenset(countries),
    )


_SUFFIXES = (
    ("ies", "y"), ("ied", "y"), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"), ("es", ""), ("s", ""),
    ("ly", ""), ("er", ""), ("ers", ""), ("est", ""), ("ness", ""), ("ment", ""), ("al", ""), ("ally", ""),
)  # fmt: skip


@lru_cache(maxsize=65536)
def _is_word(low: str) -> bool:
    return _inflected(low, lexicon().words)


def _inflected(low: str, words: frozenset[str] | set[str]) -> bool:
    """``low`` is in ``words``, or an inflected form or a hyphen compound of words in it."""
    if low in words:
        return True
    if "-" in low:
        parts = [p for p in low.split("-") if p]
        return all(len(p) < 2 or _inflected(p, words) for p in parts)
    for suf, rep in _SUFFIXES:
        if low.endswith(suf) and len(low) - len(suf) >= 3:
            stem = low[: -len(suf)] + rep
            if stem in words:
                return True
            if (
                suf in ("ing", "ed", "er", "est")
                and len(stem) > 3
                and stem[-1] == stem[-2]
                and stem[:-1] in words
            ):
                return True  # "stopping", "planned"
    return False
