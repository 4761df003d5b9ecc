"""WFDB ECG records → corpus ECGs (mV, 500 Hz, canonical leads, 10 s; see ``workers.ecg.convention``).

Reads everything ``wfdb`` reads: signal formats 8, 16, 24, 32, 61, 80, 160, 212, 310, 311 and
FLAC 508/516/524; several signals per file and signals split over several files (PTB ``.dat`` +
``.xyz``); PhysioNet/CinC MATLAB v4 ``.mat`` signal files (``16x1+24``: a byte offset into the
``.mat``); multi-frequency records (``samps_per_frame`` > 1, each lead resampled from its own
rate); multi-segment records (fixed or variable layout; ``~`` null segments of variable-layout
records become NaN, while wfdb cannot read them in a fixed layout: ``ecg_signal_corrupt``).
Only the window plus a filter margin is read (``sampto``), so long Holter files cost little.

Identity: WFDB has no patient field. ``study`` is the link id taken from the record name by
``EcgConfig.study_id_pattern`` (first group, then ``normalise_id``: ``HR06000`` → ``6000``,
``00001_lr`` → ``1``), so an ECG links to its PTB-XL report row (ecg_id). ``patient`` is ``""``
unless a header comment names a patient id (``# Patient ID: …``), which is pseudonymised.
``acquired_at`` (the record line's base date/time) is kept, shifted, only when the patient is
known; otherwise it is dropped (a date shift needs a patient).

Header comments are metadata *and* possible PHI. They are parsed into ``meta["header"]``
(age, sex, diagnoses, clinical fields) under these rules, and the audit in ``meta["deid"]``
names what was dropped by field name/category only, never by value:

* ``Age`` over 89 → ``"90+"``; ``Sex`` normalised to female/male/other;
* ``Dx`` (CinC: SNOMED-CT codes, comma separated) kept as a list, ``Rx/Hx/Sx`` kept as text;
* fields whose name suggests identity (name, id, birth, address, phone, physician, operator,
  institution, …) are dropped; fields whose name or value is a date or time are dropped;
* other fields are kept only when their name belongs to a clinical vocabulary (diagnosis,
  infarction, medication, pressure, …) and their value holds no date, title+name or long digit
  string; everything else, and free text without ``key: value`` form, is dropped and counted.
  The MIT-BIH free-text form ``"69 M …"`` yields age and sex only.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import wfdb

from schemas.modality import Modality
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import DecodedRecord, InputItem
from workers.context import WorkerContext
from workers.ecg import wfdb_header as ecg_wfdb_header
from workers.ecg.convention import (
    SourceChannel,
    conform,
    deidentify_age,
    make_ecg_record,
    match_lead,
    normalise_sex,
    units_to_mv,
)
from workers.ids import normalise_id

ecg_wfdb_header.install()  # wfdb's header parsers without per-field pandas lookups (same results)

log = logging.getLogger(__name__)

try:  # wfdb's own tables of digital ranges and invalid-sample values per format
    from wfdb.io._signal import INVALID_SAMPLE_VALUE as _INVALID
    from wfdb.io._signal import SAMPLE_VALUE_RANGE as _RANGE
except ImportError:  # pragma: no cover - older/newer wfdb layouts
    _RANGE = {"16": (-32768, 32767), "212": (-2048, 2047), "80": (-128, 127)}
    _INVALID = {"16": -32768, "212": -2048, "80": -128}

# ---------------------------------------------------------------------------------------------
# header comments
# ---------------------------------------------------------------------------------------------

_PATIENT_KEYS = {"patient", "patient_id", "patientid", "pid", "subject", "subject_id", "mrn"}
#: always identifying, whatever else the field name says
_DENY_STRONG = re.compile(
    r"name|(^|_)id($|_)|ident|mrn|ssn|social|birth|dob|address|street|city|zip|postal|phone|"
    r"(^|_)tel($|_)|fax|mail|account|insurance|accession|serial|residence|contact"
)
#: identifying unless the name is clearly clinical ("in hospital medication" is kept)
_DENY = re.compile(
    r"physician|doctor|(^|_)dr($|_)|operator|technician|nurse|referr|hospital|institution|clinic|"
    r"(^|_)site($|_)|ward|room|(^|_)bed($|_)|device|location(?!al)"
)
_TEMPORAL = re.compile(r"date|time|(^|_)hh($|_)|(^|_)day|month|(^|_)year|when|dob")
_CLINICAL = (
    "diagn",
    "infarct",
    "smok",
    "vessel",
    "ventric",
    "x_ray",
    "xray",
    "pressure",
    "cardiac",
    "stroke",
    "aort",
    "stenos",
    "echo",
    "medica",
    "therap",
    "lytic",
    "lysis",
    "dosage",
    "admission",
    "rhythm",
    "heart",
    "height",
    "weight",
    "bmi",
    "pacemaker",
    "drug",
    "symptom",
    "hemodynamic",
    "catheter",
    "wedge",
    "localization",
    "indication",
    "finding",
    "interpretation",
)
#: words a removed field's name may contain for the name itself to appear in the audit
_AUDIT_WORDS = set(
    "patient id name first last family given birth date dob time day month year address street city zip "
    "postal phone telephone tel fax mail email physician doctor dr operator technician nurse referring "
    "hospital institution clinic site ward room bed account insurance accession serial device location "
    "residence contact ecg recording record acquisition admission discharge infarction acute previous "
    "catheterization start lysis therapy hh mm of the at in on and or to for 1 2 3 study visit exam test "
    "measurement additional reason rx hx sx dx".split()
)
_DATE_VALUE = re.compile(
    r"\b\d{1,4}[./-]\d{1,2}[./-]\d{1,4}\b|\b\d{1,2}[ .-][A-Za-z]{3,9}[ .-]\d{2,4}\b|"
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.? \d{1,2},? \d{2,4}\b",
    re.I,
)
_TIME_VALUE = re.compile(r"^\s*\d{1,2}[:.h]\d{2}(?:[:.]\d{2})?\s*$")
_TITLE_NAME = re.compile(r"\b(dr|prof|mr|mrs|ms|herr|frau)\.?\s+[A-Z]", re.I)
_LONG_DIGITS = re.compile(r"\d{7,}")
_EMPTY_VALUES = {"", "unknown", "n/a", "na", "nan", "none", "?", "-"}
_MITDB_AGE_SEX = re.compile(r"^\s*(\d{1,3}|\?)\s+([MF?])\b")


def _norm_key(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


def _audit_name(nkey: str) -> str:
    """The field name as the audit may show it: only if made of known header words."""
    words = [w for w in nkey.split("_") if w]
    known = all(w in _AUDIT_WORDS or any(stem in w for stem in _CLINICAL) for w in words)
    return nkey if words and len(words) <= 8 and known else "<field>"


@dataclass
class _CommentScan:
    """What one pass over WFDB header comments keeps, removes and counts."""

    header: dict = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)  # audit name → reason (never the value)
    counts: dict[str, int] = field(
        default_factory=lambda: {"unlisted_fields_dropped": 0, "free_text_lines_dropped": 0}
    )
    age_capped: bool = False
    age_sex_from_free_text: bool = False
    patient_raw: str = ""

    def remove(self, nkey: str, why: str) -> None:
        self.removed[_audit_name(nkey)] = why


def parse_header_comments(comments: list[str]) -> tuple[dict, dict, str]:
    """Split WFDB header comments into (kept metadata, de-identification audit, raw patient id).

    See the module docstring for the rules. Values never reach the audit or the logs.
    """
    scan = _CommentScan()
    for line in comments:
        text = (line or "").strip()
        if not text:
            continue
        if ":" not in text:
            _free_text_line(scan, text)
            continue
        key, value = (part.strip() for part in text.split(":", 1))
        nkey = _norm_key(key)
        if not nkey:
            scan.counts["free_text_lines_dropped"] += 1
            continue
        if value.lower() in _EMPTY_VALUES:
            continue  # section headings ("Diagnose:") and placeholders carry nothing
        _keyed_line(scan, nkey, value)
    if scan.fields:
        scan.header["fields"] = scan.fields
    audit = {
        "removed": dict(sorted(scan.removed.items())),
        "age_over_89_capped": scan.age_capped,
        "age_sex_from_free_text": scan.age_sex_from_free_text,
        **scan.counts,
    }
    return scan.header, audit, scan.patient_raw


def _free_text_line(scan: _CommentScan, text: str) -> None:
    """A comment line without a key: dropped, but a MIT-BIH "<age> <sex>" line fills age and sex
    once (when neither is known yet)."""
    header = scan.header
    m = _MITDB_AGE_SEX.match(text)
    if m and "age" not in header and "sex" not in header:
        age = deidentify_age(m.group(1))
        if age:
            header["age"] = age
            scan.age_capped = scan.age_capped or age == "90+"
        sex = normalise_sex(m.group(2))
        if sex:
            header["sex"] = sex
        scan.age_sex_from_free_text = True
    scan.counts["free_text_lines_dropped"] += 1


def _keyed_line(scan: _CommentScan, nkey: str, value: str) -> None:
    """A ``key: value`` line (normalised key, non-empty value): age, sex, Dx codes and the patient
    id are read; identifying and temporal fields are removed; clinical fields are kept unless
    their value holds a date, a titled name or a long number; anything else is dropped."""
    header = scan.header
    if nkey == "age":
        age = deidentify_age(value)
        if age:
            header["age"] = age
            scan.age_capped = scan.age_capped or age == "90+"
        else:
            scan.remove(nkey, "unparseable_age")
    elif nkey in ("sex", "gender"):
        sex = normalise_sex(value)
        if sex:
            header["sex"] = sex
    elif nkey == "dx":
        codes = [c.strip() for c in value.split(",") if c.strip()]
        header["dx"] = codes
        if codes and all(c.isdigit() for c in codes):
            header["dx_coding"] = "SNOMED-CT (PhysioNet/CinC)"
    elif nkey in _PATIENT_KEYS:
        scan.patient_raw = value
        scan.removed["patient_id"] = "pseudonymised"
    elif _DENY_STRONG.search(nkey) or (_DENY.search(nkey) and not any(st in nkey for st in _CLINICAL)):
        scan.remove(nkey, "identifying_field")
    elif _TEMPORAL.search(nkey):
        scan.remove(nkey, "temporal_field")
    elif nkey in ("rx", "hx", "sx") or any(stem in nkey for stem in _CLINICAL):
        if _DATE_VALUE.search(value) or _TIME_VALUE.match(value):
            scan.remove(nkey, "date_in_value")
        elif _TITLE_NAME.search(value):
            scan.remove(nkey, "name_in_value")
        elif _LONG_DIGITS.search(value):
            scan.remove(nkey, "identifier_like_value")
        else:
            scan.fields[nkey] = value[:500]
    else:
        scan.counts["unlisted_fields_dropped"] += 1


def _deidentify_kept_text(header: dict, audit: dict, patient: str, ctx: WorkerContext, raw_id: str) -> dict:
    """Kept free text (``Dx`` entries that are not codes, clinical fields) through the report
    de-identification (``workers.deid.text``): an allow-listed field can still hold a name.
    Counts per category go to ``audit["free_text"]``; values never do."""
    dx = header.get("dx") or []
    fields = header.get("fields") or {}
    if all(c.isdigit() for c in dx) and not fields:
        return header  # SNOMED codes only (PhysioNet/CinC): nothing to scan
    from workers.deid.text import deidentify_text  # loaded only by records with free text

    counts: dict[str, int] = {}

    def clean(value: str) -> str:
        text, found = deidentify_text(value, patient, ctx.pseudo, (raw_id,) if raw_id else ())
        for k, n in found.items():
            counts[k] = counts.get(k, 0) + n
        return text

    out = dict(header)
    if dx:
        out["dx"] = [c if c.isdigit() else clean(c) for c in dx]
    if fields:
        out["fields"] = {k: clean(v) for k, v in fields.items()}
    audit["free_text"] = {k: n for k, n in sorted(counts.items()) if n}
    return out


# ---------------------------------------------------------------------------------------------
# identity
# ---------------------------------------------------------------------------------------------


def study_link_id(record_name: str, pattern: str) -> str:
    """Raw link id of a record name: first group of ``pattern``, normalised (``HR06000`` → ``6000``)."""
    try:
        m = re.search(pattern, record_name)
    except re.error as exc:
        raise ValueError(f"invalid EcgConfig.study_id_pattern: {exc}") from exc
    if not m:
        return ""
    return normalise_id(m.group(1) if m.groups() else m.group(0))


def segment_headers(header_path: str) -> list[str]:
    """Paths of the segment headers a multi-segment record refers to ([] for a single record).

    Discovery can use it to not treat segment headers as records of their own.
    """
    base = str(Path(header_path).with_suffix(""))
    try:
        header = wfdb.rdheader(base)
    except Exception:  # noqa: BLE001 - an unreadable header has no segments to list
        return []
    if not isinstance(header, wfdb.MultiRecord):
        return []
    d = os.path.dirname(base)
    return [os.path.join(d, s + ".hea") for s in header.seg_name if s and s != "~"]


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------


def _adc_limit_mask(d: np.ndarray, fmt: str, adc_res: int | None, adc_zero: int | None) -> np.ndarray | None:
    """Samples at the converter's limits: the ADC range if ``adc_res`` narrows the format's
    range, else the format's range (its lowest value is WFDB's invalid-sample code)."""
    rng = _RANGE.get(str(fmt))
    if rng is None or str(fmt) == "8":  # format 8 stores first differences: no amplitude bound
        return None
    lo, hi = rng
    invalid = _INVALID.get(str(fmt))
    bits = int(math.log2(hi - lo + 1))
    if adc_res and 0 < int(adc_res) < bits:
        half = 2 ** (int(adc_res) - 1)
        lo, hi = int(adc_zero or 0) - half, int(adc_zero or 0) + half - 1
    elif invalid is not None and invalid == lo:
        lo += 1
    return ((d <= lo) | (d >= hi)) & (d != invalid if invalid is not None else True)


def _quarantine_missing_files(base: str, header) -> None:
    d = os.path.dirname(base)
    if isinstance(header, wfdb.MultiRecord):
        segs = [s for s in header.seg_name if s and s != "~"]
        missing = 0
        for seg in segs:
            seg_base = os.path.join(d, seg)
            if not os.path.isfile(seg_base + ".hea"):
                missing += 1
                continue
            try:
                seg_header = wfdb.rdheader(seg_base)
            except Exception:  # noqa: BLE001 - third-party parser on untrusted input
                raise QuarantineError(
                    ReasonCode.ECG_HEADER_INVALID, "a segment header cannot be parsed"
                ) from None
            if isinstance(seg_header, wfdb.MultiRecord):  # itself, or nested: wfdb would recurse
                raise QuarantineError(
                    ReasonCode.ECG_HEADER_INVALID, "a segment is itself a multi-segment record"
                )
            for fname in set(getattr(seg_header, "file_name", None) or []):
                if fname and fname != "~" and not os.path.isfile(os.path.join(d, fname)):
                    missing += 1
                    break
        if missing:
            raise QuarantineError(
                ReasonCode.ECG_SIGNAL_MISSING,
                f"multi-segment record: {missing} of {len(segs)} segments missing",
            )
        return
    files = sorted({f for f in (header.file_name or []) if f})
    absent = [f for f in files if not os.path.isfile(os.path.join(d, f))]
    if absent:
        raise QuarantineError(
            ReasonCode.ECG_SIGNAL_MISSING,
            f"{len(absent)} of {len(files)} signal files named in the header missing",
        )
    empty = [f for f in files if os.path.getsize(os.path.join(d, f)) == 0]
    if empty:
        raise QuarantineError(ReasonCode.ECG_SIGNAL_MISSING, f"{len(empty)} signal file(s) are empty")


_RECORD_LINE = re.compile(
    r"^(?P<name>[^\s/]+)(?:/(?P<nseg>\d+))?\s+(?P<nsig>\d+)"
    r"(?:\s+(?P<fs>[0-9.eE+-]+)(?:/\S*)?(?:\s+(?P<len>\d+))?)?"
)


def _peek_record_line(path: str) -> dict | None:
    """The record line's fields (name, nseg, nsig, fs, len) as text, without parsing the rest."""
    try:
        with open(path, "rb") as f:
            raw = f.read(65536)
    except OSError:
        raise QuarantineError(ReasonCode.UNREADABLE_FILE, "header file not readable") from None
    for line in raw.decode("latin-1").splitlines():
        text = line.strip()
        if text and not text.startswith("#"):
            m = _RECORD_LINE.match(text)
            return m.groupdict() if m else None
    return None


