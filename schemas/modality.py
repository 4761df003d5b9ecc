"""Modalities of the corpus, in the fixed order used for modality masks."""

from __future__ import annotations

from enum import Enum


class Modality(str, Enum):
    """A corpus modality. The declaration order is the order of the ``modality_mask`` bits."""

    IMAGE = "image"  # 2D radiograph / single DICOM frame set
    VOLUME = "volume"  # 3D CT/MR volume (DICOM series or NIfTI)
    ECG = "ecg"  # 12-lead (or partial) electrocardiogram
    REPORT = "report"  # free-text radiology / cardiology report
    LABS = "labs"  # laboratory values around an anchor (e.g. a hospital admission)
    UNKNOWN = "unknown"  # an input whose modality could not be determined (quarantined)


#: Modalities that can appear in a sample, in mask order.
SAMPLE_MODALITIES: tuple[Modality, ...] = (
    Modality.IMAGE,
    Modality.VOLUME,
    Modality.ECG,
    Modality.REPORT,
)


#: Modalities after the first four: in the mask only of builds that produce them (``extended``),
#: so corpora without labs keep their four-bit masks.
EXTRA_MODALITIES: tuple[Modality, ...] = (Modality.LABS,)


def modality_mask(present: set[Modality] | frozenset[Modality], extended: bool = False) -> tuple[bool, ...]:
    """Return the presence mask over :data:`SAMPLE_MODALITIES` (the Symile trainer needs it),
    followed by :data:`EXTRA_MODALITIES` when ``extended`` (a build with labs)."""
    mods = SAMPLE_MODALITIES + EXTRA_MODALITIES if extended else SAMPLE_MODALITIES
    return tuple(m in present for m in mods)
