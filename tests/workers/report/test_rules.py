"""Rule path: medspaCy sections, findings and ConText assertions in English, German, Swedish."""

from __future__ import annotations

import csv

import jsonschema
import pytest

from schemas.labels import ALL_LABELS, CXR_LABELS, ECG_LABELS
from schemas.report_schema import REPORT_JSON_SCHEMA, SECTION_NAMES
from workers.report.nlp.pipeline import get_nlp
from workers.report.nlp.vocab import CXR_TARGETS, ECG_TARGETS
from workers.report.rules import normalise_report_type, structure_many, structure_with_rules

VALIDATOR = jsonschema.Draft202012Validator(REPORT_JSON_SCHEMA)


def _assertions(text: str, report_type: str = "radiology", language: str = "en") -> dict[str, set[str]]:
    """Findings of the rules alone (the learned layer is tested in ``test_label_model.py``)."""
    out = structure_with_rules(text, report_type, language, learned=False)
    VALIDATOR.validate(out)
    got: dict[str, set[str]] = {}
    for f in out["findings"]:
        got.setdefault(f["label"], set()).add(f["assertion"])
    return got


def test_vocabularies_cover_the_label_sets():
    assert set(CXR_TARGETS) == set(CXR_LABELS) - {"no_finding"}
    assert set(ECG_TARGETS) == set(ECG_LABELS)
    chexpert = {"enlarged_cardiomediastinum", "cardiomegaly", "lung_opacity", "lung_lesion", "edema",
                "consolidation", "pneumonia", "atelectasis", "pneumothorax", "pleural_effusion", "pleural_other",
                "fracture", "support_devices", "no_finding"}  # fmt: skip
    assert chexpert | {"nodule", "mass", "granuloma", "emphysema", "hernia", "scoliosis"} <= set(CXR_LABELS)
    assert len(set(ALL_LABELS)) == len(ALL_LABELS)


def test_pipeline_is_built_once_per_process():
    assert get_nlp() is get_nlp()
    names = get_nlp().pipe_names
    assert names[-3:] == ["medspacy_target_matcher", "medspacy_context", "medspacy_sectionizer"]