def _frames_needed(fs: float, ctx: WorkerContext) -> int:
    """Frames to read: the window plus a margin that covers the resampling filter of every
    channel, whatever its samples per frame (see ``workers.ecg.convention.read_margin_samples``: the
    filter reaches at most max(10, rate/50) source samples, i.e. max(10, fs/50) frames).
    Absurd rates (e.g. 1e308 Hz) give a huge count, not an overflow: the sample limit rejects it."""
    frames = ctx.ecg.seconds * fs + 1 + fs + max(10.0, fs / 50.0) + 3
    if not math.isfinite(frames) or frames > 2.0**62:
        return 2**62
    return (
        int(math.ceil(ctx.ecg.seconds * fs)) + 1 + int(math.ceil(fs)) + int(math.ceil(max(10.0, fs / 50.0)))
    )


def _read_signals(base: str, header, ctx: WorkerContext):
    """Slow path (multi-segment records, headers without a length, diagnostics): ``rdrecord``
    of the window + margin after ``rdheader``. Returns (record, signals, digital, spf)."""
    fs = float(header.fs)
    multi_segment = isinstance(header, wfdb.MultiRecord)
    sig_len = int(header.sig_len or 0)
    sampto = min(sig_len, _frames_needed(fs, ctx)) if sig_len else None
    n_sig = int(header.n_sig)
    if sampto is not None and sampto * n_sig > ctx.limits.max_ecg_samples:
        raise QuarantineError(ReasonCode.LIMIT_EXCEEDED, "ECG window exceeds the sample limit")
    if sampto is None:
        d = os.path.dirname(base)
        total = sum(
            os.path.getsize(os.path.join(d, f)) for f in set(getattr(header, "file_name", None) or [])
        )
        if total // 2 > ctx.limits.max_ecg_samples:
            raise QuarantineError(ReasonCode.LIMIT_EXCEEDED, "ECG of unknown length exceeds the sample limit")
    try:
        if multi_segment:
            rec = wfdb.rdrecord(base, sampto=sampto, physical=True, m2s=True, return_res=64)
            return rec, [rec.p_signal[:, i] for i in range(rec.n_sig)], [None] * rec.n_sig, [1] * rec.n_sig
        multi_freq = any(s > 1 for s in _spf(header))
        rec = wfdb.rdrecord(base, sampto=sampto, physical=False, smooth_frames=not multi_freq, return_res=64)
        return (rec, *_split(rec, multi_freq))
    except QuarantineError:
        raise
    except Exception as exc:  # noqa: BLE001 - third-party reader on untrusted input
        raise QuarantineError(
            ReasonCode.ECG_SIGNAL_CORRUPT, f"signal data cannot be read ({type(exc).__name__})"
        ) from None


