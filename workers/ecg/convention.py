"""The corpus ECG convention: lead names and aliases, resampling, the 10 s window and QC.

Every ECG decoder (WFDB, DICOM waveform) hands its channels to :func:`conform`, which returns
the one array layout the corpus stores:

* **units** mV (physical values; source units µV/mV/V are converted by :func:`units_to_mv`);
* **rate** ``EcgConfig.rate_hz`` (500 Hz) via anti-aliased polyphase resampling:
  ``scipy.signal.resample_poly(x, up, down, padtype="edge")`` with the exact rational factor
  ``up/down = rate_hz / source_rate`` (e.g. 360 Hz → 25/18, 1000 Hz → 1/2, 100 Hz → 5/1). The
  default Kaiser (β = 5) low-pass of ``resample_poly`` is the anti-alias filter. ``padtype="edge"``
  extends the signal with its edge value, so a DC offset causes no transient at t = 0;
* **lead order** I, II, III, aVR, aVL, aVF, V1–V6 (:data:`schemas.contract.ECG_LEADS`), found by
  lead *name* through :func:`match_lead` (aliases listed there), never by channel position;
* **window** (:data:`WINDOW_POLICY` = ``"first"``): the first ``EcgConfig.seconds`` (10 s) of the
  record, t = 0 … 10 s. Reason: it is reproducible, it needs no look at the whole recording (a
  24 h Holter is not read in full) and it is exactly the PTB-XL/CinC 10 s convention. Records
  shorter than the window are padded at the end with NaN (never zeros: padding must not look
  like a flat signal) and flagged ``padded``. Samples that are NaN in the source (WFDB invalid
  samples, DICOM padding values) stay NaN at the nearest output sample; they are bridged by
  linear interpolation only for filtering, so they do not smear into their neighbours;
* **dtype** float16, scale 1.0 (stored value = mV); layout (lead, sample) = (12, rate × seconds).
  Missing leads are rows of NaN.

QC flags (``EcgRecord.qc_flags``, sorted, ``kind:lead`` or record-level):

* ``nan:<lead>``         the lead has NaN (invalid) samples inside the window;
* ``flat:<lead>``        a run of ≥ :data:`FLAT_RUN_S` s of identical values (lead off / flat line);
* ``clipped:<lead>``     samples at the ADC limits (when the decoder knows them) or a plateau of
                         ≥ :data:`CLIP_RUN_S` s at the lead's window maximum or minimum (saturation);
* ``implausible_amplitude:<lead>``  ``|x| >`` :data:`MAX_PLAUSIBLE_MV` mV somewhere;
* ``missing:<lead>`` and ``partial_leads``  fewer than the 12 canonical leads were found;
* ``modified_leads``     at least one lead came from a modified (Mason–Likar) placement (``MLII``);
* ``padded``             the record was shorter than the window.

A record with no canonical lead, or whose every present lead is entirely NaN or flat, is not a
sample: the decoders quarantine it (``ecg_leads_missing`` / ``ecg_qc_failed``); records with
1–11 leads are kept and flagged, or quarantined when ``EcgConfig.partial_leads == "quarantine"``.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

from schemas.canonical import canonical_json
from schemas.contract import ECG_LEADS, ECG_UNITS
from schemas.modality import Modality
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import EcgRecord, InputItem
from workers.config import EcgConfig
from workers.context import WorkerContext

WINDOW_POLICY = "first"
PAD_VALUE = "nan"
RESAMPLE_PADTYPE = "edge"
FLAT_RUN_S = 1.0
CLIP_RUN_S = 0.05
MAX_PLAUSIBLE_MV = 20.0
#: largest up/down factor used exactly; beyond it the ratio is approximated (recorded in meta)
MAX_POLY_FACTOR = 1000
#: plausible source sampling rates of an ECG, in Hz (outside: ``ecg_header_invalid``)
MIN_RATE_HZ, MAX_RATE_HZ = 10.0, 100_000.0
CONVENTION_VERSION = "ecg-convention/1"

# ---------------------------------------------------------------------------------------------
# lead names
# ---------------------------------------------------------------------------------------------

#: SCP-ECG (``5.6.3-9-N``, DICOM scheme ``SCPECG``) and IEEE 11073 MDC (``2:N``, scheme ``MDC``)
#: share the lead numbering N: 1=I, 2=II, 3..8=V1..V6, 61=III, 62=aVR, 63=aVL, 64=aVF.
LEAD_CODE_NUMBERS: dict[int, str] = {
    1: "I",
    2: "II",
    61: "III",
    62: "aVR",
    63: "aVL",
    64: "aVF",
    3: "V1",
    4: "V2",
    5: "V3",
    6: "V4",
    7: "V5",
    8: "V6",
}
_CANON_LOWER = {lead.lower(): lead for lead in ECG_LEADS}
_LIMB = {"i": "I", "ii": "II", "iii": "III", "1": "I", "2": "II", "3": "III"}
_PREFIX_TOKENS = ("lead", "ecg", "ekg", "mdc")
#: (pattern on the normalised core name, → canonical lead, rule, modified placement)
_ALIAS_PATTERNS: tuple[tuple[str, object, str, bool], ...] = (
    (r"d(i{1,3}|[123])", lambda g: _LIMB[g], "d_notation", False),
    (r"c([1-6])", lambda g: f"V{g}", "c_electrode", False),
    (r"ml(i{1,3}|[123])", lambda g: _LIMB[g], "modified_limb", True),
    (r"(?:mod\.?|m)v([1-6])", lambda g: f"V{g}", "modified_chest", True),
)

#: every alias rule :func:`match_lead` applies, as documented in meta (``lead_map[*].alias``)
ALIAS_RULES: dict[str, str] = {
    "exact": "the canonical spelling (I, II, III, aVR, aVL, aVF, V1..V6)",
    "case": "canonical name in another case: AVL, avl, v1, ii",
    "prefixed": "'Lead'/'ECG'/'EKG'/'MDC_ECG_LEAD' prefix and (qualifiers) dropped: 'Lead I (Einthoven)', 'lead_ii'",
    "numeral": "limb lead by number after a 'lead' prefix: 'Lead 2' → II",
    "d_notation": "D-notation of the limb leads: DI/DII/DIII, D1/D2/D3 → I/II/III",
    "c_electrode": "IEC chest electrode names C1..C6 → V1..V6",
    "modified_limb": "Mason–Likar modified limb leads MLI/MLII/MLIII, ML1/ML2/ML3 → I/II/III (flagged)",
    "modified_chest": "modified chest leads MV1..MV6, mod.V1.. → V1..V6 (flagged)",
    "inverted": "a leading '-' (e.g. Cabrera '-aVR'): the lead is negated back to its canonical polarity",
    "code": "SCP-ECG 5.6.3-9-N or MDC 2:N lead code",
}


@dataclass(frozen=True)
class LeadMatch:
    """A source channel name resolved to a canonical lead. ``sign`` is +1, or -1 for inverted."""

    lead: str
    sign: int
    alias: str
    modified: bool


def match_lead_code(code_value: str, scheme: str = "") -> LeadMatch | None:
    """Resolve a coded lead (``"5.6.3-9-61"`` SCPECG, ``"2:61"`` MDC) to a canonical lead."""
    code = (code_value or "").strip()
    m = re.fullmatch(r"5\.6\.3-9-(\d+)", code) or re.fullmatch(r"2:(\d+)", code)
    if m is None and scheme.upper() in ("SCPECG", "MDC"):
        m = re.fullmatch(r"(\d+)", code)
    if m is None:
        return None
    lead = LEAD_CODE_NUMBERS.get(int(m.group(1)))
    return LeadMatch(lead, 1, "code", False) if lead else None


def match_lead(name: str) -> LeadMatch | None:
    """Resolve a channel name to a canonical lead by the rules of :data:`ALIAS_RULES`, else None.

    Names that only *resemble* a lead are not matched: ``ECG1``/``ECG2`` (channel numbers),
    ``V2-V3``/``CM5`` (bipolar or non-standard leads), ``V4R`` (right-sided), ``vx`` (Frank).
    """
    raw = (name or "").strip()
    if not raw:
        return None
    if raw in ECG_LEADS:
        return LeadMatch(raw, 1, "exact", False)
    s = re.sub(r"\(.*?\)", " ", raw).strip().lower()
    sign = 1
    rules: list[str] = []
    if s.startswith("-"):
        sign, s = -1, s[1:].strip()
        rules.append("inverted")
    tokens = [t for t in re.split(r"[\s_]+", s) if t]
    had_lead = False
    while tokens and tokens[0] in _PREFIX_TOKENS:
        had_lead = had_lead or tokens[0] == "lead"
        tokens.pop(0)
        if "prefixed" not in rules:
            rules.append("prefixed")
    core = "".join(tokens)
    if not core:
        return None
    lead: str | None = None
    modified = False
    if core in _CANON_LOWER:
        lead = _CANON_LOWER[core]
        if not rules and raw != lead:
            rules.append("case")
    elif core in ("1", "2", "3") and had_lead:
        lead = _LIMB[core]
        rules.append("numeral")
    else:
        for pattern, to_lead, rule, is_modified in _ALIAS_PATTERNS:
            if m := re.fullmatch(pattern, core):
                lead, modified = to_lead(m.group(1)), is_modified
                rules.append(rule)
                break
    if lead is None:
        return None
    return LeadMatch(lead, sign, "+".join(rules) or "exact", modified)


@dataclass(frozen=True)
class LeadAssignment:
    """Which source channel feeds each canonical lead, and which channels were not used."""

    sources: dict[str, tuple[int, LeadMatch]]  # canonical lead → (channel index, match)
    unmapped: tuple[int, ...]  # channels that are not a canonical lead (Frank, V4R, ...)
    duplicates: tuple[int, ...]  # channels that map to a lead already fed by a better channel


def assign_leads(matches: Sequence[LeadMatch | None]) -> LeadAssignment:
    """Pick one source channel per canonical lead: an unmodified lead beats a modified one
    (``II`` over ``MLII``), then the earlier channel wins. Never uses channel positions."""
    best: dict[str, tuple[int, LeadMatch]] = {}
    unmapped: list[int] = []
    dupes: list[int] = []
    for idx, m in enumerate(matches):
        if m is None:
            unmapped.append(idx)
            continue
        cur = best.get(m.lead)
        if cur is None:
            best[m.lead] = (idx, m)
        elif cur[1].modified and not m.modified:
            dupes.append(cur[0])
            best[m.lead] = (idx, m)
        else:
            dupes.append(idx)
    ordered = {lead: best[lead] for lead in ECG_LEADS if lead in best}
    return LeadAssignment(ordered, tuple(unmapped), tuple(sorted(dupes)))


def safe_label(name: str) -> str:
    """A channel name as it may appear in meta (short, plain characters), else ``"<label>"``."""
    name = (name or "").strip()
    return name if re.fullmatch(r"[A-Za-z0-9 .+\-_:()]{1,40}", name) else "<label>"


# ---------------------------------------------------------------------------------------------
# units and resampling
# ---------------------------------------------------------------------------------------------

_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "nv": 1e-6, "v": 1e3}


def units_to_mv(units: str) -> float | None:
    """Factor that converts values in ``units`` to mV (``"uV"`` → 1e-3), None if not a voltage."""
    key = (units or "").strip().lower().replace(" ", "")
    return _UNIT_TO_MV.get(key)


@lru_cache(maxsize=256)
def resample_factors(rate_in: float, rate_out: int) -> tuple[int, int, bool]:
    """Rational ``(up, down, exact)`` with ``up/down = rate_out/rate_in``.

    The source rate is read as a fraction with denominator ≤ 1000 (``1000/3`` Hz is exact);
    if either factor would exceed :data:`MAX_POLY_FACTOR` the ratio is approximated and
    ``exact`` is False (the relative rate error is recorded in meta).
    """
    if not (MIN_RATE_HZ <= rate_in <= MAX_RATE_HZ):
        raise ValueError(f"sampling rate outside [{MIN_RATE_HZ:g}, {MAX_RATE_HZ:g}] Hz")
    ratio = Fraction(rate_out) / Fraction(rate_in).limit_denominator(1000)
    exact = max(ratio.numerator, ratio.denominator) <= MAX_POLY_FACTOR
    if not exact:
        ratio = ratio.limit_denominator(MAX_POLY_FACTOR)
    return ratio.numerator, ratio.denominator, exact


def window_source_samples(rate_in: float, seconds: float) -> int:
    """Number of source samples in the window (``round(seconds × rate)``)."""
    return int(round(seconds * rate_in))


def read_margin_samples(rate_in: float, rate_out: int) -> int:
    """Source samples to read beyond the window so the filter sees real data at its end.

    ``resample_poly``'s filter spans ``10 × max(up, down)`` samples of the upsampled signal each
    side, i.e. ``10 × max(up, down) / up`` source samples; one extra second covers every ratio
    up to 1 : 1000 with room to spare.
    """
    up, down, _ = resample_factors(rate_in, rate_out)
    return int(math.ceil(10 * max(up, down) / up)) + int(math.ceil(rate_in))


def _interp_nans(x: np.ndarray) -> np.ndarray:
    """Bridge NaN samples linearly (edges: nearest valid value); an all-NaN input becomes 0."""
    bad = np.isnan(x)
    if not bad.any():
        return x
    good = np.flatnonzero(~bad)
    if good.size == 0:
        return np.zeros_like(x)
    out = x.copy()
    out[bad] = np.interp(np.flatnonzero(bad), good, x[good])
    return out


def resample_leads(x: np.ndarray, rate_in: float, rate_out: int) -> np.ndarray:
    """Resample leads ``x`` (leads, samples; float64) to ``rate_out`` with the corpus convention.

    One ``resample_poly`` call along the sample axis (one filter design for all leads). NaN
    samples are bridged for filtering and put back (as NaN) at the nearest output sample.
    Output length is ``ceil(samples × up / down)``.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    up, down, _ = resample_factors(rate_in, rate_out)
    if up == down == 1:
        return x.copy()
    nan = np.isnan(x)
    has_nan = nan.any(axis=1)
    filled = x.copy() if has_nan.any() else x
    for r in np.flatnonzero(has_nan):
        filled[r] = _interp_nans(x[r])
    from scipy.signal import resample_poly  # ~1 s import, paid only by processes that resample

    y = resample_poly(filled, up, down, axis=1, padtype=RESAMPLE_PADTYPE)
    if has_nan.any():
        src = np.minimum(np.rint(np.arange(y.shape[1]) * down / up).astype(np.int64), x.shape[1] - 1)
        for r in np.flatnonzero(has_nan):
            y[r, nan[r, src]] = np.nan
    return y