@pytest.mark.parametrize(
    ("text", "label", "assertion"),
    [
        ("The heart is mildly enlarged.", "cardiomegaly", "present"),
        ("Heart size is not enlarged.", "cardiomegaly", "negated"),
        ("No pleural effusion or pneumothorax.", "pleural_effusion", "negated"),
        ("No pleural effusion or pneumothorax.", "pneumothorax", "negated"),
        ("There is no focal consolidation, effusion, or pneumothorax.", "consolidation", "negated"),
        ("Possible left basilar atelectasis.", "atelectasis", "uncertain"),
        ("Opacity may represent pneumonia.", "pneumonia", "uncertain"),
        ("Pneumonia cannot be excluded.", "pneumonia", "uncertain"),
        ("History of prior rib fractures.", "fracture", "historical"),
        ("Calcified granuloma in the right upper lobe.", "granuloma", "present"),
        ("Right IJ central venous catheter tip in the SVC.", "central_line", "present"),
        ("Dual-chamber pacemaker in place.", "pacemaker", "present"),
        ("Interval resolution of the left pleural effusion.", "pleural_effusion", "negated"),
        ("Heart size and pulmonary vascularity appear within normal limits.", "edema", None),
        # German and Swedish chest findings
        ("Kein Pleuraerguss.", "pleural_effusion", "negated"),
        ("V.a. Pneumonie rechts basal.", "pneumonia", "uncertain"),
        ("Herz nicht vergrößert.", "cardiomegaly", "negated"),
        # issue 20: resolved / removed / cleared findings are negated; vocabulary gaps
        ("The left apical pneumothorax has resolved.", "pneumothorax", "negated"),
        ("Endotracheal tube and NG tube have been removed.", "endotracheal_tube", "negated"),
        ("Removal of 2 left-sided chest tubes.", "support_devices", "negated"),
        ("There has been clearing of left base airspace opacities.", "lung_opacity", "negated"),
        ("Cholecystectomy clips are present.", "surgical_clips", None),
        ("Surgical clips in the left axilla.", "surgical_clips", "present"),
        ("Cystic fibrosis.", "interstitial_disease", None),
        ("Pulmonary fibrosis.", "interstitial_disease", "present"),
        ("Mild right hemidiaphragm elevation.", "elevated_diaphragm", "present"),
        ("Over expanded lungs.", "hyperinflation", "present"),
        ("Right costophrenic XXXX is blunted.", "pleural_other", "present"),
    ],
)
def test_chest_findings_and_assertions(text, label, assertion):
    got = _assertions(text)
    if assertion is None:
        assert label not in got
    else:
        assert assertion in got.get(label, set()), got


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sinusrhythmus lagetyp normal normales ekg", {("sinus_rhythm", "present"), ("normal_ecg", "present")}),
        ("tachykardes vorhofflimmern ueberdrehter linkstyp", {("atrial_fibrillation", "present"),
                                                             ("left_axis_deviation", "present")}),
        ("sinusrhythmus unvollstÄndiger rechtsschenkelblock", {("incomplete_right_bundle_branch_block", "present")}),
        ("sinusrhythmus linksanteriorer hemiblock", {("left_anterior_fascicular_block", "present")}),
        ("qrs(t) abnorm    inferiorer myokardschaden mÖglich", {("inferior_mi", "uncertain"),
                                                              ("abnormal_qrs", "present")}),
        ("st & t abnormal, wahrscheinlich    anterolaterale ischÄmie oder linksbelastung",
         {("ischemia", "uncertain")}),
        ("ventrikulÄre extrasystole(n) sinusrhythmus", {("premature_ventricular_complex", "present")}),
        ("sinusrhythmus verdacht auf p-sinistrocardiale", {("left_atrial_enlargement", "uncertain")}),
        ("anteroseptaler myokardschaden nicht auszuschliessen", {("anterior_mi", "uncertain")}),
        ("kein hinweis auf infarkt", {("myocardial_infarction", "negated")}),
        ("sinus rhythm. left bundle branch block. no definite pathology otherwise.",
         {("sinus_rhythm", "present"), ("complete_left_bundle_branch_block", "present"), ("normal_ecg", "present")}),
        ("atrial fibrillation with rapid ventricular response. old inferior myocardial infarction.",
         {("atrial_fibrillation", "present"), ("inferior_mi", "historical")}),
        ("fÖrmaksflimmer/-fladder vÄnster el-axel", {("atrial_fibrillation", "present"),
                                                     ("left_axis_deviation", "present")}),
        ("sinusrytm avvikande qrs(t) fÖrlopp    inferior myokardskada", {("sinus_rhythm", "present"),
                                                                      ("inferior_mi", "present")}),
        # German axis abbreviations (Linkslagetyp, Rechtslagetyp) and Q statements
        ("sinusrhythmus llt q in iii,avf", {("left_axis_deviation", "present"), ("q_waves", "present")}),
        ("rlt tachykardes vorhofflimmern", {("right_axis_deviation", "present")}),
    ],
)  # fmt: skip
def test_ecg_statements_in_german_english_swedish(text, expected):
    got = {(label, a) for label, asserts in _assertions(text, "cardiology", "de").items() for a in asserts}
    assert expected <= got, got


def test_incomplete_block_is_not_also_a_complete_block():
    got = _assertions("sinusrhythmus unvollstÄndiger rechtsschenkelblock", "cardiology", "de")
    assert "complete_right_bundle_branch_block" not in got


