"""Modalities of the corpus, in the fixed order used for modality masks."""

from __future__ import annotations

from enum import Enum


class Modality(str, Enum):
    """A corpus modality. The declaration order is the order of the ``modality_mask`` bits."""

    IMAGE = "image"  # 2D radiograph / single DICOM frame set
    VOLUME = "volume"  # 3D CT/MR volume (DICOM series or NIfTI)
    ECG = "ecg"  # 12-lead (or partial) electrocardiogram
    REPORT = "report"  # free-text radiology / cardiology report
    UNKNOWN = "unknown"  # an input whose modality could not be determined (quarantined)


#: Modalities that can appear in a sample, in mask order.
SAMPLE_MODALITIES: tuple[Modality, ...] = (
    Modality.IMAGE,
    Modality.VOLUME,
    Modality.ECG,
    Modality.REPORT,
)


def modality_mask(present: set[Modality] | frozenset[Modality]) -> tuple[bool, ...]:
    """Return the presence mask over :data:`SAMPLE_MODALITIES` (the Symile trainer needs it)."""
    return tuple(m in present for m in SAMPLE_MODALITIES)
