"""DICOM de-identification: PS3.15 Annex E Basic Application Level Confidentiality Profile.

Profile and option applied (the only combination this module implements):

- **Basic Application Level Confidentiality Profile** (PS3.15 E.2, code DCM 113100), and
- **Retain Longitudinal Temporal Information with Modified Dates Option** (PS3.15 E.3.6,
  code DCM 113107): every date of a patient is shifted by the same whole number of days
  (``ctx.pseudo.date_shift_days(patient)``, shared with the ECG and report de-identification),
  so intervals between a patient's studies are kept. Times are kept: a whole-day shift leaves
  the time of day unchanged.

The attribute/action table is PS3.15 Table E.1-1 ("Application Level Confidentiality
Profile Attributes"), the *Basic Profile* column and the *Rtn. Long. Modif. Dates Opt.* column,
kept as data in ``workers/resources/dicom_ps315_profile.csv`` and read once at import. Action codes (PS3.15 E.1.1): ``X`` remove; ``Z`` zero length (or dummy);
``D`` dummy value; ``U`` replace UID consistently; ``K`` keep; ``C`` clean; compound codes
(``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) let the implementation choose by IOD type.
Since the corpus is not re-exported as DICOM, IOD conformance is not needed and the strictest
choice is taken: ``X/Z``, ``X/D``, ``X/Z/D`` → remove; ``Z/D`` → zero length; ``X/Z/U*`` → keep
the sequence and replace the UIDs it contains. A ``D`` on a sequence empties it.

Beyond the table (hardening, listed in the audit under ``hardening``): private attributes are
removed (``X`` for odd groups, the table's "Private attributes" row); every PN anywhere is
emptied; every DA/DT anywhere is shifted; unlisted free text (LT/ST/UT/UC) is removed; a ``C``
on a time or UTC offset keeps it only if well-formed; every UI that is not a registered DICOM UID (SOP
classes, transfer syntaxes, coding schemes, ...) is replaced; curve (50xx) and overlay data
(60xx,3000) and comments are removed. The rules apply recursively inside sequences.

Identity: PatientID and PatientName become ``ctx.pseudo.patient(normalise_id(PatientID))``
(a ``Z`` with a consistent dummy value, as E.1.1 permits); UIDs become ``ctx.pseudo.uid(uid)``
(same input UID → same output UID within a deployment). PatientIdentityRemoved (0012,0062),
DeidentificationMethod (0012,0063), DeidentificationMethodCodeSequence (0012,0064) and
LongitudinalTemporalInformationModified (0028,0303) are set as PS3.15 E.1.1 and E.3.6 require.

The audit returned with the dataset names the profile, option, and the keywords (never the
values) of what was removed, emptied, replaced, shifted or cleaned.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID_dictionary

from workers.ids import normalise_id

log = logging.getLogger(__name__)

PROFILE = "PS3.15 Annex E Basic Application Level Confidentiality Profile"
OPTIONS: tuple[str, ...] = ("Retain Longitudinal Temporal Information with Modified Dates Option",)
TABLE_SOURCE = "DICOM PS3.15 Table E.1-1 (Basic Profile and Rtn. Long. Modif. Dates Opt. columns)"

#: CID 7050 "De-identification Method" codes (PS3.16) for DeidentificationMethodCodeSequence
METHOD_CODES: tuple[tuple[str, str, str], ...] = (
    ("113100", "DCM", "Basic Application Confidentiality Profile"),
    ("113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates Option"),
)

#: PS3.15 Table E.1-1 as data (source, columns and action codes in the file's header comment)
PROFILE_FILE = Path(__file__).resolve().parents[1] / "resources" / "dicom_ps315_profile.csv"


def load_profile_table(
    path: Path = PROFILE_FILE,
) -> tuple[dict[int, tuple[str, str]], list[tuple[int, int, str, str]]]:
    """Read the profile table → (exact tag → (basic, option)), [(mask, value, basic, option)].

    Rows with an ``x`` in the tag (repeating groups) become (mask, value) pairs, in file order.
    """
    exact: dict[int, tuple[str, str]] = {}
    masked: list[tuple[int, int, str, str]] = []
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        for row in rows:
            tag_text, basic, option = row["tag"], row["basic"], row["option"]
            hexdigits = tag_text.replace(",", "")
            if len(hexdigits) != 8 or not basic:
                raise ValueError(f"malformed row in {path.name}: {row}")
            if "x" in hexdigits:
                mask = int("".join("0" if ch == "x" else "F" for ch in hexdigits), 16)
                value = int(hexdigits.replace("x", "0"), 16)
                masked.append((mask, value, basic, option))
            else:
                tag = int(hexdigits, 16)
                if tag in exact:
                    raise ValueError(f"duplicate row in {path.name}: {tag_text}")
                exact[tag] = (basic, option)
    return exact, masked


PROFILE_TABLE, PROFILE_MASKED = load_profile_table()

#: dummy values for action D, by VR (PS3.15 E.1.1: "a non-zero length value that may be a dummy
#: value and consistent with the VR")
_DUMMY: dict[str, object] = {
    "AE": "ANONYMIZED",
    "AS": "000D",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "TM": "000000",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "UR": "",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "UL": 0,
    "US": 0,
    "SV": 0,
    "UV": 0,
}

#: UI keywords whose values name a class/syntax (never an instance), kept even if unregistered
_CLASS_UID_SUFFIXES = ("ClassUID", "TransferSyntaxUID", "CodingSchemeUID")

_PATIENT_ID_TAG = 0x00100020
_PATIENT_NAME_TAG = 0x00100010


def profile_action(tag: int) -> tuple[str, str] | None:
    """``(basic_action, modified_dates_option_action)`` of Table E.1-1 for ``tag``, or None."""
    row = PROFILE_TABLE.get(int(tag))
    if row is not None:
        return row
    for mask, value, basic, option in PROFILE_MASKED:
        if int(tag) & mask == value:
            return basic, option
    return None


def _resolve(basic: str, option: str) -> str:
    """Collapse a table row to the one action applied here (see module docstring)."""
    if option == "C":
        return "C"
    if basic in ("X", "Z", "D", "U", "K", "C"):
        return basic
    if basic.endswith("U*"):
        return "U*"
    if basic.startswith("X"):
        return "X"
    if basic == "Z/D":
        return "Z"
    raise ValueError(f"unknown Table E.1-1 action {basic!r}")


def _shift_da(value: str, days: int) -> str:
    """Shift a DA value (YYYYMMDD, or a DA range "A-B") by ``days``; unparseable → ``""``."""
    if "-" in value:
        return "-".join(_shift_da(part, days) if part else "" for part in value.split("-"))
    v = value.strip()
    if len(v) < 8 or not v[:8].isdigit():
        return ""
    try:
        d = date(int(v[:4]), int(v[4:6]), int(v[6:8]))
        return (d + timedelta(days=days)).strftime("%Y%m%d")
    except (ValueError, OverflowError):  # no such date, or shifted before year 1
        return ""


def _shift_dt(value: str, days: int) -> str:
    """Shift the date part of a DT value (YYYYMMDDHHMMSS.FFFFFF&ZZXX); unparseable → ``""``."""
    v = value.strip()
    if len(v) < 8:
        # a DT with only a year or year+month cannot be shifted by days without a guess
        return ""
    shifted = _shift_da(v[:8], days)
    return shifted + v[8:] if shifted else ""


class _Audit:
    """Collects keywords (never values) per action."""

    def __init__(self) -> None:
        self.sets: dict[str, set[str]] = {
            "removed": set(),
            "emptied": set(),
            "dummied": set(),
            "uid_replaced": set(),
            "dates_shifted": set(),
            "times_kept": set(),
            "hardened_names_emptied": set(),
            "hardened_dates_shifted": set(),
            "hardened_uids_replaced": set(),
            "hardened_free_text_removed": set(),
            "kept_by_caller": set(),
        }
        self.private_removed = 0

    def add(self, what: str, tag: BaseTag) -> None:
        self.sets[what].add(keyword_for_tag(tag) or f"({tag.group:04X},{tag.element:04X})")

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {k: sorted(v) for k, v in self.sets.items()}
        out["private_tags_removed"] = self.private_removed
        return out


_TM_RE = re.compile(r"^\d{2}(:?\d{2}(:?\d{2}(\.\d{1,6})?)?)?$")
_TZ_RE = re.compile(r"^[+-]\d{4}$")


def _clean_time_like(elem: DataElement) -> bool:
    """True if every value is a well-formed TM or UTC offset (so keeping it reveals nothing)."""
    value = elem.value
    if value in (None, ""):
        return True
    values = [value] if isinstance(value, str) else list(value)
    pattern = _TM_RE if elem.VR == "TM" else _TZ_RE
    return all(pattern.match(str(v).strip()) for v in values if str(v).strip())


def _is_registered_uid(value: str) -> bool:
    return value in UID_dictionary


def _apply_value(elem: DataElement, fn: Callable[[str], str]) -> None:
    """Apply ``fn`` to every value of a (possibly multi-valued) string element."""
    value = elem.value
    if value is None or value == "":
        return
    if isinstance(value, list | tuple) or (hasattr(value, "__iter__") and not isinstance(value, str | bytes)):
        elem.value = [fn(str(v)) for v in value]
    else:
        elem.value = fn(str(value))


class _Deidentifier:
    def __init__(self, ctx, patient_pseudonym: str, keep: frozenset[str] = frozenset()) -> None:
        self.keep = keep
        self.pseudo = ctx.pseudo
        self.patient = patient_pseudonym
        self.days = ctx.pseudo.date_shift_days(patient_pseudonym)
        self.audit = _Audit()

    # -- one element -----------------------------------------------------------------------
    def uid(self, raw: str) -> str:
        raw = raw.strip()
        return self.pseudo.uid(raw) if raw else raw

    def shift(self, elem: DataElement) -> None:
        if elem.VR == "DA":
            _apply_value(elem, lambda v: _shift_da(v, self.days))
        elif elem.VR == "DT":
            _apply_value(elem, lambda v: _shift_dt(v, self.days))

    def clean_dataset(self, ds: Dataset) -> None:
        """Apply the profile to every element of ``ds`` (recursively), in place."""
        for tag in list(ds.keys()):
            elem = ds[tag]
            if elem.keyword and elem.keyword in self.keep and not tag.is_private:
                self.audit.add("kept_by_caller", tag)
                continue
            if tag.is_private:
                del ds[tag]
                self.audit.private_removed += 1
                continue
            row = profile_action(tag)
            if row is None:
                self._unlisted(ds, elem)
                continue
            action = _resolve(*row)
            if action == "X":
                del ds[tag]
                self.audit.add("removed", tag)
            elif action == "Z":
                elem.value = Sequence() if elem.VR == "SQ" else ("" if elem.VR in _STRING_VRS else None)
                self.audit.add("emptied", tag)
            elif action == "D":
                if elem.VR == "SQ":
                    elem.value = Sequence()
                elif elem.VR == "UI":
                    _apply_value(elem, self.uid)
                elif elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
                    del ds[tag]
                    self.audit.add("removed", tag)
                    continue
                else:
                    elem.value = _DUMMY.get(elem.VR, "ANONYMIZED")
                self.audit.add("dummied", tag)
            elif action == "U":
                if elem.VR == "UI":
                    _apply_value(elem, self.uid)
                    self.audit.add("uid_replaced", tag)
                else:  # e.g. a UID carried in an element of another VR: strictest is removal
                    del ds[tag]
                    self.audit.add("removed", tag)
            elif action == "U*":
                for item in elem.value or []:
                    self.clean_dataset(item)
                self.audit.add("uid_replaced", tag)
            elif action == "C":
                if elem.VR in ("DA", "DT"):
                    self.shift(elem)
                    self.audit.add("dates_shifted", tag)
                elif elem.VR in ("TM", "SH") and _clean_time_like(elem):
                    # TM and Timezone Offset From UTC: unchanged by a whole-day shift
                    self.audit.add("times_kept", tag)
                else:  # malformed time text, or a binary timestamp we cannot shift: remove
                    del ds[tag]
                    self.audit.add("removed", tag)
            elif action == "K":
                pass

    def _unlisted(self, ds: Dataset, elem: DataElement) -> None:
        """Attributes Table E.1-1 does not list: recurse, and harden PN/DA/DT/UI/free text."""
        tag = elem.tag
        if elem.keyword in self.keep:
            self.audit.add("kept_by_caller", tag)
            return
        if elem.VR in _FREE_TEXT_VRS:
            if elem.value not in (None, ""):
                del ds[tag]
                self.audit.add("hardened_free_text_removed", tag)
            return
        if elem.VR == "SQ":
            for item in elem.value or []:
                self.clean_dataset(item)
        elif elem.VR == "PN":
            if elem.value not in (None, ""):
                elem.value = ""
                self.audit.add("hardened_names_emptied", tag)
        elif elem.VR in ("DA", "DT"):
            if elem.value not in (None, ""):
                self.shift(elem)
                self.audit.add("hardened_dates_shifted", tag)
        elif elem.VR == "UI":
            keyword = keyword_for_tag(tag) or ""
            if keyword.endswith(_CLASS_UID_SUFFIXES) or elem.value in (None, ""):
                return
            values = elem.value if isinstance(elem.value, list) else [elem.value]
            if all(_is_registered_uid(str(v)) for v in values):
                return
            _apply_value(elem, lambda v: v if _is_registered_uid(v) else self.uid(v))
            self.audit.add("hardened_uids_replaced", tag)
        elif tag.group & 0xFF00 in (0x5000, 0x6000) and elem.VR in ("OB", "OW", "UN", "LT"):
            # curves and overlay planes not caught by the table rows
            del ds[tag]
            self.audit.add("removed", tag)


_NUMERIC_VRS = frozenset({"FL", "FD", "SL", "SS", "UL", "US", "SV", "UV", "IS", "DS"})
_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
#: long free-text VRs: removed when the table does not list the attribute (hardening)
_FREE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UC"})


def _copy_dataset(ds: Dataset) -> Dataset:
    """Deep copy of ``ds`` that shares the (immutable, large) pixel data bytes."""
    import copy

    pixel_tags = [t for t in (0x7FE00010, 0x7FE00008, 0x7FE00009) if t in ds]
    saved = {t: ds[t] for t in pixel_tags}
    for t in pixel_tags:
        del ds[t]
    try:
        out = copy.deepcopy(ds)
    finally:
        for t, elem in saved.items():
            ds[t] = elem
    for elem in saved.values():
        out.add(DataElement(elem.tag, elem.VR, elem.value, is_undefined_length=elem.is_undefined_length))
    return out


def patient_pseudonym(ds: Dataset, ctx) -> str:
    """Pseudonym of the dataset's PatientID (``""`` when absent), as ``dicom_identity`` gives it."""
    return ctx.pseudo.patient(normalise_id(ds.get("PatientID", "") or ""))


