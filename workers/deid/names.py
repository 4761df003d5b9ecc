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
    r"co-?signed|ordered|referred|seen|examined|evaluated|checked|done|placed|inserted|witnessed|supervised|requested|completed|written|assisted|obtained|called|paged|beurteilt|befundet|diktiert|geschrieben|"
    r"vidiert|unterschrieben|freigegeben|überwiesen|zugewiesen)(?:\s+(?:and|&|und)\s+\w+)?\s+(?:by|von|durch)"
    r"|\b(?:patient(?:'s)?\s+name|name|vorname|nachname|name,\s*vorname|befundende?r?\s+(?:ärztin|arzt)|"
    r"radiologist|radiologe|radiologin|cardiologist|kardiologe|kardiologin|physician|attending|resident|"
    r"fellow|technologist|sonographer|tech|referring(?:\s+(?:physician|doctor|md))?|ordering(?:\s+(?:physician|provider))?|"
    r"requesting(?:\s+physician)?|zuweiser|zuweisende?r?\s+(?:arzt|ärztin)|überweiser|einsender|unterschrift|"
    r"gez|vidiert|signature|cc|copy\s+to|kopie\s+an|provider|nurse|pflege|untersucher(?:in)?|operator|reader|"
    r"contact|kontakt|mother|father|son|daughter|wife|husband|spouse|sister|brother|guardian|mutter|vater|"
    r"sohn|tochter|ehefrau|ehemann|partner(?:in)?|angehörige[rn]?|betreuer(?:in)?|"
    r"mit\s+(?:freundlichen|kollegialen|besten)\s+grüßen|(?:best\s+|kind\s+|warm\s+)?regards|sincerely))"
    r"(?:(?P<colon>[ \t]*[:,])[ \t]+|[ \t]+\(|[ \t]*\((?=\w)|[ \t]+)",
    re.IGNORECASE,
)
#: last words of the labels of ``_LABEL``: the regex runs only on texts that contain one
_LABEL_TRIGGERS = frozenset(
    """
    by von durch name vorname nachname ärztin arzt radiologist radiologe radiologin cardiologist kardiologe
    kardiologin physician attending resident fellow technologist sonographer tech referring doctor md
    provider ordering requesting zuweiser überweiser einsender unterschrift gez vidiert signature cc to an
    nurse pflege untersucher untersucherin operator reader contact kontakt mother father son daughter wife
    husband spouse sister brother guardian mutter vater sohn tochter ehefrau ehemann partner partnerin
    angehörige angehöriger angehörigen betreuer betreuerin grüßen regards sincerely
    """.split()
)
_COLON_ONLY = frozenset(
    "name cc tech contact kontakt nurse reader provider operator pflege son wife husband partner partnerin "
    "gez signature physician attending resident fellow mother father sister brother".split()
)
_CUE_VERBS = frozenset(
    """
    called communicated relayed conveyed reported given paged faxed sent telephoned forwarded discussed
    reviewed spoke speaking talked conferred consulted informed notified übermittelt mitgeteilt besprochen
    rücksprache reached contacted explained telefoniert telefonat gesprochen texted messaged emailed e-mailed
    handed signed shown showed told seen reviewed discussing reviewing communicating weitergeleitet
    weitergegeben übergeben
    """.split()
)
_CUE_ADVERBS = frozenset(
    "directly personally telephonically verbally urgently by telephone phone findings results this these "
    "were was and telefonisch persönlich direkt".split()
)
_CUE_PREPS = frozenset("to with at an mit".split())
_STANDALONE_CUES = frozenset("per notified informed paged reached contacted cc".split())
#: cues that alone are weak (ordinary prepositions): only capitalised or known-name tokens follow
_WEAK_CUES = frozenset("by von durch an mit with to from and und sowie bei für at".split())
_PATIENT_WORDS = frozenset("patient patientin pt pat".split())
_HEADER_NAME = re.compile(
    r"(?m)^[ \t]*([A-ZÄÖÜ][A-ZÄÖÜ'’-]{2,}),[ \t]*([A-ZÄÖÜ][A-ZÄÖÜ'’-]{2,})(?:[ \t]+[A-Z]\.?)?(?=[ \t]{2,}|\t|[ \t]*$|[ \t]+(?:DOB|MRN|Patient|Pat|geb|Geb|\d))"
)
_SUBJECT = re.compile(
    r"(?:^|(?<=[.!?:;]\s)|(?<=\n))[ \t]*(?P<n>[^\W\d_][\w'’-]+(?:,?[ \t]+[^\W\d_]\.)?"
    r"(?:,?[ \t]+(?:(?:van|von|de|der|la|del|da|di)[ \t]+){0,2}[^\W\d_][\w'’-]+){1,2})"
    r"(?=[ \t]+(?:is|was|has|had|presents|presented|reports|reported|denies|returns|complains|underwent|"
    r"arrived|came|comes|ist|hat|wurde|kommt|stellt|klagt)\b|,[ \t]*(?:a[ \t]+)?\d)",
    re.IGNORECASE,
)
_ALLCAPS_PAIR = re.compile(r"\b([A-ZÄÖÜ][A-ZÄÖÜ'’-]+),[ \t]*([A-ZÄÖÜ][A-ZÄÖÜ'’-]+)\b")


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


