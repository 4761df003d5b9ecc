"""Label-derived captions (``pipelines.captions``): templates, config checks, and a CheXpert
lookalike build (as in ``test_chexpert_layout``) whose image samples get a caption per label set,
checked row by row against the label table, through the data card and the trainer's decoder."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
import webdataset as wds
import yaml

from pipelines.build import run_build
from pipelines.captions import (
    METHOD,
    label_states,
    make_caption,
    sample_captions,
    structured_report,
    template_index,
)
from pipelines.config import CaptionConfig, ConfigError, TableConfig, config_from_dict
from pipelines.datacard import write_datacard
from pipelines.validate import validate_build
from schemas.report_schema import REPORT_JSON_SCHEMA
from tests.fixtures.mimic_lookalike import base_cxr_pixels, jpeg_bytes
from trainer.config import DataConfig
from trainer.data import SampleDecoder
from workers.deid.pseudonym import DEMO_SECRET, Pseudonymizer
from workers.ids import normalise_id

LABELS = ("Cardiomegaly", "Edema", "Pneumothorax")
ONE = CaptionConfig(labels=LABELS, templates=("Findings: {findings}.",))

# --- templates ---------------------------------------------------------------------------------------


def test_positive_uncertain_negative_in_label_order() -> None:
    values = {"Pneumothorax": "0.0", "Edema": "-1.0", "Cardiomegaly": "1.0"}
    cap = make_caption(values, ONE, "k")
    assert cap is not None
    assert cap.text == "Findings: cardiomegaly, possible edema and no pneumothorax."
    assert (cap.positive, cap.uncertain, cap.negative) == (("Cardiomegaly",), ("Edema",), ("Pneumothorax",))
    # label-table style values (1, -1, 0) read the same
    assert make_caption({"Cardiomegaly": "1", "Edema": "-1", "Pneumothorax": "0"}, ONE, "k") == cap
    # two positives, nothing else: "a and b"
    two = make_caption({"Edema": "1", "Cardiomegaly": "1.0"}, ONE, "k")
    assert two is not None and two.text == "Findings: cardiomegaly and edema."


def test_mention_flags_names_and_phrases() -> None:
    values = {"Cardiomegaly": "1", "Edema": "-1", "Pneumothorax": "0"}
    quiet = CaptionConfig(
        labels=LABELS, templates=("{findings}.",), mention_uncertain=False, mention_negative=False
    )
    cap = make_caption(values, quiet, "k")
    assert cap is not None and cap.text == "Cardiomegaly." and cap.uncertain == cap.negative == ()
    named = CaptionConfig(
        labels=LABELS,
        templates=("{findings}.",),
        names={"Cardiomegaly": "an enlarged heart"},
        uncertain_phrase="{label} cannot be excluded",
        negative_phrase="without {label}",
    )
    cap = make_caption(values, named, "k")
    assert cap is not None
    assert cap.text == "An enlarged heart, edema cannot be excluded and without pneumothorax."


def test_no_finding_and_nothing_mentioned() -> None:
    only_neg = make_caption({"Pneumothorax": "0.0", "Edema": "0"}, ONE, "k")
    assert only_neg is not None and only_neg.template == -1
    assert only_neg.text == "No finding. No edema and no pneumothorax."
    nf = make_caption({"No Finding": "1.0"}, ONE, "k")
    assert nf is not None and nf.text == "No finding." and nf.template == -1
    # blank (not mentioned) or values outside the lists: no caption at all
    assert make_caption({"Cardiomegaly": "", "Edema": "nan", "No Finding": ""}, ONE, "k") is None
    assert make_caption({}, ONE, "k") is None
    # negatives not mentioned: nothing left but the no-finding label
    assert make_caption({"Edema": "0"}, CaptionConfig(labels=LABELS, mention_negative=False), "k") is None


def test_template_choice_is_a_stable_keyed_hash() -> None:
    cfg = CaptionConfig(labels=LABELS, templates=("A {findings}.", "B {findings}.", "C {findings}."))
    values = {"Cardiomegaly": "1"}
    picks = {}
    for i in range(60):
        key = f"sample{i}"
        want = int.from_bytes(hashlib.sha256(f"caption:{key}:0".encode()).digest()[:8], "big") % 3
        assert template_index(key, 0, 3) == want
        cap = make_caption(values, cfg, key)
        assert cap is not None and cap == make_caption(dict(values), cfg, key)  # same labels, same text
        assert cap.text == f"{'ABC'[want]} cardiomegaly."
        picks[key] = want
    assert set(picks.values()) == {0, 1, 2}


def test_structured_report_is_schema_valid() -> None:
    cfg = CaptionConfig(labels=(*LABELS, "Pleural Effusion", "Made Up"), templates=("{findings}.",))
    values = {
        "Cardiomegaly": "1",
        "Edema": "-1",
        "Pneumothorax": "0",
        "Pleural Effusion": "1",
        "Made Up": "1",
    }
    cap = make_caption(values, cfg, "k")
    assert cap is not None
    doc = structured_report(cap, cfg)
    jsonschema.validate(doc, REPORT_JSON_SCHEMA)
    assert [(f["label"], f["assertion"]) for f in doc["findings"]] == [
        ("cardiomegaly", "present"),
        ("pleural_effusion", "present"),  # "Made Up" is outside the vocabulary: text only
        ("edema", "uncertain"),
        ("pneumothorax", "negated"),
    ]
    assert doc["sections"] == {"findings": cap.text} and doc["normal"] is False
    nf = make_caption({"Edema": "0"}, cfg, "k")
    assert nf is not None
    doc = structured_report(nf, cfg)
    jsonschema.validate(doc, REPORT_JSON_SCHEMA)
    assert doc["normal"] is True and doc["findings"][0] == {
        "label": "no_finding",
        "assertion": "present",
        "section": "findings",
    }
    assert label_states({"No Finding": "1"}, cfg)[3] == ("No Finding",)


def test_labels_from_the_label_table() -> None:
    """MIMIC-CXR-JPG style: labels come from ``labels_path`` (values 1, 0, -1) into meta "labels"."""
    t = TableConfig(
        name="cxr", role="identity", path="m.csv", labels_path="l.csv", caption=ONE, fields=("ViewPosition",)
    )
    item = {
        "member_prefix": "image_0",
        "meta": {"identity": ["cxr"], "labels": {"Edema": "1", "Pneumothorax": "0"}},
    }
    other = {"member_prefix": "image_1", "meta": {"identity": ["other"], "labels": {"Edema": "1"}}}
    [(cap, entry)] = sample_captions({"items": [item, other]}, (t,), "key")
    assert cap.text == "Findings: edema and no pneumothorax."
    assert entry["items"] == ["image_0"] and entry["positive"] == ["Edema"] and entry["table"] == "cxr"


def _table(**caption) -> dict:
    return {
        "sources": [{"name": "s", "path": "s"}],
        "tables": [
            {
                "name": "t",
                "role": "identity",
                "source": "s",
                "path": "t.csv",
                "path_template": "{Path}",
                "patient": "{p}",
                "fields": list(LABELS),
                "caption": caption,
            }
        ],
    }


@pytest.mark.parametrize(
    ("caption", "message"),
    [
        ({"labels": ["Cardiomegaly", "Fracture"]}, "not in tables.t.fields and no labels_path: Fracture"),
        ({"labels": list(LABELS), "templates": ["Findings."]}, "must use exactly {findings}"),
        ({"labels": list(LABELS), "templates": ["{findings} {x}"]}, "must use exactly {findings}"),
        ({"labels": list(LABELS), "negative_phrase": "absent"}, "negative_phrase"),
        ({"labels": list(LABELS), "negative": ["0", "1"]}, "disjoint"),
        ({"labels": list(LABELS), "names": {"Fracture": "a fracture"}}, "names"),
        ({"labels": []}, "at least one label"),
        ({"labels": list(LABELS), "report_type": "pathology"}, "report_type"),
        ({"labels": list(LABELS), "bogus": 1}, "bogus"),
    ],
)
def test_config_errors(caption: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        config_from_dict(_table(**caption))


def test_config_defaults_and_label_table() -> None:
    data = _table()
    data["tables"][0]["fields"] = []
    with pytest.raises(ConfigError, match="Enlarged Cardiomediastinum"):  # CheXpert defaults need the columns
        config_from_dict(data)
    data["tables"][0] |= {"labels_path": "labels.csv", "labels_on": ["p"]}
    c = config_from_dict(data).tables[0].caption
    assert c is not None and "Pleural Effusion" in c.labels and c.positive == ("1.0", "1")
    data["tables"][0]["role"] = "split"
    data["tables"][0]["value"] = "{split}"
    with pytest.raises(ConfigError, match="identity tables only"):
        config_from_dict(data)


# --- a CheXpert lookalike build ----------------------------------------------------------------------

CONFIG = """
deid: {demo: true}
sources:
  - name: chexpert
    path: CheXpert-v1.0-small
    licence: Stanford-CheXpert
    exclude: ["*.csv", "README*", ".*"]
