"""The learned report labeller: features, the NumPy model, its combination with the rules, the
shipped models, and train/serve parity of the training script's feature matrix."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from schemas.labels import ECG_LABELS
from schemas.report_schema import REPORT_JSON_SCHEMA
from workers.report.label_model import (
    FEATURE_VERSION,
    MODEL_DIR,
    LabelModel,
    featurize,
    fold,
    load_model,
    rule_features,
)
from workers.report.rules import apply_label_model, structure_many, structure_with_rules

VALIDATOR = jsonschema.Draft202012Validator(REPORT_JSON_SCHEMA)
ROOT = Path(__file__).resolve().parents[3]


def _words(feats: dict[str, float]) -> set[str]:
    return {f[2:] for f in feats if f.startswith("w:")}


def test_featurize_folds_splits_statements_and_scopes_negation():
    assert fold("IschÄmie f#r 12 Ableitungen") == "ischaemie f#r 0 ableitungen"
    feats = featurize(
        "No pneumothorax or effusion, but mild cardiomegaly. Lungs clear.", ("pneumothorax=neg",)
    )
    words = _words(feats)
    assert {"no !pneumothorax", "!effusion but", "mild cardiomegaly", "lungs clear"} <= words
    assert "pneumothorax" not in words and "cardiomegaly" in words
    assert "cardiomegaly lungs" not in words  # n-grams stop at the statement boundary
    assert feats["r:pneumothorax=neg"] == 1.0
    # PTB-XL statements separated by wide gaps are statements too; German compounds get char 4-grams
    de = featurize("sinusrhythmus    linksanteriorer hemiblock")
    assert "sinusrhythmus linksanteriorer" not in _words(de)
    assert {"c:<lin", "c:hemi", "c:ock>"} <= set(de)
    assert featurize("ischÄmie") == featurize("ischaemie")


def test_rule_features_reflect_assertions_sections_and_normal():
    st = {
        "findings": [
            {"label": "pneumonia", "assertion": "uncertain", "section": "impression"},
            {"label": "pneumonia", "assertion": "present", "section": "indication"},
            {"label": "pneumothorax", "assertion": "negated", "section": "findings"},
            {"label": "fracture", "assertion": "historical", "section": "findings"},
        ],
        "normal": True,
    }
    assert rule_features(st, frozenset({"indication"})) == (
        "fracture=pos", "normal", "pneumonia=ctx", "pneumonia=unc", "pneumothorax=neg",
    )  # fmt: skip


def _tiny_model(**overrides) -> LabelModel:
    data = {
        "version": "t-1",
        "domain": "cxr",
        "feature_version": FEATURE_VERSION,
        "char_min_len": 7,
        "rule_weight": 2.0,
        "features": ["w:effusion", "w:pleural", "w:pleural effusion", "r:pleural_effusion=pos"],
        "idf": [1.5, 1.2, 2.0, 1.0],
        "labels": {
            "pleural_effusion": {"mode": "stack", "threshold": 0.5, "bias": -3.0, "index": [0, 2, 3],
                                 "weight": [2.0, 1.0, 1.5]},
            "pneumonia": {"mode": "rules", "threshold": 0.5, "bias": 0.0, "index": [], "weight": []},
        },
    }  # fmt: skip
    data.update(overrides)
    return LabelModel(data)


def test_model_probability_is_the_logistic_of_tfidf_plus_rule_block():
    m = _tiny_model()
    feats = m.features("Pleural effusion. Effusion", ("pleural_effusion=pos",))
    assert feats["w:effusion"] == 2.0
    # text block: sublinear tf × idf, L2-normalised; rule block: rule_weight
    tf = {"w:effusion": (1 + math.log(2)) * 1.5, "w:pleural": 1.2, "w:pleural effusion": 2.0}
    norm = math.sqrt(sum(v * v for v in tf.values()))
    z = -3.0 + 2.0 * tf["w:effusion"] / norm + 1.0 * tf["w:pleural effusion"] / norm + 1.5 * 2.0
    p = m.predict_proba(feats)
    assert p["pleural_effusion"] == pytest.approx(1 / (1 + math.exp(-z)))
    assert m.decide(feats) == {"pleural_effusion": (True, pytest.approx(p["pleural_effusion"]))}
    # evidence: the word n-gram with the largest weight × idf ("effusion": 2.0 × 1.5 > 1.0 × 2.0)
    assert m.evidence(feats, "pleural_effusion") == "effusion"
    # without the rule feature the text alone stays below the threshold
    assert m.decide(m.features("Pleural effusion.", ()))["pleural_effusion"][0] is False
    with pytest.raises(ValueError, match="feature version"):
        _tiny_model(feature_version="f0")


class _Fixed:
    """A stand-in model whose decisions are fixed (for the combination rules)."""

    def __init__(self, decisions: dict[str, bool]) -> None:
        self.decisions = decisions

    def features(self, text, rules):
        return {"w:" + w: 1.0 for w in text.lower().split()}

    def decide(self, feats):
        return {lab: (pos, 0.9 if pos else 0.1) for lab, pos in self.decisions.items()}

    def evidence(self, feats, label):
        return "learned phrase"


def test_combination_adds_removes_and_leaves_negations_to_the_rules():
    text = "FINDINGS: No pneumothorax. Possible pneumonia. Mild cardiomegaly."
    rules = structure_with_rules(text, "radiology", "en", learned=False)
    got = {f["label"]: f["assertion"] for f in rules["findings"]}
    assert got == {"pneumothorax": "negated", "pneumonia": "uncertain", "cardiomegaly": "present"}
    decisions = {
        "pneumothorax": True,
        "pneumonia": False,
        "edema": True,
        "cardiomegaly": True,
        "normal": False,
    }
    out = apply_label_model(json.loads(json.dumps(rules)), text, _Fixed(decisions))
    VALIDATOR.validate(out)
    by = {}
    for f in out["findings"]:
        by.setdefault(f["label"], set()).add(f["assertion"])
    assert by["pneumothorax"] == {"negated"}  # the model may not overrule a negation
    assert "pneumonia" not in by  # a negative decision removes the rules' positive mention
    assert by["edema"] == {"present"} and by["cardiomegaly"] == {"present"}
    assert [f["evidence"] for f in out["findings"] if f["label"] == "edema"] == ["learned phrase"]
    assert out["normal"] is False and "no_finding" not in by
    # the normal head sets the flag (and no_finding for radiology)
    normal = apply_label_model(json.loads(json.dumps(rules)), text, _Fixed({"normal": True}))
    assert normal["normal"] is True and any(f["label"] == "no_finding" for f in normal["findings"])


@pytest.mark.parametrize(("domain", "labels"), [("ecg", ECG_LABELS)])  # cxr: not shipped (licence, README)
def test_shipped_models_load_and_were_chosen_on_dev(domain, labels):
    m = load_model(domain)
    assert m is not None and m.domain == domain and m.version.startswith(domain)
    assert set(m.heads) <= set(labels)
    stack = {lab for lab, h in m.heads.items() if h.mode == "stack"}
    assert stack and all(len(m.heads[lab].index) > 0 for lab in stack)
    cv = json.loads((MODEL_DIR / "cv_report.json").read_text())
    gold = {"ecg": "ptbxl", "cxr": "indiana"}[domain]
    assert cv[gold]["reports"] > 1000
    for lab in stack:  # a label is learned only where cross-validation on dev beat the rules
        r = cv[gold]["labels"][lab]
        assert r["mode"] == "stack" and r["stack_cv"]["f1"] > r["rules"]["f1"]
        assert r["support"] >= 8


def test_learned_layer_changes_only_the_labels_it_learned(shared_data):
    with open(
        shared_data / "reports/ptbxl_ecg/ptbxl_database_subset_partA.csv", encoding="utf-8", newline=""
    ) as f:
        texts = [r["report"] for r in csv.DictReader(f)][:80]
    n = len(texts)
    rules = structure_many(texts, ["cardiology"] * n, ["de"] * n, learned=False)
    both = structure_many(texts, ["cardiology"] * n, ["de"] * n)
    stack = {lab for lab, h in load_model("ecg").heads.items() if h.mode == "stack"}
    changed = set()
    for r, b in zip(rules, both, strict=True):
        VALIDATOR.validate(b)
        pos = {f["label"] for f in r["findings"] if f["assertion"] != "negated"}
        pos_b = {f["label"] for f in b["findings"] if f["assertion"] != "negated"}
        changed |= pos ^ pos_b
        negated = {(f["label"], f["section"]) for f in r["findings"] if f["assertion"] == "negated"}
        assert negated <= {(f["label"], f["section"]) for f in b["findings"] if f["assertion"] == "negated"}
        if r["normal"] != b["normal"]:
            changed.add("normal_ecg")
    assert changed and changed <= stack, changed - stack


def _train_module():
    spec = importlib.util.spec_from_file_location("train_label_model", ROOT / "scripts/train_label_model.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def test_training_matrix_equals_the_runtime_vector():
    t = _train_module()
    cfg = t.TrainConfig(min_df=1)
    texts = ["Sinusrhythmus linkstyp.", "Vorhofflimmern. Linkstyp linkstyp", "sinus rhythm. normal ecg."]
    rules = [("sinus_rhythm=pos",), ("atrial_fibrillation=pos",), ("normal",)]
    feats = [featurize(x, r, cfg.char_min_len) for x, r in zip(texts, rules, strict=True)]
    names, idf = t._vocab(feats, cfg)
    x = t._matrix(feats, {f: i for i, f in enumerate(names)}, idf, cfg).toarray()
    rng = np.random.default_rng(0)
    w = rng.normal(size=len(names))
    m = LabelModel({
        "version": "t", "domain": "ecg", "feature_version": FEATURE_VERSION, "char_min_len": cfg.char_min_len,
        "rule_weight": cfg.rule_weight, "features": names, "idf": idf.tolist(),
        "labels": {"sinus_rhythm": {"mode": "stack", "threshold": 0.5, "bias": 0.25,
                                    "index": list(range(len(names))), "weight": w.tolist()}},
    })  # fmt: skip
    for row, fd in zip(x, feats, strict=True):
        p = m.predict_proba(fd)["sinus_rhythm"]
        assert p == pytest.approx(1 / (1 + math.exp(-(row @ w + 0.25))), rel=1e-9)
