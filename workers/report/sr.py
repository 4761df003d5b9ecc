"""DICOM Structured Reports (Basic / Enhanced / Comprehensive text SR) → report records.

The DICOM decoder dispatches SR SOP classes here. The content tree is walked depth first:
``CONTAINER`` items become ``HEADING:`` lines (so the sectionizer maps "Findings",
"Impression", ... onto the section names), ``TEXT``/``CODE``/``NUM``/``DATE``/``TIME``/
``DATETIME`` items become ``Concept: value`` lines; ``PNAME`` values are replaced by ``[NAME]``;
observation context (``HAS OBS CONTEXT``: observer, subject, organisation) and references
(``IMAGE``, ``COMPOSITE``, ``WAVEFORM``, ``UIDREF``, ``SCOORD``, ``TCOORD``) are left out and
counted in the audit. Dates are written as ISO dates so text de-identification shifts them with
the patient's offset. Identity: :func:`workers.dicom.identity.dicom_identity`.
"""

from __future__ import annotations

import re

from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import DecodedRecord, InputItem
from workers.context import WorkerContext
from workers.dicom.identity import dicom_identity
from workers.report.ingest import ReportFields, build_report_record

#: SR storage SOP classes whose content is text (plus the newer comprehensive variants)
TEXT_SR_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.88.11": "basic_text_sr",
    "1.2.840.10008.5.1.4.1.1.88.22": "enhanced_sr",
    "1.2.840.10008.5.1.4.1.1.88.33": "comprehensive_sr",
    "1.2.840.10008.5.1.4.1.1.88.34": "comprehensive_3d_sr",
    "1.2.840.10008.5.1.4.1.1.88.35": "extensible_sr",
}
_SKIPPED_TYPES = frozenset({"IMAGE", "COMPOSITE", "WAVEFORM", "UIDREF", "SCOORD", "SCOORD3D", "TCOORD"})
_GENERIC_TEXT_NAMES = frozenset({"", "report text", "text", "finding", "findings text", "comment", "remark"})
_MAX_DEPTH = 64
_ECG_TITLE = re.compile(r"\b(?:ecg|ekg|electrocardiogra|elektrokardiogra|holter|rhythm)", re.IGNORECASE)


def _concept_name(item) -> str:
    seq = item.get("ConceptNameCodeSequence")
    if seq:
        return str(seq[0].get("CodeMeaning", "") or "").strip()
    return ""


def _iso_date(da: str) -> str:
    da = (da or "").strip()
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) >= 8 and da[:8].isdigit() else ""


def _value(item, value_type: str, audit: dict[str, int]) -> str:
    if value_type == "TEXT":
        return str(item.get("TextValue", "") or "").strip()
    if value_type == "CODE":
        seq = item.get("ConceptCodeSequence")
        return str(seq[0].get("CodeMeaning", "") or "").strip() if seq else ""
    if value_type == "NUM":
        seq = item.get("MeasuredValueSequence")
        if not seq:
            return ""
        mv = seq[0]
        units = mv.get("MeasurementUnitsCodeSequence")
        unit = str(units[0].get("CodeValue", "") or "") if units else ""
        return f"{mv.get('NumericValue', '')} {unit}".strip()
    if value_type == "DATE":
        audit["dates"] += 1
        return _iso_date(str(item.get("Date", "") or ""))
    if value_type == "DATETIME":
        audit["dates"] += 1
        dt = str(item.get("DateTime", "") or "")
        return (_iso_date(dt) + (f" {dt[8:10]}:{dt[10:12]}" if len(dt) >= 12 else "")).strip()
    if value_type == "TIME":
        t = str(item.get("Time", "") or "")
        return f"{t[:2]}:{t[2:4]}" if len(t) >= 4 else ""
    if value_type == "PNAME":
        audit["person_names"] += 1
        return "[NAME]" if str(item.get("PersonName", "") or "").strip() else ""
    return ""


def _charset(ds) -> str:
    cs = ds.get("SpecificCharacterSet", None)
    if not cs:
        return "ISO_IR 6"
    return str(cs) if isinstance(cs, str) else "\\".join(str(c) for c in cs)


