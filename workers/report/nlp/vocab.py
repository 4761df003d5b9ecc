"""Target vocabularies of the rule path: label → regular expressions (data, no logic).

Patterns are Python regexes matched case-insensitively over the report text by medspaCy's
``TargetMatcher`` (string patterns use its ``RegexMatcher``; matches are widened to whole tokens).
German patterns are written with plain umlauts and expanded by :func:`de` to also match the
transliterations (``ä``→``ae``) and the PTB-XL quirks (``ischÄmie`` is matched case-insensitively,
``f#r``/``#bergang`` stand for ``für``/``Übergang``). Labels are those of :mod:`schemas.labels`.
"""

from __future__ import annotations

import re

_UMLAUT = {"ä": "(?:ä|ae)", "ö": "(?:ö|oe)", "ü": "(?:ü|ue|#)", "ß": "(?:ß|ss)"}


def de(pattern: str) -> str:
    """Expand umlauts in a German regex to their transliterations."""
    return re.sub("[äöüß]", lambda m: _UMLAUT[m.group(0)], pattern)


# ---------------------------------------------------------------------------------------------
# chest radiograph (CheXpert observations + extras)

_SIZE = r"(?:(?:mildly|moderately|markedly|massively|severely|slightly|minimally|significantly|somewhat|again|stably|still|now|borderline|top[- ]normal|diffusely)\s+)*"
_HEART = r"(?:heart|cardiac\s+(?:silhouette|shadow|size|contour)|heart\s+size|cardiac)"
_BE = r"(?:\s+(?:is|are|appears?|remains?|seems?|was|has\s+become|is\s+again|again\s+appears?))?"