def resample_lead(x: np.ndarray, rate_in: float, rate_out: int) -> np.ndarray:
    """One lead (1-D) through :func:`resample_leads`."""
    return resample_leads(np.asarray(x, dtype=np.float64)[None, :], rate_in, rate_out)[0]


# ---------------------------------------------------------------------------------------------
# QC
# ---------------------------------------------------------------------------------------------


def _longest_runs(mask: np.ndarray) -> np.ndarray:
    """Length of the longest run of True in each row of a 2-D boolean array."""
    k, m = mask.shape
    out = np.zeros(k, dtype=np.int64)
    if m == 0 or not mask.any():
        return out
    padded = np.zeros((k, m + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    starts, ends = np.nonzero(d == 1), np.nonzero(d == -1)  # row-major: the pairs line up
    np.maximum.at(out, starts[0], ends[1] - starts[1])
    return out


def _has_run(mask: np.ndarray, n: int) -> np.ndarray:
    """Per row of a 2-D boolean array: is there a run of at least ``n`` True values?

    Rows with fewer than ``n`` True values in all cannot have one: only the others are scanned
    (in a clean 12-lead window that is usually none of them).
    """
    out = np.zeros(mask.shape[0], dtype=bool)
    rows = np.flatnonzero(np.count_nonzero(mask, axis=1) >= n)
    if rows.size:
        out[rows] = _longest_runs(mask[rows]) >= n
    return out


def leads_qc(x: np.ndarray, rate_hz: float, at_adc_limit: np.ndarray | None = None) -> list[list[str]]:
    """QC kinds (``nan``, ``flat``, ``clipped``, ``implausible_amplitude``) of lead windows.

    ``x`` (leads, samples) is the source-rate window in mV (NaN = invalid); ``at_adc_limit``
    (same shape) marks samples the decoder found at the converter's limits (None: unknown).
    Vectorised over leads; see the module docstring for the rules.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    nan = np.isnan(x)
    any_nan, all_nan = nan.any(axis=1), nan.all(axis=1)
    same = (np.diff(x, axis=1) == 0) & ~nan[:, 1:] & ~nan[:, :-1]
    flat = _has_run(same, max(2, int(round(FLAT_RUN_S * rate_hz))) - 1)  # n equal samples: n-1 steps
    filled_hi = np.where(nan, -np.inf, x)
    filled_lo = np.where(nan, np.inf, x)
    hi, lo = filled_hi.max(axis=1), filled_lo.min(axis=1)
    need = max(3, int(math.ceil(CLIP_RUN_S * rate_hz)))
    plateau = (hi > lo) & (_has_run(x == hi[:, None], need) | _has_run(x == lo[:, None], need))
    adc = (at_adc_limit & ~nan).any(axis=1) if at_adc_limit is not None else np.zeros(len(x), bool)
    amp = np.maximum(np.abs(hi), np.abs(lo)) > MAX_PLAUSIBLE_MV
    kinds: list[list[str]] = []
    for r in range(len(x)):
        k = ["nan"] if any_nan[r] else []
        if not all_nan[r]:
            k += [
                name
                for name, hit in (
                    ("flat", flat[r]),
                    ("clipped", adc[r] or plateau[r]),
                    ("implausible_amplitude", amp[r]),
                )
                if hit
            ]
        kinds.append(k)
    return kinds


def lead_qc(x: np.ndarray, rate_hz: float, at_adc_limit: np.ndarray | None = None) -> list[str]:
    """QC kinds of one lead window (1-D); see :func:`leads_qc`."""
    mask = None if at_adc_limit is None else np.asarray(at_adc_limit, dtype=bool)[None, :]
    return leads_qc(np.asarray(x, dtype=np.float64)[None, :], rate_hz, mask)[0]


# ---------------------------------------------------------------------------------------------
# conform
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceChannel:
    """One decoded source channel: physical values in mV at ``rate_hz``, beginning at t = 0.

    ``signal`` may extend beyond the window (the decoder reads a margin, see
    :func:`read_margin_samples`); ``duration_s`` is the length of the whole source recording.
    """

    name: str
    signal: np.ndarray
    rate_hz: float
    match: LeadMatch | None
    at_adc_limit: np.ndarray | None = None


@dataclass(frozen=True)
class ConformedEcg:
    """The corpus ECG: ``array`` float16 (12, rate × seconds) in mV plus its QC and meta."""

    array: np.ndarray
    qc_flags: tuple[str, ...]
    original_rate_hz: float
    meta: dict


# one group of leads sharing a source rate and length: (row in ECG_LEADS, lead, signal mV, ADC-limit mask)
_GroupMember = tuple[int, str, np.ndarray, np.ndarray | None]


def conform(channels: Sequence[SourceChannel], cfg: EcgConfig, source_duration_s: float) -> ConformedEcg:
    """Map, window, resample and QC source channels into the corpus layout.

    Raises ``QuarantineError`` (``ecg_leads_missing``) with no canonical lead, or with fewer than
    12 when ``cfg.partial_leads == "quarantine"``; (``ecg_qc_failed``) when every present lead is
    all NaN or flat.
    """
    rate_out = int(cfg.rate_hz)
    n_out = int(round(cfg.seconds * rate_out))
    assignment, missing = _assign_checked(channels, cfg)
    flags: set[str] = {f"missing:{lead}" for lead in missing}
    if missing:
        flags.add("partial_leads")
    groups, lead_meta, resampling, modified = _map_leads(channels, assignment, rate_out)
    if modified:
        flags.add("modified_leads")
    stacked, qc_flags, unusable = _qc_groups(groups, cfg.seconds)
    flags |= qc_flags
    if unusable == len(assignment.sources):
        raise QuarantineError(ReasonCode.ECG_QC_FAILED, "every present lead is flat or invalid in the window")
    out = np.full((len(ECG_LEADS), n_out), np.nan, dtype=np.float64)
    padded_to: list[int] = []
    for rate, rows, xs in stacked:
        y = resample_leads(xs, rate, rate_out)[:, :n_out]
        out[rows, : y.shape[1]] = y
        padded_to.append(y.shape[1])
    if padded_to and min(padded_to) < n_out:
        flags.add("padded")

    rates = sorted({c.rate_hz for c in (channels[i] for i, _ in assignment.sources.values())})
    original_rate = float(max(rates))
    array = np.clip(out, -65504.0, 65504.0).astype(np.float16)
    array[array == 0] = 0  # one zero: -0.0 (inverted leads, tiny negatives) would change the content hash
    padded_s = round(max(0, n_out - min(padded_to)) / rate_out, 6) if padded_to else 0.0
    meta = {
        "convention": _convention_meta(cfg, rate_out, n_out, padded_s, resampling),
        "lead_map": lead_meta,
        "unused_channels": {
            "not_a_lead": [safe_label(channels[i].name) for i in assignment.unmapped],
            "duplicate": [safe_label(channels[i].name) for i in assignment.duplicates],
        },
        "source_rates_hz": [float(r) for r in rates],
        "source_duration_s": round(float(source_duration_s), 6),
        "qc": {
            "flags": sorted(flags),
            "flat_run_s": FLAT_RUN_S,
            "clip_run_s": CLIP_RUN_S,
            "max_plausible_mv": MAX_PLAUSIBLE_MV,
        },
    }
    return ConformedEcg(array, tuple(sorted(flags)), original_rate, meta)


def _assign_checked(channels: Sequence[SourceChannel], cfg: EcgConfig) -> tuple[LeadAssignment, list[str]]:
    """Check source rates, assign channels to canonical leads, apply the partial-leads policy.

    Returns the assignment and the missing leads (in ``ECG_LEADS`` order)."""
    for c in channels:
        if not (MIN_RATE_HZ <= c.rate_hz <= MAX_RATE_HZ):
            raise QuarantineError(
                ReasonCode.ECG_HEADER_INVALID, f"sampling rate outside [{MIN_RATE_HZ:g}, {MAX_RATE_HZ:g}] Hz"
            )
    assignment = assign_leads([c.match for c in channels])
    if not assignment.sources:
        raise QuarantineError(ReasonCode.ECG_LEADS_MISSING, "no channel is a standard 12-lead ECG lead")
    missing = [lead for lead in ECG_LEADS if lead not in assignment.sources]
    if missing and cfg.partial_leads == "quarantine":
        raise QuarantineError(
            ReasonCode.ECG_LEADS_MISSING,
            f"{12 - len(missing)} of 12 standard leads present (policy: quarantine)",
        )
    return assignment, missing


def _map_leads(
    channels: Sequence[SourceChannel], assignment: LeadAssignment, rate_out: int
) -> tuple[dict[tuple[float, int], list[_GroupMember]], dict[str, dict], dict[str, dict], bool]:
    """Signals of the assigned leads (sign applied, mV), grouped by (source rate Hz, samples).

    Also returns the per-lead meta (in ``ECG_LEADS`` order), the resampling factors per source rate,
    and whether any lead is a modified one (``MLII``)."""
    groups: dict[tuple[float, int], list[_GroupMember]] = {}
    lead_meta: dict[str, dict] = {}
    resampling: dict[str, dict] = {}
    modified = False
    for row, lead in enumerate(ECG_LEADS):
        if lead not in assignment.sources:
            continue
        idx, match = assignment.sources[lead]
        ch = channels[idx]
        x = np.asarray(ch.signal, dtype=np.float64) * match.sign
        groups.setdefault((float(ch.rate_hz), x.size), []).append((row, lead, x, ch.at_adc_limit))
        if match.modified:
            modified = True
        up, down, exact = resample_factors(ch.rate_hz, rate_out)
        key = _fmt_rate(ch.rate_hz)
        if key not in resampling:
            eff = ch.rate_hz * up / down
            resampling[key] = {
                "up": up,
                "down": down,
                "exact": exact,
                "rate_error_rel": round(abs(eff - rate_out) / rate_out, 9),
            }
        lead_meta[lead] = {
            "source": safe_label(ch.name),
            "alias": match.alias,
            "sign": match.sign,
            "modified": match.modified,
            "rate_hz": float(ch.rate_hz),
        }
    return groups, lead_meta, resampling, modified


def _qc_groups(
    groups: dict[tuple[float, int], list[_GroupMember]], seconds: float
) -> tuple[list[tuple[float, list[int], np.ndarray]], set[str], int]:
    """QC each group's leads over the window (``seconds`` at the source rate).

    Returns per group (rate Hz, rows, stacked signals (leads, samples)), the QC flags
    (``kind:lead``) and how many leads are unusable (all NaN or flat)."""
    stacked: list[tuple[float, list[int], np.ndarray]] = []
    flags: set[str] = set()
    unusable = 0
    for (rate, _), members in groups.items():
        xs = np.stack([x for _, _, x, _ in members])
        n_win = window_source_samples(rate, seconds)
        masks = None
        if any(m is not None for *_, m in members):
            masks = np.stack(
                [np.zeros(xs.shape[1], bool) if m is None else np.asarray(m, bool) for *_, m in members]
            )
            masks = masks[:, :n_win]
        all_nan = np.isnan(xs[:, :n_win]).all(axis=1)
        for (_, lead, _, _), kinds, dead in zip(
            members, leads_qc(xs[:, :n_win], rate, masks), all_nan, strict=True
        ):
            flags.update(f"{k}:{lead}" for k in kinds)
            unusable += int(bool(dead) or "flat" in kinds)
        stacked.append((rate, [row for row, *_ in members], xs))
    return stacked, flags, unusable


def _convention_meta(
    cfg: EcgConfig, rate_out: int, n_out: int, padded_s: float, resampling: dict[str, dict]
) -> dict:
    """The ``convention`` block of the ECG meta: layout (12, ``n_out``) float16 mV at ``rate_out``
    Hz, window, resampling method and factors per source rate, partial-leads policy."""
    return {
        "version": CONVENTION_VERSION,
        "units": ECG_UNITS,
        "dtype": "float16",
        "scale_mv_per_unit": 1.0,
        "layout": "(lead, sample)",
        "shape": [len(ECG_LEADS), n_out],
        "leads": list(ECG_LEADS),
        "rate_hz": rate_out,
        "seconds": float(cfg.seconds),
        "window": {
            "policy": WINDOW_POLICY,
            "start_s": 0.0,
            "pad": PAD_VALUE,
            "padded_s": padded_s,
        },
        "resampling": {
            "method": "scipy.signal.resample_poly",
            "filter": "kaiser(beta=5.0), resample_poly default",
            "padtype": RESAMPLE_PADTYPE,
            "nan_samples": "bridged for filtering, NaN at the nearest output sample",
            "by_source_rate_hz": resampling,
        },
        "partial_leads_policy": cfg.partial_leads,
    }


def _fmt_rate(rate: float) -> str:
    return f"{rate:g}"


# ---------------------------------------------------------------------------------------------
# header metadata (age/sex/diagnoses) and its de-identification, shared by WFDB and DICOM
# ---------------------------------------------------------------------------------------------


def deidentify_age(raw: str) -> str:
    """Age in years as text; over 89 → ``"90+"`` (HIPAA safe harbour); ``""`` if not an age.

    Accepts ``"59"``, ``"59.0"``, and DICOM AS strings (``"042Y"``; months/weeks/days → ``"0"``).
    """
    text = (raw or "").strip().upper()
    m = re.fullmatch(r"0*(\d{1,3})(?:\.0+)?\s*([YMWD]?)", text)
    if not m:
        return ""
    value, unit = int(m.group(1)), m.group(2) or "Y"
    years = value if unit == "Y" else 0
    if years > 150:
        return ""
    return "90+" if years > 89 else str(years)


def normalise_sex(raw: str) -> str:
    """``"female"``, ``"male"``, ``"other"`` or ``""`` from M/F/O, English and German words."""
    t = (raw or "").strip().lower()
    if t in ("f", "female", "woman", "w", "weiblich", "1"):
        return "female"
    if t in ("m", "male", "man", "maennlich", "männlich", "0"):
        return "male"
    if t in ("o", "other"):
        return "other"
    return ""


# ---------------------------------------------------------------------------------------------
# record assembly helpers
# ---------------------------------------------------------------------------------------------


def array_sha256(array: np.ndarray) -> str:
    """sha256 of decoded content: dtype, shape, then the C-order bytes of ``array``."""
    h = hashlib.sha256()
    h.update(str(array.dtype.str).encode())
    h.update(repr(tuple(int(n) for n in array.shape)).encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()


def npy_bytes(array: np.ndarray) -> bytes:
    """``np.save`` of ``array`` (no pickle) to bytes: deterministic for the same array."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def make_ecg_record(
    item: InputItem,
    ctx: WorkerContext,
    conformed: ConformedEcg,
    *,
    patient: str,
    study: str,
    acquired_at: str,
    meta: dict,
) -> EcgRecord:
    """Assemble the :class:`EcgRecord` of one input item under the worker contract."""
    source_ids = (item.source_id,)
    array = conformed.array
    return EcgRecord(
        record_id=ctx.pseudo.record_id(source_ids),
        modality=Modality.ECG,
        source_ids=source_ids,
        source_name=item.source_name,
        licence=item.licence,
        patient=patient,
        study=study,
        acquired_at=acquired_at,
        content_sha256=array_sha256(array),
        meta_json=canonical_json(meta),
        sampling_rate_hz=float(ctx.ecg.rate_hz),
        n_samples=int(array.shape[1]),
        leads=tuple(ECG_LEADS),
        original_rate_hz=conformed.original_rate_hz,
        units=ECG_UNITS,
        qc_flags=conformed.qc_flags,
        payload=(("npy", npy_bytes(array)),),
    )