def _split(rec, expanded: bool) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """(physical per channel, digital per channel, samples per frame) of a digital read."""
    if expanded:  # smooth_frames=False: e_d_signal holds each channel at its own rate
        return list(rec.dac(expanded=True, return_res=64)), list(rec.e_d_signal), _spf(rec)
    phys = rec.dac(expanded=False, return_res=64)
    n = int(rec.n_sig)
    return [phys[:, i] for i in range(n)], [rec.d_signal[:, i] for i in range(n)], [1] * n


def _spf(rec) -> list[int]:
    return [int(s or 1) for s in (rec.samps_per_frame or [1] * int(rec.n_sig))]


def _fast_read(item_path: str, base: str, ctx: WorkerContext):
    """One ``rdrecord`` call (one header parse) for single-segment records whose record line
    gives the rate and length; None when the slow path must decide (it also diagnoses errors)."""
    peek = _peek_record_line(item_path)
    if not peek or peek["nseg"] or not peek["fs"] or not peek["len"]:
        return None
    try:
        fs = float(peek["fs"])
    except ValueError:
        return None
    if not (math.isfinite(fs) and fs > 0):
        return None
    sampto = min(int(peek["len"]), _frames_needed(fs, ctx))
    if sampto * max(1, int(peek["nsig"])) > ctx.limits.max_ecg_samples:
        raise QuarantineError(ReasonCode.LIMIT_EXCEEDED, "ECG window exceeds the sample limit")
    if sampto == 0:
        return None
    try:
        rec = wfdb.rdrecord(base, sampto=sampto, physical=False, smooth_frames=True, return_res=64)
        if float(rec.fs) != fs or int(rec.sig_len) != sampto or rec.d_signal is None:
            return None
        if any(s > 1 for s in _spf(rec)):
            return None  # multi-frequency: frames were averaged; the slow path reads each lead's own rate
        rec.sig_len = int(peek["len"])  # rdrecord reports the samples read; keep the declared length
        return (rec, *_split(rec, False))
    except Exception:  # noqa: BLE001 - any failure: the slow path reads again and names the reason
        return None