class _Tokens:
    """Word tokens of a text with offsets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.mixed = is_mixed(text)
        self.starts = [t[0] for t in self.toks]

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
        if tok.lower() in _PARTICLES and taken and j + 1 < n and toks[j + 1][2][:1].isalpha():
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
        lenient = trusted or not tk.mixed or (tok[:1].isupper() and not (tok.isupper() and len(tok) <= 3))
        ok = name_like(tok, lex, allow_digits and taken == 0, lenient)
        if not ok and trusted and tok[:1].isupper() and _base(tok) in lex.given and j + 1 < n:
            # "discussed with Will Baker": a given name that is also a stop word, before a name
            nxt = toks[j + 1][2]
            ok = nxt[:1].isupper() and name_like(nxt, lex, lenient=True)
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
            if not name_like(tok, lex):
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
    spans: list[Span] = []

    # titles: "Dr. X", "Herr X", "dr. krüger"
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

    # labels: "Name: X", "Signed by X", "Befundet von X", "daughter, X"
    has_label = any(t[2].lower() in _LABEL_TRIGGERS for t in toks)
    for m in _LABEL.finditer(text) if has_label else ():
        label = re.sub(r"\s+", " ", m.group(0)).strip(" :,\t").lower()
        if label in _COLON_ONLY and not m["colon"]:
            nxt_i = tk.index_at(m.end())
            if not (
                mixed
                and nxt_i < len(toks)
                and toks[nxt_i][2][:1].isupper()
                and (_joins(toks[nxt_i][2], "title", lex) or _base(toks[nxt_i][2]) in lex.given)
            ):
                continue
        i = tk.index_at(m.end())
        if i >= len(toks):
            continue
        trusted = bool(m["colon"] and ":" in m["colon"]) or label not in _COLON_ONLY
        end = _take_name(tk, i, lex, strict_case=False, allow_digits=True, trusted=trusted)
        if m["colon"] and ":" in m["colon"]:
            # an explicit field: the name runs to the end of the field
            stop = re.compile(
                r"\n|\t| {2,}|[;|]|\s(?:DOB|MRN|Geb\.|geb\.|geboren|Sex|Age|Alter|date)\b|[,.]\s|$", re.I
            )
            fe = stop.search(text, m.end())
            seg_end = fe.start() if fe else len(text)
            seg = text[m.end() : seg_end].rstrip(" .,")
            if seg and len(seg) <= 60 and _base(seg.split()[0]) not in lex.stop and not seg[:1].isdigit():
                end = max(end, m.end() + len(seg))
        if end > 0:
            spans.append(Span(toks[min(_skip_titles(tk, i), len(toks) - 1)][0], end, "name", "[NAME]", 43))

    for k, (_s, _e, tok) in enumerate(toks):
        low = tok.lower()
        if low in _PATIENT_WORDS:
            spans += _patient_name(tk, k, lex, mixed)
        elif low in _WEAK_CUES or low in _STANDALONE_CUES:
            spans += _cue_name(tk, k, lex, mixed)

    spans += _credential_spans(text, tk, lex)
    spans += _dictionary_spans(text, tk, lex, mixed)
    for m in _HEADER_NAME.finditer(text):  # "QUARRENDALE, MIRABETHA  MRN ..." at a line start
        a, b = m.group(1).lower(), m.group(2).lower()
        if not any(lex.is_word(w) or w in _NOT_NAMES or w in lex.countries for w in (a, b)):
            spans.append(Span(m.start(1), m.end(2), "name", "[NAME]", 42))
    for m in _SUBJECT.finditer(text):  # "Alaricson Dunquist is a 93 year old man."
        words = [w.strip(",") for w in m.group("n").split() if w.lower() not in _PARTICLES]
        words = [w for w in words if not re.fullmatch(r"[^\W\d_]\.", w)]
        if len({_style(w) for w in words}) != 1:
            continue
        lenient = words[0][:1].isupper()
        if all(name_like(w, lex, lenient=lenient) for w in words) and not any(
            lex.is_word(_base(w))
            for w in words
            if not (lenient and (_base(w) in lex.given or _base(w) in lex.surnames))
        ):
            spans.append(Span(m.start("n"), m.end("n"), "name", "[NAME]", 40, True))
    for m in _ALLCAPS_PAIR.finditer(text):  # "SMITH, JOHN"
        a, b = m.group(1).lower(), m.group(2).lower()
        if (a in lex.surnames or a in lex.given) and (b in lex.given or b in lex.surnames):
            spans.append(Span(m.start(), m.end(), "name", "[NAME]", 40, True))
    return spans


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
    strong = low in _STANDALONE_CUES
    if not strong and low in _CUE_PREPS:
        j = k - 1
        while j >= 0 and k - j <= 4 and toks[j][2].lower() in _CUE_ADVERBS:
            j -= 1
        strong = j >= 0 and toks[j][2].lower() in _CUE_VERBS
    i = _next_word(tk, k)
    if i < 0:
        return []
    tok = toks[i][2]
    b = _base(tok)
    if not strong:
        known = b in lex.given or b in lex.surnames
        if mixed and (not tok[:1].isupper() or (tok.isupper() and not known)):
            return []
        if not mixed and not known:
            return []
        if lex.is_word(b) and not (
            b in lex.strong_names or (b in lex.given and _followed_by_name(tk, i, lex))
        ):
            return []
    end = _take_name(tk, i, lex, strict_case=not strong and mixed, trusted=strong)
    if end <= 0:
        return []
    return [Span(toks[min(_skip_titles(tk, i), len(toks) - 1)][0], end, "name", "[NAME]", 41, True)]


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


def expand_names(text: str, spans: list[Span]) -> list[Span]:
    """Grow name spans over adjacent name parts ("Eero [Szczepański]", "[Kalodra] Venmi").

    A neighbour joins when only blanks separate it, it is written in the same case style and it is
    a known name part or no ordinary word; at most two tokens on each side.
    """
    if not spans:
        return spans
    lex = lexicon()
    tk = _Tokens(text)
    toks = tk.toks
    out = []
    for sp in spans:
        i = tk.index_at(sp.start)
        j = tk.index_at(sp.end) - 1
        if i >= len(toks) or j < i:
            out.append(sp)
            continue
        style = _style(toks[i][2])
        start, end = sp.start, sp.end
        k = j
        for _ in range(2):
            n = _next_word(tk, k)
            if n < 0 or not _joins(toks[n][2], style, lex):
                break
            end, k = toks[n][1], n
        k = i
        for _ in range(2):
            p = k - 1
            if p < 0 or not re.fullmatch(r"[ \t]+", text[toks[p][1] : toks[k][0]]):
                break
            if not _joins(toks[p][2], style, lex):
                break
            start, k = toks[p][0], p
        for _ in range(2):  # leading particles: "de la [Cruz]", "van der [Berg]"
            p = k - 1
            if (
                p < 0
                or toks[p][2].lower() not in _PARTICLES
                or not re.fullmatch(r"[ \t]+", text[toks[p][1] : toks[k][0]])
            ):
                break
            start, k = toks[p][0], p
        out.append(Span(start, end, sp.category, sp.replacement, sp.priority, sp.protectable))
    return out


def _style(tok: str) -> str:
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
