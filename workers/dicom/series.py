"""CT/MR series → volumes: sort, check, and stack DICOM slices as nibabel/MONAI do.

Geometry conventions:

- DICOM patient coordinates are LPS (mm). ImageOrientationPatient (IOP) holds the direction
  cosines of a row (first 3: direction of increasing column index) and of a column (last 3:
  direction of increasing row index); PixelSpacing is (row spacing, column spacing).
- Slices are ordered by ImagePositionPatient projected on the slice normal
  ``n = row_cos x col_cos`` (never by InstanceNumber or file name).
- The stacked array is (X, Y, Z) = (column, row, slice) as in nibabel's DICOM reader; its LPS
  affine has columns ``row_cos * col_spacing``, ``col_cos * row_spacing``, the mean slice step
  vector, and the first slice's position. ``diag(-1, -1, 1, 1)`` turns it into RAS, and the
  array is then reoriented to the closest canonical RAS orientation with
  ``nibabel.orientations`` (``io_orientation`` → ``apply_orientation``/``inv_ornt_aff``), so
  ``orientation == "RAS"`` and ``spacing_mm`` are the affine's column norms.

Checks before stacking (each slice that does not end up in a volume gets one
``QuarantineRecord``): localizers (ImageType LOCALIZER); orientation not the series' dominant
one; rows/columns/pixel spacing not the dominant ones; duplicate positions (a repeated
acquisition; 4D series follow ``ctx.volume.four_d_policy``); slices outside the longest run of
uniformly spaced positions (gaps, uneven spacing). A series with fewer than
``ctx.volume.min_slices`` slices becomes one 2D ``ImageRecord`` per slice instead.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

from schemas import ImageRecord, Modality, QuarantineRecord, ReasonCode, SeriesSlice, VolumeRecord
from workers.dicom.pixels import render_grey, view_from_attrs
from workers.dicom.records import image_record, volume_record
from workers.volume.redundancy import slice_redundancy

log = logging.getLogger(__name__)

STAGE = "dicom_series"
#: positions closer than this along the normal are the same slice position (mm)
DUPLICATE_TOL_MM = 0.01
#: relative tolerance on slice spacing, orientation cosines and pixel spacing
SPACING_RTOL = 0.02
ORIENTATION_ATOL = 1e-3
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


# --------------------------------------------------------------------------------------------
# geometry (pure numpy, shared with enhanced multi-frame objects)
# --------------------------------------------------------------------------------------------
def slice_normal(orientation: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """Unit normal ``row_cos x col_cos`` of an ImageOrientationPatient (6 cosines)."""
    iop = np.asarray(orientation, dtype=np.float64)
    n = np.cross(iop[:3], iop[3:6])
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else n


def lps_affine(
    orientation: tuple[float, ...] | np.ndarray,
    pixel_spacing: tuple[float, float],
    first_position: np.ndarray,
    step: np.ndarray,
) -> np.ndarray:
    """4x4 LPS voxel→world affine of an (X=column, Y=row, Z=slice) array."""
    iop = np.asarray(orientation, dtype=np.float64)
    aff = np.eye(4)
    aff[:3, 0] = iop[:3] * float(pixel_spacing[1])
    aff[:3, 1] = iop[3:6] * float(pixel_spacing[0])
    aff[:3, 2] = np.asarray(step, dtype=np.float64)
    aff[:3, 3] = np.asarray(first_position, dtype=np.float64)
    return aff


def stack_to_ras(
    slices_zyx: np.ndarray,
    orientation: tuple[float, ...] | np.ndarray,
    pixel_spacing: tuple[float, float],
    positions: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Stack sorted slices (Z, rows, cols) into a canonical RAS (X, Y, Z) array.

    ``positions`` are the sorted ImagePositionPatient (Z, 3), LPS mm. Returns
    ``(array, ras_affine, spacing_mm)`` with ``spacing_mm`` the affine's column norms.
    """
    positions = np.asarray(positions, dtype=np.float64)
    n = positions.shape[0]
    step = (positions[-1] - positions[0]) / (n - 1) if n > 1 else slice_normal(orientation)
    xyz = np.transpose(slices_zyx, (2, 1, 0))  # (cols, rows, slices) = (X, Y, Z)
    ras = LPS_TO_RAS @ lps_affine(orientation, pixel_spacing, positions[0], step)
    ornt = io_orientation(ras)
    out = np.ascontiguousarray(apply_orientation(xyz, ornt))
    new_aff = ras @ inv_ornt_aff(ornt, xyz.shape)
    spacing = tuple(float(v) for v in np.sqrt((new_aff[:3, :3] ** 2).sum(axis=0)))
    return out, new_aff, spacing  # type: ignore[return-value]