tables:
  - name: chexpert_train
    role: identity
    source: chexpert
    path: CheXpert-v1.0-small/train.csv
    path_root: "."
    path_template: "{Path}"
    path_regex: "patient(?P<patient>\\\\d+)/study(?P<study>\\\\d+)/"
    patient: "{patient}"
    study: "{patient}-{study}"
    fields: ["Frontal/Lateral", "AP/PA", "No Finding", Cardiomegaly, Edema, Pneumothorax]
    view: "AP/PA"
    caption:
      labels: [Cardiomegaly, Edema, Pneumothorax]
      templates: ["Findings: {findings}.", "Chest radiograph showing {findings}."]
linking: {unlinked: keep}
dedup: {enabled: false}
split: {train: 1.0, val: 0.0, test: 0.0}
workers: 2
strict: true
"""
TEMPLATES = ("Findings: {findings}.", "Chest radiograph showing {findings}.")
HEADER = ["Path", "Frontal/Lateral", "AP/PA", "No Finding", "Cardiomegaly", "Edema", "Pneumothorax"]
# (patient, study, view file, No Finding, Cardiomegaly, Edema, Pneumothorax); None: not in train.csv
ROWS = (
    ("00001", "1", "view1_frontal", "", "1.0", "-1.0", "0.0"),
    ("00001", "2", "view1_frontal", "1.0", "", "", ""),
    ("00001", "2", "view2_lateral", "1.0", "", "", ""),  # same labels: one caption for both views
    ("00002", "1", "view1_frontal", "", "", "", "0.0"),
    ("00003", "1", "view1_frontal", "", "", "", ""),  # nothing mentioned: no caption
    ("00004", "1", "view1_frontal", "", "1.0", "1.0", ""),
    ("00004", "1", "view2_lateral", "", "0.0", "1.0", ""),  # other labels: a second caption
    ("00005", "1", "view1_frontal", None, None, None, None),  # unlisted: quarantined no_metadata
)


def _expected_phrases(row: tuple) -> tuple[list[str], bool]:
    """The caption's findings phrases from a label row, written out by hand; True: no finding."""
    _, _, _, _, *vals = row
    pos = [n.lower() for n, v in zip(LABELS, vals, strict=True) if v == "1.0"]
    unc = [f"possible {n.lower()}" for n, v in zip(LABELS, vals, strict=True) if v == "-1.0"]
    neg = [f"no {n.lower()}" for n, v in zip(LABELS, vals, strict=True) if v == "0.0"]
    return pos + unc + neg, not (pos or unc)


