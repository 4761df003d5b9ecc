"""Person names: titles, labels, context cues, credentials and name dictionaries.

Evidence, strongest first:

- a title ("Dr.", "Herr", "Mrs.") or a label ("Name:", "Signed by", "Befundet von",
  "Technologist:"): the following name-like tokens, whatever their case (``dr. krüger``);
- "Patient <token>": an unknown token after "Patient"/"Patientin"/"Pt" is a name whatever its
  shape (``Patient Zqx003Vorlund``);
- a context cue ("called to", "discussed with", "Rücksprache mit", "per", "read by") or a
  credential after the name (", RN", " MD", ", PA-C");
- dictionaries: census given names and surnames. A name part that is also an ordinary word
  ("Hope", "Baker") counts only next to another name part, an initial or a cue.

A *name-like* token is a word that is a known name part or no ordinary word (``O'Brien``,
``McAllister``, ``Anne-Marie``, ``Ibekwe``); stop words and clinical words never are.
"""

from __future__ import annotations

import re
from functools import lru_cache

from workers.deid.clinical import ECG_CODES, clinical_words
from workers.deid.lexicon import Lexicon, lexicon
from workers.deid.spans import Span, is_mixed, tokenize

_TITLE_WORDS = frozenset(
    "dr drs dres mr mrs ms mx miss prof professor doctor herr frau hr fr sr sra pd oa oä ca mme mlle "
    "med rer nat phil habil univ dipl ing".split()
)
_ROLE_WORDS = frozenset(
    "attending resident fellow nurse physician radiologist cardiologist technologist tech surgeon provider "
    "colleague oberarzt oberärztin assistenzarzt assistenzärztin arzt ärztin kollege kollegin dienstarzt "
    "hausarzt hausärztin pfleger pflegekraft schwester referring ordering covering on-call".split()
)
CLINICAL_FOLLOWERS = re.compile(
    r"[ \t]+(?:therapy|treatment|dose|doses|injection|infusion|tablets?|use|level|levels|toxicity|drip|"
    r"syndrome|disease|sign|fracture|catheter|drain|tube|line|lines|valve|stent|device|pacemaker|"
    r"criteria|score|scale|classification|class|type|pattern|block|therapie|gabe|spiegel)\b",
    re.IGNORECASE,
)
_PARTICLES = frozenset("van von de der den la le du di da dos del ter zu vom y".split())
_ARTICLES = frozenset("der den die das dem des".split())
#: never names, even when unknown to the word list (abbreviations, roles, report words)
_NOT_NAMES = frozenset(
    """
    pt pts dr md rn pa np do ed er icu ccu cath lab team staff service family daughter son wife husband
    patient patients patient's patienten patientin pat ekg ecg cxr ct mri mrt us rx dx hx fx sx tx
    phone telephone telefon telefonisch pager fax email today tomorrow yesterday heute gestern morgen
    am pm uhr hours mins min sec ms mm cm kg bpm mmhg iu ie mg ml cardiology radiology kardiologie
    radiologie station ward floor unit clinic klinik hospital praxis nurse's dr's xxxx
    """.split()
)
_HEADING_WORDS = frozenset(
    "information history data details demographics identification instructions education care safety "
    "position positioning preparation status summary name number id age sex gender record records "
    "room transport consent instructed".split()
)
_CREDENTIAL = re.compile(
    r"(?:[ \t]*,[ \t]*(?:RN|R\.N\.|MD|M\.D\.|PA(?:-C)?|NP|DO|D\.O\.|PhD|RT|CRNA|LPN|CNA|MA|FACC|FACP|MBBS|"
    r"RDCS|RCS|RVT|ARNP|APRN|DNP|PharmD|rn|md|pa|np|pa-c)"
    r"|[ \t]+(?:RN|MD|M\.D\.|PA-C|NP|PhD|CRNA|LPN|FACC|ARNP|APRN|DNP)"
    r"|[ \t]*,[ \t]*(?i:(?:(?:cardiology|radiology|medicine|surgery|ed|icu|emergency|nursing)[ \t]+)?"
    r"(?:attending|fellow|resident|charge[ \t]+nurse|nurse[ \t]+practitioner|physician[ \t]+assistant)"
    r"|(?:ober|chef|assistenz|fach|stations|haus)(?:arzt|ärztin)|oa|oä|fa|aa))(?![\w])"
)
_LABEL = re.compile(
    r"(?:\b(?:electronically\s+)?(?:signed|dictated|transcribed|reviewed|verified|approved|read|reported|"
    r"interpreted|attested|authenticated|confirmed|performed|prepared|typed|entered|finali[sz]ed|"
    r"co-?signed|ordered|referred|seen|examined|evaluated|checked|done|placed|inserted|witnessed|supervised|requested|completed|written|assisted|obtained|called|paged|overread|over-read|durchgeführt|erstellt|beurteilt|befundet|diktiert|geschrieben|"
    r"vidiert|unterschrieben|freigegeben|überwiesen|zugewiesen)(?:\s+(?:and|&|und)\s+\w+)?\s+(?:by|von|durch)"
    r"|\b(?:(?:electronically\s+)?signed(?=[ \t]*:)|patient(?:'s)?\s+name|name|vorname|nachname|name,\s*vorname|befundende?r?\s+(?:ärztin|arzt)|"
    r"radiologist|radiologe|radiologin|cardiologist|kardiologe|kardiologin|physician|attending|resident|"
    r"fellow|technologist|sonographer|tech|referring(?:\s+(?:physician|doctor|md))?|ordering(?:\s+(?:physician|provider))?|"
    r"requesting(?:\s+physician)?|(?:haus|ober|chef|fach|assistenz|stations)(?:arzt|ärztin)|pcp|"
    r"primary\s+care(?:\s+(?:physician|provider))?|zuweiser|zuweisende?r?\s+(?:arzt|ärztin)|überweiser|einsender|unterschrift|"
    r"gez|vidiert|signature|cc|copy\s+to|kopie\s+an|provider|nurse|pflege|untersucher(?:in)?|operator|reader|"
    r"contact(?:\s+person)?|caller|anrufer(?:in)?|kontakt(?:person)?|ansprechpartner(?:in)?|mother|father|son|daughter|wife|husband|spouse|sister|brother|guardian|mutter|vater|"
    r"sohn|sohnes|tochter|ehefrau|ehemann|ehemannes|vaters|bruders|partner(?:in)?|angehörige[rn]?|betreuer(?:in)?|niece|nephew|grandson|"
    r"granddaughter|grandchild|caregiver|friend|neighbou?r|cousin|aunt|uncle|nichte|neffe|enkel(?:in)?|"
    r"dear|attn|attention|(?:patient|patientin|pt|re|betrifft|betreff)(?=[ \t]*:)|sehr\s+geehrte[rn]?(?:\s+(?:frau|herr))?|liebe[rn]?\s+(?:kollegin|kollege)|"
    r"mit\s+(?:freundlichen|kollegialen|besten)\s+grüßen|(?:best\s+|kind\s+|warm\s+)?regards|sincerely))"
    r"(?:(?P<colon>[ \t]*[:,])[ \t]+|[ \t]+\(|[ \t]*\((?=\w)|[ \t]+)",
    re.IGNORECASE,
)
#: last words of the labels of ``_LABEL``: the regex runs only on texts that contain one
_LABEL_TRIGGERS = frozenset(
    """
    by von durch name vorname nachname signed dear attn attention geehrte geehrter geehrten frau herr person kontaktperson ansprechpartner ansprechpartnerin ärztin arzt radiologist radiologe radiologin cardiologist kardiologe
    kardiologin physician attending resident fellow technologist sonographer tech referring doctor md
    hausarzt hausärztin oberarzt oberärztin chefarzt chefärztin facharzt fachärztin assistenzarzt
    assistenzärztin stationsarzt stationsärztin pcp care provider
    provider ordering requesting zuweiser überweiser einsender unterschrift gez vidiert signature cc to an
    nurse pflege untersucher untersucherin operator reader contact caller anrufer anruferin kontakt mother father son daughter wife
    husband spouse sister brother guardian mutter vater sohn tochter ehefrau ehemann partner partnerin
    sohnes ehemannes vaters bruders
    angehörige angehöriger angehörigen betreuer betreuerin grüßen regards sincerely niece nephew grandson
    granddaughter grandchild caregiver friend neighbor neighbour cousin aunt uncle nichte neffe enkel enkelin
    """.split()
)
_COLON_ONLY = frozenset(
    "name cc tech contact caller anrufer anruferin kontakt nurse reader provider operator pflege son wife husband partner partnerin "
    "gez signature physician attending resident fellow mother father sister brother hausarzt hausärztin "
    "oberarzt oberärztin chefarzt chefärztin facharzt fachärztin assistenzarzt assistenzärztin stationsarzt "
    "stationsärztin pcp niece nephew grandson granddaughter grandchild caregiver friend neighbor neighbour "
    "cousin aunt uncle nichte neffe enkel enkelin sohnes ehemannes vaters bruders".split()
) | {"primary care", "primary care physician", "primary care provider"}
_CUE_VERBS = frozenset(
    """
    called communicated relayed conveyed reported given paged faxed sent telephoned forwarded discussed
    reviewed spoke speaking talked conferred consulted informed notified übermittelt mitgeteilt besprochen
    rücksprache reached contacted explained telefoniert telefonat gesprochen texted messaged emailed e-mailed
    handed signed shown showed told seen reviewed discussing reviewing communicating weitergeleitet
    befundübermittlung befundmitteilung übermittlung mitteilung benachrichtigt verständigt requested
    received thanks thank kontrolle vorstellung termin wiedervorstellung provided sent notify inform
    rückruf anruf telefonat durchgegeben weitergegeben obtained consent forward route routed
    weitergegeben übergeben rückfragen questions queries
    """.split()
)
#: cue verbs that count only right before the preposition ("seen with X", "handed over to X")
_NEAR_CUE_VERBS = frozenset("seen shown showed told handed signed given reviewed".split())
_CUE_ADVERBS = frozenset(
    "directly personally telephonically verbally urgently by telephone phone findings results this these "
    "were was and telefonisch persönlich direkt".split()
)
#: "-ed by" verbs that are followed by things, not people
_NOT_AGENT_VERBS = frozenset(
    """
    caused followed obscured replaced characterized characterised surrounded limited complicated
    accompanied preceded supplied marked defined bordered outlined separated demonstrated evidenced
    manifested indicated suggested explained affected produced confirmed supported
    """.split()
)
#: adverbs that make "followed by" a cue ("previously followed by X in Carmel")
_FOLLOWED_ADVERBS = frozenset(
    "formerly previously currently regularly routinely closely long-term being also now usually".split()
)
#: short function words that are also given names in the census lists ("In", "An"): never a name part
_FUNCTION_WORDS = frozenset(
    "a an and at by for from in into of on or the to with am an auf aus bei im in mit nach und von vom zu zum zur".split()
)
_CARE_NOUNS = frozenset("weiterbehandlung mitbehandlung betreuung nachbetreuung nachsorge".split())
_CUE_PREPS = frozenset("to with at an mit from bei durch".split())
_STANDALONE_CUES = frozenset(
    "per notified informed paged reached contacted cc called phoned texted emailed messaged page notify inform "
    "call".split()
)
#: cues that alone are weak (ordinary prepositions): only capitalised or known-name tokens follow
_WEAK_CUES = frozenset("by von durch an mit with to from and und sowie bei für at".split())
_PATIENT_WORDS = frozenset("patient patientin pt pat".split())
_HEADER_NAME = re.compile(
    r"(?m)^[ \t]*([A-ZÄÖÜ][A-ZÄÖÜ'’-]{2,}),[ \t]*([A-ZÄÖÜ][A-ZÄÖÜ'’-]{2,})(?:[ \t]+[A-Z]\.?)?(?=[ \t]{2,}|\t|[ \t]*$|[ \t]+(?:DOB|MRN|Patient|Pat|geb|Geb|\d))"
)
_ATTESTATION = re.compile(
    r"\b[Ii],[ \t]+(?P<n>[^\W\d_][^,;:\n]{1,50}?),[ \t]+(?i:have|hereby|am|attest|certify|personally|was)\b"
)
#: verbs that make the words before them a person when those are name-like ("Ibekwe denies ...")
_PERSON_VERBS = frozenset(
    """
    complains complained denies denied underwent undergoes presents reports states stated returns returned
    arrived arrives came comes agrees agreed calls called tolerated tolerates describes endorses endorsed admits
    feels requests requested wishes wants declined declines refused refuses consented consents understands
    presented informed notified paged saw sees
    klagt klagte berichtet berichtete kommt kam stellt verneint verneinte wünscht lehnt informiert
    benachrichtigt verständigt
    """.split()
)
#: weaker verbs: the words before them must be names beyond doubt (no ordinary word among them)
_GERMAN_PASSIVE = re.compile(  # the dots of a date do not end the clause ("am 10.03.08 um")
    r"(?:[^.\n]|(?<=\d)\.|\.(?=\d)){0,60}?\b(?:aufgenommen|entlassen|vorgestellt|verlegt|untersucht|behandelt|informiert|operiert|"
    r"eingeliefert|überwiesen|zugewiesen|gesehen)\b",
    re.IGNORECASE,
)
_AFTER_NAME_COMMA = frozenset(
    "who seen admitted referred born dob aged age wohnhaft geb geboren tel telefon phone wohnt".split()
)
_PERSON_ADVERBS = frozenset("personally independently also himself herself selbst persönlich".split())
_WEAK_PERSON_VERBS = frozenset(
    "performed reviewed interpreted dictated signed assisted read supervised attested verified".split()
)
#: words after "Name:" that make it a signature ("Walker: agree with above", "X: seen and agree")
#: verbs of things as much as of people ("Line placed"): only names beyond doubt, or "X (IR) placed"
_THING_VERBS = frozenset("placed inserted ordered".split())
_AGREE = frozenset(
    "agree agreed agrees concur concurs i seen reviewed addendum einverstanden gesehen".split()
)
_BE_VERBS = frozenset("is was has had ist war hat hatte wurde will would should must wird würde soll".split())
_RELATIONS = frozenset(
    """
    wife husband daughter son mother father sister brother spouse partner niece nephew grandson
    granddaughter friend caregiver guardian ehefrau ehemann tochter sohn mutter vater schwester bruder
    """.split()
)
#: what a person has: "Young's PCP", "Ibekwe's wife", "Sabine's home"
_POSSESSED = _RELATIONS | frozenset(
    """
    pcp doctor physician cardiologist oncologist surgeon nurse provider chart record records home house
    apartment address phone insurance family children kids symptoms
    """.split()
)
#: a relative, then a few words of the same clause, then a bracket: "Relative in Carmel (X)"
_RELATION_BRACKET = re.compile(
    r"\b(?:relatives?|family[ \t]+member|next[ \t]+of[ \t]+kin|angehörige[rn]?|"
    + "|".join(sorted(_RELATIONS))
    + r")\b[^().;:\n]{1,40}?\([ \t]*",
    re.IGNORECASE,
)
_ALLCAPS_PAIR = re.compile(r"\b([A-ZÄÖÜ][A-ZÄÖÜ'’-]+),[ \t]*([A-ZÄÖÜ][A-ZÄÖÜ'’-]+)\b")


