"""Clinical allow-list: character ranges of clinical terms that weak PHI evidence must not destroy.

Protected are eponymous terms *as terms* (an eponym followed by a clinical head noun, a
hyphenated compound of eponyms such as Wolff-Parkinson-White, "pouch of Douglas", "Morbus X"),
ECG leads, vertebral levels, laboratory values after a lab name, drug and device names. The
ranges only veto spans marked ``protectable`` (found by a dictionary, an identifier shape or the
token model); a span that a label, a title, a context cue or a known identifier found is never
vetoed, so "Name: Wilson" and "Dr. Parkinson" are redacted while "Wilson disease" is kept.
"""

from __future__ import annotations

import re
from functools import lru_cache

#: surnames that name diseases, signs, devices and methods (lower-case)
EPONYMS = frozenset(
    """
    wilson smith wolff parkinson white austin flint adams stokes jackson pratt alzheimer hodgkin crohn graves
    addison cushing barrett brugada mobitz wenckebach kerley swan ganz foley colles monteggia baker hill sachs
    bankart osgood schlatter ewing wilms kaposi marfan ehlers danlos horner pancoast hampton westermark
    morgagni bochdalek valsalva tietze takotsubo lown ganong levine sokolow lyon cornell bazett fridericia
    osborn cheyne kussmaul murphy virchow glasgow gleason hounsfield holter doppler trendelenburg greenfield
    hickman chiari dandy walker ebstein eisenmenger fallot kawasaki lyme paget raynaud sjogren sjögren
    tourette whipple nissen roux morison douglas schatzki zenker meckel hirschsprung bell guillain barre
    barré stevens johnson dressler prinzmetal libman osler janeway roth duke framingham killip bechterew
    basedow hashimoto cabrera purkinje willis eustachian thebesian achilles hunter apgar babinski romberg
    heimlich seldinger fowler korotkoff starling laplace bernoulli fick quincke duroziez traube coombs
    graham steell gallavardin ortner lutembacher noonan turner down klinefelter digeorge holt oram romano
    ward jervell lange nielsen andersen timothy fontan glenn blalock taussig rastelli mustard senning jatene
    norwood ross konno bentall yacoub kent mahaim james bachmann todaro koch his tawara keith flack
    aschoff ashman bayes friedewald child pugh ranson wells geneva mallory weiss boerhaave mallampati
    nyha ccs tanner salter harris garden weber neer gustilo schatzker lisfranc chopart jones bennett
    rolando galeazzi barton segond hoffa kienböck preiser perthes scheuermann schmorl spurling lhermitte
    bouchard heberden charcot brown sequard wernicke korsakoff broca huntington creutzfeldt jakob lewy
    pick binswanger moyamoya kienbock dupuytren peyronie ledderhose de quervain finkelstein tinel phalen
    allen adson spurling lachman mcmurray thompson homans
    """.split()
)

#: SCP-ECG statement codes (PTB-XL's 71 diagnostic, form and rhythm statements) and common ECG
#: abbreviations: upper-case report words that are never names ("Edit: NORM, LAO")
ECG_CODES = frozenset(
    """
    ndt nst dig lngqt norm imi asmi lvh lafb isc irbbb 1avb ivcd iscal crbbb clbbb ilmi lao lae ami almi
    iscin injas lmi iscil lpfb iscas injal iscla rvh aneur rao rae el wpw ilbbb iplmi iscan ipmi sehyp
    injin injla pmi 3avb injil 2avb abqrs pvc std vclvh qwave lowt nt pac lpr invt lvolt hvolt tab ste
    prc prcs sr afib stach sarrh sbrad pace svarr bigu aflt svtac psvt trigu lbbb rbbb lahb lphb avb
    """.split()
)