def _join(p: list[str]) -> str:
    return p[0] if len(p) == 1 else ", ".join(p[:-1]) + " and " + p[-1]


def _expected_text(row: tuple, template: int) -> str | None:
    phrases, no_finding = _expected_phrases(row)
    if no_finding:
        if not phrases and row[3] != "1.0":
            return None
        rest = _join(phrases) if phrases else ""
        return "No finding." + (f" {rest[0].upper()}{rest[1:]}." if rest else "")
    text = TEMPLATES[template].format(findings=_join(phrases))
    return text[0].upper() + text[1:]


def write_lookalike(root: Path, shared_data: Path) -> Path:
    """The CheXpert lookalike (8 images, 7 listed in ``train.csv``) under ``root``."""
    img = base_cxr_pixels(shared_data, size=160)
    rows = []
    for i, (pat, study, view, *labels) in enumerate(ROWS):
        rel = f"CheXpert-v1.0-small/train/patient{pat}/study{study}/{view}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(jpeg_bytes(img, i + 1))
        if labels[0] is not None:
            frontal = "Frontal" if "frontal" in view else "Lateral"
            rows.append([rel, frontal, "AP" if frontal == "Frontal" else "", *labels])
    with open(root / "CheXpert-v1.0-small" / "train.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(rows)
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data) -> Path:
    root = write_lookalike(tmp_path_factory.mktemp("chexpert_captions"), shared_data)
    out = tmp_path_factory.mktemp("chexpert_captions_out")
    run_build(root, out, config_from_dict(yaml.safe_load(CONFIG)), quiet=True)
    return out