# fmt: off
CXR_TARGETS: dict[str, list[str]] = {
    "cardiomegaly": [
        r"cardiomegaly",
        r"cardiac\s+enlargement",
        r"enlarge(?:d|ment\s+of\s+the)\s+(?:heart|cardiac\s+(?:silhouette|shadow|size))",
        r"enlarged\s+(?:heart|cardiac\s+(?:silhouette|shadow|size))",
        _HEART + _BE + r"\s+(?:not\s+)?" + _SIZE + r"(?:enlarged|large|increased\s+in\s+size)",
        r"(?:large|prominent|increased)\s+(?:heart|cardiac\s+silhouette)(?:\s+size)?",
        r"borderline\s+(?:heart|cardiac)\s+(?:size|enlargement)",
        r"heart\s+size\s+(?:is\s+)?(?:borderline|mildly\s+increased|increased)",
        de(r"kardiomegalie|herzvergrößerung|vergrößerte[sn]?\s+herz|herz\s+(?:ist\s+)?(?:nicht\s+)?vergrößert"),
    ],
    "enlarged_cardiomediastinum": [
        r"(?:cardiomediastinal|mediastinal)\s+(?:silhouette|contours?|shadow)"
        + _BE
        + r"\s+"
        + _SIZE
        + r"(?:enlarged|widened|prominent|wide)",
        r"(?:widened|widening\s+of\s+the|enlarged|prominent)\s+(?:cardio)?mediastin(?:um|al\s+(?:silhouette|contours?))",
        r"mediastin(?:um|al\s+silhouette)" + _BE + r"\s+" + _SIZE + r"(?:widened|enlarged|prominent)",
        de(r"mediastinalverbreiterung|verbreiterte[sn]?\s+mediastinum"),
    ],  # fmt: skip
    "lung_opacity": [
        r"opacit(?:y|ies)|opacification|opacified",
        r"(?:air[- ]?space|parenchymal|pulmonary|lung|focal|nodular|patchy|hazy|streaky|reticular|linear|round(?:ed)?|ill-defined|masslike|mass-like)\s+densit(?:y|ies)",
        r"densit(?:y|ies)\s+(?:in|within|at|of|over|overlying|projecting)\s+the\s+(?:left|right|bilateral)?\s*(?:lung|lower|upper|middle|lingula|base|apex|apices|bases|mid|perihilar|retrocardiac)",
        r"infiltrates?|infiltration",
        de(r"verschattung(?:en)?|infiltrat(?:e|ion)?|transparenzminderung"),
    ],
    "lung_lesion": [r"lung\s+lesion|pulmonary\s+lesion|cavitary\s+lesion|cavitation|cavity"],
    "edema": [
        r"(?:pulmonary|interstitial|alveolar|perihilar)\s+edema|edema",
        r"(?:vascular|pulmonary|venous|central\s+vascular)\s+congestion|congestive\s+(?:heart\s+)?failure|\bchf\b",
        r"(?:pulmonary\s+)?vascular\s+(?:redistribution|engorgement|cephalization|prominence)|cephalization",
        r"oedema|kerley",
        de(r"lungenödem|ödem|stauung|zentrale\s+venöse\s+stauung"),
    ],
    "consolidation": [r"consolidat(?:ion|ions|ive|ed)", de(r"konsolidierung(?:en)?")],
    "pneumonia": [
        r"pneumonias?|pneumonitis|bronchopneumonia",
        de(r"pneumonie|lungenentzündung"),
    ],
    "atelectasis": [
        r"atelecta(?:sis|ses|tic)|atelectatic",
        r"(?:volume|lobar)\s+loss|collapse(?:d)?\s+(?:lung|lobe)|(?:lung|lobar?)\s+collapse",
        de(r"atelektasen?|dystelektasen?|minderbelüftung"),
    ],
    "pneumothorax": [r"pneumothora(?:x|ces)|hydropneumothorax", r"\bptx\b"],
    "pleural_effusion": [
        r"(?:pleural\s+)?effusions?|pleural\s+fusion|hydropneumothorax|hydrothorax|pleural\s+fluid|fluid\s+in\s+the\s+(?:major|minor)?\s*fissure",
        de(r"pleuraergü(?:ss|ß|sse)|erguss|ergüsse|pleuraerguss"),
    ],
    "pleural_other": [
        r"pleural\s+(?:thickening|plaques?|scarring|calcifications?|reaction)|pleural-?parenchymal\s+(?:scarring|thickening|irregularit(?:y|ies))|pleuroparenchymal\s+(?:scarring|thickening|irregularit(?:y|ies))",
        r"(?:biapical|apical)\s+(?:pleural\s+)?(?:thickening|capping)",
        r"blunt(?:ing|ed)\s+(?:of\s+)?(?:the\s+)?(?:\w+\s+){0,2}costophrenic|costophrenic\s+(?:angles?|sulcus|sulci|recess(?:es)?|xxxx)\s+(?:\w+\s+){0,2}(?:blunted|blunting|obscured)",
        r"thickening\s+of\s+the\s+pleura|fibrothorax",
        de(r"pleuraschwarte|pleuraverdickung|pleuraplaques"),
    ],
    "fracture": [r"fractur(?:e|es|ed)|\bfx\b", de(r"fraktur(?:en)?|rippenfraktur(?:en)?")],
    "support_devices": [
        r"(?:support|medical|cardiac|implanted|monitoring)\s+devices?|lines?\s+and\s+tubes?|tubes?\s+and\s+lines?",
        r"(?:enteric|feeding|nasogastric|orogastric|chest|dobhoff|tracheostomy|drainage)\s+tubes?|\bng\s*tube|\bog\s*tube|tracheostomy",
        r"(?:external\s+)?(?:cardiac\s+)?monitor(?:ing)?\s+leads|electronic\s+device|(?:gastrostomy|jejunostomy|g-?j?)\s+tube|(?:vp|ventriculoperitoneal)?\s*shunt(?:\s+tubing)?|tubing|\btips\b|prosthetic\s+(?:\w+\s+)?valve|xxxx-a-xxxx",
        r"\bicd\b|\baicd\b|defibrillator|stimulator|loop\s+recorder|port-?a-?cath|\bport\b|catheters?|\bpicc\b|drains?\b|stents?\b|valve\s+(?:replacement|prosthesis)|prosthetic\s+valve|annuloplasty|occluder|closure\s+device|bone\s+anchors?|electrodes?|leads?\s+(?:in|over|overlying|project|terminat)",
        # the source redacts "pacemaker"/"defibrillator" as XXXX: "cardiac XXXX generator"
        r"(?:cardiac\s+xxxx|pacer|pacemaker|battery|pulse)\s+generator|generator\s+with\s+\S+\s+leads?|dual-xxxx\s+cardiac\s+xxxx|cardiac\s+xxxx\s+device",
        de(r"schrittmacher|katheter|zentraler?\s+venenkatheter|\bzvk\b|drainage|magensonde|tubus"),
    ],
    "pacemaker": [
        r"pacemaker|pacer|pacing\s+(?:wires?|leads?|device)",
        de(r"herzschrittmacher|schrittmacher"),
    ],
    "central_line": [
        r"central\s+(?:venous\s+)?(?:line|catheter)|\bpicc(?:\s+line)?\b|(?:subclavian|jugular|\bij\b)\s+(?:central\s+)?(?:line|catheter|venous\s+catheter)|swan-?ganz|port-?a-?cath|(?:power|chest|venous)\s?port\b|dialysis\s+catheter|\btip\s+(?:\w+\s+){0,5}(?:svc|superior\s+vena\s+cava|cavo-?atrial|caval\s+atrial|right\s+atrium)",
        de(r"zentraler?\s+venenkatheter|\bzvk\b|portkatheter"),
    ],
    "endotracheal_tube": [
        r"endotracheal\s+tube|\bet\s?tube|\bett\b|intubat(?:ed|ion)",
        de(r"endotrachealtubus|tubus"),
    ],
    "surgical_clips": [
        r"(?<!cholecystectomy\s)(?:(?:surgical|vascular|metallic|postsurgical)\s+)?clips?\b|(?:surgical\s+)?staples?\b|sutures?\b|suture\s+material|surgical\s+(?:hardware|material)|(?<!bone\s)anchors?\b",
        de(r"(?<!cholecystectomy\s)clips?|cerclagen?|osteosynthese(?:material)?"),
    ],
    "nodule": [
        r"nodules?|nodular(?:ity)?(?!\s+(?:densit|opacit))|micronodul(?:es?|ar)|\bspn\b",
        de(r"rundherde?|knötchen|noduli|nodulus"),
    ],
    "mass": [
        r"mass(?:es)?\b|masslike|mass-like|tumou?r|neoplasm|malignan(?:cy|t)|carcinoma|metasta(?:sis|ses|tic)",
        de(r"raumforderung|tumor"),
    ],
    "granuloma": [
        r"granulomas?|granulomata|granulomatous(?:\s+disease)?|histoplasm(?:osis|a)",
        de(r"granulom(?:e)?"),
    ],
    "emphysema": [
        r"emphysema(?:tous)?|bullous|bullae|bulla\b|blebs?\b",
        de(r"emphysem"),
    ],
    "copd": [
        r"\bcopd\b|chronic\s+obstructive\s+(?:pulmonary|lung|airways?)\s+disease|obstructive\s+lung\s+disease|chronic\s+(?:lung\s+disease|bronchitis)",
        de(r"\bcopd\b"),
    ],
    "hernia": [
        r"hernia(?:tion|s)?|(?:hiatal|hiatus|diaphragmatic|morgagni|bochdalek)\s+hernia",
        de(r"hernie|hiatushernie"),
    ],
    "scoliosis": [
        r"scolio(?:sis|tic)|levoscoliosis|dextroscoliosis|levoconvex|dextroconvex|(?:dextro|levo)curvature|(?:spinal|spine|thoracic|lumbar)\s+curvature|curvature\s+of\s+the\s+(?:\w+\s+)?spine",
        de(r"skoliose"),
    ],
    "kyphosis": [r"kyphosis|kyphotic|kyphoscoliosis|exaggerated\s+(?:thoracic\s+)?kyphosis", de(r"kyphose")],
    "calcification": [
        r"(?<!atherosclerotic\s)(?<!atherosclerotic\svascular\s)(?:calcifi(?:cation|cations|ed)|calcific\b)(?![^.;,\n]{0,40}granulom)|calcinosis|calcium\s+deposit",
        de(r"verkalkung(?:en)?|verkalkt(?:e|er|es)?|kalk"),
    ],
    "airspace_disease": [
        r"air[- ]?space\s+(?:disease|process|consolidation|filling)|alveolar\s+(?:disease|process|filling)",
    ],
    "interstitial_disease": [
        r"interstitial\s+(?:lung\s+)?(?:disease|markings|prominence|pattern|changes|fibrosis|thickening|process)|(?:pulmonary|interstitial|lung)\s+fibrosis|fibrotic\s+changes|(?<!cystic\s)fibrosis|reticular(?:\s+(?:markings|pattern|changes))?|reticulonodular|honeycomb(?:ing)?",
        r"(?:increased|prominent|coarse(?:ned)?|chronic)\s+(?:interstitial|lung|pulmonary|bronchial)\s+markings",
        de(r"fibrose|interstitielle\s+zeichnungsvermehrung"),
    ],
    "hyperinflation": [
        r"hyperinfla(?:tion|ted)|hyperexpan(?:sion|ded)|hyperaerat(?:ion|ed)|hyperlucen(?:t|cy)|over[- ]?inflat(?:ion|ed)|over[- ]?expan(?:sion|ded)|hyperexpanded|hyperinflated",
        r"flatten(?:ed|ing)\s+(?:of\s+)?(?:the\s+)?(?:bilateral\s+)?(?:hemi)?diaphragms?|(?:hemi)?diaphragms?\s+(?:are|is)\s+(?:\w+\s+)?flattened|increased\s+(?:ap|anteroposterior)\s+diameter|large\s+lung\s+volumes",
        de(r"überblähung|überbläht"),
    ],
    "low_lung_volumes": [
        r"low\s+(?:lung\s+)?volumes?|(?:lung\s+)?volumes?\s+(?:are|is|remain)\s+(?:\w+\s+)?low|hypoinflat(?:ion|ed)|hypoexpan(?:sion|ded)|poor\s+(?:inspiratory\s+)?(?:effort|inspiration)|shallow\s+inspiration|bronchovascular\s+crowding|decreased\s+lung\s+volumes?|underinflat(?:ion|ed)",
        de(r"geringe\s+inspirationstiefe|minderinspiration"),
    ],
    "elevated_diaphragm": [
        r"elevat(?:ed|ion\s+of\s+the)\s+(?:\w+\s+){0,2}(?:hemi)?diaphragms?|(?:hemi)?diaphragms?\s+(?:is|are|remains?)\s+(?:\w+\s+)?elevated|(?:hemi)?diaphragm(?:atic)?\s+elevation|eventration",
        de(r"zwerchfellhochstand"),
    ],
    "degenerative_spine": [
        r"(?:degenerative|arthritic|spondylotic|osteoarthritic|hypertrophic)\s+(?:\w+\s+){0,2}(?:changes?|disease|spurring|spurs?)|osteophyt(?:es?|osis|ic)|spondylo(?:sis|tic)|(?:degenerative\s+)?disc\s+(?:disease|space\s+narrowing)|degenerative|arthritis|arthropathy|spurring|\bdjd\b|dish\b",
        de(r"degenerative\s+veränderungen|spondylose|osteochondrose|spondylarthrose"),
    ],
    "scarring": [r"scar(?:s|ring|red)?\b|cicatri(?:x|cial)", de(r"narbe(?:n)?|narbig")],
    "tortuous_aorta": [
        r"tortu(?:ous|osity)|ectatic|ectasia|(?:unfolded|unfolding\s+of\s+the)\s+(?:thoracic\s+)?aort(?:a|ic)|aort(?:a|ic\s+arch)\s+(?:is\s+)?unfolded",
        r"(?:dilated|prominent|enlarged|ectatic)\s+(?:thoracic\s+|ascending\s+|descending\s+)?aort(?:a|ic\s+(?:arch|knob))",
        r"aort(?:a|ic\s+(?:arch|knob))\s+(?:is\s+)?(?:\w+\s+)?(?:dilated|prominent|enlarged)",
        de(r"elongiert(?:e|er)?\s+aorta|aortenelongation|elongation"),
    ],
    "aortic_atherosclerosis": [
        r"atheroscleros(?:is|es)|atherosclerotic(?:\s+(?:vascular\s+|aortic\s+)?calcifi(?:cation|cations|ed))?|atheromatous",
        de(r"arteriosklerose|atherosklerose|aortensklerose"),
    ],
    "foreign_body": [
        r"foreign\s+bod(?:y|ies)|nipple\s+(?:ring|piercing)s?|piercings?|(?:radiopaque|metallic)\s+(?:foreign\s+)?(?:object|density|densities|fragments?|body|bodies)|bullet(?:\s+fragments?)?|shrapnel",
        de(r"fremdkörper|piercing"),
    ],
    "osteopenia": [
        r"osteopeni(?:a|c)|osteopor(?:osis|otic)|demineraliz(?:ation|ed)|bone\s+mineral\s+loss",
        de(r"osteopenie|osteoporose"),
    ],
}
# fmt: on

