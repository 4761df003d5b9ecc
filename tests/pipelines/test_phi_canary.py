"""End-to-end PHI canaries: plant unique fake identifiers wherever PHI hides, build, scan every output.

Places: DICOM attributes (public, private, in sequences, non-ASCII), file and folder names,
WFDB header comments, report text, CSV columns that are not the text, and names written in free
text without a title, in lower case (with and without a title), in upper case ("LAST, FIRST"),
as clinicians (", RN", "signed by", an all-caps reader in SR text), as the subject of a sentence,
coordinated ("Dr. X and Y"), as identifier-shaped tokens ("Patient Zqx003Vorlund"), inside DICOM SR
text and inside WFDB comments. Outputs scanned: every
tar member, every parquet cell, every JSON/HTML file and the build's own log output, for each
canary in plain, upper/lower case, base64, hex and UTF-16 forms.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.conftest import REPO

CANARIES = {
    "name": "Zyxwickham^Quentessa",
    "name2": "Brumbleforth",
    "unicode_name": "Jürgenßøn^Ådelheid",
    "mrn": "MRN7731904",
    "accession": "ACC99120077",
    "phone": "555-867-5309",
    "email": "quentessa.zyx@example.org",
    "street": "742 Evergreen Terrace",
    "private": "PRIVATECANARY4471",
    "seq": "SEQCANARY9920",
    "folder": "PatientFolderQZX",
    "file": "QZXfilename",
    "wfdb": "Wfdbcanaryname",
    "csvcol": "CSVCANARY5521",
    "institution": "Canarytown General Hospital",
    # names in free text that no structured field knows (only the text de-identification sees them)
    "untitled": "Throckwellyn",
    "untitled_given": "Ximenaria",
    "lower": "vinderslootke",
    "allcaps": "QUARRENDALE",
    "allcaps_given": "MIRABETHA",
    "clinician": "Pemberfieldow",
    "oddname": "Zqx003Vorlund",
    "sr_text": "Hollowmerez",
    "sr_untitled": "Alaricson Dunquist",
    "sr_org": "Canaryvale Heart Institute",
    "wfdb_text": "Grimsdottiren",
    "wfdb_lower": "ilse brackwater",
    # issue 16 round 2: a lower-case untitled name after a cue, an untitled subject before a verb,
    # coordinated names, an all-caps clinician inside DICOM SR text
    "lower_untitled": "quillonet vandersnooth",
    "subject": "Orvalinde Kestrumbly",
    "coordinated": "Tavishmore",
    "sr_allcaps": "MARVELLION STOCKWHITT",
}
#: a name inside a kept clinical WFDB field (``# Dx:``): see test_wfdb_kept_fields_are_deidentified
WFDB_DX_CANARY = "Dxcanaryperson"
DATES = ["19870314", "1987-03-14", "14.03.1987", "03/14/1987"]


def _variants(s: str) -> list[bytes]:
    raw = s.encode()
    forms = {
        raw,
        s.upper().encode(),
        s.lower().encode(),
        base64.b64encode(raw),
        raw.hex().encode(),
        s.encode("utf-16-le"),
    }
    for part in s.split("^") if "^" in s else []:  # each person-name component alone
        if len(part) >= 6:
            forms |= {part.encode(), part.lower().encode(), part.upper().encode()}
    return sorted(forms)


def _plant_dicom(src: Path, dst: Path) -> None:
    ds = pydicom.dcmread(src)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = CANARIES["unicode_name"]
    ds.PatientID = CANARIES["mrn"]
    ds.OtherPatientNames = CANARIES["name"]
    ds.PatientBirthDate = DATES[0]
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = DATES[0]
    ds.AccessionNumber = CANARIES["accession"]
    ds.ReferringPhysicianName = CANARIES["name2"]
    ds.InstitutionName = CANARIES["institution"]
    ds.PatientAddress = CANARIES["street"]
    ds.PatientTelephoneNumbers = CANARIES["phone"]
    ds.StudyDescription = f"chest for {CANARIES['name2']}"
    ds.ImageComments = f"contact {CANARIES['email']}"
    block = ds.private_block(0x0011, "CANARY PRIVATE", create=True)
    block.add_new(0x01, "LO", CANARIES["private"])
    item = Dataset()
    item.PatientName = CANARIES["seq"]
    item.PatientID = CANARIES["seq"]
    ds.ReferencedPatientSequence = Sequence([item])
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst, enforce_file_format=True)


def _plant_sr(src: Path, dst: Path) -> None:
    """A text SR whose report text names people that no header attribute knows."""
    ds = pydicom.dcmread(src)
    ds.PatientName = CANARIES["name"]
    ds.PatientID = CANARIES["mrn"]

    def walk(items) -> None:
        for item in items:
            meaning = item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""
            if item.get("ValueType") == "TEXT" and meaning == "Report Text":
                item.TextValue = (
                    f"No acute cardiopulmonary process. Discussed with Dr. {CANARIES['sr_text']} at 14:05. "
                    f"{CANARIES['sr_untitled']} is a 93 year old man. Read by {CANARIES['sr_allcaps']}, MD."
                )
            elif item.get("ValueType") == "TEXT":
                item.TextValue = CANARIES["sr_org"]
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(ds.ContentSequence)
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst, enforce_file_format=True)


@pytest.fixture(scope="module")
def canary_build(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("canary")
    inp = root / "input"
    # DICOM: a CT slice, an MR slice and a CR without extension, under a PHI-named folder
    d = inp / "dicom" / CANARIES["folder"]
    _plant_dicom(shared_data / "dicom/ct/CT_small.dcm", d / f"{CANARIES['file']}_{CANARIES['mrn']}.dcm")
    _plant_dicom(shared_data / "dicom/mr/MR_small.dcm", d / "mr_slice")
    _plant_dicom(shared_data / "dicom/dicomdir_sample/77654033/CR1/6154", d / "cr")
    _plant_dicom(shared_data / "ecg/dicom_waveform/waveform_ecg.dcm", d / "ecg_waveform.dcm")
    # WFDB: PHI in header comments
    w = inp / "ecg"
    w.mkdir(parents=True)
    for ext in ("hea", "mat"):
        shutil.copy(shared_data / f"ecg/wfdb/ptbxl_500hz_cinc2021/HR06001.{ext}", w)
    hea = w / "HR06001.hea"
    hea.write_text(
        hea.read_text()
        + f"# Patient: {CANARIES['wfdb']}\n# MRN: {CANARIES['mrn']}\n# Recorded: {DATES[1]}\n# Phone: {CANARIES['phone']}\n"
        + f"# Comment: ECG reviewed with {CANARIES['wfdb_text']}, RN\n# Referring: {CANARIES['wfdb_lower']}\n"
        + f"# Dx: 426783006, called to {WFDB_DX_CANARY}\n"
    )
    # DICOM SR: names only in the report text and the observer's organisation
    _plant_sr(shared_data / "reports/dicom_sr/reportsi.dcm", d / "sr_report.dcm")
    # reports: real PTB-XL rows with planted PHI in the text and in non-text columns
    with open(shared_data / "reports/ptbxl_ecg/ptbxl_database_subset_partA.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:6]
    rows[0]["report"] += (
        f" Pat. {CANARIES['name2']}, geb. {DATES[2]}, Tel. {CANARIES['phone']}, {CANARIES['street']}."
    )
    rows[1]["report"] = (
        f"Dr. {CANARIES['name2']} reviewed on {DATES[3]}. MRN: {CANARIES['mrn']}. " + rows[1]["report"]
    )
    rows[2]["report"] += (
        f" Contact {CANARIES['email']}. Results relayed to {CANARIES['lower_untitled']} by phone."
        f" {CANARIES['subject']} complains of palpitations. Dr. Pemberfieldow and {CANARIES['coordinated']}"
        " performed the study."
    )
    rows[3]["report"] += (
        f" Findings communicated to {CANARIES['untitled_given']} {CANARIES['untitled']} by phone."
        f" Called to {CANARIES['clinician']}, RN at 10:31."
    )
    rows[4]["report"] = f"befundet von dr. {CANARIES['lower']} " + rows[4]["report"]
    rows[5]["report"] = (
        f"{CANARIES['allcaps']}, {CANARIES['allcaps_given']}  Patient {CANARIES['oddname']} (MRN 55512345) seen today. "
        + rows[5]["report"]
    )
    rows[3]["nurse"] = CANARIES["csvcol"]
    rows[3]["patient_id"] = CANARIES["mrn"]
    r = inp / "reports"
    r.mkdir(parents=True)
    with open(r / "export.csv", "w", newline="", encoding="utf-8") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    cfg = root / "cfg.yaml"
    cfg.write_text(
        "deid: {demo: true}\n"
        "sources:\n"
        "  - {name: dicom, path: dicom, licence: MIT}\n"
        "  - {name: ecg, path: ecg, licence: CC-BY-4.0}\n"
        "  - name: reports\n    path: reports\n    licence: CC-BY-4.0\n"
        "    report: {columns: {report_id: ecg_id, patient_id: patient_id, study_id: ecg_id, timestamp: recording_date, text: [report], report_type: cardiology}}\n"
        "workers: 1\n"
    )
    out = root / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "-v",
            "build",
            str(inp),
            "--config",
            str(cfg),
            "--out",
            str(out),
            "--strict",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return out, res.stdout + res.stderr


def _output_texts(out: Path) -> list[tuple[str, bytes]]:
    blobs = []
    for p in sorted(out.rglob("*")):
        if not p.is_file() or "cache" in p.relative_to(out).parts:
            continue
        rel = p.relative_to(out).as_posix()
        blobs.append((f"path:{rel}", rel.encode()))
        if p.suffix == ".tar":
            with tarfile.open(p) as tf:
                for m in tf.getmembers():
                    blobs.append((f"{rel}:{m.name}", m.name.encode() + b"\n" + tf.extractfile(m).read()))
        elif p.suffix == ".parquet":
            t = pq.read_table(p)
            buf = io.StringIO()
            for row in t.to_pylist():
                buf.write(repr(row))
            blobs.append((rel, buf.getvalue().encode()))
        else:
            blobs.append((rel, p.read_bytes()))
    return blobs


def test_no_canary_survives_anywhere(canary_build):
    out, log = canary_build
    blobs = _output_texts(out) + [("log", log.encode())]
    assert any(name.endswith(".tar") or ".tar:" in name for name, _ in blobs)
    leaks = []
    for key, value in list(CANARIES.items()) + [(f"date{i}", d) for i, d in enumerate(DATES)]:
        for form in _variants(value):
            for name, data in blobs:
                if form in data:
                    leaks.append(f"{key} (form {len(form)} bytes) in {name}")  # never the value
    assert leaks == [], "\n".join(leaks)


def test_canary_build_still_produced_samples(canary_build):
    out, _ = canary_build
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    mods = {m for row in manifest for m in row["modalities"]}
    assert {"image", "ecg", "report"} <= mods


def test_wfdb_kept_fields_are_deidentified(canary_build):
    out, log = canary_build
    blobs = _output_texts(out) + [("log", log.encode())]
    leaks = [name for form in _variants(WFDB_DX_CANARY) for name, data in blobs if form in data]
    assert leaks == []


def test_free_text_names_were_replaced_not_dropped(canary_build):
    """The report texts that carried the free-text canaries reached the shards, de-identified."""
    out, _ = canary_build
    texts = []
    for p in sorted(out.rglob("*.tar")):
        with tarfile.open(p) as tf:
            texts += [tf.extractfile(m).read().decode() for m in tf.getmembers() if m.name.endswith(".txt")]
    joined = "\n".join(texts)
    assert "Findings communicated to [NAME] by phone" in joined
    assert "Called to [NAME], RN at [TIME]" in joined
    assert "Patient [NAME] (MRN [ID])" in joined
    assert "Discussed with Dr. [NAME] at [TIME]" in joined
    assert "Results relayed to [NAME] by phone" in joined
    assert "[NAME] complains of palpitations" in joined
    assert "Dr. [NAME] and [NAME] performed the study" in joined
    assert "Read by [NAME], MD" in joined
