"""ConText modifiers and section headings of the rule path (data, no logic).

ConText modifiers extend medspaCy's default English rules with radiology phrasing and with
German and Swedish modifiers (PTB-XL reports are mostly German, some Swedish). Each entry is
``(literal or regex, category, direction, max_scope)``; a literal containing regex syntax is
compiled as a medspaCy regex pattern. ``max_scope`` (tokens) keeps modifiers of telegraphic
statement lists ("inferiorer infarkt möglich") from reaching unrelated statements.

Section headings map onto :data:`schemas.report_schema.SECTION_NAMES`.
"""

from __future__ import annotations

from workers.report.nlp.vocab import de

NEG, POSS, HIST, HYPO, FAM, TERM, PSEUDO = (
    "NEGATED_EXISTENCE",
    "POSSIBLE_EXISTENCE",
    "HISTORICAL",
    "HYPOTHETICAL",
    "FAMILY",
    "TERMINATE",
    "PSEUDO",
)
FWD, BWD, BI = "FORWARD", "BACKWARD", "BIDIRECTIONAL"

#: (regex, category, direction, max_scope or None)
# fmt: off
CONTEXT_RULES: list[tuple[str, str, str, int | None]] = [
    # --- English radiology / cardiology additions
    (
        r"\bno\s+(?:new|acute|focal|definite|significant|evidence\s+of|convincing|suspicious|visible|gross|large|obvious|residual|recurrent|displaced|radiographic\s+evidence\s+of)\b",
        NEG,
        FWD,
        None,
    ),
    (r"\bnor\b", NEG, FWD, None),
    (r"\b(?:is|are|appears?|remains?)\s+(?:within\s+(?:the\s+)?(?:limits\s+of\s+)?normal(?:\s+limits)?|normal|unremarkable)\b|\bwithin\s+(?:the\s+)?(?:limits\s+of\s+)?normal(?:\s+limits)?\b", NEG, BWD, 6),
    (r"\b(?:may|might|can)\s+not\s+be\s+(?:demonstrated|visible|seen|detected|identified|apparent)\b", NEG, BWD, 6),
    (
        r"\b(?:is|are)\s+(?:not\s+(?:seen|identified|present|evident|visualized|appreciated|demonstrated)|absent)\b",
        NEG,
        BWD,
        None,
    ),
    (
        r"\b(?:not\s+(?:seen|identified|present|evident|visualized|appreciated|demonstrated|enlarged))\b",
        NEG,
        BWD,
        6,
    ),
    (r"\bwithout\s+(?:evidence\s+of|signs?\s+of)?\b", NEG, FWD, None),
    (
        r"\bnegative\s+for\b|\bfree\s+of\b|\bclear\s+of\b|\bresolution\s+of\b|\binterval\s+resolution\b",
        NEG,
        FWD,
        None,
    ),
    (
        r"\b(?:has|have)\s+(?:resolved|cleared)\b|\bno\s+longer\s+(?:seen|visualized|present|evident)\b",
        NEG,
        BWD,
        None,
    ),
    (r"\bremoved\b", NEG, BI, 4),
    (r"\b(?:has|have)\s+been\s+removed\b|\b(?:was|were)\s+removed\b", NEG, BWD, None),
    (r"\b(?:interval\s+)?removal\s+of\b|\bclearing\s+of\b|\binterval\s+clearing\s+of\b", NEG, FWD, None),
    (
        r"\b(?:may|might|could|can)\s+(?:be|represent|reflect|indicate|suggest|relate|correspond)\b",
        POSS,
        BI,
        8,
    ),
    (
        r"\b(?:possible|possibly|probable|probably|likely|questionable|question\s+of|suspected|suspicious|suggest(?:s|ive|ing)?(?:\s+of)?|equivocal|presumed|presumably|cannot\s+(?:be\s+)?(?:excluded|ruled\s+out)|not\s+(?:be\s+)?excluded|difficult\s+to\s+exclude|versus|vs\.?|differential|concern(?:ing)?\s+for|worrisome|may\s+represent|could\s+represent|compatible\s+with|favor(?:ed)?|atypical|indeterminate|uncertain|may\s+be\s+due\s+to)\b",
        POSS,
        BI,
        8,
    ),
    (
        r"\b(?:old|prior|previous|remote|chronic|healed|history\s+of|status\s+post|s/p|post-?operative|known)\b",
        HIST,
        FWD,
        4,
    ),
    (
        r"\b(?:family\s+history|mother|father|brother|sister|sibling|grandmother|grandfather)\b",
        FAM,
        FWD,
        None,
    ),
    (r"\b(?:evaluate\s+for|assess\s+for|rule\s+out|r/o|to\s+exclude|exclude)\b", HYPO, FWD, None),
    (r"\b(?:but|however|although|though|otherwise|which|except|aside\s+from|apart\s+from)\b", TERM, BI, None),
    (r"\bno\s+(?:change|interval\s+change|significant\s+change|increase|decrease)\b", PSEUDO, BI, None),
    # --- German
    (de(r"\bkein(?:e|en|er|em|es)?\b"), NEG, FWD, None),
    (
        de(r"\bkein(?:e|en)?\s+(?:hinweis(?:e)?|nachweis|anhalt|zeichen)\s+(?:auf|für|einer|eines)?\b"),
        NEG,
        FWD,
        None,
    ),
    (de(r"\bohne\b|\bohne\s+(?:hinweis|nachweis|anhalt)\s+(?:auf|für)?\b"), NEG, FWD, None),
    (
        de(
            r"\bnicht\s+(?:nachweisbar|nachgewiesen|sichtbar|vorhanden|abgrenzbar|erkennbar|vergrößert|verbreitert)\b"
        ),
        NEG,
        BWD,
        6,
    ),
    (
        de(
            r"\b(?:ausgeschlossen|unauffällig|regelrecht|frei|rückläufig\s+bis\s+vollständig|vollständig\s+rückläufig)\b"
        ),
        NEG,
        BWD,
        4,
    ),
    (de(r"\bnicht\b"), NEG, FWD, 3),
    (
        de(
            r"\b(?:nicht\s+(?:sicher\s+)?auszuschlie(?:ß|ss)en|nicht\s+ausgeschlossen|möglich|mögl\.?|möglicherweise|wahrscheinlich|wahrsch\.?|vermutlich|fraglich(?:e[rns]?)?|fragl\.?|verdacht\s+auf|v\.\s?a\.?|vd\.?\s?a\.?|dd|differentialdiagnostisch|vereinbar\s+mit|am\s+ehesten|eventuell|evtl\.?|grenzwertig|grenzbefund|angedeutet(?:e[rns]?)?|diskret(?:e[rns]?)?|verdächtig\s+auf|suspekt|nicht\s+sicher)\b"
        ),
        POSS,
        BI,
        4,
    ),
    (
        de(
            r"\b(?:z\.\s?n\.?|zustand\s+nach|anamnestisch|alte[rns]?|früher(?:e[rns]?)?|bekannte[rns]?|voraufnahme|vorbefund|abgelaufene[rns]?|stattgehabte[rns]?)\b"
        ),
        HIST,
        FWD,
        3,
    ),
    (de(r"\b(?:familienanamnese|familiär|mutter|vater|bruder|schwester)\b"), FAM, FWD, None),
    (de(r"\b(?:aber|jedoch|allerdings|sonst|ansonsten|bei)\b"), TERM, BI, None),
    (
        de(r"\bkeine\s+(?:änderung|veränderung|befundänderung|progredienz)\b|\bunverändert\b"),
        PSEUDO,
        BI,
        None,
    ),
    # --- Swedish
    (r"\b(?:ingen|inga|inget|ej|inte|utan)\b", NEG, FWD, None),
    (
        r"\b(?:kan\s+(?:ej|inte)\s+uteslutas|bör\s+övervägas|möjlig(?:en|t)?|sannolikt|trolig(?:en|t)?|misstänkt|misstanke\s+om|tveksam|gränsfall)\b",
        POSS,
        BI,
        4,
    ),
    (r"\b(?:gammal|gamla|tidigare|genomgången)\b", HIST, FWD, 3),
    (r"\b(?:men|dock)\b", TERM, BI, None),
]
# fmt: on

