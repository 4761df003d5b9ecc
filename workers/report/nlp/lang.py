"""Language detection for short clinical reports.

General-purpose detectors (langdetect) are unreliable on telegraphic clinical text
("sinusrhythmus lagetyp normal" comes out as Estonian or Afrikaans), so a small lexicon of
function words and frequent clinical words decides first; langdetect (seeded, so deterministic)
only breaks ties or handles texts with no lexicon hit. Returns ISO 639-1 codes, ``"und"`` when
nothing can be said (empty or numeric text).
"""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)

#: function words + frequent report words per language (lower case, casefolded)
LEXICON: dict[str, frozenset[str]] = {
    "en": frozenset(
        """the a an and or of in on at to with without is are was were be been there this that no not
        normal rhythm sinus heart lung lungs chest size within limits evidence effusion pneumothorax
        consolidation acute findings impression unchanged stable mild moderate severe left right
        bilateral possible probable likely consistent suggest suggests may cannot excluded seen
        identified clear wave waves atrial ventricular fibrillation block bundle branch axis deviation
        voltage voltages leads lead changes segment segments depressed elevated inverted flat
        infarction infarct old anterior inferior lateral hypertrophy premature contraction contractions
        complexes otherwise borderline abnormal nonspecific non specific""".split()
    ),
    "de": frozenset(
        """der die das und oder ist sind war nicht kein keine keinen mit ohne bei auf im in von zu
        sonst normales normal ekg lagetyp linkstyp rechtstyp steiltyp sinusrhythmus sinustachykardie
        sinusbradykardie vorhofflimmern flattern vorhofflattern abnorm abnormal wahrscheinlich möglich
        moeglich verdacht infarkt myokardschaden ischämie ischaemie linksbelastung schenkelblock
        rechtsschenkelblock linksschenkelblock hemiblock linksanteriorer unbestätigter bericht periphere
        niederspannung extrasystole extrasystolen ventrikuläre supraventrikuläre überdrehter ueberdrehter
        alter unbest lungen herz befund beurteilung erguss unauffällig regelrecht kein nachweis
        hinweis verbreiterung grenzbefund leitungsstoerung leitungsstörung pathologisches hypertrophie
        linkshypertrophie amplitudenkriterien für unspezifisches unvollständiger inkompletter pathologisch
        verzoegerte verzögerte""".split()
    ),
    "sv": frozenset(
        """och är inte ingen inga med utan av på i till för sinusrytm förmaksflimmer förmaksfladder
        fladder avvikande förlopp vänster höger el-axel axel kammarhypertrofi hemiblock myokardskada
        infarkt bör övervägas låga amplituder extremitetsavledningarna sasom såsom vid qrs st t-förändring
        möjlig sannolikt skänkelblock kammarextrasystoler normalt ekg gränsfall""".split()
    ),
    "fr": frozenset(
        "le la les et ou de des du est sont pas aucun aucune avec sans rythme sinusal normal".split()
    ),
    "es": frozenset("el la los las y o de del es son no sin con ritmo sinusal normal derrame".split()),
    "nl": frozenset("de het een en of van is zijn niet geen met zonder sinusritme normaal".split()),
}


@lru_cache(maxsize=1)
def _langdetect_factory():
    from langdetect import detector_factory

    detector_factory.DetectorFactory.seed = 0  # langdetect is randomised; a fixed seed makes it deterministic
    detector_factory.init_factory()
    return detector_factory._factory


def _fallback(text: str) -> str:
    from langdetect.lang_detect_exception import LangDetectException

    factory = _langdetect_factory()
    try:
        det = factory.create()
        det.append(text)
        return det.detect()
    except LangDetectException:
        return "und"


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text`` (``"und"`` if undetermined). Deterministic."""
    words = [w.casefold() for w in _WORD.findall(text)]
    if not words:
        return "und"
    scores = {lang: sum(w in lex for w in words) for lang, lex in LEXICON.items()}
    best = max(scores.values())
    if best > 0:
        winners = [lang for lang, s in scores.items() if s == best]
        if len(winners) == 1:
            return winners[0]
        guess = _fallback(text)
        return guess if guess in winners else winners[0]
    return _fallback(text)
