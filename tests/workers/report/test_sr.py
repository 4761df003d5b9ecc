"""DICOM SR → report: the real OFFIS Basic Text SR sample and an SR tree built with pydicom."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import jsonschema
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from schemas.modality import Modality
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import InputItem, InputKind, ReportRecord
from schemas.report_schema import REPORT_JSON_SCHEMA
from workers.report.sr import decode_dicom_sr, sr_to_text


def _item(path="x.dcm", source_id="fsr000001") -> InputItem:
    return InputItem(source_id, str(path), InputKind.DICOM, "sr-source", "MIT", 1)


def test_offis_basic_text_sr(shared_data, ctx):
    path = shared_data / "reports/dicom_sr/reportsi.dcm"
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.11"
    (rec,) = decode_dicom_sr(ds, _item(path), ctx)
    assert isinstance(rec, ReportRecord) and rec.modality is Modality.REPORT
    assert rec.source_ids == ("fsr000001",)
    # the content tree: 4 observation-context items skipped, one container heading, its text,
    # two image references skipped (one nested)
    meta = json.loads(rec.meta_json)
    assert meta["sr_kind"] == "basic_text_sr"
    assert meta["sr_audit"] == {
        "items": 8,
        "headings": 1,
        "obs_context_skipped": 4,
        "references_skipped": 2,
        "dates": 0,
        "person_names": 0,
    }
    # the report text is the placeholder "Enter text", which is also the value of the Recording
    # Observer's Name (a PNAME item): values of person-name items are scrubbed wherever they
    # occur, so the text becomes [NAME] (recall first)
    assert rec.text == "SECTION HEADING:\n[NAME]"
    assert meta["deid"]["replaced"]["name"] == 1
    structured = json.loads(rec.structured_json)
    jsonschema.validate(structured, REPORT_JSON_SCHEMA)
    assert structured["sections"] == {"other": "[NAME]"}  # an unknown heading opens "other"
    # PatientName / ReferringPhysicianName never reach the output
    blob = rec.text + rec.structured_json + rec.meta_json
    assert "Last Name" not in blob and "First Name" not in blob
    # identity as for any DICOM object: ContentDate/Time, shifted by the (empty) patient's offset
    assert rec.patient == ""
    shift = ctx.pseudo.date_shift_days("")
    assert rec.acquired_at == (datetime(2005, 5, 30, 16, 5, 27) + timedelta(days=shift)).isoformat()


def test_sr_is_reached_through_the_dicom_decoder(shared_data, ctx):
    from workers.dicom.decode import decode_dicom

    path = shared_data / "reports/dicom_sr/reportsi.dcm"
    recs = decode_dicom(_item(path), ctx)
    assert len(recs) == 1 and isinstance(recs[0], ReportRecord)
    assert recs[0].text == "SECTION HEADING:\n[NAME]"


def _code(meaning: str, value: str = "X") -> Sequence:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, "99TEST", meaning
    return Sequence([c])


def _content(value_type: str, name: str, rel: str = "CONTAINS", **values) -> Dataset:
    d = Dataset()
    d.RelationshipType, d.ValueType = rel, value_type
    d.ConceptNameCodeSequence = _code(name)
    for k, v in values.items():
        setattr(d, k, v)
    return d


def _chest_sr(sop: str = "1.2.840.10008.5.1.4.1.1.88.33") -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientID = "PAT-0042"
    ds.PatientName = "Zyxwickham^Quentessa"
    ds.AccessionNumber = "ACC778899"
    ds.ContentDate, ds.ContentTime = "20190312", "101500"
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = _code("Chest X-Ray Report")
    observer = _content(
        "PNAME", "Recording Observer's Name", rel="HAS OBS CONTEXT", PersonName="Brumbleforth^Otto"
    )
    history = _content("CONTAINER", "History")
    history.ContentSequence = Sequence(
        [_content("TEXT", "Finding", TextValue="Cough. Patient Zyxwickham seen.")]
    )
    findings = _content("CONTAINER", "Findings")
    findings.ContentSequence = Sequence(
        [
            _content("TEXT", "Finding", TextValue="Mild cardiomegaly. No pleural effusion."),
            _content("CODE", "Finding", ConceptCodeSequence=_code("Atelectasis")),
            _content("DATE", "Comparison date", Date="20180101"),
            _content("PNAME", "Reviewed by", PersonName="Brumbleforth^Otto"),
        ]
    )
    impression = _content("CONTAINER", "Impression")
    impression.ContentSequence = Sequence([_content("TEXT", "Finding", TextValue="Cardiomegaly.")])
    ds.ContentSequence = Sequence([observer, history, findings, impression])
    return ds


@pytest.mark.parametrize(
    "sop", ["1.2.840.10008.5.1.4.1.1.88.11", "1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33"]
)
def test_built_sr_tree_sections_findings_and_deid(ctx, sop):
    ds = _chest_sr(sop)
    (rec,) = decode_dicom_sr(ds, _item(), ctx)
    patient = ctx.pseudo.patient("PAT-0042")
    assert rec.patient == patient and rec.study == ctx.pseudo.study("ACC778899")
    shifted = date(2018, 1, 1) + timedelta(days=ctx.pseudo.date_shift_days(patient))
    assert f"Comparison date: {shifted.isoformat()}" in rec.text
    assert "Reviewed by: [NAME]" in rec.text
    for secret in ("Brumbleforth", "Zyxwickham", "Quentessa", "PAT-0042", "ACC778899", "2018-01-01"):
        assert secret not in rec.text + rec.structured_json + rec.meta_json
    structured = json.loads(rec.structured_json)
    jsonschema.validate(structured, REPORT_JSON_SCHEMA)
    assert set(structured["sections"]) == {"history", "findings", "impression"}
    got = {(f["label"], f["assertion"], f["section"]) for f in structured["findings"]}
    assert {
        ("cardiomegaly", "present", "findings"),
        ("pleural_effusion", "negated", "findings"),
        ("atelectasis", "present", "findings"),
        ("cardiomegaly", "present", "impression"),
    } <= got
    assert structured["normal"] is False


def test_sr_to_text_counts_without_values():
    text, audit = sr_to_text(_chest_sr())
    assert audit == {
        "items": 10,
        "headings": 3,
        "obs_context_skipped": 1,
        "references_skipped": 0,
        "dates": 1,
        "person_names": 1,
    }
    assert text.startswith("HISTORY:\n")


def test_non_text_sr_and_empty_sr_are_quarantined(ctx):
    ds = _chest_sr("1.2.840.10008.5.1.4.1.1.88.59")  # Key Object Selection
    with pytest.raises(QuarantineError) as exc:
        decode_dicom_sr(ds, _item(), ctx)
    assert exc.value.reason is ReasonCode.DICOM_UNSUPPORTED_SOP
    ds = _chest_sr()
    del ds.ContentSequence
    with pytest.raises(QuarantineError) as exc:
        decode_dicom_sr(ds, _item(), ctx)
    assert exc.value.reason is ReasonCode.REPORT_EMPTY
    ds = _chest_sr()
    ds.ContentSequence = Sequence([_content("IMAGE", "Image Reference")])
    (q,) = decode_dicom_sr(ds, _item(), ctx)
    assert q.reason is ReasonCode.REPORT_EMPTY


def test_ecg_titled_sr_is_a_cardiology_report(ctx):
    ds = _chest_sr()
    ds.ConceptNameCodeSequence = _code("ECG Report")
    ds.ContentSequence[2].ContentSequence = Sequence(
        [_content("TEXT", "Finding", TextValue="Sinus rhythm. Left bundle branch block.")]
    )
    (rec,) = decode_dicom_sr(ds, _item(), ctx)
    structured = json.loads(rec.structured_json)
    assert rec.report_type == structured["report_type"] == "cardiology"
    labels = {f["label"] for f in structured["findings"] if f["assertion"] == "present"}
    assert {"sinus_rhythm", "complete_left_bundle_branch_block"} <= labels