def sr_to_text(ds) -> tuple[str, dict[str, int]]:
    """Render the SR content tree as text. Returns ``(text, audit counts)`` (counts only)."""
    lines: list[str] = []
    audit = {"items": 0, "headings": 0, "obs_context_skipped": 0, "references_skipped": 0, "dates": 0,
             "person_names": 0}  # fmt: skip

    def walk(items, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise QuarantineError(ReasonCode.DICOM_CORRUPT, "SR content tree nested too deeply")
        for item in items:
            audit["items"] += 1
            rel = str(item.get("RelationshipType", "") or "")
            vt = str(item.get("ValueType", "") or "")
            if rel == "HAS OBS CONTEXT":
                audit["obs_context_skipped"] += 1
                continue
            if vt in _SKIPPED_TYPES:
                audit["references_skipped"] += 1
                continue
            name = _concept_name(item)
            if vt == "CONTAINER":
                if name:
                    audit["headings"] += 1
                    lines.append("")
                    lines.append(f"{name.upper()}:")
            else:
                value = _value(item, vt, audit)
                if value:
                    lines.append(value if name.lower() in _GENERIC_TEXT_NAMES else f"{name}: {value}")
            children = item.get("ContentSequence")
            if children:
                walk(children, depth + 1)

    walk(ds.get("ContentSequence") or [], 0)
    return "\n".join(lines).strip(), audit


#: header attributes whose values are scrubbed from the SR text wherever they occur
_IDENTIFYING_KEYWORDS = (
    "PatientName", "PatientID", "OtherPatientIDs", "PatientBirthName", "PatientMotherBirthName",
    "ReferringPhysicianName", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "OperatorsName",
    "PhysiciansOfRecord", "RequestingPhysician", "AccessionNumber", "StudyID", "InstitutionName",
    "InstitutionAddress", "PatientAddress", "PatientTelephoneNumbers",
)  # fmt: skip


def _known_identifiers(ds) -> tuple[str, ...]:
    """Raw identifying values of the SR header and of every PNAME item in the content tree."""
    values: list[str] = []
    for kw in _IDENTIFYING_KEYWORDS:
        v = ds.get(kw, None)
        if v is None:
            continue
        items = v if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else [v]
        values += [str(x) for x in items if str(x).strip()]

    def walk(items, depth: int = 0) -> None:
        for item in items or []:
            if str(item.get("ValueType", "")) == "PNAME" and str(item.get("PersonName", "") or "").strip():
                values.append(str(item.PersonName))
            if depth < _MAX_DEPTH:
                walk(item.get("ContentSequence"), depth + 1)

    walk(ds.get("ContentSequence"))
    return tuple(values)


def decode_dicom_sr(ds, item: InputItem, ctx: WorkerContext) -> list[DecodedRecord]:
    """One :class:`schemas.ReportRecord` from a text DICOM SR (or a quarantine record).

    Args:
        ds: the pydicom Dataset (already read by the DICOM decoder).
        item: the input file; its ``source_id`` is the record's source id.
        ctx: worker context (pseudonymiser, report config, limits).
    """
    sop = str(ds.get("SOPClassUID", "") or "")
    kind = TEXT_SR_SOP_CLASSES.get(sop)
    if kind is None:
        raise QuarantineError(
            ReasonCode.DICOM_UNSUPPORTED_SOP, "structured report SOP class is not a text SR"
        )
    if "ContentSequence" not in ds:
        raise QuarantineError(ReasonCode.REPORT_EMPTY, "structured report has no content sequence")
    text, audit = sr_to_text(ds)
    patient, study, acquired_at = dicom_identity(ds, ctx.pseudo)
    title = _concept_name(ds)
    configured = ctx.report.columns.report_type
    report_type = "cardiology" if _ECG_TITLE.search(title) else configured
    meta = {
        "decoder": "dicom_sr",
        "sr_kind": kind,
        "sr_audit": audit,
        "completion_flag": str(ds.get("CompletionFlag", "") or ""),
        "verification_flag": str(ds.get("VerificationFlag", "") or ""),
        "encoding": "dicom:" + _charset(ds),
    }
    rec = build_report_record(
        item,
        ctx,
        item.source_id,
        ReportFields(text=text, report_type=report_type, known_identifiers=_known_identifiers(ds)),
        meta,
        patient=patient,
        study=study,
        acquired_at=acquired_at,
    )
    return [rec]