@lru_cache(maxsize=65536)
def _base(tok: str) -> str:
    low = tok.lower()
    for suf in ("'s", "’s"):
        if low.endswith(suf):
            return low[: -len(suf)]
    return low


def name_like(tok: str, lex: Lexicon, allow_digits: bool = False, lenient: bool = True) -> bool:
    """A token that may be part of a name: a known name part or no ordinary word.

    A name part that is also a word ("Hope", "Baker", "states") counts only when ``lenient``
    (capitalised in a mixed-case text, or any token of a single-case text)."""
    if not tok[:1].isalnum():
        return False
    low = _base(tok)
    if low in lex.stop or low in _NOT_NAMES or low in _TITLE_WORDS or low in lex.countries:
        return False
    if low in _PERSON_VERBS or low in _BE_VERBS or low in _RELATIONS or low in ECG_CODES:
        return False
    if (
        "-" in low
        and not tok[:1].isupper()
        and all(lex.is_word(p) or p in lex.stop for p in low.split("-") if p)
    ):
        return False  # "year-old", "follow-up"
    if any(c.isdigit() for c in tok):
        return allow_digits and any(c.isalpha() for c in tok) and len(tok) >= 4
    if len(tok) < 2:
        return False
    if low in lex.strong_names:
        return True
    parts = low.split("-")
    if len(parts) > 1 and tok[:1].isupper() and all(p[:1].isupper() for p in tok.split("-") if p):
        return all(p in lex.given or p in lex.surnames or not lex.is_word(p) for p in parts if p)
    if lex.is_word(low) or low in lex.weak_names:
        return lenient and (low in lex.given or low in lex.surnames)
    return True


_SEGMENT = re.compile(r"[^.!?;\n]+")
_WORDS3 = re.compile(r"[^\W\d_]{2,}")


