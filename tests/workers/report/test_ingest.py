"""Report ingest on the real sample tables: every row ingested or quarantined, schema-valid JSON,
encodings/formats, malformed input, and a PHI canary over real rows with planted identifiers."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
from collections import Counter
from datetime import date, datetime, timedelta

import jsonschema
import pydicom
import pytest

from schemas.modality import Modality
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import InputItem, InputKind, QuarantineRecord, ReportRecord
from schemas.report_schema import REPORT_JSON_SCHEMA
from workers.config import ColumnMapping, LimitsConfig, ReportConfig
from workers.context import WorkerContext
from workers.dicom.identity import dicom_identity
from workers.ids import normalise_id
from workers.report.ingest import decode_report_table, decode_report_text

PTBXL = ColumnMapping(
    report_id="ecg_id",
    patient_id="patient_id",
    study_id="ecg_id",
    timestamp="recording_date",
    text=("report",),
    report_type="cardiology",
)
INDIANA = ColumnMapping(
    report_id="uid",
    patient_id="uid",
    study_id="uid",
    text=("indication", "comparison", "findings", "impression"),
)
VALIDATOR = jsonschema.Draft202012Validator(REPORT_JSON_SCHEMA)


def _ctx(pseudo, mapping: ColumnMapping, **limits) -> WorkerContext:
    return WorkerContext(pseudo=pseudo, report=ReportConfig(columns=mapping), limits=LimitsConfig(**limits))


def _item(path, source_id="fsrc0001", kind=InputKind.REPORT_TABLE) -> InputItem:
    return InputItem(source_id, str(path), kind, "test-source", "CC-BY-4.0", path.stat().st_size)


def _rows(path) -> tuple[list[str], list[dict]]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), list(reader)


def _write_csv(path, header, rows, encoding="utf-8", newline="\n", delimiter=","):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator=newline, delimiter=delimiter)
    w.writeheader()
    w.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


# ---------------------------------------------------------------------------------------------
# the two real sample sets, ingested once per module


@pytest.fixture(scope="module")
def module_pseudo():
    from workers.deid.pseudonym import Pseudonymizer

    return Pseudonymizer("test-secret-0123456789")


@pytest.fixture(scope="module")
def ptbxl_records(shared_data, module_pseudo):
    path = shared_data / "reports/ptbxl_ecg/ptbxl_database_subset_partA.csv"
    return path, decode_report_table(_item(path), _ctx(module_pseudo, PTBXL))


@pytest.fixture(scope="module")
def indiana_records(shared_data, module_pseudo):
    path = shared_data / "reports/indiana_cxr/indiana_reports_partA.csv"
    return path, decode_report_table(_item(path), _ctx(module_pseudo, INDIANA))


def _check_record(rec: ReportRecord, pseudo) -> dict:
    assert rec.modality is Modality.REPORT
    assert rec.record_id == pseudo.token("record", "|".join(rec.source_ids))
    assert [s for s, _ in rec.payload] == ["txt", "json"]
    txt, js = rec.payload[0][1], rec.payload[1][1]
    assert txt.decode("utf-8") == rec.text
    assert js.decode("utf-8") == rec.structured_json
    assert rec.content_sha256 == hashlib.sha256(txt).hexdigest()
    structured = json.loads(rec.structured_json)
    VALIDATOR.validate(structured)
    assert rec.structured_json == json.dumps(
        structured, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert structured["language"] == rec.language and structured["report_type"] == rec.report_type
    meta = json.loads(rec.meta_json)
    assert set(meta["deid"]["replaced"]) >= {"name", "date", "id", "phone", "email", "address"}
    return structured


def test_every_ptbxl_row_becomes_a_valid_report(ptbxl_records, module_pseudo):
    path, records = ptbxl_records
    _, rows = _rows(path)
    assert len(records) == len(rows) == 1550
    by_id = {r.source_ids[0]: r for r in records}
    assert list(by_id) == [f"fsrc0001-r{i:06d}" for i in range(len(rows))]
    langs = Counter()
    for i, (row, rec) in enumerate(zip(rows, records, strict=True)):
        assert isinstance(rec, ReportRecord), (i, rec)
        structured = _check_record(rec, module_pseudo)
        assert structured["report_type"] == "cardiology"
        assert rec.patient == module_pseudo.patient(normalise_id(row["patient_id"]))
        assert rec.study == module_pseudo.study(normalise_id(row["ecg_id"]))
        when = datetime.fromisoformat(row["recording_date"])
        assert (
            rec.acquired_at == (when + timedelta(days=module_pseudo.date_shift_days(rec.patient))).isoformat()
        )
        langs[rec.language] += 1
    assert langs["de"] > 900 and langs["en"] > 400 and langs["sv"] > 20
    # the ECG vocabulary is found: sinus rhythm / atrial fibrillation in nearly every report
    rhythm = sum(
        any(
            f["label"] in ("sinus_rhythm", "atrial_fibrillation")
            for f in json.loads(r.structured_json)["findings"]
        )
        for r in records
    )
    assert rhythm > 0.9 * len(records)


def test_every_indiana_row_is_ingested_or_quarantined_as_empty(indiana_records, module_pseudo):
    path, records = indiana_records
    _, rows = _rows(path)
    assert len(records) == len(rows) == 1933
    reasons = Counter()
    for row, rec in zip(rows, records, strict=True):
        texts = [row[c].strip() for c in INDIANA.text]
        if isinstance(rec, QuarantineRecord):
            reasons[rec.reason] += 1
            assert rec.reason is ReasonCode.REPORT_EMPTY and not any(texts)
            assert rec.modality is Modality.REPORT and rec.message == "report text is empty"
            continue
        structured = _check_record(rec, module_pseudo)
        assert structured["report_type"] == "radiology" and rec.language == "en"
        # the four columns became headed sections
        for col in INDIANA.text:
            if row[col].strip().lower() not in ("", "none", "nan", "null", "na", "n/a"):
                assert f"{col.upper()}:" in rec.text
                assert col in structured["sections"]
        assert "XXXX" not in rec.text or json.loads(rec.meta_json)["deid"]["replaced"]["placeholder"] > 0
    assert reasons == {ReasonCode.REPORT_EMPTY: 15}


def test_table_decoding_is_deterministic(shared_data, pseudo, tmp_path):
    header, rows = _rows(shared_data / "reports/ptbxl_ecg/ptbxl_database_subset_partA.csv")
    path = _write_csv(tmp_path / "r.csv", header, rows[:40])
    a = decode_report_table(_item(path), _ctx(pseudo, PTBXL))
    b = decode_report_table(_item(path), _ctx(pseudo, PTBXL))
    assert a == b and [r.payload for r in a] == [r.payload for r in b]


# ---------------------------------------------------------------------------------------------
# encodings and formats


@pytest.fixture()
def umlaut_rows(shared_data):
    header, rows = _rows(shared_data / "reports/ptbxl_ecg/ptbxl_database_subset_partA.csv")
    picked = [r for r in rows if any(ch in r["report"] for ch in "ÄÖÜäöü")][:12]
    assert len(picked) == 12
    return header, picked


@pytest.mark.parametrize(
    ("encoding", "newline", "suffix", "delimiter"),
    [
        ("utf-8", "\n", ".csv", ","),
        ("utf-8-sig", "\r\n", ".csv", ","),
        ("cp1252", "\r\n", ".csv", ","),
        ("latin-1", "\r", ".csv", ";"),
        ("utf-8", "\n", ".tsv", "\t"),
    ],
)
def test_encodings_line_endings_and_delimiters_give_the_same_reports(
    pseudo, tmp_path, umlaut_rows, encoding, newline, suffix, delimiter
):
    header, rows = umlaut_rows
    ref = decode_report_table(_item(_write_csv(tmp_path / "ref.csv", header, rows)), _ctx(pseudo, PTBXL))
    path = _write_csv(tmp_path / f"t{suffix}", header, rows, encoding, newline, delimiter)
    got = decode_report_table(_item(path), _ctx(pseudo, PTBXL))
    assert [r.text for r in got] == [r.text for r in ref]
    assert [r.structured_json for r in got] == [r.structured_json for r in ref]
    assert any("Ä" in r.text for r in got)
    meta = json.loads(got[0].meta_json)
    assert meta["encoding"] == {"utf-8-sig": "utf-8-sig", "cp1252": "cp1252", "latin-1": "cp1252"}.get(
        encoding, "utf-8"
    )


def test_jsonl_and_nfc_normalisation(pseudo, tmp_path, umlaut_rows):
    import unicodedata

    header, rows = umlaut_rows
    ref = decode_report_table(_item(_write_csv(tmp_path / "ref.csv", header, rows)), _ctx(pseudo, PTBXL))
    lines = []
    for r in rows:
        obj = dict(r)
        obj["report"] = unicodedata.normalize("NFD", r["report"])  # decomposed umlauts
        lines.append(json.dumps(obj, ensure_ascii=False))
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    got = decode_report_table(_item(path), _ctx(pseudo, PTBXL))
    assert [r.text for r in got] == [r.text for r in ref]
    assert "unicode_nfc" in json.loads(got[0].meta_json)["text_steps"]


def test_auto_column_mapping_with_default_config(pseudo, tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("patient_id,accession,report\n42,A1,No pleural effusion.\n", encoding="utf-8")
    (rec,) = decode_report_table(_item(path), WorkerContext(pseudo=pseudo))
    assert rec.patient == pseudo.patient("42") and rec.study == pseudo.study("A1")
    assert json.loads(rec.meta_json)["column_mapping"] == "auto"


# ---------------------------------------------------------------------------------------------
# bad input


def test_bad_rows_are_quarantined_with_specific_reasons(pseudo, tmp_path):
    path = tmp_path / "bad.csv"
    long_text = "sinus rhythm. " * 20
    path.write_text(
        "ecg_id,patient_id,recording_date,report\n"
        "1,10,1990-01-01 10:00:00,sinus rhythm. normal ecg.\n"
        "2,11,1990-01-02 10:00:00,\n"
        "3,12,1990-01-03 10:00:00,sinusrhythmus,extra,fields\n"
        f"4,13,1990-01-04 10:00:00,{long_text}\n"
        "5,14,not a date,sinusrhythmus normales ekg\n",
        encoding="utf-8",
    )
    recs = decode_report_table(_item(path), _ctx(pseudo, PTBXL, max_text_chars=200))
    kinds = [r.reason if isinstance(r, QuarantineRecord) else "ok" for r in recs]
    assert kinds == [
        "ok",
        ReasonCode.REPORT_EMPTY,
        ReasonCode.REPORT_UNPARSEABLE,
        ReasonCode.LIMIT_EXCEEDED,
        "ok",
    ]
    assert [r.source_id if isinstance(r, QuarantineRecord) else r.source_ids[0] for r in recs] == [
        f"fsrc0001-r{i:06d}" for i in range(5)
    ]
    assert recs[4].acquired_at == "" and json.loads(recs[4].meta_json)["timestamp"] == "unparseable"
    for r in recs:
        if isinstance(r, QuarantineRecord):
            assert "sinus" not in r.message and "1990" not in r.message


def test_lines_join_and_measurements_of_a_statement_table(pseudo, tmp_path):
    """MIMIC-IV-ECG's machine_measurements.csv shape: statements joined one per line in column
    order (empty ones skipped), numeric columns with units in the report metadata."""
    path = tmp_path / "machine_measurements.csv"
    path.write_text(
        "subject_id,study_id,ecg_time,report_0,report_1,report_2,bandwidth,rr_interval,p_onset,qrs_axis\n"
        "10000032,40000001,2180-05-06 20:23:00, Sinus rhythm ,,Abnormal ECG,0.005-150 Hz,833,29999,-40\n"
        "10000032,40000002,2180-05-07 08:00:00,,,,0.005-150 Hz,700,40,30\n"
        "10000048,40000003,2151-07-16 09:00:00,Atrial fibrillation,Left bundle branch block,,,12.5,nan,abc\n",
        encoding="utf-8",
    )
    report = ReportConfig(
        columns=ColumnMapping(
            patient_id="subject_id",
            study_id="study_id",
            timestamp="ecg_time",
            text=("report_0", "report_1", "report_2"),
            report_type="cardiology",
            text_join="lines",
        ),
        measurements={"rr_interval": "ms", "p_onset": "ms", "qrs_axis": "deg"},
        measurement_missing=("29999",),
        fields=("bandwidth",),
    )
    recs = decode_report_table(_item(path), WorkerContext(pseudo=pseudo, report=report))
    assert isinstance(recs[1], QuarantineRecord) and recs[1].reason == ReasonCode.REPORT_EMPTY
    assert [r.text for r in (recs[0], recs[2])] == [
        "Sinus rhythm\nAbnormal ECG",
        "Atrial fibrillation\nLeft bundle branch block",
    ]
    assert recs[0].study == pseudo.study(normalise_id("40000001"))
    m0, m2 = json.loads(recs[0].meta_json), json.loads(recs[2].meta_json)
    assert m0["measurements"] == {
        "rr_interval": {"value": 833, "unit": "ms"},
        "p_onset": {"value": None, "unit": "ms"},
        "qrs_axis": {"value": -40, "unit": "deg"},
    }
    assert [m2["measurements"][c]["value"] for c in ("rr_interval", "p_onset", "qrs_axis")] == [
        12.5,
        None,
        None,
    ]
    assert m0["fields"] == {"bandwidth": "0.005-150 Hz"} and m2["fields"] == {"bandwidth": ""}
    labels = {f["label"] for f in json.loads(recs[2].structured_json)["findings"]}
    assert {"atrial_fibrillation", "complete_left_bundle_branch_block"} <= labels
    bad = ReportConfig(columns=report.columns, measurements={"qt_interval": "ms"})
    with pytest.raises(QuarantineError) as exc:
        decode_report_table(_item(path), WorkerContext(pseudo=pseudo, report=bad))
    assert exc.value.reason == ReasonCode.REPORT_TABLE_MALFORMED


def test_bad_jsonl_lines_are_quarantined(pseudo, tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"report": "sinus rhythm."}\n{not json}\n[1, 2]\n{"report": ""}\n', encoding="utf-8")
    recs = decode_report_table(_item(path), _ctx(pseudo, ColumnMapping(text=("report",))))
    assert [getattr(r, "reason", "ok") for r in recs] == [
        "ok",
        ReasonCode.REPORT_UNPARSEABLE,
        ReasonCode.REPORT_UNPARSEABLE,
        ReasonCode.REPORT_EMPTY,
    ]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"a,b\n1,2\n", ReasonCode.REPORT_TABLE_MALFORMED),  # no text column for the mapping
        (b"ecg_id,report,report\n1,x,y\n", ReasonCode.REPORT_TABLE_MALFORMED),  # duplicate columns
        (b"\x00\x01\x02binary\x00", ReasonCode.REPORT_ENCODING),
        (b"   \n\n", ReasonCode.REPORT_EMPTY),
    ],
)
def test_unreadable_tables_raise(pseudo, tmp_path, content, reason):
    path = tmp_path / "t.csv"
    path.write_bytes(content)
    with pytest.raises(QuarantineError) as exc:
        decode_report_table(_item(path), _ctx(pseudo, PTBXL))
    assert exc.value.reason is reason


# ---------------------------------------------------------------------------------------------
# plain text


def test_plain_text_report_with_identity_header(pseudo, tmp_path):
    path = tmp_path / "report.txt"
    body = (
        "Patient ID: 0012345\r\nAccession: ACC-77\r\nExam date: 2019-03-12\r\n\r\n"
        "FINDINGS: Mild cardiomegaly. No pleural effusion.\r\nIMPRESSION: Cardiomegaly.\r\n"
    )
    path.write_bytes(body.encode("cp1252"))
    ctx = _ctx(pseudo, ColumnMapping(report_type="radiology"))
    (rec,) = decode_report_text(_item(path, "ftext01", InputKind.REPORT_TEXT), ctx)
    assert rec.source_ids == ("ftext01",)
    assert rec.patient == pseudo.patient("12345") and rec.study == pseudo.study("ACC-77")
    shifted = date(2019, 3, 12) + timedelta(days=pseudo.date_shift_days(rec.patient))
    assert rec.acquired_at == f"{shifted.isoformat()}T00:00:00"
    assert "0012345" not in rec.text and "ACC-77" not in rec.text and "2019-03-12" not in rec.text
    assert shifted.isoformat() in rec.text and "\r" not in rec.text
    structured = json.loads(rec.structured_json)
    assert structured["sections"]["impression"] == "Cardiomegaly."
    assert {(f["label"], f["assertion"]) for f in structured["findings"]} >= {
        ("cardiomegaly", "present"),
        ("pleural_effusion", "negated"),
    }


def test_plain_text_identity_from_path_regex(pseudo, tmp_path):
    """MIMIC-CXR's ``p{subject}/s{study}.txt``: the path's named groups are the columns (auto
    names without ``columns``); the path beats a header line; a path that does not match is
    quarantined ``no_metadata``."""
    folder = tmp_path / "files" / "p10" / "p10000032"
    folder.mkdir(parents=True)
    path = folder / "s50414267.txt"
    path.write_text(
        " FINAL REPORT\n Accession: ACC-77\n IMPRESSION: No acute process; see study 50414267.\n",
        encoding="utf-8",
    )
    rx = r"p(?P<subject_id>\d+)/s(?P<study_id>\d+)\.txt$"
    for columns in (ColumnMapping(), ColumnMapping(patient_id="subject_id", study_id="study_id")):
        ctx = WorkerContext(pseudo=pseudo, report=ReportConfig(columns=columns, path_regex=rx))
        (rec,) = decode_report_text(_item(path, kind=InputKind.REPORT_TEXT), ctx)
        assert rec.patient == pseudo.patient("10000032") and rec.study == pseudo.study("50414267")
        meta = json.loads(rec.meta_json)
        assert meta["identity_from_path"] == ["patient", "study"] and meta["identity_from_header"] == []
        assert "50414267" not in rec.text  # the path's ids are scrubbed like a table row's
        assert "ACC-77" not in rec.text  # and so is the header's id the path overrode
    other = tmp_path / "notes" / "readme.txt"
    other.parent.mkdir()
    other.write_text("IMPRESSION: Normal.\n", encoding="utf-8")
    with pytest.raises(QuarantineError) as exc:
        decode_report_text(_item(other, kind=InputKind.REPORT_TEXT), ctx)
    assert exc.value.reason is ReasonCode.NO_METADATA and "readme" not in exc.value.message


def test_plain_text_empty_is_quarantined(pseudo, tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text(" \n\t\n", encoding="utf-8")
    with pytest.raises(QuarantineError) as exc:
        decode_report_text(_item(path, kind=InputKind.REPORT_TEXT), WorkerContext(pseudo=pseudo))
    assert exc.value.reason is ReasonCode.REPORT_EMPTY


# ---------------------------------------------------------------------------------------------
# PHI canary on real rows


CANARY = {
    "name1": "Quentessa Zyxwickham",
    "name2": "Brumbleforth",
    "name3": "Ottoline Vantablack",
    "mrn": "MRN7731904",
    "acc": "88120077",
    "phone": "317-555-0142",
    "phone_de": "0711/4455667",
    "email": "q.zyx@example.org",
    "street": "742 Evergreen Terrace",
    "city_zip": "Springfield, IL 62704",
    "de_street": "Lindenstraße 17",
    "de_zip": "70173 Stuttgart",
}
#: distinctive pieces of the canaries that must not appear anywhere in the output
FORBIDDEN = [
    "Quentessa", "Zyxwickham", "Brumbleforth", "Ottoline", "Vantablack", "7731904", "88120077", "555-0142",
    "4455667", "q.zyx", "example.org", "Evergreen", "Springfield", "62704", "Lindenstraße", "70173", "Stuttgart",
]  # fmt: skip
PLANTED_DAY = date(2019, 3, 12)


def _plant(text: str, i: int) -> str:
    c = CANARY
    variants = [
        f"Dr. {c['name1']} reviewed on {PLANTED_DAY:%m/%d/%Y}. MRN: {c['mrn']}. " + text,
        text + f" Signed by: {c['name2']}. Contact {c['email']} or {c['phone']}.",
        f"Patient: {c['name3']}, {c['street']}, {c['city_zip']}. Accession: {c['acc']}. " + text,
        text
        + f" Untersuchung vom {PLANTED_DAY:%d.%m.%Y}, Frau {c['name2']}, {c['de_street']}, {c['de_zip']}, "
        f"Tel. {c['phone_de']}.",
    ]
    return variants[i % len(variants)]


def _all_output_text(records) -> str:
    parts = []
    for r in records:
        if isinstance(r, ReportRecord):
            parts += [r.text, r.structured_json, r.meta_json, r.patient, r.study, r.acquired_at, r.record_id]
            parts += [b.decode("utf-8") for _, b in r.payload]
        else:
            parts += [r.message, r.source_id]
    return "\n".join(parts)


@pytest.mark.parametrize("which", ["ptbxl", "indiana"])
def test_canary_phi_planted_in_real_rows_never_survives(shared_data, pseudo, tmp_path, which):
    if which == "ptbxl":
        header, rows = _rows(shared_data / "reports/ptbxl_ecg/ptbxl_database_subset_partA.csv")
        mapping, text_col = PTBXL, "report"
        rows = rows[:24]
    else:
        header, rows = _rows(shared_data / "reports/indiana_cxr/indiana_reports_partA.csv")
        mapping, text_col = INDIANA, "findings"
        rows = [r for r in rows if r["findings"].strip()][:24]
    planted = []
    for i, r in enumerate(rows):
        r = dict(r)
        r[text_col] = _plant(r[text_col], i)
        planted.append(r)
    path = _write_csv(tmp_path / "planted.csv", header, planted)  # a copy in tmp only
    records = decode_report_table(_item(path), _ctx(pseudo, mapping))
    assert all(isinstance(r, ReportRecord) for r in records)
    blob = _all_output_text(records).lower()
    for token in FORBIDDEN:
        assert token.lower() not in blob, token
    for r in records:
        raw = r.payload[0][1].decode("utf-8")
        assert f"{PLANTED_DAY:%m/%d/%Y}" not in raw and f"{PLANTED_DAY:%d.%m.%Y}" not in raw
    # planted dates are shifted by exactly this patient's offset (the one DICOM/ECG use)
    for i, (row, rec) in enumerate(zip(planted, records, strict=True)):
        raw_pid = row[mapping.patient_id]
        assert rec.patient == pseudo.patient(normalise_id(raw_pid))
        shifted = PLANTED_DAY + timedelta(days=pseudo.date_shift_days(rec.patient))
        if i % 4 == 0:
            assert f"{shifted:%m/%d/%Y}" in rec.text
        if i % 4 == 3:
            assert f"{shifted:%d.%m.%Y}" in rec.text
        counts = json.loads(rec.meta_json)["deid"]["replaced"]
        assert counts["name"] >= 1


def test_report_date_shift_matches_the_patients_dicom_shift(pseudo, tmp_path):
    """Same raw patient id in a DICOM header and a report row → same pseudonym, same shift."""
    ds = pydicom.Dataset()
    ds.PatientID = "15709"
    ds.StudyDate = "20190312"
    ds.StudyTime = "101500"
    patient, _, acquired = dicom_identity(ds, pseudo)
    path = tmp_path / "r.csv"
    path.write_text(
        "ecg_id,patient_id,recording_date,report\n1,15709.0,2019-03-12 10:15:00,Untersuchung am 12.03.2019.\n",
        encoding="utf-8",
    )
    (rec,) = decode_report_table(_item(path), _ctx(pseudo, PTBXL))
    assert rec.patient == patient
    assert rec.acquired_at == acquired
    shifted = date(2019, 3, 12) + timedelta(days=pseudo.date_shift_days(patient))
    assert rec.text == f"Untersuchung am {shifted:%d.%m.%Y}."


def test_utf8_bom_is_not_part_of_the_first_column(pseudo, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(codecs.BOM_UTF8 + b"report,patient_id\nsinus rhythm.,7\n")
    (rec,) = decode_report_table(_item(path), _ctx(pseudo, ColumnMapping(patient_id="patient_id")))
    assert rec.patient == pseudo.patient("7") and rec.text == "sinus rhythm."