#: clinical head nouns that make an eponym a term ("Smith fracture", "Jackson-Pratt drain")
HEAD_NOUNS = frozenset(
    """
    disease diseases syndrome syndromes sign signs fracture fractures drain drains murmur murmurs catheter
    catheters lesion lesions cyst cysts sarcoma tumor tumors tumour lymphoma dementia esophagus oesophagus
    pattern patterns block periodicity line lines attack attacks maneuver manoeuvre maneuvers cardiomyopathy
    index criteria criterion correction formula wave waves respiration breathing node nodes scale score
    units unit monitor monitoring ultrasound position filter malformation variant anomaly tetralogy
    phenomenon procedure fundoplication anastomosis pouch ring diverticulum palsy angina endocarditis
    spots class classification type hump hernia test reflex shunt operation repair physiology circulation
    valve tendon canal fibers fibres fissure circle bundle triangle pathway bypass stent device clip
    pacemaker icd lead leads system thyroiditis ulcer effect law equation ratio method technique approach
    incision needle tube mask bag space area zone body bodies cells cell nodules deformity contracture
    knot stitch suture stain staging stage grade grading sonde syndrom krankheit zeichen fraktur katheter
    drainage kreis klassifikation kriterien typ welle wellen hernie zyste thyreoiditis erkrankung
    puls pulse pulses rule rules sequence view projection line's point points rhythm
    """.split()
)

#: words written as "X of Eponym"
_OF_HEADS = (
    r"(?:pouch|circle|bundle|tetralogy|canal|ligament|space|node|triangle|sinus|ampulla|duct|loop|islets?)"
)

DRUGS = frozenset(
    """
    metoprolol digoxin digitalis amiodarone warfarin marcumar phenprocoumon heparin enoxaparin lasix
    furosemide torasemid torsemide xarelto rivaroxaban eliquis apixaban dabigatran pradaxa coumadin aspirin
    ass plavix clopidogrel ticagrelor brilinta prasugrel atorvastatin lipitor simvastatin flecainide
    sotalol bisoprolol carvedilol ramipril lisinopril enalapril candesartan valsartan losartan entresto
    spironolactone eplerenone nitroglycerin adenosine tikosyn dofetilide multaq dronedarone verapamil
    diltiazem amlodipine propafenone ivabradine ranolazine insulin metformin levothyroxine prednisone
    dexamethasone morphine fentanyl propofol midazolam ceftriaxone vancomycin piperacillin tazobactam
    """.split()
)
DEVICES = frozenset(
    """
    medtronic biotronik abbott boston scientific jude impella watchman mitraclip picc port cath lvad iabp
    ecmo crt tavi tavr sapien corevalve micra reveal linq holter foley swan ganz hickman groshong
    """.split()
)
ANATOMY = frozenset(
    """
    hilus hilum sternum aorta ascendens descendens truncus pulmonalis azygos knob costophrenic circumflex
    lad rca lcx lima rima diaphragm mediastinum pleura pericardium myocardium septum apex atrium ventricle
    """.split()
)
LAB_NAMES = (
    r"wbc|rbc|plt|platelets?(?:\s+count)?|glucose|ck(?:-mb)?|ldh|(?:nt-pro)?bnp|troponin|d-dimer|crp|pct|alt|"
    r"ast|ggt|hb|hgb|hemoglobin|haemoglobin|leukozyten|leukocytes|thrombozyten|lymphocytes|neutrophils|ferritin|"
    r"lactate|laktat|creatinine|kreatinin|sodium|potassium|natrium|kalium|inr|ptt|aptt|tsh|hba1c|cd4|ldl|hdl|"
    r"cholesterol|triglycerides|bilirubin|lipase|amylase|albumin|psa|afp|cea|esr|bsg|egfr|gfr|urea|harnstoff"
)
_LAB_VALUE = re.compile(
    r"\b(?:" + LAB_NAMES + r")\b\s*(?:count|level|of|von|:|=)?\s*\d[\d.,]*", re.IGNORECASE
)
_LEAD = re.compile(r"(?<![\w-])(?:V[1-9]R?|V[1-9]-V?[1-9]|aV[RLF]|avr|avl|avf|I{1,3}(?=[,\s)]|$))(?![\w])")
_LEVEL = re.compile(
    r"\b(?:[CTLS]\d{1,2}(?:\s*[-/]\s*[CTLS]?\d{1,2})?|(?:BWK|LWK|HWK|BW|LW|HW)\s*\d{1,2}(?:\s*/\s*\d{1,2})?)\b"
)
_EPO = r"[A-ZÄÖÜ][a-zäöüéè]+"
_COMPOUND = re.compile(_EPO + r"(?:-(?:en-Y-)?" + _EPO + r"){1,3}")
_WORD = re.compile(r"[^\W\d_]+(?:'s|’s)?")
_MORBUS = re.compile(r"\bMorbus\s+" + _EPO, re.IGNORECASE)
_OF_EPONYM = re.compile(r"\b" + _OF_HEADS + r"\s+of\s+(?P<e>" + _EPO + r")", re.IGNORECASE)
_ST_JUDE = re.compile(r"\bSt\.?\s+Jude\b(?!\s+(?:Children|Medical|Hospital|Research))")