class _Tokens:
    """Word tokens of a text with offsets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.mixed = is_mixed(text)
        self.starts = [t[0] for t in self.toks]
        # letter case per sentence: an upper- or lower-case sentence inside ordinary text is read
        # like a single-case text ("FINDINGS CALLED TO KOFI OKONKWO.", "seen with eero tjernström.")
        self.local = [self.mixed] * len(self.toks)
        if self.mixed:
            for seg in _SEGMENT.finditer(text):
                g = seg.group(0)
                if (g.islower() or g.isupper()) and len(_WORDS3.findall(g)) >= 3:
                    a, b = self.index_at(seg.start()), self.index_at(seg.end())
                    for q in range(a, b):
                        self.local[q] = False

    def index_at(self, pos: int) -> int:
        """Index of the first token starting at or after ``pos``."""
        from bisect import bisect_left

        return bisect_left(self.starts, pos)


def _skip_titles(tk: _Tokens, i: int) -> int:
    """Index of the first token at or after ``i`` that is no title or role word ("Dr.", "OA")."""
    toks, n = tk.toks, len(tk.toks)
    while i < n and (_base(toks[i][2]) in _TITLE_WORDS or _base(toks[i][2]) in _ROLE_WORDS):
        i += 1
        if i < n and toks[i][2] == ".":
            i += 1
    return i


def _take_name(
    tk: _Tokens, i: int, lex: Lexicon, strict_case: bool, allow_digits: bool = False, trusted: bool = False
) -> int:
    """End offset of the name starting at token ``i`` (-1 if none).

    Skips titles and role words, then takes up to four name-like tokens, initials ("J."),
    particles ("van der") and one "Last, First" comma. With ``strict_case`` (a weak cue in a
    mixed-case text) only capitalised tokens count; with ``trusted`` (after a title, a label or a
    strong cue) a name part that is also a word counts in any case ("verified by paul braun").
    """
    toks, text = tk.toks, tk.text
    n = len(toks)
    i = _skip_titles(tk, i)
    end, taken, j = -1, 0, i
    comma_used = False
    while j < n and taken < 4:
        s, e, tok = toks[j]
        if j > i and not re.fullmatch(r"[ \t]*", text[toks[j - 1][1] : s]):
            break
        if j == i and tok.lower() in _ARTICLES:
            break  # "durch den Hausarzt": an article, not the particle of "van den Berg"
        if tok.lower() in _PARTICLES and (taken or trusted) and j + 1 < n and toks[j + 1][2][:1].isalpha():
            if taken or name_like(toks[j + 1][2], lex) or toks[j + 1][2].lower() in _PARTICLES:
                j += 1
                continue
        if (
            len(tok) == 1
            and tok.isalpha()
            and (tok.isupper() or not strict_case)
            and j + 1 < n
            and toks[j + 1][2] == "."
        ):
            end, j = toks[j + 1][1], j + 2  # an initial
            taken += 1
            continue
        lenient = trusted or not tk.local[j] or (tok[:1].isupper() and not (tok.isupper() and len(tok) <= 3))
        ok = name_like(tok, lex, allow_digits and taken == 0, lenient)
        if not ok and trusted and _base(tok) in lex.given and _base(tok) not in _FUNCTION_WORDS and j + 1 < n:
            # "discussed with Will Baker", "called will hoffmann": a given name that is also a stop
            # word, before a name part in the same case
            nxt = toks[j + 1][2]
            ok = (
                _style(nxt) == _style(tok)
                and _base(nxt) not in lex.stop
                and name_like(nxt, lex, lenient=True)
                and (tok[:1].isupper() or _base(nxt) in lex.surnames or not lex.is_word(_base(nxt)))
            )
        if not ok and trusted and taken == 0 and j + 1 < n and _base(tok) not in lex.stop:
            ok = _word_before_no_word(tk, j, lex)  # "thanks to kalo venmi"
        if ok and taken == 0 and CLINICAL_FOLLOWERS.match(text, e):
            ok = False  # "prior to Enbrel therapy"
        if ok and strict_case and not tok[:1].isupper():
            ok = False
        if not ok:
            break
        end = e
        taken += 1
        j += 1
        # "Smith, John": a comma, then one given name
        if j + 1 < n and toks[j][2] == "," and not comma_used:
            nxt = toks[j + 1][2]
            same_case = nxt[:1].isupper() == tok[:1].isupper() and nxt.isupper() == tok.isupper()
            given_like = _base(nxt) in lex.given or (name_like(nxt, lex) and not lex.is_word(_base(nxt)))
            if given_like and same_case and (nxt[:1].isupper() or not strict_case):
                end = toks[j + 1][1]
                taken += 1
                j += 2
                comma_used = True
    return end


def _word_before_no_word(tk: _Tokens, j: int, lex: Lexicon) -> bool:
    """After a strong cue, an ordinary word ``j`` before a name part that is no word, in the same
    case and without a gap ("thanks to kalo venmi")."""
    toks, text = tk.toks, tk.text
    _s, e, tok = toks[j]
    nxt = toks[j + 1][2]
    return (
        tok[:1].isalpha()
        and len(tok) > 1
        and _style(nxt) == _style(tok)
        and re.fullmatch(r"[ \t]+", text[e : toks[j + 1][0]]) is not None
        and _base(nxt) not in lex.stop
        and not lex.is_word(_base(nxt))
        and name_like(nxt, lex, lenient=True)
        and _base(tok) not in _NOT_NAMES
        and _base(tok) not in _ROLE_WORDS
    )


def _credential_spans(text: str, tk: _Tokens, lex: Lexicon) -> list[Span]:
    """Name tokens right before ", RN" / " MD" / ", PA-C"."""
    out = []
    for m in _CREDENTIAL.finditer(text):
        k = tk.index_at(m.start()) - 1
        # the credential itself must start a token after the name
        start = None
        taken = 0
        while k >= 0 and taken < 4:
            s, e, tok = tk.toks[k]
            gap = text[e : tk.toks[k + 1][0]] if k + 1 < len(tk.toks) else ""
            if taken and not re.fullmatch(r"[ \t]*", gap):
                break
            if tok == "." and k > 0 and len(tk.toks[k - 1][2]) == 1:
                k -= 1
                start = tk.toks[k][0]
                taken += 1
                k -= 1
                continue
            low = _base(tok)
            nearest = (  # the word right before the credential is a name unless a common function word
                taken == 0
                and tok[:1].isalpha()
                and len(tok) >= 2
                and low not in lex.stop
                and low not in _NOT_NAMES
                and low not in _ROLE_WORDS
                and low not in _TITLE_WORDS
            )
            # "Mitis Venmizen RN": a capitalised word before a surname that is no word
            last = tk.toks[tk.index_at(m.start()) - 1][2]
            second = (
                taken == 1
                and tok.isalpha()
                and len(tok) >= 3
                and _style(tok) == _style(last) != "lower"
                and not lex.is_word(_base(last))
                and not any(
                    low in ws
                    for ws in (lex.stop, _NOT_NAMES, _TITLE_WORDS, _ROLE_WORDS, _RELATIONS, _CUE_VERBS)
                )
                and low not in _STANDALONE_CUES
                and low not in _LABEL_TRIGGERS
                and low not in clinical_words()
            )
            if not (name_like(tok, lex) or nearest or second):
                break
            start = s
            taken += 1
            k -= 1
        if start is not None:
            end = tk.toks[tk.index_at(m.start()) - 1][1]
            out.append(Span(start, end, "name", "[NAME]", 42, True))
    return out


def name_spans(text: str) -> list[Span]:
    """Candidate name spans of ``text`` (unmerged)."""
    lex = lexicon()
    tk = _Tokens(text)
    toks = tk.toks
    mixed = is_mixed(text)
    spans = _title_spans(text, tk, lex) + _label_spans(text, tk, lex, mixed)

    for k, (_s, _e, tok) in enumerate(toks):
        low = tok.lower()
        if low in _PATIENT_WORDS:
            spans += _patient_name(tk, k, lex, tk.local[k])
        elif low in _WEAK_CUES or low in _STANDALONE_CUES or _left_for(tk, k):
            spans += _cue_name(tk, k, lex, tk.local[k])

    spans += _credential_spans(text, tk, lex)
    spans += _dictionary_spans(text, tk, lex, mixed)
    for m in _HEADER_NAME.finditer(text):  # "QUARRENDALE, MIRABETHA  MRN ..." at a line start
        a, b = m.group(1).lower(), m.group(2).lower()
        if not any(lex.is_word(w) or w in _NOT_NAMES or w in lex.countries for w in (a, b)):
            spans.append(Span(m.start(1), m.end(2), "name", "[NAME]", 42))
    spans += _subject_spans(tk, lex)
    spans += _relation_bracket_spans(tk, lex)
    for m in _ATTESTATION.finditer(text):  # "I, Jane Roe, have reviewed"
        spans.append(Span(m.start("n"), m.end("n"), "name", "[NAME]", 43))
    for m in _ALLCAPS_PAIR.finditer(text):  # "SMITH, JOHN"
        a, b = m.group(1).lower(), m.group(2).lower()
        if (a in lex.surnames or a in lex.given) and (b in lex.given or b in lex.surnames):
            spans.append(Span(m.start(), m.end(), "name", "[NAME]", 40, True))
    return spans


def _relation_bracket_spans(tk: _Tokens, lex: Lexicon) -> list[Span]:
    """A name alone in brackets a few words after a relative ("Relative in Carmel (BORREL,
    DRAQUAMI) to be notified", "son at the bedside (kofi ibekwe)")."""
    out = []
    if "(" not in tk.text:
        return out
    for m in _RELATION_BRACKET.finditer(tk.text):
        i = tk.index_at(m.end())
        if i >= len(tk.toks) or tk.toks[i][0] != m.end():
            continue
        end = _take_name(tk, i, lex, strict_case=False, trusted=True)
        if not (end > 0 and re.match(r"[ \t]*\)", tk.text[end:])):
            end = _bracket_name_end(tk, m.end(), lex)
        if end > 0:
            out.append(Span(tk.toks[i][0], end, "name", "[NAME]", 43))
    return out