def uniform_runs(projections: np.ndarray) -> list[tuple[int, int]]:
    """Split sorted, de-duplicated projections into runs of uniform spacing.

    Returns ``[(start, stop), ...]`` index ranges (stop exclusive). The reference spacing is
    the median step; a step deviating by more than ``SPACING_RTOL`` of it starts a new run.
    """
    n = len(projections)
    if n < 2:
        return [(0, n)]
    steps = np.diff(projections)
    ref = float(np.median(steps))
    tol = max(SPACING_RTOL * ref, 1e-3)
    runs: list[tuple[int, int]] = []
    start = 0
    for i, d in enumerate(steps):
        if abs(d - ref) > tol:
            runs.append((start, i + 1))
            start = i + 1
    runs.append((start, n))
    return runs


# --------------------------------------------------------------------------------------------
# series assembly
# --------------------------------------------------------------------------------------------
@dataclass
class _S:
    s: SeriesSlice
    meta: dict
    proj: float = 0.0


def _quarantine(s: SeriesSlice, reason: ReasonCode, message: str) -> QuarantineRecord:
    return QuarantineRecord(
        source_id=s.source_id,
        source_name=s.source_name,
        modality=Modality.VOLUME,
        stage=STAGE,
        reason=reason,
        message=message,
    )


def _pixels(s: SeriesSlice) -> np.ndarray:
    return np.frombuffer(s.pixels, dtype="<i2").reshape(s.rows, s.columns)


def _slice_image(x: _S, ctx) -> ImageRecord:
    """A lone slice as a 2D ImageRecord (stored = the slice's Modality-LUT'd int16 values)."""
    meta = x.meta
    stored = _pixels(x.s).astype(np.int16)
    render = meta.get("render", {})
    photometric = str(render.get("PhotometricInterpretation", "MONOCHROME2"))
    rendition, render_steps, render_info = render_grey(stored, view_from_attrs(render), photometric)
    steps = tuple(meta.get("modality_steps", [])) + render_steps
    return image_record(
        item_source_ids=(x.s.source_id,),
        source_name=x.s.source_name,
        licence=x.s.licence,
        patient=x.s.patient,
        study=x.s.study,
        acquired_at=x.s.acquired_at,
        stored=stored,
        rendition=rendition,
        steps=steps,
        photometric=photometric,
        frames=1,
        rendition_frame=0,
        dicom=meta.get("dicom", {}),
        pixel_info={**render_info, "int16_cast": meta.get("int16_cast", "exact")},
        deid_audit=meta.get("deid", {}),
        rendition_size=ctx.image.rendition_size,
        ctx=ctx,
        extra_meta={"series": {"role": "lone slice", "series_size": meta.get("_series_size", 1)}},
    )


def _majority(items: list[_S], key) -> tuple[list[_S], list[_S]]:
    """Split ``items`` into (members of the most common key, the rest); ties → smallest key repr."""
    counts = Counter(key(x) for x in items)
    best = sorted(counts.items(), key=lambda kv: (-kv[1], repr(kv[0])))[0][0]
    keep = [x for x in items if key(x) == best]
    rest = [x for x in items if key(x) != best]
    return keep, rest


def _orientation_key(x: _S) -> tuple[float, ...]:
    return tuple(round(v / ORIENTATION_ATOL) * ORIENTATION_ATOL for v in x.s.orientation)


def _grid_key(x: _S) -> tuple:
    return (x.s.rows, x.s.columns, tuple(round(v, 3) for v in x.s.pixel_spacing_mm))


def _temporal_key(x: _S) -> tuple:
    t = x.meta.get("temporal", {})
    return tuple(
        str(t.get(k, ""))
        for k in ("TemporalPositionIdentifier", "AcquisitionNumber", "EchoNumbers", "TriggerTime")
    )


def _merge_audits(items: list[_S]) -> dict:
    """Union of the de-identification audits of the slices (keyword lists merged)."""
    merged: dict = {}
    for x in items:
        for k, v in (x.meta.get("deid") or {}).items():
            if isinstance(v, list) and k not in ("options", "hardening"):
                merged[k] = sorted(set(merged.get(k, [])) | set(v))
            elif isinstance(v, int) and not isinstance(v, bool):
                merged[k] = max(int(merged.get(k, 0)), v)
            else:
                merged.setdefault(k, v)
    return merged


