"""Pseudonymous identity of a DICOM object: patient, study and shifted acquisition time.

Shared by every DICOM decoder (images, series, waveforms, SR) so that one patient gets one
pseudonym and one date shift whatever the object type.
"""

from __future__ import annotations

from datetime import datetime

from workers.deid.pseudonym import Pseudonymizer
from workers.ids import normalise_id


def _parse_dicom_datetime(date: str, time: str = "") -> datetime | None:
    """DICOM DA (YYYYMMDD) + TM (HHMMSS.FFFFFF, any prefix) → datetime, None if unparseable."""
    date = (date or "").strip()
    if len(date) < 8 or not date[:8].isdigit():
        return None
    digits = "".join(ch for ch in (time or "").split(".")[0] if ch.isdigit())[:6].ljust(6, "0")
    try:
        return datetime.strptime(date[:8] + digits, "%Y%m%d%H%M%S")
    except ValueError:
        return None


def dicom_identity(ds, pseudo: Pseudonymizer) -> tuple[str, str, str]:
    """Return ``(patient, study, acquired_at)`` for a pydicom Dataset.

    ``patient`` is the keyed pseudonym of PatientID; ``study`` of AccessionNumber, else
    StudyInstanceUID; ``acquired_at`` is ISO 8601 from Acquisition/Content/Series/Study date and
    time (first present), shifted by the patient's date offset; ``""`` where absent.
    """
    patient = pseudo.patient(normalise_id(ds.get("PatientID", "") or ""))
    study_raw = normalise_id(ds.get("AccessionNumber", "") or "") or str(ds.get("StudyInstanceUID", "") or "")
    study = pseudo.study(study_raw)
    when = None
    adt = str(ds.get("AcquisitionDateTime", "") or "")
    if adt:
        when = _parse_dicom_datetime(adt[:8], adt[8:])
    for d, t in (
        ("AcquisitionDate", "AcquisitionTime"),
        ("ContentDate", "ContentTime"),
        ("SeriesDate", "SeriesTime"),
        ("StudyDate", "StudyTime"),
    ):
        if when is not None:
            break
        when = _parse_dicom_datetime(str(ds.get(d, "") or ""), str(ds.get(t, "") or ""))
    try:
        acquired_at = pseudo.shift_datetime(when, patient).isoformat() if when else ""
    except OverflowError:  # a date in year 1 shifts out of range: unknown, like an absent date
        acquired_at = ""
    return patient, study, acquired_at