_BRACKET_NAME = re.compile(r"([^\W\d_][\w'’-]*)(?:[ \t]*,?[ \t]+([^\W\d_][\w'’-]*)){0,2}(?=[ \t]*\))")


def _bracket_name_end(tk: _Tokens, start: int, lex: Lexicon) -> int:
    """End of a bracket's whole content when it is a name of up to three words in one letter case,
    one of them no ordinary word or all of them name parts ("(BORREL, DRAQUAMI)"); else -1."""
    m = _BRACKET_NAME.match(tk.text, start)
    if not m:
        return -1
    words = re.findall(r"[^\W\d_][\w'’-]*", m.group(0))
    if len({_style(w) for w in words}) != 1 or any(
        _base(w) in lex.stop or _base(w) in _NOT_NAMES or _base(w) in clinical_words() for w in words
    ):
        return -1
    if not any(name_like(w, lex, lenient=False) for w in words) and not all(
        _known_part(w, lex) for w in words
    ):
        return -1
    return m.end()


def _title_spans(text: str, tk: _Tokens, lex: Lexicon) -> list[Span]:
    """Names after a title: "Dr. X", "Herr X", "dr. krüger" (academic degrees such as "med." and
    abbreviated titles without their dot are no cue)."""
    toks = tk.toks
    spans: list[Span] = []
    for k, (_s, _e, tok) in enumerate(toks):
        low = tok.lower()
        if low not in _TITLE_WORDS or low in (
            "med",
            "rer",
            "nat",
            "phil",
            "habil",
            "univ",
            "dipl",
            "ing",
            "ca",
        ):
            continue
        has_dot = k + 1 < len(toks) and toks[k + 1][2] == "."
        if low in ("hr", "fr", "sr", "pd", "oa", "oä", "mme", "mlle") and not has_dot:
            continue
        if low in ("doctor", "professor", "miss") and not tok[:1].isupper():
            continue
        nxt = k + (2 if has_dot else 1)
        if nxt < len(toks) and not re.fullmatch(r"[ \t]+", text[toks[nxt - 1][1] : toks[nxt][0]]):
            continue
        end = _take_name(tk, nxt, lex, strict_case=False, trusted=True)
        if end > 0:
            spans.append(Span(toks[nxt][0], end, "name", "[NAME]", 44))
    return spans


def _label_spans(text: str, tk: _Tokens, lex: Lexicon, mixed: bool) -> list[Span]:
    """Names after a label: "Name: X", "Signed by X", "Befundet von X", "daughter, X"; after an
    explicit "Label:" field the name runs to the end of the field."""
    toks = tk.toks
    spans: list[Span] = []
    has_label = any(t[2].lower() in _LABEL_TRIGGERS for t in toks)
    for m in _LABEL.finditer(text) if has_label else ():
        label = re.sub(r"\s+", " ", m.group(0)).strip(" :,\t(").lower()
        paren = m.group(0).rstrip().endswith("(")
        plausible = False
        if label in _COLON_ONLY and not m["colon"] and not paren:
            nxt_i = tk.index_at(m.end())
            if nxt_i >= len(toks) or not _plausible_name_start(tk, nxt_i, lex, mixed):
                continue
            plausible = True
        i = tk.index_at(m.end())
        if i >= len(toks):
            continue
        trusted = bool(m["colon"] and ":" in m["colon"]) or label not in _COLON_ONLY or paren or plausible
        end = _take_name(tk, i, lex, strict_case=False, allow_digits=True, trusted=trusted)
        if m["colon"] and ":" in m["colon"]:
            # an explicit field: the name runs to the end of the field
            seg_len = _field_name_length(text, m.end(), lex)
            if seg_len:
                end = max(end, m.end() + seg_len)
        if end > 0:
            spans.append(Span(toks[min(_skip_titles(tk, i), len(toks) - 1)][0], end, "name", "[NAME]", 43))
    return spans


_FIELD_STOP = re.compile(
    r"\n|\t| {2,}|[;|]|\s(?:DOB|MRN|Geb\.|geb\.|geboren|Sex|Age|Alter|date)\b|[,.]\s|$", re.I
)


def _field_name_length(text: str, start: int, lex: Lexicon) -> int:
    """Length (characters) of the name filling a "Label:" field that starts at ``start``: up to a
    line/tab/double blank, ";", "|", the next field label or ", "/". "; 0 if it is no name (empty,
    over 60 characters, starting with a digit or an ordinary word that is no given name)."""
    fe = _FIELD_STOP.search(text, start)
    seg_end = fe.start() if fe else len(text)
    seg = text[start:seg_end].rstrip(" .,")
    first = _base(seg.split()[0]) if seg else ""
    if seg and len(seg) <= 60 and (first not in lex.stop or first in lex.given) and not seg[:1].isdigit():
        return len(seg)
    return 0


def _plausible_name_start(tk: _Tokens, i: int, lex: Lexicon, mixed: bool) -> bool:
    """Whether token ``i`` may start a name after a role or relation word without a colon
    ("nurse Eero Okonkwo", "her son summer stone", "wife B. O'Brien")."""
    toks = tk.toks
    tok = toks[i][2]
    low = _base(tok)
    if low in lex.stop and low not in lex.given:
        return False
    if len(tok) == 1 and tok.isalpha() and i + 1 < len(toks) and toks[i + 1][2] == ".":
        return True  # an initial
    if name_like(tok, lex, lenient=False):
        return True  # no ordinary word
    if low in lex.given:
        j = _next_word(tk, i)
        return (mixed and tok[:1].isupper() and not tok.isupper()) or (
            j > 0 and name_like(toks[j][2], lex) and _base(toks[j][2]) not in lex.stop
        )
    return False


def _sentence_start(tk: _Tokens, i: int) -> bool:
    if i == 0:
        return True
    prev = tk.toks[i - 1][2]
    gap = tk.text[tk.toks[i - 1][1] : tk.toks[i][0]]
    return prev in (".", "!", "?", ";", ":") or "\n" in gap or prev.isupper() and prev.startswith("XX")


#: an age right after a name: "X, a 94 year old", "X (93)", "X, ninety-four,"
_AGE_AFTER = re.compile(
    r"[ \t]*[,(][ \t]*(?:a[ \t]+|an[ \t]+)?(?:\d{1,3}|ninety[\w-]*|one[ \t]hundred[\w-]*|hundred)"
    r"(?:[ \t]*-?[ \t]*(?:y\b|yo\b|y/o|y\.o\.|yrs?\b|years?\b|jahre?\b|j\.|jährig)|[ \t]*[),])",
    re.I,
)


