"""Score extracted report findings against human gold labels (Indiana CXR, PTB-XL ECG).

The reports go through the real text path of the pipeline, row by row:
``workers.report.ingest.build_report_record`` (normalise → de-identify → detect language →
rule structuring), and for ``structurer="llm"`` the de-identified text is restructured by
``workers.llm.structurer.structure_reports``. The gold files are read in place (the Indiana CSV
is CC BY-NC-ND: never copied).

Gold labels:

- **indiana** (``indiana_cxr/indiana_reports_partA.csv``): the human ``MeSH`` terms
  (``Heading/qualifier/...``) mapped onto the chest-radiograph vocabulary by
  :data:`INDIANA_MESH_MAP`; ``normal`` (``Problems == "normal"``) is its own label, predicted by
  the structured report's ``normal`` flag. Rows indexed "No Indexing" have no labels and are
  left out. Text = indication, comparison, findings, impression under their headings; a finding
  counts when asserted present/uncertain/historical outside indication/history/comparison/
  technique.
- **ptbxl** (``ptbxl_ecg/ptbxl_database_subset_partA.csv``): every SCP code of ``scp_codes``
  (any likelihood) mapped by :data:`PTBXL_SCP_MAP` (names checked against ``scp_statements.csv``),
  plus the ``heart_axis`` column for the axis labels. A finding counts when asserted
  present/uncertain/historical; ``normal_ecg`` is predicted by the structured report's
  ``normal`` flag (a normal-ECG statement, or sinus rhythm with nothing abnormal).

Child labels imply their parents on both sides (:data:`LABEL_PARENTS`: e.g. ``pacemaker`` →
``support_devices``, ``inferior_mi`` → ``myocardial_infarction``).

Held-out split: a report is in ``test`` when ``sha256("medcorpus-eval|" + key)`` falls in the
lowest 30 % (key = Indiana ``uid``, PTB-XL ``patient_id``, so no patient is in both); the rules
were written looking at ``dev`` only.

Scores: per-label TP/FP/FN, precision, recall, F1 (0 when undefined), micro average over all
scored labels, macro average over labels with gold support > 0, and the negation confusion: for
every (report, label) the structurer *mentioned*, its resolved assertion (affirmed if any
mention is present/uncertain/historical, else negated/family) against the gold presence.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from schemas.labels import CXR_LABELS, ECG_LABELS

TEST_FRACTION_PERCENT = 30
GOLD_SETS = ("indiana", "ptbxl")
SPLITS = ("test", "dev", "all")
POSITIVE = frozenset({"present", "uncertain", "historical"})
CONTEXT_SECTIONS = frozenset({"indication", "history", "comparison", "technique"})

#: a child label implies its parent (applied to gold and predictions alike)
LABEL_PARENTS: dict[str, str] = {
    "pacemaker": "support_devices",
    "central_line": "support_devices",
    "endotracheal_tube": "support_devices",
    "anterior_mi": "myocardial_infarction",
    "inferior_mi": "myocardial_infarction",
    "lateral_mi": "myocardial_infarction",
    "septal_mi": "myocardial_infarction",
    "posterior_mi": "myocardial_infarction",
}

#: Indiana MeSH term (lower case, full "heading/qualifier/..." string) → label; first match wins
#: per rule list, every matching rule contributes (a term may give two labels).
INDIANA_MESH_MAP: list[tuple[str, str]] = [
    (r"^cardiomegaly\b", "cardiomegaly"),
    (r"^(?:cardiac shadow|heart)/(?:.*/)?enlarged", "cardiomegaly"),
    (r"^mediastinum/(?:.*/)?(?:enlarged|prominent|widened)", "enlarged_cardiomediastinum"),
    (r"^(?:opacity|density/lung|infiltrate)\b", "lung_opacity"),
    (r"^(?:pulmonary atelectasis|volume loss)\b", "atelectasis"),
    (r"^(?:pulmonary edema|pulmonary congestion|heart failure)\b", "edema"),
    (r"^consolidation\b", "consolidation"),
    (r"^pneumonia\b", "pneumonia"),
    (r"^airspace disease\b", "airspace_disease"),
    (r"^(?:pneumothorax|hydropneumothorax)\b", "pneumothorax"),
    (r"^(?:pleural effusion|hydropneumothorax)\b", "pleural_effusion"),
    (r"^(?:thickening/pleura|cicatrix/pleura|pleura/|costophrenic angle/(?:.*/)?blunted)", "pleural_other"),
    (r"^fractures, bone\b", "fracture"),
    (r"^(?:catheters, indwelling|implanted medical device|medical device|tube, inserted|stents)\b", "support_devices"),
    (r"^(?:surgical instruments|sutures)\b", "surgical_clips"),
    (r"^nodule\b", "nodule"),
    (r"^mass\b", "mass"),
    (r"^(?:granuloma|calcified granuloma|granulomatous disease)\b", "granuloma"),
    (r"^calcinosis\b", "calcification"),
    (r"^(?:emphysema|pulmonary emphysema|bullous emphysema)\b", "emphysema"),
    (r"^pulmonary disease, chronic obstructive\b", "copd"),
    (r"^hernia, (?:hiatal|diaphragmatic)\b", "hernia"),
    (r"^scoliosis\b", "scoliosis"),
    (r"^kyphosis\b", "kyphosis"),
    (r"^(?:(?:thoracic|lumbar|cervical) vertebrae|spine)/(?:.*/)?degenerative|^(?:osteophyte|spondylosis|arthritis)\b", "degenerative_spine"),
    (r"^(?:lung/(?:.*/)?hyperdistention|lung, hyperlucent|diaphragm/(?:.*/)?flattened)", "hyperinflation"),
    (r"^lung/(?:.*/)?hypoinflation", "low_lung_volumes"),
    (r"^(?:diaphragm/(?:.*/)?elevated|diaphragmatic eventration)", "elevated_diaphragm"),
    (r"^cicatrix(?!/pleura)\b", "scarring"),
    (r"^(?:lung diseases, interstitial|pulmonary fibrosis|fibrosis|markings/(?:.*/)?interstitial)", "interstitial_disease"),
    (r"^(?:aorta|aorta, thoracic)/(?:.*/)?tortuous", "tortuous_aorta"),
    (r"^atherosclerosis\b", "aortic_atherosclerosis"),
    (r"^(?:bone diseases, metabolic|osteoporosis)\b", "osteopenia"),
    (r"^foreign bodies\b", "foreign_body"),
]  # fmt: skip

#: PTB-XL SCP code → ECG label (codes not listed are not scored)
PTBXL_SCP_MAP: dict[str, str] = {
    "NORM": "normal_ecg",
    "SR": "sinus_rhythm",
    "STACH": "sinus_tachycardia",
    "SBRAD": "sinus_bradycardia",
    "SARRH": "sinus_arrhythmia",
    "AFIB": "atrial_fibrillation",
    "AFLT": "atrial_flutter",
    "SVTAC": "supraventricular_tachycardia",
    "PSVT": "supraventricular_tachycardia",
    "PACE": "pacemaker_rhythm",
    "PAC": "premature_atrial_complex",
    "PVC": "premature_ventricular_complex",
    "1AVB": "first_degree_av_block",
    "LPR": "first_degree_av_block",
    "2AVB": "second_degree_av_block",
    "3AVB": "third_degree_av_block",
    "CRBBB": "complete_right_bundle_branch_block",
    "IRBBB": "incomplete_right_bundle_branch_block",
    "CLBBB": "complete_left_bundle_branch_block",
    "ILBBB": "incomplete_left_bundle_branch_block",
    "LAFB": "left_anterior_fascicular_block",
    "LPFB": "left_posterior_fascicular_block",
    "WPW": "wpw",
    "IVCD": "ivcd",
    "LVH": "left_ventricular_hypertrophy",
    "VCLVH": "left_ventricular_hypertrophy",
    "RVH": "right_ventricular_hypertrophy",
    "LAO/LAE": "left_atrial_enlargement",
    "RAO/RAE": "right_atrial_enlargement",
    # myocardial infarction by PTB-XL diagnostic subclass (AMI, IMI, LMI, PMI)
    "AMI": "anterior_mi",
    "ASMI": "anterior_mi",
    "ALMI": "anterior_mi",
    "INJAS": "anterior_mi",
    "INJAL": "anterior_mi",
    "INJLA": "anterior_mi",
    "IMI": "inferior_mi",
    "ILMI": "inferior_mi",
    "IPMI": "inferior_mi",
    "IPLMI": "inferior_mi",
    "INJIN": "inferior_mi",
    "INJIL": "inferior_mi",
    "LMI": "lateral_mi",
    "PMI": "posterior_mi",
    # ischaemic ST-T changes
    "ISC_": "ischemia",
    "ISCAL": "ischemia",
    "ISCIN": "ischemia",
    "ISCIL": "ischemia",
    "ISCAS": "ischemia",
    "ISCLA": "ischemia",
    "ISCAN": "ischemia",
    # non-ischaemic ST-T statements
    "NST_": "st_t_change",
    "NDT": "st_t_change",
    "STD_": "st_t_change",
    "STE_": "st_t_change",
    "NT_": "st_t_change",
    "TAB_": "st_t_change",
    "INVT": "st_t_change",
    "LOWT": "st_t_change",
    "LNGQT": "long_qt",
    "LVOLT": "low_voltage",
    "ABQRS": "abnormal_qrs",
    "QWAVE": "q_waves",
    "DIG": "digitalis_effect",
}
#: PTB-XL ``heart_axis`` → label (MID and empty: normal axis / not stated)
PTBXL_AXIS_MAP: dict[str, str] = {
    "LAD": "left_axis_deviation",
    "ALAD": "left_axis_deviation",
    "AXL": "left_axis_deviation",
    "RAD": "right_axis_deviation",
    "ARAD": "right_axis_deviation",
    "AXR": "right_axis_deviation",
}

_INDIANA_RULES = [(re.compile(rx), label) for rx, label in INDIANA_MESH_MAP]


def expand(labels: Iterable[str]) -> frozenset[str]:
    """Labels plus the parents they imply."""
    out = set(labels)
    for lab in list(out):
        parent = LABEL_PARENTS.get(lab)
        if parent:
            out.add(parent)
    return frozenset(out)


def is_test(key: str) -> bool:
    """Deterministic held-out test membership of a report key (uid / patient id)."""
    digest = hashlib.sha256(f"medcorpus-eval|{key}".encode()).hexdigest()
    return int(digest[:8], 16) % 100 < TEST_FRACTION_PERCENT


def in_split(key: str, split: str) -> bool:
    if split == "all":
        return True
    return is_test(key) == (split == "test")


# ---------------------------------------------------------------------------------------------
# gold files


@dataclass(frozen=True)
class GoldReport:
    """One report with its gold labels. ``row`` holds the raw CSV row (in memory only)."""

    key: str
    labels: frozenset[str]
    row: dict = field(repr=False)


@dataclass(frozen=True)
class GoldSet:
    """A gold file: how to read its text, and which labels it can score."""

    name: str
    path: Path
    text_columns: tuple[str, ...]
    patient_column: str
    study_column: str
    timestamp_column: str
    report_type: str
    labels: tuple[str, ...]
    reports: tuple[GoldReport, ...]
    excluded: int  # rows without gold labels (e.g. Indiana "No Indexing")
    scope: str  # "non_context_sections" or "all_sections"
    normal_label: str  # label scored from the structured report's ``normal`` flag


def indiana_labels(mesh: str, problems: str) -> frozenset[str] | None:
    """Gold labels of one Indiana row (``None``: not indexed)."""
    terms = [t.strip().lower() for t in (mesh or "").split(";") if t.strip()]
    if any(t.startswith("no indexing") for t in terms):
        return None
    labels = set()
    if (problems or "").strip().lower() == "normal":
        labels.add("normal")
    for term in terms:
        for rx, label in _INDIANA_RULES:
            if rx.search(term):
                labels.add(label)
    return expand(labels)


def ptbxl_labels(scp_codes: str, heart_axis: str) -> frozenset[str]:
    """Gold labels of one PTB-XL row (every listed SCP code, any likelihood, plus the axis)."""
    try:
        codes = ast.literal_eval(scp_codes or "{}")
    except (ValueError, SyntaxError):
        codes = {}
    labels = {PTBXL_SCP_MAP[c] for c in codes if c in PTBXL_SCP_MAP}
    axis = PTBXL_AXIS_MAP.get((heart_axis or "").strip())
    if axis:
        labels.add(axis)
    return expand(labels)


def _read_csv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def load_gold(name: str, data_dir: Path, split: str = "test") -> GoldSet:
    """Read a gold file in place and keep the reports of ``split``."""
    if name not in GOLD_SETS:
        raise ValueError(f"unknown gold set {name!r} (choose from {', '.join(GOLD_SETS)})")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (choose from {', '.join(SPLITS)})")
    data_dir = Path(data_dir)
    reports, excluded = [], 0
    if name == "indiana":
        path = data_dir / "indiana_cxr" / "indiana_reports_partA.csv"
        for row in _read_csv(path):
            key = row["uid"].strip()
            if not in_split(key, split):
                continue
            labels = indiana_labels(row.get("MeSH", ""), row.get("Problems", ""))
            if labels is None:
                excluded += 1
                continue
            reports.append(GoldReport(key, labels, row))
        scorable = {lab for _, lab in INDIANA_MESH_MAP} | {"normal"}
        scorable |= {LABEL_PARENTS[c] for c in scorable if c in LABEL_PARENTS}
        labels = ("normal",) + tuple(lab for lab in CXR_LABELS if lab in scorable)
        return GoldSet(
            name, path, ("indication", "comparison", "findings", "impression"), "uid", "uid", "",
            "radiology", labels, tuple(reports), excluded, "non_context_sections", "normal",
        )  # fmt: skip
    path = data_dir / "ptbxl_ecg" / "ptbxl_database_subset_partA.csv"
    statements = data_dir / "ptbxl_ecg" / "scp_statements.csv"
    known = {r[""] for r in _read_csv(statements)} if statements.exists() else set(PTBXL_SCP_MAP)
    unknown = set(PTBXL_SCP_MAP) - known
    if unknown:
        raise ValueError(f"SCP codes of the label map missing from scp_statements.csv: {sorted(unknown)}")
    for row in _read_csv(path):
        pid = str(int(float(row["patient_id"]))) if row.get("patient_id") else row["ecg_id"]
        if not in_split(pid, split):
            continue
        reports.append(
            GoldReport(row["ecg_id"], ptbxl_labels(row.get("scp_codes", ""), row.get("heart_axis", "")), row)
        )
    scorable = set(PTBXL_SCP_MAP.values()) | set(PTBXL_AXIS_MAP.values())
    scorable |= {LABEL_PARENTS[c] for c in scorable if c in LABEL_PARENTS}
    labels = tuple(lab for lab in ECG_LABELS if lab in scorable)
    return GoldSet(
        name, path, ("report",), "patient_id", "ecg_id", "recording_date", "cardiology", labels,
        tuple(reports), excluded, "all_sections", "normal_ecg",
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# predictions


def predicted_labels(
    structured: dict, scope: str, normal_label: str = "normal"
) -> tuple[frozenset[str], dict[str, str]]:
    """Positive labels of a structured report and the resolved assertion of every mentioned label.

    ``scope``: ``non_context_sections`` ignores findings in indication/history/comparison/
    technique; ``all_sections`` keeps all. The ``normal`` flag becomes the label ``normal_label``
    (``normal`` for Indiana, ``normal_ecg`` for PTB-XL: there the flag, not the stated phrase).
    """
    mentioned: dict[str, set[str]] = {}
    for f in structured.get("findings", []):
        if scope == "non_context_sections" and f.get("section") in CONTEXT_SECTIONS:
            continue
        if f["label"] in ("no_finding", normal_label):
            continue
        for lab in expand([f["label"]]):
            mentioned.setdefault(lab, set()).add(f["assertion"])
    resolved = {}
    for lab, asserts in mentioned.items():
        pos = [a for a in ("present", "uncertain", "historical") if a in asserts]
        resolved[lab] = pos[0] if pos else ("negated" if "negated" in asserts else "family")
    positive = {lab for lab, a in resolved.items() if a in POSITIVE}
    if structured.get("normal"):
        positive.add(normal_label)
    return frozenset(positive), resolved


StructureFn = Callable[[list[tuple[str, str, str]]], list[dict]]


def deidentified_reports(gold: GoldSet, secret: str = "medcorpus-eval") -> list[tuple[GoldReport, object]]:
    """Run every gold report through the pipeline's report path (``build_report_record``)."""
    from schemas.records import InputItem, InputKind
    from workers.config import ColumnMapping, ReportConfig
    from workers.context import WorkerContext
    from workers.deid.pseudonym import Pseudonymizer
    from workers.report.ingest import ReportFields, build_report_record, compose_report_text

    mapping = ColumnMapping(text=gold.text_columns, report_type=gold.report_type)
    ctx = WorkerContext(pseudo=Pseudonymizer(secret), report=ReportConfig(columns=mapping))
    item = InputItem(f"eval-{gold.name}", str(gold.path), InputKind.REPORT_TABLE, gold.name, "eval", 0)
    out = []
    for rep in gold.reports:
        fields = ReportFields(
            text=compose_report_text(rep.row, gold.text_columns),
            patient_raw=rep.row.get(gold.patient_column, ""),
            study_raw=rep.row.get(gold.study_column, ""),
            timestamp_raw=rep.row.get(gold.timestamp_column, "") if gold.timestamp_column else "",
            report_type=gold.report_type,
        )
        out.append((rep, build_report_record(item, ctx, f"{item.source_id}-{rep.key}", fields, {})))
    return out