def deidentify(
    ds: Dataset, ctx, *, keep_keywords: frozenset[str] | set[str] = frozenset()
) -> tuple[Dataset, dict]:
    """De-identify a pydicom Dataset per PS3.15 Annex E (see module docstring).

    Args:
        ds: the dataset as read (not modified; pixel data bytes are shared, not copied).
        ctx: a :class:`workers.context.WorkerContext` (its ``pseudo`` service gives the patient
            pseudonym, the per-patient date shift and replacement UIDs).
        keep_keywords: attributes a caller needs verbatim and cleans itself (e.g. an SR decoder
            keeping ``ContentSequence``/``TextValue`` for its own text de-identification); they
            are listed in the audit under ``kept_by_caller``. Empty for images.

    Returns:
        ``(clean_dataset, audit)``: ``audit`` is a JSON-serialisable dict with ``profile``,
        ``options``, ``table`` and the sorted attribute keywords per action (never values).
    """
    patient = patient_pseudonym(ds, ctx)
    out = _copy_dataset(ds)
    worker = _Deidentifier(ctx, patient, frozenset(keep_keywords))
    worker.clean_dataset(out)

    # File meta: Media Storage SOP Instance UID follows the SOP Instance UID (U).
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        new_meta = FileMetaDataset()
        for elem in meta:
            new_meta.add(DataElement(elem.tag, elem.VR, elem.value))
        if new_meta.get("MediaStorageSOPInstanceUID"):
            new_meta.MediaStorageSOPInstanceUID = worker.uid(str(new_meta.MediaStorageSOPInstanceUID))
            worker.audit.add("uid_replaced", Tag(0x00020003))
        # Source AE title / sending application could name the site: not in the table, but
        # they are device identifiers the Basic Profile removes elsewhere (Station Name).
        for kw in (
            "SourceApplicationEntityTitle",
            "SendingApplicationEntityTitle",
            "ReceivingApplicationEntityTitle",
        ):
            if kw in new_meta:
                delattr(new_meta, kw)
                worker.audit.sets["removed"].add(kw)
        out.file_meta = new_meta

    # Identity: consistent pseudonym in place of the (Z) Patient ID / Patient's Name.
    if patient:
        out.PatientID = patient
        out.PatientName = patient
    else:
        out.PatientID = ""
        out.PatientName = ""

    # PS3.15 E.1.1 / E.3.6 bookkeeping attributes.
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = ["DICOM PS3.15 E.1 Basic Profile", "Modified Dates Option"]
    codes = Sequence()
    for value, scheme, meaning in METHOD_CODES:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = scheme
        item.CodeMeaning = meaning
        codes.append(item)
    out.DeidentificationMethodCodeSequence = codes
    out.LongitudinalTemporalInformationModified = "MODIFIED"

    audit: dict[str, object] = {
        "profile": PROFILE,
        "options": list(OPTIONS),
        "table": TABLE_SOURCE,
        "date_shift": "per-patient whole days (value not recorded)",
        "hardening": [
            "private attributes removed",
            "unlisted PN emptied",
            "unlisted DA/DT shifted",
            "unlisted non-registry UIDs replaced",
            "unlisted free text (LT/ST/UT/UC) removed",
        ],
        **worker.audit.as_dict(),
    }
    log.debug("de-identified dataset: %d keywords touched", sum(len(v) for v in worker.audit.sets.values()))
    return out, audit