def _subject_ok(tk: _Tokens, i: int, j: int, end: int, lex: Lexicon) -> bool:
    """Whether tokens [i, j) (ending at offset ``end``) are a person's name, judged by what follows."""
    toks, text = tk.toks, tk.text
    n = len(toks)
    words = [
        t[2] for t in toks[i:j] if len(t[2]) > 1 and t[2][:1].isalpha() and t[2].lower() not in _PARTICLES
    ]
    if not words or len({_style(w) for w in words}) != 1 or j >= n:
        return False
    if any("XX" in w for w in words):
        return False  # a scrubbed placeholder ("x-XXXX")
    if any(_base(w) in _NOT_NAMES or _base(w) in _ROLE_WORDS or _base(w) in _TITLE_WORDS for w in words):
        return False
    jj = j
    if toks[jj][2] == "(":  # "Jean-Luc (cardiology) was paged"
        close = next((q for q in range(jj + 1, min(n, jj + 6)) if toks[q][2] == ")"), -1)
        if close < 0 or close + 1 >= n:
            return False
        jj, end = close + 1, toks[close][1]
    nxt = toks[jj][2].lower()
    possessive = toks[j - 1][2].lower().endswith(("'s", "’s"))
    k2 = _next_word(tk, jj)
    after = toks[k2][2].lower() if k2 > 0 else ""
    ordinary = [w for w in words if lex.is_word(_base(w)) or _base(w) in lex.stop]
    known = [w for w in words if _base(w) in lex.given or _base(w) in lex.surnames]
    capital = words[0][:1].isupper()
    unknown = [w for w in words if not lex.is_word(_base(w)) and _base(w) not in lex.stop]
    clear = (not ordinary and bool(unknown)) or (capital and len(known) == len(words))
    if possessive and nxt in _POSSESSED:
        return clear
    if nxt == ":" and after in _AGREE:  # "Walker: agree with above"
        return clear
    if nxt in ("and", "und") and after in ("i", "ich"):  # "Ngozi Obuya and I reviewed"
        return clear
    if nxt == "wurde" and _GERMAN_PASSIVE.match(text, toks[jj][1]):  # "Tjernström wurde am ... aufgenommen"
        return clear
    if nxt in ("and", "und") and after in ("his", "her", "their", "sein", "seine", "ihr", "ihre") and k2 > 0:
        k3 = _next_word(tk, k2)  # "Kofi Okonkwo and her daughter ..."
        return k3 > 0 and toks[k3][2].lower() in _RELATIONS and clear
    if nxt in _PERSON_VERBS:
        return clear
    if nxt in _PERSON_ADVERBS and after in _PERSON_VERBS | _WEAK_PERSON_VERBS:  # "X personally reviewed"
        return clear
    if nxt in _THING_VERBS:
        return clear and (not ordinary or jj != j)
    if nxt in _WEAK_PERSON_VERBS:  # "Kofi Okonkwo performed the procedure": names beyond doubt
        return clear and (len(words) > 1 or (capital and len(known) == len(words)))
    if toks[jj][2] == "," and after in _AFTER_NAME_COMMA:
        return clear
    if nxt in ("from", "of", "vom", "von", "aus") and k2 > 0:  # "Ignatius from cardiology agrees"
        q = k2
        for _ in range(3):
            q = _next_word(tk, q)
            if q < 0:
                break
            if toks[q][2].lower() in _PERSON_VERBS:
                return clear and (len(words) > 1 or bool(known) or capital)
    if (
        len(nxt) > 4
        and nxt.endswith("ed")
        and after in ("his", "her", "their", "my", "our")
        and nxt not in _NOT_AGENT_VERBS
        and lex.is_word(nxt)
    ):  # "X adjusted his metoprolol"
        return clear and (len(words) > 1 or bool(known) or capital)
    if nxt in _BE_VERBS:
        if re.match(
            r"[ \t]*(?:is|was|ist|war)[ \t]+(?:a|an|now|ein|eine)?[ \t]*(?:\d{1,3}\b|ninety|one[ \t]hundred)",
            text[end:],
            re.I,
        ):
            return clear
        return not ordinary and bool(unknown) and _followed_by_person_phrase(text, end)
    if toks[jj][2] == "," and after in ("a", "an") or toks[jj][2] in (",", "("):
        return _AGE_AFTER.match(text, end) is not None and clear
    return False


def _subject_spans(tk: _Tokens, lex: Lexicon) -> list[Span]:
    """Names before a person verb ("Ibekwe denies ...", "Priya complains of", "kofi ibekwe klagt",
    "ACHTERBERG, THANDIWE underwent", "Haraldsen is a 96 year old", "Vorlund's wife reports"):
    taken forward from a sentence start, or backward from the verb anywhere."""
    toks, text = tk.toks, tk.text
    out = []
    n = len(toks)
    for i in range(n):
        if not toks[i][2][:1].isalpha() or not _sentence_start(tk, i):
            continue
        if not (_is_initial(tk, i) or name_like(toks[i][2], lex)):
            continue
        end = _take_name(tk, i, lex, strict_case=False)
        if end <= 0:
            continue
        j = tk.index_at(end)
        if _subject_ok(tk, i, j, end, lex):
            out.append(Span(toks[i][0], end, "name", "[NAME]", 40, True))
    for v in range(1, n):
        low = toks[v][2].lower()
        j = v
        colon_agree = low == ":" and v + 1 < n and toks[v + 1][2].lower() in _AGREE
        trigger = low in _BE_VERBS or low in _PERSON_VERBS or low in _POSSESSED or low in _WEAK_PERSON_VERBS
        trigger = trigger or low in _THING_VERBS
        trigger = trigger or (
            len(low) > 4
            and low.endswith("ed")
            and v + 1 < n
            and toks[v + 1][2].lower() in ("his", "her", "their", "my", "our")
        )
        if low == "," and v + 1 < n:
            nx = toks[v + 1][2].lower()
            trigger = nx in _AFTER_NAME_COMMA or nx in ("a", "an") or nx[:1].isdigit()
            trigger = trigger or nx.startswith(("ninety", "one", "hundred"))
        trigger = trigger or low in _PERSON_ADVERBS
        if trigger or colon_agree:
            if toks[v - 1][2] == ")":  # "X (cardiology) was paged"
                op = next((q for q in range(v - 2, max(-1, v - 7), -1) if toks[q][2] == "("), -1)
                if op <= 0:
                    continue
                j = op
        else:
            continue
        # walk back over name tokens: same style, initials, particles, one "Last, First" comma
        i = j
        comma = False
        while i > 0 and j - i < 7:
            p = i - 1
            gap = text[toks[p][1] : toks[i][0]]
            tok = toks[p][2]
            if tok == "," and not comma and i < j and _blank(text, toks[p][1], toks[i][0]):
                comma, i = True, p
                continue
            if tok == "." and p >= 1 and _is_initial(tk, p - 1) and i < j:
                i = p - 1
                continue
            if not (_blank(text, toks[p][1], toks[i][0]) or (tok == "," and False)) and i < j and gap != "":
                break
            if i < j and not _blank(text, toks[p][1], toks[i][0]) and toks[i][2] != ",":
                break
            if tok.lower() in _PARTICLES and i < j:
                i = p
                continue
            if not (tok[:1].isalpha() and name_like(tok, lex, lenient=True)):
                break
            i = p
        while i < j and not toks[i][2][:1].isalpha():
            i += 1
        if i >= j or (toks[i][2].lower() in _PARTICLES and i + 1 < j):
            if i >= j:
                continue
        end = toks[j - 1][1]
        if low in _POSSESSED and not toks[j - 1][2].lower().endswith(("'s", "’s")):
            continue
        if _subject_ok(tk, i, j, end, lex):
            out.append(Span(toks[i][0], end, "name", "[NAME]", 40, True))
    return out


_PERSON_PHRASE = re.compile(
    r"[ \t]+(?:is|was|has|had|ist|war|hat|wurde)[ \t]+(?:a|an|admitted|discharged|seen|brought|transferred|"
    r"informed|notified|paged|called|contacted|reached|here|known|referred|scheduled|aufgenommen|entlassen|vorgestellt|bekannt|"
    r"\d|history|a[ \t]+history)\b"
    # "X hat die Patientin am ... gesehen", "X has seen the patient"
    r"|[ \t]+(?:has|had|hat|hatte)[ \t]+(?:seen[ \t]+)?(?:the[ \t]+patient|die[ \t]+patientin|den[ \t]+patienten|him|her|ihn)\b"
    # "X will follow up", "X would like to discuss": a modal and a person's action
    r"|[ \t]+(?:will|would|should|can|could|may|must|wird|würde|soll|kann)[ \t]+(?:not[ \t]+|also[ \t]+|nicht[ \t]+)?"
    r"(?:follow|call|see|review|contact|discuss|return|notify|page|sign|dictate|read|arrange|schedule|"
    r"order|perform|obtain|talk|speak|meet|come|visit|evaluate|consult|like|phone|fax|send|forward|"
    r"anrufen|zurückrufen|melden|kommen|besprechen|informieren)\b",
    re.IGNORECASE,
)


def _followed_by_person_phrase(text: str, end: int) -> bool:
    return _PERSON_PHRASE.match(text, end) is not None