def _channels(header, rec, signals, digital, spf, ctx: WorkerContext) -> tuple[list[SourceChannel], dict]:
    """Source channels in mV at their own rates, and the source part of meta."""
    fs = float(header.fs)
    multi_segment = isinstance(header, wfdb.MultiRecord)
    sig_len = int(header.sig_len or 0)
    expected = min(sig_len, _frames_needed(fs, ctx)) if sig_len else int(rec.sig_len or 0)
    got = min((len(sig) // spf[i] for i, sig in enumerate(signals)), default=0)
    if got == 0 or got < expected:
        raise QuarantineError(
            ReasonCode.ECG_SIGNAL_CORRUPT, "signal file holds fewer samples than the header declares"
        )
    if sum(len(sig) for sig in signals) > ctx.limits.max_ecg_samples:
        raise QuarantineError(ReasonCode.LIMIT_EXCEEDED, "ECG window exceeds the sample limit")

    channels: list[SourceChannel] = []
    non_voltage: list[str] = []
    names = list(rec.sig_name or [])
    units = list(rec.units or ["mV"] * len(names))
    fmts = list(getattr(rec, "fmt", None) or [None] * len(names))
    adc_res = list(getattr(rec, "adc_res", None) or [None] * len(names))
    adc_zero = list(getattr(rec, "adc_zero", None) or [None] * len(names))
    for i, name in enumerate(names):
        factor = units_to_mv(units[i] or "mV")
        match = match_lead(name)
        if factor is None:
            if match is not None:
                non_voltage.append(match.lead)
            match = None
            factor = 1.0
        x = np.asarray(signals[i], dtype=np.float64) * factor
        clip = None
        if digital[i] is not None and fmts[i] is not None:
            clip = _adc_limit_mask(np.asarray(digital[i]), str(fmts[i]), adc_res[i], adc_zero[i])
        channels.append(
            SourceChannel(name=name, signal=x, rate_hz=fs * spf[i], match=match, at_adc_limit=clip)
        )
    source = {
        "format": "wfdb",
        "record_kind": "multi_segment" if multi_segment else "single_segment",
        "signal_formats": sorted({str(f) for f in fmts if f is not None}),
        "n_signal_files": len({f for f in (getattr(header, "file_name", None) or []) if f}),
        "n_segments": len(header.seg_name) if multi_segment else 1,
        "n_channels": len(names),
        "frame_rate_hz": fs,
        "samples_per_frame": spf,
        "units_in": sorted({str(u) for u in units}),
        "lead_named_channels_with_non_voltage_units": sorted(non_voltage),
    }
    return channels, source


def _validate_header(header) -> float:
    try:
        fs = float(header.fs)
    except (TypeError, ValueError):
        fs = float("nan")
    if not (math.isfinite(fs) and fs > 0):
        raise QuarantineError(ReasonCode.ECG_HEADER_INVALID, "header has no valid sampling frequency")
    if not int(header.n_sig or 0):
        raise QuarantineError(ReasonCode.ECG_SIGNAL_MISSING, "header declares no signals")
    if not isinstance(header, wfdb.MultiRecord):
        if len(header.sig_name or []) != int(header.n_sig):
            raise QuarantineError(
                ReasonCode.ECG_HEADER_INVALID, "signal lines do not match the declared signal count"
            )
        if header.sig_len == 0 or all(f == "~" for f in (header.file_name or [])):
            raise QuarantineError(
                ReasonCode.ECG_SIGNAL_MISSING,
                "header without samples (e.g. the layout header of a multi-segment record)",
            )
    return fs


def decode_wfdb(item: InputItem, ctx: WorkerContext) -> list[DecodedRecord]:
    """Decode one WFDB record (``item.path`` = its ``.hea``) into one :class:`EcgRecord`.

    Payload ``("npy", float16 (12, rate × seconds))`` in mV, canonical lead order; see
    ``workers.ecg.convention`` for the window, resampling and QC conventions.
    """
    base = str(Path(item.path).with_suffix("")) if item.path.lower().endswith(".hea") else item.path
    record_name = os.path.basename(base)
    fast = _fast_read(item.path, base, ctx)
    if fast is not None:
        header = fast[0]
        fs = _validate_header(header)
    else:
        try:
            header = wfdb.rdheader(base)
        except FileNotFoundError:
            raise QuarantineError(ReasonCode.UNREADABLE_FILE, "header file not readable") from None
        except Exception as exc:  # noqa: BLE001 - third-party parser on untrusted input
            raise QuarantineError(
                ReasonCode.ECG_HEADER_INVALID, f"header cannot be parsed ({type(exc).__name__})"
            ) from None
        fs = _validate_header(header)
        _quarantine_missing_files(base, header)
        fast = _read_signals(base, header, ctx)
    channels, source = _channels(header, *fast, ctx)
    conformed = conform(channels, ctx.ecg, source_duration_s=(int(header.sig_len or 0) / fs))

    header_meta, audit, patient_raw = parse_header_comments(list(header.comments or []))
    patient = ctx.pseudo.patient(normalise_id(patient_raw))
    header_meta = _deidentify_kept_text(header_meta, audit, patient, ctx, patient_raw)
    study = ctx.pseudo.study(study_link_id(record_name, ctx.ecg.study_id_pattern))
    base_dt = None
    if getattr(header, "base_date", None) is not None:
        base_dt = datetime.combine(header.base_date, header.base_time or datetime.min.time())
    try:
        shifted = ctx.pseudo.shift_datetime(base_dt, patient) if base_dt is not None and patient else None
    except OverflowError:  # a base date in year 1 shifts out of range
        shifted = None
    if shifted is not None:
        acquired_at = shifted.isoformat()
        audit["base_datetime"] = "shifted"
    else:
        acquired_at = ""
        audit["base_datetime"] = (
            "absent" if base_dt is None else "dropped_out_of_range" if patient else "dropped_no_patient"
        )
    audit["record_name"] = "replaced by the pseudonymous study key"
    audit["method"] = "header comments: allow-list of clinical fields; ages > 89 → 90+; dates dropped"

    meta = {
        **conformed.meta,
        "modality": Modality.ECG.value,
        "source": source,
        "header": header_meta,
        "deid": audit,
        "link": {
            "study_from": "record name via EcgConfig.study_id_pattern",
            "study_found": bool(study),
            "patient_from": "header comment" if patient else "none (WFDB has no patient field)",
        },
    }
    return [
        make_ecg_record(
            item, ctx, conformed, patient=patient, study=study, acquired_at=acquired_at, meta=meta
        )
    ]