#: phrases stating a normal chest radiograph (for the ``normal`` flag together with no findings)
CXR_NORMAL = [
    r"no\s+acute\s+(?:cardiopulmonary|pulmonary|chest|intrathoracic|radiographic)?\s*(?:abnormality|abnormalities|process|disease|findings?|pathology)",
    r"normal\s+(?:chest|study|examination|exam|radiograph|x-?ray|cxr|frontal\s+and\s+lateral)",
    r"(?:lungs\s+are\s+clear|clear\s+lungs)",
    r"no\s+(?:active|significant)\s+(?:disease|abnormality)",
    de(
        r"unauffällige[rs]?\s+befund|regelrecht|altersentsprechend|kein\s+(?:pathologischer|auffälliger)\s+befund"
    ),
]

# ---------------------------------------------------------------------------------------------
# ECG statements (PTB-XL SCP-ECG groups), English, German and Swedish

# fmt: off
ECG_TARGETS: dict[str, list[str]] = {
    "normal_ecg": [
        r"normal\s+(?:ecg|ekg|electrocardiogram|tracing)|(?:ecg|ekg|tracing)\s+(?:is\s+)?(?:within\s+normal\s+limits|normal)|no\s+definite\s+pathology|within\s+normal\s+limits",
        de(
            r"normales\s+ekg|ekg\s+(?:ist\s+)?normal|normalbefund|normaler\s+befund|ohne\s+pathologischen\s+befund"
        ),
        r"normalt\s+ekg|normal\s+ekg",
    ],
    "sinus_rhythm": [
        r"sinus\s+rhythm|\bsr\b|normal\s+sinus|sinus\s+(?:rhythmus|rytm)",
        de(r"sinusrhythmus|sinusrythmus|sinusrytm|sinus-?rhythmus"),
    ],
    "sinus_tachycardia": [r"sinus\s+tachycardia", de(r"sinustachykardie|sinustakykardi")],
    "sinus_bradycardia": [r"sinus\s+bradycardia", de(r"sinusbradykardie|sinusbradykardi")],
    "sinus_arrhythmia": [
        r"sinus\s*arrh?ythmi(?:a|e)",
        de(r"sinusarrh?ythmie|sinusarytmi|respiratorische\s+arrhythmie"),
    ],
    "atrial_fibrillation": [
        r"atrial\s+fibrillation|\bafib\b|\baf\b|a\.?\s?fib\b",
        de(r"vorhofflimmern(?:/-?\s?flattern)?|absolute\s+arrhythmie|förmaksflimmer(?:/-?\s?fladder)?"),
    ],
    "atrial_flutter": [r"atrial\s+flutter", de(r"vorhofflattern|förmaksfladder(?!\w)")],
    "supraventricular_tachycardia": [
        r"supraventricular\s+tachycardia|\bsvt\b|\bpsvt\b|(?:av\s?)?(?:nodal|junctional)\s+(?:re-?entr(?:y|ant)\s+)?tachycardia|atrial\s+tachycardia",
        de(
            r"supraventrikuläre\s+tachykardie|paroxysmale\s+tachykardie|vorhoftachykardie|supraventrikulär\s+takykardi"
        ),
    ],
    "pacemaker_rhythm": [
        r"pac(?:ed|ing)\s+rhythm|(?:artificial|ventricular|atrial|dual[- ]chamber|demand)\s+pac(?:ing|emaker|ed)|pacemaker|electronic\s+pacemaker|paced",
        de(r"schrittmacher(?:rhythmus|-?ekg|stimulation)?|pacemaker(?:rytm)?|stimulation"),
    ],
    "premature_atrial_complex": [
        r"(?:premature\s+)?(?:atrial|supraventricular)\s+(?:premature\s+)?(?:complex(?:es)?|contractions?|beats?|ectopics?|extrasystoles?|ectopy)|\bpacs?\b|\bapcs?\b|\bsves\b",
        de(
            r"supraventrikuläre\s+extrasystolen?(?:\(n\))?|vorhofextrasystolen?|supraventrikulär(?:a)?\s+extrasystol(?:er|i)?|förmaksextrasystol(?:er)?"
        ),
    ],
    "premature_ventricular_complex": [
        r"(?:premature\s+)?ventricular\s+(?:premature\s+)?(?:complex(?:es)?|contractions?|beats?|ectopics?|extrasystoles?|ectopy)|\bpvcs?\b|\bvpcs?\b|\bves\b|ventricular\s+bigeminy",
        de(
            r"ventrikuläre\s+extrasystolen?(?:\(n\))?|ventrikulär(?:\(a\)|a)?\s+(?:extrasystol\w*(?:\(er\))?|extraslag)|kammarextrasystol(?:er)?|\bves\b"
        ),
    ],
    "left_axis_deviation": [
        r"left\s+axis(?:\s+deviation)?|(?:abnormal|marked|extreme)\s+left\s+axis|left\s+(?:frontal\s+)?axis\s+deviation|\blad\b",
        de(
            r"(?:überdrehter\s+|extrem\s+überdrehter\s+)?linkstyp|linkslage|\b(?:m?llt|ült)\b|(?:extrem\s+)?vänster\s*(?:el-?)?axel|vänsterställd\s+el-?axel"
        ),
    ],
    "right_axis_deviation": [
        r"right\s+axis(?:\s+deviation)?|(?:abnormal|marked|extreme)\s+right\s+axis|\brad\b",
        de(
            r"(?:überdrehter\s+|extrem\s+überdrehter\s+)?rechtstyp|rechtslage|\brlt\b|(?:extrem\s+)?höger\s*(?:el-?)?axel|högerställd\s+el-?axel"
        ),
    ],
    "first_degree_av_block": [
        r"(?:first|1st|1\.?)[- ]degree\s+(?:av|a-v|atrioventricular|heart)\s+block|(?:av|a-v)\s+block\s+(?:1|i|first)\b|prolonged\s+pr(?:\s+interval)?|long\s+pr\s+interval|pr\s+(?:interval\s+)?(?:is\s+)?prolonged",
        de(
            r"av-?block\s+(?:i|1)(?:°|\.|\s+grades)?(?!\w)|av-?block\s+(?:ersten|1\.)\s+grades|verlängerte\s+(?:pq|pr)(?:-?zeit|-?dauer|-?intervall)?|(?:pq|pr)-?(?:zeit|intervall)\s+verlängert|förlängd\s+pq-?tid|av-?block\s+i(?!i)"
        ),
    ],
    "second_degree_av_block": [
        r"(?:second|2nd|2\.?)[- ]degree\s+(?:av|a-v|atrioventricular|heart)\s+block|mobitz|wenckebach|(?:av|a-v)\s+block\s+(?:2|ii|second)\b|\b[2-4]\s*:\s*1\s+(?:av|a-v|atrioventricular)\s+(?:block|conduction)",
        de(r"av-?block\s+(?:ii|2)(?:°|\.)?(?!i)|av-?block\s+(?:zweiten|2\.)\s+grades"),
    ],
    "third_degree_av_block": [
        r"(?:third|3rd|3\.?)[- ]degree\s+(?:av|a-v|atrioventricular|heart)\s+block|complete\s+(?:av|a-v|atrioventricular|heart)\s+block|(?:av|a-v)\s+block\s+(?:3|iii|third)\b",
        de(
            r"av-?block\s+(?:iii|3)(?:°|\.)?|totaler\s+av-?block|kompletter\s+av-?block|av-?block\s+(?:dritten|3\.)\s+grades"
        ),
    ],
    "complete_right_bundle_branch_block": [
        r"(?:complete\s+)?right\s+bundle(?:[- ]branch)?\s+block|\brbbb\b|\bcrbbb\b",
        de(
            r"(?:kompletter\s+|vollständiger\s+)?rechts\s?schenkelblock|schenkelblock,?\s+rechts|\brsb\b|högersidigt\s+skänkelblock|höger\s+skänkelblock"
        ),
    ],
    "incomplete_right_bundle_branch_block": [
        r"(?:incomplete|partial)\s+right\s+bundle(?:[- ]branch)?\s+block|\birbbb\b|\bincomplete\s+rbbb\b",
        de(
            r"(?:inkompletter|unvollständiger|partieller|inkomplett(?:er)?)\s+rechtsschenkelblock|schenkelblock,?\s+partiell,?\s+rechts|inkomplett\s+högersidigt\s+skänkelblock|\birsb\b"
        ),
    ],
    "complete_left_bundle_branch_block": [
        r"(?:complete\s+)?left\s+bundle(?:[- ]branch)?\s+block|\blbbb\b|\bclbbb\b",
        de(
            r"(?:kompletter\s+|vollständiger\s+)?links\s?schenkelblock|schenkelblock,?\s+links|\blsb\b|vänstersidigt\s+skänkelblock|vänster\s+skänkelblock"
        ),
    ],
    "incomplete_left_bundle_branch_block": [
        r"(?:incomplete|partial)\s+left\s+bundle(?:[- ]branch)?\s+block|\bilbbb\b|\bincomplete\s+lbbb\b",
        de(
            r"(?:inkompletter|unvollständiger|partieller)\s+linksschenkelblock|schenkelblock,?\s+partiell,?\s+links|inkomplett\s+vänstersidigt\s+skänkelblock"
        ),
    ],
    "left_anterior_fascicular_block": [
        r"left\s+anterior\s+(?:fascicular\s+block|hemi-?block|hemiblock)|\blafb\b|\blahb?\b|left\s+anterior\s+fascicular",
        de(
            r"linksanteriorer\s+hemiblock|links-?anteriorer\s+hemiblock|linker\s+anteriorer\s+hemiblock|\blah\b|vänster\s+anteriort\s+hemiblock"
        ),
    ],
    "left_posterior_fascicular_block": [
        r"left\s+posterior\s+(?:fascicular\s+block|hemi-?block|hemiblock)|\blpfb\b|\blphb?\b",
        de(
            r"linksposteriorer\s+hemiblock|links-?posteriorer\s+hemiblock|\blph\b|vänster\s+posteriort\s+hemiblock"
        ),
    ],
    "wpw": [
        r"wolff?[- ]parkinson[- ]white|\bwpw\b|pre-?excitation|delta\s+waves?",
        de(r"präexzitation|wpw-?syndrom"),
    ],
    "ivcd": [
        r"(?:non-?specific\s+)?intra-?ventricular\s+(?:conduction\s+)?(?:block|delay|defect|disturbance)|\bivcd\b",
        de(
            r"intraventr(?:ikuläre|\.)\s+(?:leitungsstörung|leitungsverzögerung|block)|(?:unspezifischer\s+)?intraventrikulärer\s+block|intraventrikulär\s+ledningsrubbning"
        ),
    ],
    "left_ventricular_hypertrophy": [
        r"left\s+ventricular\s+hypertrophy|\blvh\b|(?:left\s+ventricular|\blv)\s+strain|voltage\s+criteria\s+for\s+(?:left\s+ventricular\s+hypertrophy|lvh)",
        de(
            r"linksventrikuläre\s+hypertrophie|linkshypertrophie|linksherzhypertrophie|sokolow|(?:vänster\s*)?kammar(?:k)?hypertrofi|vänsterkammarhypertrofi|linksbelastung"
        ),
    ],
    "right_ventricular_hypertrophy": [
        r"right\s+ventricular\s+hypertrophy|\brvh\b|right\s+ventricular\s+strain",
        de(
            r"rechtsventrikuläre\s+hypertrophie|rechtshypertrophie|rechtsherzhypertrophie|rechtsbelastung|högerkammarhypertrofi|höger\s*kammarhypertrofi"
        ),
    ],
    "left_atrial_enlargement": [
        r"left\s+atrial\s+(?:enlargement|overload|abnormality|hypertrophy)|\blae\b|p\s+mitrale",
        de(
            r"p-?sinistro(?:kardiale|cardiale)|p-?mitrale|linksatriale\s+(?:vergrößerung|belastung|hypertrophie)|p-?verbreiterung|vänster\s+förmaksbelastning"
        ),
    ],
    "right_atrial_enlargement": [
        r"right\s+atrial\s+(?:enlargement|overload|abnormality|hypertrophy)|\brae\b|p\s+pulmonale",
        de(
            r"p-?dextro(?:kardiale|cardiale)|p-?pulmonale|rechtsatriale\s+(?:vergrößerung|belastung|hypertrophie)|höger\s+förmaksbelastning"
        ),
    ],
    "myocardial_infarction": [
        # coordinated regions ("old anterior and inferior infarcts"): the regions are recovered by
        # workers.report.rules.mi_regions
        de(r"(?:(?:antero\w*|anteriore[rn]?|anterior|infero\w*|inferiore[rn]?|inferior|(?:hoch)?laterale[rn]?|lateral|posteriore[rn]?|posterior|septale[rn]?|septal)\s+(?:and|&|or|und|oder|och)\s+)+(?:antero\w*|anteriore[rn]?|anterior|infero\w*|inferiore[rn]?|inferior|(?:hoch)?laterale[rn]?|lateral|posteriore[rn]?|posterior|septale[rn]?|septal)\s+(?:wall\s+)?(?:myocardial\s+)?(?:infarct(?:s|ion|ions)?|mi|infarkte?|myokardinfarkte?)"),
        r"(?:myocardial\s+)?(?:infarct|inarct)(?:ion)?s?|\bmi\b|necrosis",
        de(r"infarkt|myokardinfarkt|infarzierung|myokardskada|infarktnarbe|nekrose"),
    ],
    "anterior_mi": [
        r"(?:antero-?(?:septal|lateral)?|anterior|extensive\s+anterior|septal|antero-?apical)\s+(?:wall\s+)?(?:myocardial\s+)?(?:infarct(?:ion)?|inarct|mi|necrosis|injury|damage)",
        # QS complexes / tiny R waves in V1-V4 and poor R progression are coded as anterior
        # infarction in PTB-XL (dev: 29 of 29, 19 of 19, 10 of 17 reports)
        r"qs\s+(?:complex(?:es)?|waves?|pattern)\s+in\s+v[1-4]|(?:tiny|small|poor)\s+r[- ]?waves?\s+in\s+v[1-4]|poor\s+r[- ]?wave\s+progression",
        de(r"(?:fehlende|schlechte|verzögerte|mangelnde)\s+r-?progression"),
        de(r"(?:antero-?septale[rn]?|anteriore[rn]?|anterolaterale[rn]?)\s*,\s*(?:chronische[rn]?|alte[rn]?|akute[rn]?|frische[rn]?|subakute[rn]?)\s+infarkt|infarkt\s+(?:antero-?septal|anterior|anterolateral|vorderwand)"),
        de(
            r"(?:antero-?septale[rn]?|anteriore[rn]?|anterolaterale[rn]?|antero-?apikale[rn]?|septale[rn]?|vorderwand)\s*(?:myokard)?(?:infarkt|(?<!innenschicht)(?<!innenschichts)schaden|schädigung|nekrose)|vorderwandinfarkt|(?:anterior|anteroseptal|anterolateral)\s+(?:myokardskada|infarkt)"
        ),
    ],
    "inferior_mi": [
        r"(?:infero-?(?:lateral|posterior|posterolateral|septal)?|inferior|diaphragmatic)\s+(?:wall\s+)?(?:myocardial\s+)?(?:infarct(?:ion)?|mi|necrosis|injury|damage)",
        de(
            r"(?:inferiore[rn]?|inferolaterale[rn]?|inferoposteriore[rn]?)\s*,\s*(?:chronische[rn]?|alte[rn]?|akute[rn]?|frische[rn]?|subakute[rn]?)\s+infarkt|infarkt\s+(?:inferior|hinterwand)|(?:inferiore[rn]?|inferolaterale[rn]?|inferoposteriore[rn]?|hinterwand|diaphragmale[rn]?)\s*(?:myokard)?(?:infarkt|(?<!innenschicht)(?<!innenschichts)schaden|schädigung|nekrose)|hinterwandinfarkt|inferior\s+(?:myokardskada|infarkt)"
        ),
    ],
    "lateral_mi": [
        r"(?:high\s+)?lateral\s+(?:wall\s+)?(?:myocardial\s+)?(?:infarct(?:ion)?|mi|necrosis|injury|damage)",
        de(
            r"(?:hoch)?laterale[rn]?\s*(?:myokard)?(?:infarkt|schaden|schädigung|nekrose)|seitenwandinfarkt|(?:hög\s+)?lateral\s+(?:infarkt|myokardskada)"
        ),
    ],
    "septal_mi": [
        r"(?<!antero)(?<!antero-)septal\s+(?:myocardial\s+)?(?:infarct(?:ion)?|mi)",
        de(r"(?<!antero)septaler\s+infarkt"),
    ],
    "posterior_mi": [
        r"(?<!infero)(?<!infero-)posterior\s+(?:wall\s+)?(?:myocardial\s+)?(?:infarct(?:ion)?|mi|necrosis|injury)|true\s+posterior",
        de(
            r"(?<!infero)posteriore[rn]?\s*(?:myokard)?(?:infarkt|schaden|nekrose)|posteriorer\s+infarkt|strikt\s+posteriorer"
        ),
    ],
    "ischemia": [
        # PTB-XL statement "ST-T abnormal, probably <region> ischaemia or LV strain" is coded as
        # ischaemia (ISC*), not as LV hypertrophy or non-specific ST-T change
        de(r"(?:st(?:\s*&\s*t|-t)?\s+abnorm(?:al)?,?\s+(?:wahrscheinlich|möglicherweise)\s+)?(?:[a-zäöü-]+\s+)?(?:ischämie|innenschicht\w*)\s+oder\s+links(?:herz)?belastung"),
        de(r"(?:st-?t\s+sänkning,?\s+(?:såsom\s+vid\s+)?)?(?:[a-zäöü-]+\s+)?ischemi\s+eller\s+vänster\s+(?:kammar)?belastning"),
        r"isch(?:a)?emi(?:a|c)|ischaemia|ischaemic|subendocardial\s+injury|(?:myocardial|coronary)\s+insufficiency",
        de(
            r"ischämie|ischämisch(?:e[rn]?)?|innenschichts?(?:ischämie|schaden|schädigung|läsion)|koronarinsuffizienz|ischemi|ischemisk|subendokardiell\s+skada"
        ),
    ],
    "st_t_change": [
        # "non-specific but consistent with myocardial ischaemia" is coded non-specific (NST_/NDT)
        r"non-?specific\s+but\s+consistent\s+with\s+(?:myocardial\s+)?isch(?:a)?emi[ac]",
        r"st[- ]?t(?:[- ]wave)?\s+(?:changes?|abnormalit(?:y|ies)|wave\s+(?:changes?|abnormalit(?:y|ies)))|st(?:[- ]segments?)?\s+(?:are\s+|is\s+)?(?:depress(?:ed|ion)|elevat(?:ed|ion)|changes?|abnormalit(?:y|ies)|sagging)|t[- ]?waves?\s+(?:are\s+)?(?:\w+\s+)?(?:inver(?:ted|sion)|flat(?:tened|tening)?|low|abnormal(?:ity|ities)?|changes?|peaked|biphasic|negative)|(?:inverted|flat(?:tened)?|low|biphasic|negative|abnormal)\s+t[- ]?waves?|t[- ]?wave\s+flattening|repolari[sz]ation\s+(?:abnormalit(?:y|ies)|changes?|disturbances?)|non-?specific\s+(?:st|t)",
        de(
            r"st\s*&\s*t\s+abnorm(?:al)?|st-?t\s+abnorm(?:al)?|st\s+abnorm(?:al)?|t\s+abnorm(?:al)?|(?:unspezifische[sn]?\s+)?abnorm(?:al)?e[sn]?\s+t\b|st-?(?:strecken)?-?(?:senkung|hebung|veränderung)(?:en)?|t-?(?:wellen)?-?(?:negativierung|abflachung|inversion|veränderung)(?:en)?|t-?negativierung|erregungsrückbildungsstörung(?:en)?|repolarisationsstörung(?:en)?|t-?veraenderungen|st-?t-?(?:förändring|avvikelse)|t-?förändring|st-?sänkning|st-?höjning|avvikande\s+st-?t|flache[sn]?\s+t"
        ),
    ],
    "long_qt": [
        r"(?:long|prolonged)\s+qt(?:c)?(?:\s+interval)?|qt(?:c)?\s+(?:interval\s+)?(?:is\s+)?prolong(?:ed|ation)",
        de(
            r"qt-?(?:zeit-?)?verlängerung|verlängerte[sn]?\s+qt(?:c)?(?:-?zeit|-?intervall|-?dauer)?|qt(?:c)?-?(?:zeit|intervall|dauer)\s+verlängert|förlängd\s+qt"
        ),
    ],
    "low_voltage": [
        r"low\s+(?:qrs\s+)?(?:voltage|amplitude)s?|low\s+(?:limb|chest)\s+lead\s+voltages?|voltages?\s+(?:are\s+)?low",
        de(
            r"niedervoltage|niederspannung|niedrige\s+(?:qrs-?)?(?:amplituden|voltage)|låga\s+qrs[- ]?amplituder|lågvolterat"
        ),
    ],
    "abnormal_qrs": [
        r"abnormal\s+qrs|qrs(?:\(t\))?\s+abnormal",
        de(r"qrs\(t\)\s+abnorm(?:al)?|qrs\s+abnorm(?:al)?|avvikande\s+qrs(?:\(t\))?"),
    ],
    "q_waves": [
        r"(?:pathological\s+|significant\s+|abnormal\s+)?q[- ]?waves?|\bqs\s+(?:complex(?:es)?|waves?|pattern)",
        de(r"q-?zacken?|pathologische\s+q|qs-?(?:komplexe?|muster)|q-?vågor|\bq\s+in\s+(?:i|ii|iii|avl|avf|f|v\d)\b"),
    ],
    "digitalis_effect": [
        r"digitalis|digoxin|dig\.?\s+effect",
        de(r"digitalis(?:wirkung|effekt)?|digitaliseffekt"),
    ],
}
# fmt: on