def _next_word(tk: _Tokens, k: int) -> int:
    """Index of the token after ``k`` (skipping one "."), if only blanks separate them; else -1."""
    toks, text = tk.toks, tk.text
    j = k + 1
    if j < len(toks) and toks[j][2] == "." and toks[j][0] == toks[k][1]:
        j += 1
    if j >= len(toks) or not re.fullmatch(r"[ \t]+", text[toks[j - 1][1] : toks[j][0]]):
        return -1
    return j


def _patient_name(tk: _Tokens, k: int, lex: Lexicon, mixed: bool) -> list[Span]:
    """ "Patient <token>": an unknown token after "Patient" is a name, whatever its shape."""
    toks = tk.toks
    i = _next_word(tk, k)
    if i < 0:
        return []
    tok = toks[i][2]
    low = _base(tok)
    if low in _HEADING_WORDS or low in ("name", "id", "no", "nr", "number", "nummer"):
        return []
    if not mixed and not any(c.isdigit() for c in tok):
        # a single-case text: only a known name part or an odd (letters + digits) token
        if not ((low in lex.given or low in lex.surnames) and not lex.is_word(low)):
            return []
    end = _take_name(tk, i, lex, strict_case=False, allow_digits=True)
    capital_mid = tok[:1].isupper() and mixed and not tok.isupper() and toks[k][2][:1].isalpha()
    if capital_mid and low not in lex.stop and low not in _NOT_NAMES and not lex.is_word(low):
        end = max(end, toks[i][1])
    if end <= 0:
        return []
    return [Span(toks[i][0], end, "name", "[NAME]", 43)]


def _followed_by_name(tk: _Tokens, i: int, lex: Lexicon) -> bool:
    j = _next_word(tk, i)
    return (
        j > 0 and tk.toks[j][2][:1].isupper() == tk.toks[i][2][:1].isupper() and name_like(tk.toks[j][2], lex)
    )


def _cue_name(tk: _Tokens, k: int, lex: Lexicon, mixed: bool) -> list[Span]:
    """A name after a context cue ("called to", "discussed with", "per", "Rücksprache mit")."""
    toks = tk.toks
    low = toks[k][2].lower()
    strong, generic_by = _cue_strength(tk, k, lex)
    i = _next_word(tk, k)
    if i < 0:
        return []
    tok = toks[i][2]
    if not strong and _is_initial(tk, i) and i + 2 < len(toks):
        strong = _initial_then_name(tk, i, lex)
    if (
        not strong
        and mixed
        and tok.islower()
        and low in ("by", "with", "to", "von", "mit", "an", "durch", "bei")
    ):
        strong = _lower_case_name(tk, i, lex)
    if not strong and not _weak_cue_name(tk, i, lex, mixed):
        return []
    end = _take_name(tk, i, lex, strict_case=not strong and mixed, trusted=strong)
    if end <= 0:
        return []
    if generic_by and len(_WORDS3.findall(tk.text[toks[i][0] : end])) < 2:
        return []  # "interrogated by X": only a name of two words or more
    return [Span(toks[min(_skip_titles(tk, i), len(toks) - 1)][0], end, "name", "[NAME]", 41, True)]


def _cue_strength(tk: _Tokens, k: int, lex: Lexicon) -> tuple[bool, bool]:
    """Whether cue token ``k`` is strong by itself, and whether it is a generic "<verb>ed by".

    Strong: a standalone cue; a preposition after a cue verb up to five words before, within the
    clause ("reviewed the images with X"; a near-only verb must stand right before it); "by" after
    a past participle that is an ordinary word, followed by a word that is none."""
    toks = tk.toks
    low = toks[k][2].lower()
    strong = low in _STANDALONE_CUES or _left_for(tk, k)
    # "Weiterbehandlung durch X": German care nouns only right before "durch"
    strong = strong or (low == "durch" and k > 0 and toks[k - 1][2].lower() in _CARE_NOUNS)
    if not strong and low in _CUE_PREPS:
        j = k - 1
        while j >= 0 and k - j <= 6 and toks[j][2][:1].isalnum():
            if toks[j][2].lower() in _CUE_VERBS:
                near = k - j == 1 or (k - j == 2 and toks[j + 1][2].lower() in _CUE_ADVERBS | {"over"})
                strong = near or toks[j][2].lower() not in _NEAR_CUE_VERBS
                break
            j -= 1
    generic_by = False
    if not strong and low == "by" and k > 1 and toks[k - 1][2].lower() == "followed":
        # "formerly followed by X" (a patient's doctor), not "ST elevation followed by T inversion"
        strong = toks[k - 2][2].lower() in _FOLLOWED_ADVERBS
    if not strong and low == "by" and k > 0:
        pv = toks[k - 1][2].lower()
        strong = generic_by = (
            len(pv) > 4
            and pv.endswith("ed")
            and lex.is_word(pv)
            and pv not in _NOT_AGENT_VERBS
            and toks[k + 1][2][:1].isalpha()
            and not lex.is_word(_base(toks[k + 1][2]))
        )
    return strong, generic_by


def _left_for(tk: _Tokens, k: int) -> bool:
    """ "Message left for X", "voicemail left for X": "for" as a cue."""
    toks = tk.toks
    return (
        k >= 2
        and toks[k][2].lower() == "for"
        and toks[k - 1][2].lower() == "left"
        and toks[k - 2][2].lower() in ("message", "messages", "voicemail", "vm", "note")
    )


def _initial_then_name(tk: _Tokens, i: int, lex: Lexicon) -> bool:
    """ "durch J. Szczepański": initial ``i``, then a capitalised name-like word after a blank."""
    toks = tk.toks
    nxt = toks[i + 2][2]
    return (
        nxt[:1].isupper()
        and _blank(tk.text, toks[i + 1][1], toks[i + 2][0])
        and (name_like(nxt, lex, lenient=False) or _base(nxt) in lex.surnames)
    )


def _lower_case_name(tk: _Tokens, i: int, lex: Lexicon) -> bool:
    """Whether lower-case token ``i`` after a weak cue starts a name in mixed-case text.

    An apostrophe name ("d'angelo"); or a given name and a surname, not both ordinary words ("kofi
    ibekwe"); or two lower-case words that are no English words and look foreign to German too
    ("ignatius wiśniewski"): a name part from the dictionaries, an apostrophe or hyphen, or letters
    outside a-z/äöüß in one of them."""
    toks = tk.toks
    tok = toks[i][2]
    b = _base(tok)
    nj = _next_word(tk, i)
    nb = _base(toks[nj][2]) if nj > 0 else ""
    odd = ("'" in tok or "’" in tok) and name_like(tok, lex, lenient=False)
    pair = (
        b in lex.given
        and b not in lex.stop
        and nj > 0
        and toks[nj][2].islower()
        and nb in lex.surnames
        and nb not in lex.stop
        and not (lex.is_word(b) and lex.is_word(nb))
    )
    both = (
        nj > 0
        and toks[nj][2].islower()
        and name_like(tok, lex, lenient=False)
        and name_like(toks[nj][2], lex, lenient=False)
        and nb not in lex.stop
        and any(
            _base(w) in lex.given or _base(w) in lex.surnames or re.search(r"['’-]|[^a-zäöüß'’-]", w)
            for w in (tok, toks[nj][2])
        )
    )
    return odd or pair or both


def _weak_cue_name(tk: _Tokens, i: int, lex: Lexicon, mixed: bool) -> bool:
    """Whether token ``i`` after a weak cue is a name: a known name part (capitalised in mixed-case
    text, not all upper case unless known); an ordinary word only if it is a strong name or a given
    name followed by another name."""
    tok = tk.toks[i][2]
    b = _base(tok)
    known = b in lex.given or b in lex.surnames
    if mixed and (not tok[:1].isupper() or (tok.isupper() and not known)):
        return False
    if not mixed and not known:
        return False
    if lex.is_word(b) and not (b in lex.strong_names or (b in lex.given and _followed_by_name(tk, i, lex))):
        return False
    return True