_STOPLIKE = frozenset(
    "a an the and or is was has had of to in on at by with for his her their von und der die das".split()
)


def _head_after(text: str, words: list, j: int) -> int | None:
    """Index of a head noun within three words after word ``j`` (no stop word in between)."""
    for k in range(j + 1, min(j + 4, len(words))):
        if not re.fullmatch(r"[ \t-]+", text[words[k - 1].end() : words[k].start()]):
            return None
        low = words[k].group(0).lower()
        if low in HEAD_NOUNS:
            return k
        if low in _STOPLIKE:
            return None
    return None


@lru_cache(maxsize=1)
def clinical_words() -> frozenset[str]:
    """Lower-case clinical vocabulary (drugs, devices, anatomy, lab names) that is never a name."""
    labs = {w for w in re.split(r"[|()?:\s+]+", LAB_NAMES) if w.isalpha() and len(w) >= 3}
    return frozenset(DRUGS | DEVICES | ANATOMY | labs)


def protected_ranges(text: str) -> list[tuple[int, int]]:
    """Character ranges of clinical terms in ``text``."""
    out: list[tuple[int, int]] = []
    words = list(_WORD.finditer(text))
    for i, w in enumerate(words):
        base = w.group(0).lower().removesuffix("'s").removesuffix("’s")
        if base not in EPONYMS:
            continue
        # eponym(s) then a head noun: "Smith fracture", "Austin Flint murmur", "Wilson's disease"
        j = i
        while (
            j + 1 < len(words)
            and words[j + 1].group(0).lower().removesuffix("'s") in EPONYMS
            and re.fullmatch(r"[ \t]+|-|[ \t]*/[ \t]*", text[words[j].end() : words[j + 1].start()])
        ):
            j += 1
        head = _head_after(text, words, j)
        if head is not None:
            out.append((w.start(), words[head].end()))
            continue
        if j > i and all(text[words[k].end() : words[k + 1].start()] == "-" for k in range(i, j)):
            out.append((w.start(), words[j].end()))  # Wolff-Parkinson-White, Adams-Stokes
    for m in _COMPOUND.finditer(text):  # German compounds "Brugada-Syndrom", "Hashimoto-Thyreoiditis"
        parts = m.group(0).lower().split("-")
        if parts[0] in EPONYMS and (
            parts[-1] in HEAD_NOUNS or all(p in EPONYMS or p in ("en", "y") for p in parts)
        ):
            out.append((m.start(), m.end()))
    out += [(m.start(), m.end()) for m in _MORBUS.finditer(text)]
    out += [(m.start(), m.end()) for m in _OF_EPONYM.finditer(text) if m["e"].lower() in EPONYMS]
    out += [(m.start(), m.end()) for m in _ST_JUDE.finditer(text)]
    for pat in (_LAB_VALUE, _LEAD, _LEVEL):
        out += [(m.start(), m.end()) for m in pat.finditer(text)]
    clinical = clinical_words()
    out += [(w.start(), w.end()) for w in words if w.group(0).lower() in clinical]
    return out
