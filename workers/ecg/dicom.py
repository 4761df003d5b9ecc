"""DICOM ECG waveforms (12-lead, general, ambulatory ECG Storage) → corpus ECGs.

The DICOM decoder (``workers.dicom.decode``) reads the file and dispatches waveform SOP classes
here. Signal values come from pydicom's own waveform support, ``ds.waveform_array(i)``
(raw × ChannelSensitivity × correction factor + ChannelBaseline, in the units of
ChannelSensitivityUnitsSequence, converted to mV). Samples equal to the group's
WaveformPaddingValue become NaN; raw samples at the limits of the stored integer type are
marked as ADC saturation for QC.

Group choice: the rhythm group, never the representative (median) beat: among the groups whose
MultiplexGroupLabel contains ``RHYTHM`` (else those not labelled as a beat: ``BEAT``,
``MEDIAN``, ``REPRESENTATIVE``, ``AVERAGE``, ``TEMPLATE``) the one with the most standard
leads, then the longest; if only beat groups exist the object is quarantined
(``ecg_signal_missing``).

Leads are found by the coded channel source (SCP-ECG ``5.6.3-9-N`` or MDC ``2:N``), else by
CodeMeaning (``Lead I (Einthoven)``), else by ChannelLabel; then ``workers.ecg.convention.conform``
applies the corpus convention (mV, 500 Hz, canonical order, 10 s, QC).

Identity comes from ``workers.dicom.identity`` (pseudonymous patient/study, shifted time).
Nothing of the DICOM header is carried over except PatientAge (ages > 89 → ``90+``),
PatientSex, manufacturer/model and the acquisition parameters in meta; the audit lists which
identifying attributes were present (keywords only).
"""

from __future__ import annotations

import logging

import numpy as np
from pydicom.dataset import Dataset
from pydicom.waveforms.numpy_handler import multiplex_array

from schemas.modality import Modality
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import DecodedRecord, InputItem
from workers.context import WorkerContext
from workers.dicom.identity import dicom_identity
from workers.ecg.convention import (
    LeadMatch,
    SourceChannel,
    conform,
    deidentify_age,
    make_ecg_record,
    match_lead,
    match_lead_code,
    normalise_sex,
    units_to_mv,
)

log = logging.getLogger(__name__)

#: waveform SOP classes that hold ECGs (PS3.4 B.5): 12-lead, general, ambulatory
ECG_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG Waveform Storage",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG Waveform Storage",
    "1.2.840.10008.5.1.4.1.1.9.1.3": "Ambulatory ECG Waveform Storage",
}
_BEAT_WORDS = ("BEAT", "MEDIAN", "REPRESENT", "AVERAGE", "TEMPLATE")
#: identifying attributes whose presence the audit records (they are never carried over)
_IDENTIFYING = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientSize",
    "PatientWeight",
    "ReferringPhysicianName",
    "RequestingPhysician",
    "NameOfPhysiciansReadingStudy",
    "PerformingPhysicianName",
    "OperatorsName",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "DeviceSerialNumber",
    "AccessionNumber",
    "StudyID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "AdmissionID",
    "CurrentPatientLocation",
    "PatientInstitutionResidence",
    "VisitComments",
    "ReasonForStudy",
    "ReasonForTheRequestedProcedure",
    "StudyDescription",
    "AcquisitionContextSequence",
    "WaveformAnnotationSequence",
)


def choose_rhythm_group(ds: Dataset) -> int:
    """Index of the rhythm multiplex group (see module docstring); raises QuarantineError."""
    groups = list(ds.get("WaveformSequence", None) or [])
    if not groups:
        raise QuarantineError(ReasonCode.ECG_SIGNAL_MISSING, "waveform object has no multiplex group")
    # (class: 0 rhythm / 1 other / 2 beat, -standard leads, -duration, index)
    scored: list[tuple[int, int, float, int]] = []
    for i, g in enumerate(groups):
        label = str(g.get("MultiplexGroupLabel", "") or "").upper()
        try:
            duration = float(g.NumberOfWaveformSamples) / float(g.SamplingFrequency)
        except (AttributeError, TypeError, ValueError, ZeroDivisionError):
            continue
        if not duration > 0:
            continue
        cls = 0 if "RHYTHM" in label else 2 if any(w in label for w in _BEAT_WORDS) else 1
        leads = {
            m.lead
            for m in (_channel_name_and_match(ch)[1] for ch in g.get("ChannelDefinitionSequence", None) or [])
            if m
        }
        scored.append((cls, -len(leads), -duration, i))
    if not scored:
        raise QuarantineError(ReasonCode.ECG_HEADER_INVALID, "no multiplex group has a valid rate and length")
    best = min(scored)
    if best[0] == 2:
        raise QuarantineError(
            ReasonCode.ECG_SIGNAL_MISSING, "only representative-beat groups, no rhythm waveform"
        )
    return best[3]