#: section heading regexes (case-insensitive, at a line start, colon optional) → SECTION_NAMES
SECTION_RULES: list[tuple[str, str]] = [
    (
        r"(?:reason\s+for\s+(?:exam(?:ination)?|study|request)|indications?|clinical\s+(?:indication|information|question|details)|fragestellung|indikation|klinische\s+angaben|frågeställning)",
        "indication",
    ),
    (
        r"(?:(?:clinical\s+|medical\s+|past\s+medical\s+)?history|hx|anamnese|anamnes|vorgeschichte)",
        "history",
    ),
    (
        r"(?:comparisons?|prior\s+(?:studies|exams?)|vergleich(?:saufnahmen?)?|voraufnahmen?|voruntersuchung(?:en)?|jämförelse)",
        "comparison",
    ),
    (
        r"(?:technique|procedure|examination|exam|study|views?|technik|untersuchung|methode|teknik)",
        "technique",
    ),
    (r"(?:findings?|report|description|befunde?|fynd|observations?)", "findings"),
    (
        r"(?:impressions?|conclusions?|summary|diagnos(?:is|es)|interpretation|opinion|assessment|beurteilung|zusammenfassung|bewertung|diagnose|bedömning|sammanfattning|utlåtande)",
        "impression",
    ),
    (
        r"(?:recommendations?|follow-?up|empfehlung(?:en)?|procedere|prozedere|rekommendation)",
        "recommendation",
    ),
    (r"(?:addendum|notes?|comments?|signature|nachtrag|bemerkung(?:en)?|kommentar)", "other"),
]
