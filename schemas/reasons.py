"""Quarantine reason codes and the exception workers raise for bad input.

A worker raises :class:`QuarantineError` for *bad input*; the runner turns it into a
``QuarantineRecord``. Any other exception is a bug: it fails the build in strict mode.
Messages must never contain PHI (no names, IDs, dates, paths): say what is wrong, not with whom.
"""

from __future__ import annotations

from enum import Enum


class ReasonCode(str, Enum):
    """Why an input (or part of one) did not become a sample."""

    # discovery / container level
    EMPTY_FILE = "empty_file"
    UNSUPPORTED_FORMAT = "unsupported_format"  # not a medical file we know
    UNREADABLE_FILE = "unreadable_file"  # I/O error, permission
    ORPHAN_COMPANION = "orphan_companion"  # e.g. a .dat signal file with no header
    # DICOM
    DICOM_TRUNCATED = "dicom_truncated"
    DICOM_CORRUPT = "dicom_corrupt"
    DICOM_NO_PIXELS = "dicom_no_pixels"
    DICOM_DIRECTORY = "dicom_directory"  # a DICOMDIR index, not an image
    DICOM_UNSUPPORTED_SOP = "dicom_unsupported_sop"  # e.g. SR, presentation state
    DICOM_PIXEL_DECODE = "dicom_pixel_decode"  # compressed data that fails to decode
    DICOM_BURNED_IN = "dicom_burned_in_annotation"
    FILTERED_OUT = "filtered_out"  # modality/body part/view filter from config
    SERIES_INCONSISTENT = "series_inconsistent"  # mixed orientation, gaps, duplicates
    SERIES_TOO_SHORT = "series_too_short"
    IMAGE_FILE_CORRUPT = "image_file_corrupt"  # a JPEG/PNG that does not decode
    # metadata tables (identity joins, anchors)
    NO_METADATA = "no_metadata"  # an item the configured metadata table has no row for
    # waveforms
    ECG_HEADER_INVALID = "ecg_header_invalid"
    ECG_SIGNAL_MISSING = "ecg_signal_missing"
    ECG_SIGNAL_CORRUPT = "ecg_signal_corrupt"
    ECG_LEADS_MISSING = "ecg_leads_missing"
    ECG_QC_FAILED = "ecg_qc_failed"
    # volumes
    VOLUME_HEADER_INVALID = "volume_header_invalid"
    VOLUME_DATA_CORRUPT = "volume_data_corrupt"
    VOLUME_UNSUPPORTED_DIMS = "volume_unsupported_dims"
    VOLUME_VALUES_IMPLAUSIBLE = "volume_values_implausible"
    # reports
    REPORT_EMPTY = "report_empty"
    REPORT_UNPARSEABLE = "report_unparseable"
    REPORT_ENCODING = "report_encoding"
    REPORT_TABLE_MALFORMED = "report_table_malformed"
    # limits and safety
    LIMIT_EXCEEDED = "limit_exceeded"  # pixels, samples, text length, decompression ratio
    TIMEOUT = "timeout"
    # global stages
    UNLINKED = "unlinked"  # dropped by the linking policy
    DUPLICATE = "duplicate"
    CONFLICTING_PATIENT = "conflicting_patient"  # same content under two patients
    # last resort: an exception no decoder anticipated (lenient mode only)
    DECODER_ERROR = "decoder_error"


class QuarantineError(Exception):
    """Raised by a worker when an input is bad. ``message`` must be free of PHI."""

    def __init__(self, reason: ReasonCode, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = message