def _channel_name_and_match(ch: Dataset) -> tuple[str, LeadMatch | None]:
    src = (ch.get("ChannelSourceSequence", None) or [None])[0]
    code = str(src.get("CodeValue", "") or "") if src is not None else ""
    scheme = str(src.get("CodingSchemeDesignator", "") or "") if src is not None else ""
    meaning = str(src.get("CodeMeaning", "") or "") if src is not None else ""
    label = str(ch.get("ChannelLabel", "") or "")
    match = match_lead_code(code, scheme) or match_lead(meaning) or match_lead(label)
    return (meaning or label or code), match


def decode_dicom_ecg(ds: Dataset, item: InputItem, ctx: WorkerContext) -> list[DecodedRecord]:
    """Decode a DICOM ECG waveform object into one :class:`EcgRecord` (rhythm group only).

    Payload ``("npy", float16 (12, rate × seconds))`` in mV, canonical lead order.
    """
    idx = choose_rhythm_group(ds)
    group = ds.WaveformSequence[idx]
    fs = float(group.SamplingFrequency)
    values, raw = _read_waveform(ds, idx, ctx)
    n_samples = int(values.shape[0])
    pad_value = _padding_value(group, raw)
    channels, units_in, filters = _source_channels(group, values, raw, pad_value, fs)
    if not any(c.match is not None for c in channels) and units_in <= {"<none>"}:
        raise QuarantineError(ReasonCode.ECG_HEADER_INVALID, "channel sensitivity units missing")

    conformed = conform(channels, ctx.ecg, source_duration_s=n_samples / fs)
    patient, study, acquired_at = dicom_identity(ds, ctx.pseudo)

    header: dict = {}
    age = deidentify_age(str(ds.get("PatientAge", "") or ""))
    if age:
        header["age"] = age
    sex = normalise_sex(str(ds.get("PatientSex", "") or ""))
    if sex:
        header["sex"] = sex
    meta = {
        **conformed.meta,
        "modality": Modality.ECG.value,
        "source": _source_meta(ds, idx, values, units_in, filters),
        "header": header,
        "deid": {
            "identity": "workers.dicom.identity: PatientID → pseudonym, Accession/StudyUID → study, time shifted",
            "not_carried_over": sorted(k for k in _IDENTIFYING if k in ds),
            "age_over_89_capped": age == "90+",
            "annotations_dropped": len(ds.get("WaveformAnnotationSequence", None) or []),
        },
        "link": {"study_from": "AccessionNumber, else StudyInstanceUID", "study_found": bool(study)},
    }
    return [
        make_ecg_record(
            item, ctx, conformed, patient=patient, study=study, acquired_at=acquired_at, meta=meta
        )
    ]