def _samples(built: Path) -> list[dict]:
    tars = sorted(str(p) for p in (built / "shards").rglob("*.tar"))
    return list(wds.WebDataset(tars, shardshuffle=False, empty_check=False))


def test_every_labelled_sample_has_its_caption(built: Path) -> None:
    pseudo = Pseudonymizer(DEMO_SECRET)
    samples = _samples(built)
    assert len(samples) == 5  # studies 00001/1, 00001/2, 00002/1, 00003/1, 00004/1
    by_study = {json.loads(s["meta.json"])["study"]: s for s in samples}
    n_captioned = 0
    for pat, study in (("00001", "1"), ("00001", "2"), ("00002", "1"), ("00003", "1"), ("00004", "1")):
        s = by_study[pseudo.study(normalise_id(f"{pat}-{study}"))]
        meta = json.loads(s["meta.json"])
        assert meta["modalities"] == ["image"]  # captions are no input modality
        images = [it for it in meta["items"] if it["modality"] == "image"]
        # the label row of each image item, in item order (matched on the copied Frontal/Lateral)
        rows = []
        for it in images:
            fl = it["meta"]["tables"]["chexpert_train"]["Frontal/Lateral"]
            (r,) = [r for r in ROWS if r[:2] == (pat, study) and (fl.lower() in r[2])]
            rows.append(r)
        assert len(images) == sum(r[:2] == (pat, study) for r in ROWS)
        # expected captions: one per distinct label row, in item order
        distinct: list[tuple] = []
        for r in rows:
            if _expected_text(r, 0) is not None and r[3:] not in [d[3:] for d in distinct]:
                distinct.append(r)
        generated = meta.get("generated_text", [])
        assert len(generated) == len(distinct)
        for j, (r, g) in enumerate(zip(distinct, generated, strict=True)):
            assert g["member_prefix"] == f"report_{j}" and g["method"] == METHOD == "label-template"
            assert g["table"] == "chexpert_train" and g["llm_rewrite"] is False
            phrases, no_finding = _expected_phrases(r)
            want_t = -1 if no_finding else template_index(s["__key__"], j, len(TEMPLATES))
            assert g["template"] == want_t
            text = s[f"report_{j}.txt"].decode("utf-8")
            assert text == _expected_text(r, want_t)
            doc = json.loads(s[f"report_{j}.json"])
            jsonschema.validate(doc, REPORT_JSON_SCHEMA)
            assert doc["sections"]["findings"] == text
            same = [i for i, rr in enumerate(rows) if rr[3:] == r[3:]]
            assert g["items"] == [f"image_{i}" for i in same]
            n_captioned += 1
        assert not any(k.startswith(f"report_{len(distinct)}") for k in s)
        if generated:
            assert "generated_text" in meta["conventions"]
        else:
            assert "generated_text" not in meta and "generated_text" not in meta["conventions"]
    assert n_captioned == 5  # 00001/1, 00001/2 (both views), 00002/1, 00004/1 (two label sets)


def test_accounting_holds_and_card_counts_captions(built: Path) -> None:
    rep = validate_build(built)
    assert rep.ok, rep.errors
    stats = json.loads((built / "stats.json").read_text())
    assert set(stats["per_modality"]) == {"image"}  # a caption is no input unit
    assert stats["per_modality"]["image"]["written"] == 7
    res = write_datacard(built)
    card = json.loads(res.json_path.read_text())
    assert card["generated_text"] == {"samples": 4, "captions": 5, "methods": {"label-template": 4}}
    assert res.identity_holds
    html = res.html_path.read_text()
    assert "Generated text" in html and "generated_text" in html and "label-template" in html


def test_trainer_reads_the_caption_as_report(built: Path) -> None:
    dec = SampleDecoder(DataConfig(modalities=("image", "report"), image_size=32))
    for s in _samples(built):
        meta = json.loads(s["meta.json"])
        out = dec(s)
        texts = [s[f"{g['member_prefix']}.txt"].decode("utf-8") for g in meta.get("generated_text", [])]
        assert out["report"] == "\n\n".join(texts)
        assert bool(out["modality_mask"][3]) == bool(texts)  # report slot: present iff captioned
        assert out["labels_known"] == bool(texts)