# ---------------------------------------------------------------------------------------------
# scoring


@dataclass
class LabelScore:
    label: str
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def support(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class EvalResult:
    gold: str
    split: str
    structurer: str
    n_reports: int
    n_excluded: int
    n_quarantined: int
    per_label: list[LabelScore]
    micro: LabelScore
    macro_precision: float
    macro_recall: float
    macro_f1: float
    #: resolved assertion ("present", "uncertain", "historical", "negated", "family",
    #: "not_mentioned") → {"gold_present": n, "gold_absent": n}
    negation_confusion: dict[str, dict[str, int]]
    #: label → {"fp": [(phrase, n), ...], "fn": [(phrase, n), ...]} (only with ``errors=True``)
    errors: dict[str, dict[str, list[tuple[str, int]]]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "gold": self.gold,
            "split": self.split,
            "structurer": self.structurer,
            "n_reports": self.n_reports,
            "n_excluded": self.n_excluded,
            "n_quarantined": self.n_quarantined,
            "per_label": [
                {
                    "label": s.label,
                    "support": s.support,
                    "tp": s.tp,
                    "fp": s.fp,
                    "fn": s.fn,
                    "precision": s.precision,
                    "recall": s.recall,
                    "f1": s.f1,
                }
                for s in self.per_label
            ],  # fmt: skip
            "micro": {"precision": self.micro.precision, "recall": self.micro.recall, "f1": self.micro.f1},
            "macro": {"precision": self.macro_precision, "recall": self.macro_recall, "f1": self.macro_f1},
            "negation_confusion": self.negation_confusion,
            **({"errors": self.errors} if self.errors else {}),
        }


_ASSERTION_ROWS = ("present", "uncertain", "historical", "negated", "family", "not_mentioned")


def score(
    gold: list[frozenset[str]],
    predicted: list[frozenset[str]],
    resolved: list[dict[str, str]],
    labels: tuple[str, ...],
) -> tuple[list[LabelScore], LabelScore, tuple[float, float, float], dict[str, dict[str, int]]]:
    """Per-label scores, micro score, macro (P, R, F1) over labels with support, negation confusion."""
    per = {lab: LabelScore(lab) for lab in labels}
    confusion = {row: {"gold_present": 0, "gold_absent": 0} for row in _ASSERTION_ROWS}
    for g, p, res in zip(gold, predicted, resolved, strict=True):
        for lab in labels:
            s = per[lab]
            if lab in g and lab in p:
                s.tp += 1
            elif lab in p:
                s.fp += 1
            elif lab in g:
                s.fn += 1
            if lab in ("normal", "normal_ecg"):
                continue
            row = res.get(lab, "not_mentioned")
            confusion[row]["gold_present" if lab in g else "gold_absent"] += 1
    scores = [per[lab] for lab in labels]
    micro = LabelScore(
        "micro", sum(s.tp for s in scores), sum(s.fp for s in scores), sum(s.fn for s in scores)
    )
    supported = [s for s in scores if s.support > 0]
    n = len(supported) or 1
    macro = (
        sum(s.precision for s in supported) / n,
        sum(s.recall for s in supported) / n,
        sum(s.f1 for s in supported) / n,
    )
    return scores, micro, macro, confusion


_DIGITS = re.compile(r"\d+(?:[.,]\d+)?")
_BLANKS = re.compile(r"\s+")


def _phrase(text: str, limit: int = 160) -> str:
    """A phrase as grouped by the error analysis: lower case, numbers as ``#``, blanks collapsed."""
    return _BLANKS.sub(" ", _DIGITS.sub("#", text.lower())).strip()[:limit]


def _sentence(text: str, evidence: str) -> str:
    """The sentence (or line) of ``text`` holding ``evidence`` (empty when not found)."""
    i = text.lower().find(evidence.lower())
    if i < 0 or not evidence:
        return ""
    start = max(text.rfind(".", 0, i), text.rfind("\n", 0, i)) + 1
    ends = [j for j in (text.find(".", i + len(evidence)), text.find("\n", i + len(evidence))) if j >= 0]
    return text[start : min(ends) if ends else len(text)]


def error_analysis(
    texts: list[str],
    structured: list[dict],
    gold: list[frozenset[str]],
    predicted: list[frozenset[str]],
    labels: tuple[str, ...],
    normal_label: str,
    top: int = 8,
) -> dict[str, dict[str, list[tuple[str, int]]]]:
    """False positives and negatives per label, grouped by phrase, most frequent first.

    A false positive is grouped by the evidence of the structurer's positive findings of that
    label (or of a child label; ``<normal flag>`` for the normal label, ``<no evidence>`` when
    none), with the sentence of its first occurrence as an example; a false negative by the
    report text itself (the gold has no span).
    """
    from collections import Counter

    out: dict[str, dict[str, Counter]] = {lab: {"fp": Counter(), "fn": Counter()} for lab in labels}
    example: dict[tuple[str, str], str] = {}
    for text, st, g, p in zip(texts, structured, gold, predicted, strict=True):
        for lab in labels:
            if lab in p and lab not in g:
                if lab == normal_label:
                    evidences = ["<normal flag>"]
                else:
                    evidences = sorted({f.get("evidence") or "<no evidence>" for f in st.get("findings", [])
                                        if f.get("assertion") in POSITIVE and lab in expand([f["label"]])})  # fmt: skip
                for ev in evidences or ["<no evidence>"]:
                    key = _phrase(ev)
                    out[lab]["fp"][key] += 1
                    example.setdefault((lab, key), _phrase(_sentence(text, ev), 200))
            elif lab in g and lab not in p:
                out[lab]["fn"][_phrase(text, 240)] += 1
    result: dict[str, dict[str, list[tuple[str, int]]]] = {}
    for lab, d in out.items():
        if not (d["fp"] or d["fn"]):
            continue
        fps = [(f"{k} — e.g. “{example[(lab, k)]}”" if example.get((lab, k)) else k, n)
               for k, n in d["fp"].most_common(top)]  # fmt: skip
        result[lab] = {"fp": fps, "fn": d["fn"].most_common(top)}
    return result


def format_errors(res: EvalResult) -> str:
    """The error analysis of a result as Markdown lists (labels by number of errors)."""
    lines = [f"### errors · {res.gold} · split {res.split} · structurer {res.structurer}", ""]
    by = {s.label: s for s in res.per_label}
    for lab in sorted(res.errors, key=lambda lab: -(by[lab].fp + by[lab].fn)):
        s = by[lab]
        lines.append(f"**{lab}** (FP {s.fp}, FN {s.fn})")
        for kind in ("fp", "fn"):
            for phrase, n in res.errors[lab][kind]:
                lines.append(f"- {kind.upper()} ×{n}: {phrase}")
        lines.append("")
    return "\n".join(lines)


def llm_structure_fn(**config) -> StructureFn:
    """A structure function backed by the LLM path (``workers.llm.structurer``)."""
    from workers.llm.config import LlmConfig
    from workers.llm.structurer import structure_reports

    cfg = LlmConfig(**config)

    def run(reports: list[tuple[str, str, str]]) -> list[dict]:
        return [r["report"] for r in structure_reports(reports, cfg)]

    return run


def evaluate(
    gold_name: str,
    data_dir: Path,
    split: str = "test",
    structurer: str = "rules",
    structure_fn: StructureFn | None = None,
    errors: bool = False,
    top_errors: int = 8,
) -> EvalResult:
    """Score the structurer on a gold set (see the module docstring); ``errors`` also groups
    the false positives/negatives of every label by phrase (:func:`error_analysis`)."""
    from schemas.records import ReportRecord

    gold = load_gold(gold_name, data_dir, split)
    processed = deidentified_reports(gold)
    kept = [(rep, rec) for rep, rec in processed if isinstance(rec, ReportRecord)]
    if structurer == "rules":
        structured = [json.loads(rec.structured_json) for _, rec in kept]
    elif structurer == "rules-only":
        from workers.report.rules import structure_many

        structured = structure_many(
            [rec.text for _, rec in kept], [rec.report_type for _, rec in kept],
            [rec.language for _, rec in kept], learned=False,
        )  # fmt: skip
    else:
        fn = structure_fn or llm_structure_fn()
        structured = fn([(rec.text, rec.report_type, rec.language) for _, rec in kept])
    preds = [predicted_labels(s, gold.scope, gold.normal_label) for s in structured]
    per, micro, macro, confusion = score(
        [rep.labels for rep, _ in kept], [p for p, _ in preds], [r for _, r in preds], gold.labels
    )
    return EvalResult(
        gold=gold_name,
        split=split,
        structurer=structurer,
        n_reports=len(kept),
        n_excluded=gold.excluded,
        n_quarantined=len(processed) - len(kept),
        per_label=per,
        micro=micro,
        macro_precision=macro[0],
        macro_recall=macro[1],
        macro_f1=macro[2],
        negation_confusion=confusion,
        errors=error_analysis(
            [rec.text for _, rec in kept], structured, [rep.labels for rep, _ in kept],
            [p for p, _ in preds], gold.labels, gold.normal_label, top_errors,
        ) if errors else {},
    )  # fmt: skip


#: where ``eval-labels --reliability`` writes the per-label table the data card shows (it ships
#: with the label model, so a build's card shows the figures of the labeller that built it)
RELIABILITY_FILE = "reliability.json"
#: trust levels of the data card's reliability table: (min support, min F1, level), first match
TRUST_LEVELS: tuple[tuple[int, float, str], ...] = ((20, 0.85, "reliable"), (20, 0.7, "use with care"))


def trust_level(support: int, f1: float) -> str:
    """``reliable`` / ``use with care`` / ``unreliable`` / ``too few examples`` (support < 20)."""
    for min_support, min_f1, level in TRUST_LEVELS:
        if support >= min_support and f1 >= min_f1:
            return level
    return "too few examples" if support < TRUST_LEVELS[-1][0] else "unreliable"


def reliability(results: list[EvalResult], generated: str = "") -> dict:
    """The per-label reliability summary of evaluation results (JSON-ready, small; scores to 3
    decimals, as the data card shows them)."""
    from workers.report.label_model import model_versions
    from workers.report.nlp.pipeline import RULES_VERSION

    sets = {}
    for res in results:
        sets[res.gold] = {
            "split": res.split,
            "structurer": res.structurer,
            "reports": res.n_reports,
            "micro": {"precision": round(res.micro.precision, 3), "recall": round(res.micro.recall, 3),
                      "f1": round(res.micro.f1, 3)},
            "macro": {"precision": round(res.macro_precision, 3), "recall": round(res.macro_recall, 3),
                      "f1": round(res.macro_f1, 3)},
            "labels": {
                s.label: {"support": s.support, "precision": round(s.precision, 3), "recall": round(s.recall, 3),
                          "f1": round(s.f1, 3), "trust": trust_level(s.support, s.f1)}
                for s in res.per_label
                if s.support or s.fp
            },
        }  # fmt: skip
    return {
        "generated": generated,
        "rules_version": RULES_VERSION,
        "label_models": model_versions(),
        "sets": sets,
    }


def format_result(res: EvalResult) -> str:
    """A plain-text (Markdown) table of the scores and the negation confusion."""
    lines = [
        f"## {res.gold} · split {res.split} · structurer {res.structurer}",
        f"reports scored: {res.n_reports} (not indexed: {res.n_excluded}, quarantined: {res.n_quarantined})",
        "",
        "| label | support | TP | FP | FN | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sorted(res.per_label, key=lambda s: (-s.support, s.label)):
        lines.append(
            f"| {s.label} | {s.support} | {s.tp} | {s.fp} | {s.fn} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} |"
        )
    m = res.micro
    lines.append(
        f"| **micro** | {m.support} | {m.tp} | {m.fp} | {m.fn} | {m.precision:.3f} | {m.recall:.3f} | {m.f1:.3f} |"
    )
    lines.append(
        f"| **macro** (labels with support) | | | | | {res.macro_precision:.3f} | {res.macro_recall:.3f} | {res.macro_f1:.3f} |"
    )
    lines += [
        "",
        "Negation confusion ((report, label) pairs; rows: resolved assertion of the structurer):",
        "",
        "| assertion | gold present | gold absent |",
        "|---|---:|---:|",
    ]
    for row, cells in res.negation_confusion.items():
        lines.append(f"| {row} | {cells['gold_present']} | {cells['gold_absent']} |")
    neg = res.negation_confusion["negated"]
    affirmed = {k: sum(res.negation_confusion[a][k] for a in ("present", "uncertain", "historical"))
                for k in ("gold_present", "gold_absent")}  # fmt: skip
    mentioned_absent = neg["gold_absent"] + affirmed["gold_absent"]
    mentioned_present = neg["gold_present"] + affirmed["gold_present"]
    lines += [
        "",
        f"negation: {neg['gold_absent']}/{mentioned_absent} mentioned-but-absent findings negated "
        f"(specificity of assertion), {neg['gold_present']}/{mentioned_present} mentioned-and-present findings "
        "wrongly negated",
    ]
    return "\n".join(lines)