def _dictionary_spans(text: str, tk: _Tokens, lex: Lexicon, mixed: bool) -> list[Span]:
    """Known name parts: strong ones alone, ambiguous ones next to another name part or initial."""
    out: list[Span] = []
    toks = tk.toks
    n = len(toks)

    def is_name_part(k: int) -> bool:
        tok = toks[k][2]
        low = _base(tok)
        return (
            (low in lex.given or low in lex.surnames)
            and low not in lex.stop
            and low not in _NOT_NAMES
            and low not in _TITLE_WORDS
        )

    def adjacent(k1: int, k2: int) -> bool:
        return bool(re.fullmatch(r"[ \t]+|[ \t]*,[ \t]*", text[toks[k1][1] : toks[k2][0]]))

    for k in range(n):
        s, e, tok = toks[k]
        if not tok[:1].isalpha():
            continue
        mixed = tk.local[k]
        low = _base(tok)
        upper_ok = tok.isupper() and len(tok) >= 3 and (not mixed or len(tok) >= 4)
        cap = tok[:1].isupper() and (not tok.isupper() or upper_ok)
        if not (cap or (not mixed and tok.islower())):
            continue
        if not is_name_part(k):
            continue
        strong = low in lex.strong_names and (cap or not lex.is_word(low))
        if tok.islower() and mixed:
            # "betty braun" in ordinary text: a given name and a surname, one of them no word
            if k + 1 < n and adjacent(k, k + 1) and toks[k + 1][2].islower() and low in lex.given:
                nlow = _base(toks[k + 1][2])
                if (
                    nlow in lex.surnames
                    and not (lex.is_word(low) and lex.is_word(nlow))
                    and nlow not in lex.stop
                ):
                    out.append(Span(s, toks[k + 1][1], "name", "[NAME]", 38, True))
            continue
        nxt = k + 1 if k + 1 < n and adjacent(k, k + 1) and is_name_part(k + 1) else None
        if nxt is not None and toks[nxt][2][:1].isupper() != tok[:1].isupper():
            nxt = None
        prv_init = k >= 2 and toks[k - 1][2] == "." and len(toks[k - 2][2]) == 1 and toks[k - 2][2].isupper()
        if strong and (cap or nxt is not None):
            end = toks[nxt][1] if nxt is not None else e
            start = toks[k - 2][0] if prv_init else s
            if not tok.islower() or nxt is not None:
                out.append(Span(start, end, "name", "[NAME]", 39, True))
        elif nxt is not None and (low in lex.given or _base(toks[nxt][2]) in lex.strong_names):
            out.append(Span(s, toks[nxt][1], "name", "[NAME]", 38, True))
        elif prv_init and cap:
            out.append(Span(toks[k - 2][0], e, "name", "[NAME]", 38, True))
    return out


def _is_initial(tk: _Tokens, k: int) -> bool:
    toks = tk.toks
    return (
        0 <= k < len(toks) - 1
        and len(toks[k][2]) == 1
        and toks[k][2].isalpha()
        and toks[k + 1][2] == "."
        and toks[k + 1][0] == toks[k][1]
    )


def _blank(text: str, a: int, b: int) -> bool:
    return a <= b and re.fullmatch(r"[ \t]+", text[a:b]) is not None


def _grows(tok: str, style: str, lex: Lexicon) -> bool:
    """A neighbour that joins a name: a name-like non-word, or a known name part of the same
    style written with a capital ("JOY [JACKSON]", "[Hope] Baker")."""
    if _joins(tok, style, lex):
        return True
    low = _base(tok)
    return (
        _style(tok) == style
        and style != "lower"
        and len(tok) >= 2
        and (low in lex.given or low in lex.surnames)
        and low not in lex.stop
        and low not in _NOT_NAMES
        and low not in _TITLE_WORDS
        and low not in _ROLE_WORDS
    )


def _grow(tk: _Tokens, i: int, j: int, style: str, lex: Lexicon, comma_used: bool) -> tuple[int, int]:
    """Token range [i, j] grown over adjacent name parts, initials and one "Last, First" comma.

    In lower case, a known given name and a known surname next to each other join ("joy [williams]",
    "[mark] bell")."""
    single = j == i
    if style == "lower":
        i, j = _grow_lower_pair(tk, i, j, lex)
    j, comma_used = _grow_forward(tk, j, style, lex, comma_used, single)
    i = _grow_backward(tk, i, style, lex, comma_used, single)
    return i, j


def _grow_lower_pair(tk: _Tokens, i: int, j: int, lex: Lexicon) -> tuple[int, int]:
    """Lower-case range [i, j] widened by one token on each side where a known given name meets a
    known surname ("joy [williams]", "[mark] bell")."""
    toks, text = tk.toks, tk.text
    n = len(toks)
    if i > 0 and _blank(text, toks[i - 1][1], toks[i][0]) and _style(toks[i - 1][2]) == "lower":
        if (
            _base(toks[i - 1][2]) in lex.given
            and _known_part(toks[i - 1][2], lex)
            and _known_part(toks[i][2], lex)
        ):
            i -= 1
    if j + 1 < n and _blank(text, toks[j][1], toks[j + 1][0]) and _style(toks[j + 1][2]) == "lower":
        if (
            _base(toks[j][2]) in lex.given
            and _base(toks[j + 1][2]) in lex.surnames
            and _known_part(toks[j + 1][2], lex)
        ):
            j += 1
    return i, j


def _grow_forward(
    tk: _Tokens, j: int, style: str, lex: Lexicon, comma_used: bool, single: bool
) -> tuple[int, bool]:
    """Last token ``j`` moved right over up to four steps: a "Last, First" comma (once, from a
    single token), an initial and the name part after it, or a joining name part. Returns the new
    ``j`` and whether the comma is used."""
    toks, text = tk.toks, tk.text
    n = len(toks)
    for _ in range(4):
        k = j + 1
        if k >= n or not _blank(text, toks[j][1], toks[k][0]):
            if (
                not comma_used
                and single
                and k + 1 < n
                and toks[k][2] == ","
                and toks[k][0] == toks[j][1]
                and not _CREDENTIAL.match(text, toks[j][1])  # "PRIYA, PA"
                and _blank(text, toks[k][1], toks[k + 1][0])
                and _style(toks[k + 1][2]) == style
                and (_base(toks[k + 1][2]) in lex.given or _joins(toks[k + 1][2], style, lex))
                and _base(toks[k + 1][2]) not in lex.stop
            ):
                j, comma_used = k + 1, True
                continue
            break
        if _is_initial(tk, k) and k + 2 < n and _blank(text, toks[k + 1][1], toks[k + 2][0]):
            after_init = toks[k + 2][2]
            if (
                _grows(after_init, style, lex)
                or _known_part(after_init, lex)
                or (
                    style != "lower"
                    and _style(after_init) == style
                    and len(after_init) >= 2
                    and _base(after_init) not in lex.stop
                    and _base(after_init) not in _NOT_NAMES
                )
            ):
                j = k + 2
                continue
            break
        if _grows(toks[k][2], style, lex):
            j = k
            continue
        break
    return j, comma_used


def _grow_backward(tk: _Tokens, i: int, style: str, lex: Lexicon, comma_used: bool, single: bool) -> int:
    """First token ``i`` moved left over up to four steps: an initial (and a name part before
    it), a "Last, First" comma (once, onto a single token) or a joining name part."""
    toks, text = tk.toks, tk.text
    for _ in range(4):
        k = i - 1
        if k < 0:
            break
        if toks[k][2] == "." and k >= 1 and _is_initial(tk, k - 1) and _blank(text, toks[k][1], toks[i][0]):
            i = k - 1
            p = i - 1  # "nancy [p. neumann]": a known given name before an initial
            if (
                p >= 0
                and _blank(text, toks[p][1], toks[i][0])
                and (
                    _joins_before_initial(toks[p][2], style, lex) or _given_stop_after_cue(tk, p, style, lex)
                )
            ):
                i = p
            continue
        if (
            toks[k][2] == ","
            and not comma_used
            and single
            and k >= 1
            and toks[k][0] == toks[k - 1][1]
            and _blank(text, toks[k][1], toks[i][0])
            and (_base(toks[i][2]) in lex.given or _joins(toks[i][2], style, lex))
            and _style(toks[k - 1][2]) == style
            and (_joins(toks[k - 1][2], style, lex) or _base(toks[k - 1][2]) in lex.surnames)
            and _base(toks[k - 1][2]) not in lex.stop
        ):
            i, comma_used = k - 1, True
            continue
        if _blank(text, toks[k][1], toks[i][0]) and (
            _grows(toks[k][2], style, lex) or _given_stop_after_cue(tk, k, style, lex)
        ):
            i = k
            continue
        break
    return i


_AFTER_CUE = frozenset("per with to by from for mit von an durch : , (".split())


def _given_stop_after_cue(tk: _Tokens, k: int, style: str, lex: Lexicon) -> bool:
    """A given name that is also a stop word, after a preposition or a label, in the name's letter
    case: "per [will] Robinson", "Caller: [will] rodriguez" ("will" after "per" is no modal)."""
    tok = tk.toks[k][2]
    low = _base(tok)
    return (
        k > 0
        and low in lex.given
        and low in lex.stop
        and low not in _FUNCTION_WORDS
        and len(tok) >= 3
        and _style(tok) == style
        and tk.toks[k - 1][2].lower() in _AFTER_CUE
    )