def test_sections_are_mapped_to_the_fixed_set():
    text = (
        "INDICATION:\nCough, rule out pneumonia.\n\nCOMPARISON:\nNone.\n\nTECHNIQUE:\nPA and lateral.\n\n"
        "FINDINGS:\nThe lungs are clear. No pleural effusion.\n\nIMPRESSION:\nNo acute disease.\n\n"
        "RECOMMENDATION:\nNone.\n\nCLINICAL DATA:\nsomething else"
    )
    out = structure_with_rules(text, "radiology", "en")
    VALIDATOR.validate(out)
    assert set(out["sections"]) == {"indication", "comparison", "technique", "findings", "impression",
                                    "recommendation", "other"}  # fmt: skip
    assert out["sections"]["findings"] == "The lungs are clear. No pleural effusion."
    assert set(out["sections"]) <= set(SECTION_NAMES)
    # the indication's "rule out pneumonia" is not a finding of the study
    assert all(f["section"] == "indication" for f in out["findings"] if f["label"] == "pneumonia")
    assert out["normal"] is True
    assert {"label": "no_finding", "assertion": "present", "section": "impression"} in out["findings"]


def test_german_headings():
    out = structure_with_rules(
        "Fragestellung: Pneumonie?\nBefund: Kein Erguss.\nBeurteilung: Unauffällig.", "rad", "de"
    )
    assert set(out["sections"]) == {"indication", "findings", "impression"}
    assert out["report_type"] == "radiology"


def test_reports_without_headings_are_findings():
    out = structure_with_rules("sinusrhythmus normales ekg", "ecg", "de")
    assert out["sections"] == {"findings": "sinusrhythmus normales ekg"}
    assert out["report_type"] == "cardiology" and out["normal"] is True


def test_normal_flags():
    def normal(text: str, rtype: str) -> bool:
        return structure_with_rules(text, rtype, "en", learned=False)["normal"]

    assert normal("Cardiomegaly.", "radiology") is False
    assert normal("No cardiomegaly. Lungs are clear.", "radiology") is True
    # an ECG with sinus rhythm and nothing abnormal is normal even without the phrase
    assert normal("sinus rhythm.", "cardiology") is True
    assert normal("sinus rhythm. left bundle branch block.", "cardiology") is False


def test_report_type_synonyms():
    assert [normalise_report_type(t) for t in ("ECG", "ekg", "CXR", "CT", "radiology", "path", "")] == [
        "cardiology", "cardiology", "radiology", "radiology", "radiology", "other", "other",
    ]  # fmt: skip


def test_batch_equals_single_and_is_deterministic(shared_data):
    with open(
        shared_data / "reports/ptbxl_ecg/ptbxl_database_subset_partA.csv", encoding="utf-8", newline=""
    ) as f:
        texts = [r["report"] for r in csv.DictReader(f)][:60]
    single = [structure_with_rules(t, "cardiology", "de") for t in texts]
    batch = structure_many(texts, ["cardiology"] * len(texts), ["de"] * len(texts))
    assert batch == single
    assert structure_many(texts, ["cardiology"] * len(texts), ["de"] * len(texts)) == batch
    for out in batch:
        VALIDATOR.validate(out)


def test_evidence_is_bounded_and_findings_are_unique():
    text = "Cardiomegaly. " * 50 + "Pleural effusion " + "and pleural effusion " * 30
    out = structure_with_rules(text, "radiology", "en")
    keys = [(f["label"], f["assertion"], f["section"]) for f in out["findings"]]
    assert len(keys) == len(set(keys))
    assert all(len(f.get("evidence", "")) <= 200 for f in out["findings"])


@pytest.mark.parametrize(
    "text, label",
    [
        ("FINDINGS: No cardiomegaly.", "cardiomegaly"),
        ("Impression: No pneumothorax.", "pneumothorax"),
        ("Pneumothorax: no.", "pneumothorax"),
        ("Cardiomegaly: none", "cardiomegaly"),
    ],
)
def test_negation_right_after_a_heading_colon(text, label):
    """medspaCy's default ": no" rule (backward) once swallowed a forward "No" after a heading."""
    found = {f["label"]: f["assertion"] for f in structure_with_rules(text, "radiology", "en")["findings"]}
    assert found[label] == "negated"