def _build_volume(run: list[_S], ctx, notes: dict, series_size: int) -> VolumeRecord:
    first = run[0].s
    stack = np.stack([_pixels(x.s) for x in run]).astype(np.int16)
    positions = np.array([x.s.position_mm for x in run], dtype=np.float64)
    vol, affine, spacing = stack_to_ras(stack, first.orientation, first.pixel_spacing_mm, positions)
    dicom = run[0].meta.get("dicom", {})
    patients = Counter(x.s.patient for x in run)
    patient = sorted(patients.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    studies = Counter(x.s.study for x in run)
    study = sorted(studies.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
    times = sorted(x.s.acquired_at for x in run if x.s.acquired_at)
    casts = {x.meta.get("int16_cast", "exact") for x in run}
    rescale_type = str(dicom.get("RescaleType", "") or "")
    hounsfield = dicom.get("Modality") == "CT" and rescale_type in ("", "HU")
    meta = {
        "source_format": "dicom-series",
        "dicom": dicom,
        "volume": {
            "array_axes": "X,Y,Z (RAS, canonical)",
            "affine": "RAS voxel->world mm (DICOM LPS converted as nibabel/MONAI do)",
            "slice_order": "ImagePositionPatient projected on the slice normal",
            "n_slices": len(run),
            "series_size": series_size,
            "values": "HU (Modality LUT applied)" if hounsfield else "Modality LUT output",
            "dtype": "int16",
            "int16_cast": "exact" if casts == {"exact"} else sorted(casts - {"exact"})[0],
            **notes,
        },
        "redundancy": slice_redundancy(vol, axis=2),  # "Less is More": near-duplicate slices
        "deid": _merge_audits(run),
    }
    return volume_record(
        source_ids=tuple(x.s.source_id for x in run),
        source_name=first.source_name,
        licence=first.licence,
        patient=patient,
        study=study,
        acquired_at=times[0] if times else "",
        volume=vol,
        affine=affine,
        spacing=spacing,
        source_format="dicom-series",
        hounsfield=hounsfield,
        meta=meta,
        ctx=ctx,
    )


def _assemble_group(
    items: list[_S], ctx, series_size: int
) -> list[VolumeRecord | ImageRecord | QuarantineRecord]:
    """Dedupe, split at gaps, and build the volume(s) of one orientation/grid group."""
    positions = _positions(items)
    phases, out, notes = _split_phases(items, positions, ctx)
    for phase_index, phase in enumerate(phases):
        run_notes = dict(notes)
        if len(phases) > 1:
            run_notes["four_d_phase"] = phase_index
        out += _phase_volume(phase, run_notes, ctx, series_size)
    return out


def _positions(items: list[_S]) -> list[list[_S]]:
    """Slices grouped by position along the slice normal (mm; duplicates within
    ``DUPLICATE_TOL_MM`` share one), in order; sorts ``items`` in place and sets their ``proj``."""
    normal = slice_normal(items[0].s.orientation)
    for x in items:
        x.proj = float(np.dot(normal, np.asarray(x.s.position_mm, dtype=np.float64)))
    items.sort(key=lambda x: (x.proj, _temporal_key(x), x.s.source_id))
    positions: list[list[_S]] = []
    for x in items:
        if positions and abs(x.proj - positions[-1][0].proj) < DUPLICATE_TOL_MM:
            positions[-1].append(x)
        else:
            positions.append([x])
    return positions


def _split_phases(
    items: list[_S], positions: list[list[_S]], ctx
) -> tuple[list[list[_S]], list[VolumeRecord | ImageRecord | QuarantineRecord], dict]:
    """The phases (slice lists) to build volumes from, the quarantines so far, and notes.

    One slice per position: one phase. Every position repeated k times: a 4D series, handled by
    ``ctx.volume.four_d_policy`` (quarantine: no phase and every slice quarantined; first: the
    other phases quarantined; all: k phases). Otherwise the first slice of each position is kept,
    and the others are quarantined as duplicates or inconsistent."""
    out: list[VolumeRecord | ImageRecord | QuarantineRecord] = []
    counts = {len(p) for p in positions}
    phases: list[list[_S]]
    notes: dict = {}
    if counts == {1}:
        phases = [[p[0] for p in positions]]
    elif len(counts) == 1 and len(positions) >= 2:
        # a 4D series: every position repeated k times (phases, echoes, time points)
        k = counts.pop()
        by_phase = [[p[i] for p in positions] for i in range(k)]
        policy = ctx.volume.four_d_policy
        notes["four_d_phases"] = k
        if policy == "quarantine":
            quarantined = [
                _quarantine(x.s, ReasonCode.VOLUME_UNSUPPORTED_DIMS, "4D series (four_d_policy=quarantine)")
                for x in items
            ]
            return [], quarantined, notes
        if policy == "first":
            phases = by_phase[:1]
            out.extend(
                _quarantine(x.s, ReasonCode.SERIES_INCONSISTENT, "additional 4D phase (four_d_policy=first)")
                for phase in by_phase[1:]
                for x in phase
            )
        else:
            phases = by_phase
    else:
        phases = [[p[0] for p in positions]]
        for p in positions:
            first_pixels = _pixels(p[0].s)
            for dup in p[1:]:
                same = dup.s.pixels == p[0].s.pixels or np.array_equal(_pixels(dup.s), first_pixels)
                out.append(
                    _quarantine(dup.s, ReasonCode.DUPLICATE, "identical slice at the same position")
                    if same
                    else _quarantine(dup.s, ReasonCode.SERIES_INCONSISTENT, "two slices at the same position")
                )
        notes["duplicate_positions"] = sum(len(p) - 1 for p in positions)
    return phases, out, notes


def _phase_volume(
    phase: list[_S], run_notes: dict, ctx, series_size: int
) -> list[VolumeRecord | ImageRecord | QuarantineRecord]:
    """The volume of a phase's largest evenly spaced run (ties: the first), the slices of every
    other run quarantined as gaps; all quarantined if that run is shorter than
    ``max(2, ctx.volume.min_slices)``. Adds the gap count to ``run_notes``."""
    out: list[VolumeRecord | ImageRecord | QuarantineRecord] = []
    runs = uniform_runs(np.array([x.proj for x in phase]))
    best = sorted(runs, key=lambda r: (-(r[1] - r[0]), r[0]))[0]
    if len(runs) > 1:
        run_notes["gaps_or_uneven_spacing"] = len(runs) - 1
    if best[1] - best[0] < max(2, ctx.volume.min_slices):
        out.extend(
            _quarantine(x.s, ReasonCode.SERIES_INCONSISTENT, "no evenly spaced run long enough for a volume")
            for x in phase
        )
        return out
    for r in runs:
        if r != best:
            out.extend(
                _quarantine(
                    x.s,
                    ReasonCode.SERIES_INCONSISTENT,
                    "slice outside the largest evenly spaced run (gap)",
                )
                for x in phase[r[0] : r[1]]
            )
    out.append(_build_volume(phase[best[0] : best[1]], ctx, run_notes, series_size))
    return out


def assemble_series(slices: list[SeriesSlice], ctx) -> list[VolumeRecord | ImageRecord | QuarantineRecord]:
    """Turn the slices of one series (any order) into volume(s), 2D images and quarantines.

    Every input slice is accounted for exactly once: in a volume's ``source_ids``, as an
    ``ImageRecord`` (series shorter than ``ctx.volume.min_slices``), or as a
    ``QuarantineRecord`` with the specific reason it was left out.
    """
    if not slices:
        return []
    items = [_S(s, json.loads(s.meta_json) if s.meta_json else {}) for s in slices]
    # deterministic whatever the input order
    items.sort(key=lambda x: x.s.source_id)
    seen: set[str] = set()
    out: list[VolumeRecord | ImageRecord | QuarantineRecord] = []
    unique: list[_S] = []
    for x in items:
        if x.s.source_id in seen:
            continue  # the same input twice: one record for it is enough
        seen.add(x.s.source_id)
        unique.append(x)
    items = unique
    for x in items:
        x.meta["_series_size"] = len(items)

    if len(items) < ctx.volume.min_slices:
        return [_slice_image(x, ctx) for x in items]

    localizers = [x for x in items if x.s.is_localizer]
    out.extend(
        _quarantine(x.s, ReasonCode.SERIES_INCONSISTENT, "localizer image excluded from volume")
        for x in localizers
    )
    items = [x for x in items if not x.s.is_localizer]
    if not items:
        return out

    keep, rest = _majority(items, _orientation_key)
    out.extend(
        _quarantine(x.s, ReasonCode.SERIES_INCONSISTENT, "orientation differs from the series") for x in rest
    )
    keep, rest = _majority(keep, _grid_key)
    out.extend(
        _quarantine(x.s, ReasonCode.SERIES_INCONSISTENT, "rows/columns/pixel spacing differ from the series")
        for x in rest
    )
    if len(keep) < max(2, ctx.volume.min_slices):
        out.extend(
            _quarantine(x.s, ReasonCode.SERIES_TOO_SHORT, "too few consistent slices for a volume")
            for x in keep
        )
        return out
    out.extend(_assemble_group(keep, ctx, len(items)))
    return out