_NOT_TAIL = (_NOT_NAMES, _ROLE_WORDS, _TITLE_WORDS, _PERSON_VERBS, _BE_VERBS, _WEAK_PERSON_VERBS, _THING_VERBS,
             _RELATIONS, _CUE_VERBS, _AGREE, _PERSON_ADVERBS)  # fmt: skip


def _grow_tail(tk: _Tokens, i: int, j: int, lex: Lexicon) -> int:
    """Last token ``j`` moved over the rest of a name that is an ordinary word: after particles
    ("[van] der berg") or, in a lower-case name with a part that is no word, one more lower-case
    word before punctuation ("original by [dradraqua] stoven."). No partial names are left."""
    toks, text = tk.toks, tk.text
    n = len(toks)
    k = j
    while k + 1 < n and toks[k][2].lower() in _PARTICLES and _blank(text, toks[k][1], toks[k + 1][0]):
        k += 1
    if k > j:
        tok = toks[k][2]
        ok = (
            tok[:1].isalpha()
            and len(tok) >= 2
            and _base(tok) not in lex.stop
            and tok.lower() not in _PARTICLES
        )
        return k if ok else j
    words = [t[2] for t in toks[i : j + 1] if t[2][:1].isalpha()]
    if (
        not words
        or not all(w.islower() for w in words)
        or not any(not lex.is_word(_base(w)) and name_like(w, lex, lenient=False) for w in words)
        or j + 1 >= n
        or not _blank(text, toks[j][1], toks[j + 1][0])
    ):
        return j
    tok = toks[j + 1][2]
    low = _base(tok)
    # the word ends the clause: punctuation right after it, a bracket, or the end of the text
    ends = (
        j + 2 >= n
        or toks[j + 2][2] == "("
        or (toks[j + 2][2] in (",", ".", ";", ":", ")") and toks[j + 2][0] == toks[j + 1][1])
    )
    if (
        ends
        and tok.isalpha()
        and tok.islower()
        and len(tok) >= 3
        and low not in lex.stop
        and not low.endswith(("ed", "ing"))
        and not any(low in ws for ws in _NOT_TAIL)
        and low not in clinical_words()
    ):
        return j + 1
    return j


def _joins_before_initial(pt: str, style: str, lex: Lexicon) -> bool:
    """Whether word ``pt`` before "X. Surname" belongs to the name: a joining name part, a known
    given name ("nancy [p. neumann]"), or a capitalised word of the name's style that is no stop,
    title, role, relation, cue or clinical word ("Husband, Stoven [D. Relvendra]")."""
    pb = _base(pt)
    return (
        _grows(pt, style, lex)
        or (_known_part(pt, lex) and pb in lex.given)
        or (
            style != "lower"
            and _style(pt) == style
            and len(pt) >= 3
            and pt.isalpha()
            and not any(
                pb in ws
                for ws in (
                    lex.stop,
                    _NOT_NAMES,
                    _TITLE_WORDS,
                    _ROLE_WORDS,
                    _RELATIONS,
                    _CUE_VERBS,
                )
            )
            and pb not in _STANDALONE_CUES
            and pb not in _LABEL_TRIGGERS
            and pb not in clinical_words()
        )
    )


def _known_part(tok: str, lex: Lexicon) -> bool:
    low = _base(tok)
    return (
        len(tok) >= 2
        and (low in lex.given or low in lex.surnames)
        and low not in lex.stop
        and low not in _NOT_NAMES
        and low not in _ROLE_WORDS
        and low not in _TITLE_WORDS
    )


_AND = re.compile(r"[ \t]+(?:and|und|&|or|oder)[ \t]+", re.IGNORECASE)
_AND_BEFORE = re.compile(r"[ \t]+(?:and|und|&|or|oder)[ \t]+$", re.IGNORECASE)


def _strong_part(tok: str, lex: Lexicon) -> bool:
    """A token that is a name on its own: no ordinary word and name-like, or a strong name part."""
    low = _base(tok)
    if len(tok) < 2 or not tok[:1].isalpha() or low in lex.stop or low in _NOT_NAMES or low in _ROLE_WORDS:
        return False
    return low in lex.strong_names or (not lex.is_word(low) and name_like(tok, lex, lenient=False))


def expand_names(text: str, spans: list[Span]) -> list[Span]:
    """Grow name spans over adjacent name parts ("Eero [Szczepański]", "[Kalodra] Venmi",
    "[Priya] W. Obuya", "[Brumbleforth], Ngozi", "JOY [JACKSON]") and over a coordinated name
    ("[Tadeusz Okonkwo] and Brumbleforth").

    A neighbour joins when only blanks (or one "Last, First" comma) separate it and it is written
    in the same case style and is a known name part or no ordinary word.
    """
    if not spans:
        return spans
    lex = lexicon()
    tk = _Tokens(text)
    toks = tk.toks
    out = []
    extra: list[Span] = []
    for sp in spans:
        i = tk.index_at(sp.start)
        j = tk.index_at(sp.end) - 1
        if i >= len(toks) or j < i:
            out.append(sp)
            continue
        words = [t[2] for t in toks[i : j + 1] if len(t[2]) > 1 and t[2][:1].isalpha()]
        style = _style(words[0]) if words else _style(toks[i][2])
        body = text[sp.start : sp.end]
        cred = re.search(r"(?:" + _CREDENTIAL.pattern + r")[ \t]*$", body)
        if cred:  # "PRIYA, PA": the credential's comma is no "Last, First" comma
            body = body[: cred.start()].rstrip()
            words = [w for w in words if w in body]
            j = max(i, tk.index_at(sp.start + len(body)) - 1)
        i2, j2 = _grow(tk, i, j, style, lex, "," in body or len(words) > 1)
        j2 = _grow_tail(tk, i2, j2, lex)
        start, end = min(sp.start, toks[i2][0]), max(sp.end, toks[j2][1])
        k = i2
        for _ in range(2):  # leading particles: "de la [Cruz]", "van der [Berg]"
            p = k - 1
            if p < 0 or toks[p][2].lower() not in _PARTICLES or not _blank(text, toks[p][1], toks[k][0]):
                break
            start, k = toks[p][0], p
        if k < i2 and k >= 1:  # "Tadeusz [de la Cruz]"
            a, _b = _grow(tk, k, k, style, lex, True)
            if a < k and not _is_initial(tk, a):
                start = toks[a][0]
        out.append(Span(start, end, sp.category, sp.replacement, sp.priority, sp.protectable))
        # a coordinated name: "[A. Okonkwo] and Brumbleforth", "Mei-Ling and [Oluwaseun Okonkwo]"
        m = _AND.match(text, end)
        if m:
            q = tk.index_at(m.end())
            if q < len(toks) and toks[q][0] == m.end():
                first = q + 2 if _is_initial(tk, q) and q + 2 < len(toks) else q
                second = toks[min(first + 1, len(toks) - 1)][2]
                pair = (
                    _base(toks[first][2]) in lex.given
                    and _known_part(toks[first][2], lex)
                    and _base(second) in lex.surnames
                    and _known_part(second, lex)
                    and _style(second) == _style(toks[first][2])
                )
                if (
                    _strong_part(toks[first][2], lex)
                    or pair
                    or (_grows(toks[first][2], _style(toks[first][2]), lex) and _strong_part(second, lex))
                ):
                    a, b = _grow(tk, first, first, _style(toks[first][2]), lex, False)
                    extra.append(
                        Span(toks[min(a, q)][0], toks[b][1], sp.category, sp.replacement, sp.priority, True)
                    )
        m = _AND_BEFORE.search(text, max(0, start - 8), start)
        if m:
            q = tk.index_at(m.start()) - 1
            if q >= 0 and toks[q][1] == m.start() and _strong_part(toks[q][2], lex):
                a, b = _grow(tk, q, q, _style(toks[q][2]), lex, False)
                extra.append(Span(toks[a][0], toks[b][1], sp.category, sp.replacement, sp.priority, True))
    return out + extra


def _style(tok: str) -> str:
    tok = tok[:-2] if tok.endswith(("'s", "’s", "'S", "’S")) else tok
    if tok.isupper():
        return "upper"
    if tok[:1].isupper():
        return "title"
    return "lower"


def _joins(tok: str, style: str, lex: Lexicon) -> bool:
    if _style(tok) != style or len(tok) < 2 or not tok[:1].isalpha():
        return False
    low = _base(tok)
    if low in lex.stop or low in _NOT_NAMES or low in _TITLE_WORDS or low in _ROLE_WORDS:
        return False
    if low in lex.strong_names:
        return True
    return not lex.is_word(low) and name_like(tok, lex)
