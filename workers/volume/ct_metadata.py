"""CT values and spacing from a per-volume metadata table (CT-RATE's ``*_metadata.csv``).

CT-RATE ships its NIfTI volumes with the scanner's *stored* values and a header whose voxel
sizes need not be the acquisition's; the metadata CSV gives ``RescaleSlope``,
``RescaleIntercept``, ``XYSpacing`` (``"[0.75, 0.75]"``) and ``ZSpacing`` per ``VolumeName``.
Here, on one decoded volume (int or float array (X, Y, Z), RAS, as ``workers.volume.nifti`` stores it):

- values: when the array holds no air-valued voxel (min > −500, so it cannot be HU for a body
  CT), ``HU = stored · slope + intercept`` (float64, rounded to int16 under the decoder's HU
  plausibility check); a volume that already holds HU is left as it is and says so;
- spacing: the numbers of the spacing text in DICOM order (row spacing, column spacing, slice
  spacing; a single in-plane number stands for both) become the (X, Y, Z) voxel sizes of the
  RAS array (X = columns, Y = rows): each affine column keeps its direction and gets the new
  length, the origin stays.

Everything returned is JSON-ready; bad values raise ``QuarantineError`` (never a crash).
"""

from __future__ import annotations

import math
import re

import numpy as np

from schemas.reasons import QuarantineError, ReasonCode
from workers.volume.nifti import HU_AIR_MAX, _hu_int16

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
CONVENTION = "ct-metadata/1"


def parse_float(text: str) -> float | None:
    """A finite float from a cell (``"1.0"``, ``"-1024"``), else None."""
    try:
        v = float(str(text).strip())
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def parse_spacing(text: str) -> tuple[float, float, float] | None:
    """(X, Y, Z) mm from ``"[row, col] slice"`` or ``"inplane slice"`` text; None if not 2-3
    positive numbers. DICOM PixelSpacing is (row spacing, column spacing): X = column spacing."""
    nums = [float(x) for x in _NUMBER.findall(str(text))]
    if len(nums) == 2:
        nums = [nums[0], nums[0], nums[1]]
    if len(nums) != 3 or not all(math.isfinite(n) and n > 0 for n in nums):
        return None
    row, col, z = nums
    return (col, row, z)


def respace_affine(affine: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """4x4 affine whose column ``i`` keeps its direction with length ``spacing[i]``; origin kept."""
    out = np.array(affine, dtype=np.float64, copy=True)
    for i, s in enumerate(spacing):
        norm = float(np.linalg.norm(out[:3, i]))
        out[:3, i] = out[:3, i] / norm * s
    return out


def apply_ct_metadata(
    vol: np.ndarray, affine: np.ndarray, slope: str, intercept: str, spacing: str
) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(array, affine, info)`` after the metadata's rescale and spacing; ``info["rescale"]
    ["applied"]`` says whether the values were converted to int16 HU here.

    ``slope``/``intercept``/``spacing`` are the table's text (empty: not given). Raises
    ``QuarantineError(volume_values_implausible)`` for a slope/intercept that cannot be read or
    gives no plausible HU, and ``volume_header_invalid`` for an unreadable spacing.
    """
    info: dict = {"convention": CONVENTION}
    if slope or intercept:
        a, b = parse_float(slope or "1"), parse_float(intercept or "0")
        if a is None or b is None or a == 0.0:
            raise QuarantineError(
                ReasonCode.VOLUME_VALUES_IMPLAUSIBLE, "metadata rescale slope/intercept not usable"
            )
        info["rescale"] = {"slope": a, "intercept": b}
        if float(vol.min()) <= HU_AIR_MAX:
            info["rescale"]["applied"] = False
            info["rescale"]["why"] = f"values already Hounsfield units (air <= {HU_AIR_MAX:g} present)"
        else:
            vol, rounded = _hu_int16(vol.astype(np.float64) * a + b)
            info["rescale"]["applied"] = True
            info["rescale"]["hu_rounded"] = rounded
    if spacing:
        sp = parse_spacing(spacing)
        if sp is None:
            raise QuarantineError(ReasonCode.VOLUME_HEADER_INVALID, "metadata spacing not usable")
        before = tuple(round(float(x), 6) for x in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
        affine = respace_affine(affine, sp)
        info["spacing"] = {"header_mm": list(before), "metadata_mm": [round(s, 6) for s in sp]}
    return vol, affine, info