def _read_waveform(ds: Dataset, idx: int, ctx: WorkerContext) -> tuple[np.ndarray, np.ndarray]:
    """Waveform group ``idx`` as physical values (samples, channels) float64 and as stored integers
    (samples, channels), after checking the channel count and the sample limit (header first,
    before pydicom allocates)."""
    group = ds.WaveformSequence[idx]
    n_defs = len(group.get("ChannelDefinitionSequence", None) or [])
    if n_defs != int(group.get("NumberOfWaveformChannels", 0) or 0):
        raise QuarantineError(
            ReasonCode.ECG_HEADER_INVALID, "channel definitions do not match the channel count"
        )
    # the sample limit, from the header, before pydicom allocates the (float64) waveform
    if int(group.get("NumberOfWaveformSamples", 0) or 0) * max(n_defs, 1) > ctx.limits.max_ecg_samples:
        raise QuarantineError(ReasonCode.LIMIT_EXCEEDED, "ECG waveform exceeds the sample limit")
    try:
        values = ds.waveform_array(idx)
        raw = multiplex_array(ds, idx, as_raw=True)
    except (AttributeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise QuarantineError(
            ReasonCode.ECG_SIGNAL_CORRUPT, f"waveform data cannot be decoded ({type(exc).__name__})"
        ) from None
    n_samples = int(values.shape[0])
    if values.ndim != 2 or n_samples == 0:
        raise QuarantineError(ReasonCode.ECG_SIGNAL_CORRUPT, "waveform group holds no samples")
    if n_samples * values.shape[1] > ctx.limits.max_ecg_samples:
        raise QuarantineError(ReasonCode.LIMIT_EXCEEDED, "ECG waveform exceeds the sample limit")
    return values, raw


def _padding_value(group: Dataset, raw: np.ndarray) -> int | None:
    """The group's WaveformPaddingValue as a stored integer (an OB/OW value is read in the
    group's sample encoding), or ``None``."""
    padding = group.get("WaveformPaddingValue", None)
    pad_value = None
    if isinstance(padding, bytes | bytearray):
        if len(padding) >= raw.dtype.itemsize:  # OB/OW value: one sample in the group's encoding
            pad_value = int(np.frombuffer(bytes(padding)[: raw.dtype.itemsize], dtype=raw.dtype)[0])
    elif padding is not None:
        pad_value = int(padding)
    return pad_value


def _source_channels(
    group: Dataset, values: np.ndarray, raw: np.ndarray, pad_value: int | None, fs: float
) -> tuple[list[SourceChannel], set[str], set[tuple]]:
    """One :class:`SourceChannel` per channel definition: mV (NaN at padding), lead match (none
    without a voltage unit), ADC-limit mask. Also the units seen and the (low, high, notch) filters
    in Hz."""
    info = np.iinfo(raw.dtype) if np.issubdtype(raw.dtype, np.integer) else None
    channel_defs = list(group.get("ChannelDefinitionSequence", None) or [])
    if len(channel_defs) != values.shape[1]:
        raise QuarantineError(
            ReasonCode.ECG_HEADER_INVALID, "channel definitions do not match the channel count"
        )
    channels: list[SourceChannel] = []
    units_in: set[str] = set()
    filters: set[tuple] = set()
    for j, ch in enumerate(channel_defs):
        name, match = _channel_name_and_match(ch)
        units_seq = ch.get("ChannelSensitivityUnitsSequence", None) or []
        unit = str(units_seq[0].get("CodeValue", "") or "") if units_seq else ""
        factor = units_to_mv(unit) if "ChannelSensitivity" in ch else None
        if factor is None:
            # raw counts without a voltage unit cannot be placed on the mV scale
            match = None
            factor = 1.0
        units_in.add(unit or "<none>")
        x = values[:, j].astype(np.float64) * factor
        r = raw[:, j]
        if pad_value is not None:
            x[r == pad_value] = np.nan
        at_limit = None
        if info is not None:
            at_limit = (r <= info.min + (1 if pad_value == info.min else 0)) | (r >= info.max)
            if pad_value is not None:
                at_limit &= r != pad_value
        filters.add(
            (
                _num(ch.get("FilterLowFrequency", None)),
                _num(ch.get("FilterHighFrequency", None)),
                _num(ch.get("NotchFilterFrequency", None)),
            )
        )
        channels.append(SourceChannel(name=name, signal=x, rate_hz=fs, match=match, at_adc_limit=at_limit))
    return channels, units_in, filters


def _source_meta(ds: Dataset, idx: int, values: np.ndarray, units_in: set[str], filters: set[tuple]) -> dict:
    """The ``source`` block of the ECG meta: SOP class, group, shape, rate, encoding, units,
    filters, device."""
    group = ds.WaveformSequence[idx]
    sop = str(ds.get("SOPClassUID", "") or "")
    return {
        "format": "dicom_waveform",
        "sop_class": ECG_SOP_CLASSES.get(sop, "other waveform"),
        "n_groups": len(ds.WaveformSequence),
        "group_index": idx,
        "group_label": str(group.get("MultiplexGroupLabel", "") or "").upper()[:32],
        "n_channels": int(values.shape[1]),
        "n_samples": int(values.shape[0]),
        "rate_hz": float(group.SamplingFrequency),
        "bits_allocated": int(group.get("WaveformBitsAllocated", 0) or 0),
        "sample_interpretation": str(group.get("WaveformSampleInterpretation", "") or ""),
        "units_in": sorted(units_in),
        "filters_hz_low_high_notch": sorted([list(f) for f in filters], key=str),
        "manufacturer": str(ds.get("Manufacturer", "") or "")[:64],
        "model": str(ds.get("ManufacturerModelName", "") or "")[:64],
        "values": "pydicom Dataset.waveform_array (sensitivity × correction + baseline)",
    }


def _num(value) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None
