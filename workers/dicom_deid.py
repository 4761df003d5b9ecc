"""DICOM de-identification: PS3.15 Annex E Basic Application Level Confidentiality Profile.

Profile and option applied (the only combination this module implements):

- **Basic Application Level Confidentiality Profile** (PS3.15 E.2, code DCM 113100), and
- **Retain Longitudinal Temporal Information with Modified Dates Option** (PS3.15 E.3.6,
  code DCM 113107): every date of a patient is shifted by the same whole number of days
  (``ctx.pseudo.date_shift_days(patient)``, shared with the ECG and report de-identification),
  so intervals between a patient's studies are kept. Times are kept: a whole-day shift leaves
  the time of day unchanged.

The attribute/action table below is PS3.15 Table E.1-1 ("Application Level Confidentiality
Profile Attributes"), the *Basic Profile* column and the *Rtn. Long. Modif. Dates Opt.* column,
embedded as data. Action codes (PS3.15 E.1.1): ``X`` remove; ``Z`` zero length (or dummy);
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

import logging
import re
from collections.abc import Callable
from datetime import date, timedelta

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

# PS3.15 Table E.1-1. One row per attribute: "GGGG,EEEE <Basic Profile action> [C]", where a
# trailing "C" is the action of the Retain Longitudinal Temporal Information with Modified
# Dates Option for that row (it overrides the basic action when the option is applied).
# "x" in a tag stands for any hex digit (repeating groups). Rows are in the table's order
# (alphabetical by attribute name); the name is resolved from pydicom's data dictionary.
_TABLE_E1_1 = """
0008,0050 Z
0018,4000 X
0040,0555 X/Z
0008,0022 X/Z C
0008,002A X/Z/D C
0018,1400 X/D
0018,11BB D
0018,9424 X
0008,0032 X/Z C
0040,4035 X
0010,21B0 X
0040,A353 X
0038,0010 X
0038,0020 X C
0008,1084 X
0008,1080 X
0038,0021 X C
0000,1000 X
0010,2110 X
4000,0010 X
0040,A078 X
2200,0005 X/Z
300A,00C3 X
300A,00DD X
0010,1081 X
0016,004D X
0018,1007 X
0012,0060 Z
0012,0082 X
0012,0081 D
0012,0020 D
0012,0021 Z
0012,0072 X
0012,0071 X
0012,0030 Z
0012,0031 Z
0012,0010 D
0012,0040 D
0012,0042 D
0012,0051 X
0012,0050 Z
0040,0310 X
0040,0280 X
300A,02EB X
0020,9161 U
3010,000F Z
3010,0017 Z
3010,0006 U
0040,3001 X
3010,0013 U
0008,009C Z
0008,009D X
0050,001B X
0040,051A X
0040,0512 D
0070,0086 X
0070,0084 Z/D
0008,0023 Z/D C
0040,A730 D
0008,0033 Z/D C
0018,0010 Z/D
0018,A003 X
0010,2150 X
0040,A307 X
0038,0300 X
50xx,xxxx X
0008,0025 X C
0008,0035 X C
0040,A07C X
FFFC,FFFC X
0018,937F X
0008,2111 X
0018,700A X/D
3010,001B Z
0050,0020 X
3010,002D D
0018,1000 X/Z/D
0016,004B X
0018,1002 U
FFFA,FFFA X
0400,0100 U
0020,9164 U
0038,0040 X
4008,011A X
4008,0119 X
300A,0016 X
300A,0013 U
3010,006E U
0018,9517 X/D C
3010,0037 X
3010,0035 D
3010,0038 D
3010,0036 X
300A,0676 X
0010,2160 X
0040,4011 X C
0008,0058 U
0070,031A U
0040,2017 Z
3008,0054 X/D C
300A,0196 X
0034,0002 D
0034,0001 D
3010,007F Z
300A,0072 X
0020,9158 X
0020,0052 U
0034,0007 D C
0018,1008 X
0018,1005 X
0016,0076 X
0016,0075 X
0016,008C X
0016,008D X C
0016,0088 X
0016,0087 X
0016,008A X
0016,0089 X
0016,0084 X
0016,0083 X
0016,0086 X
0016,0085 X
0016,008E X
0016,007B X
0016,0081 X
0016,0080 X
0016,0072 X
0016,0071 X
0016,0074 X
0016,0073 X
0016,0082 X
0016,007A X
0016,008B X
0016,0078 X
0016,007D X
0016,007C X
0016,0079 X
0016,0077 X
0016,007F X
0016,007E X
0016,0070 X
0070,0001 D
0040,4037 X
0040,4036 X
0088,0200 X
0008,4000 X
0020,4000 X
0028,4000 X
0040,2400 X
003A,0314 D C
4008,0300 X
0008,0015 X C
0008,0014 U
0400,0600 X
0008,0081 X
0008,1040 X
0008,1041 X
0008,0082 X/Z/D
0008,0080 X/Z/D
0010,1050 X
3010,004D X/D C
3010,004C X/D C
0040,1011 X
300A,0741 D C
300A,0742 D
300A,0783 D
4008,0111 X
4008,010C X
4008,0115 X
4008,0202 X
4008,0102 X
4008,010B X
4008,010A X
0008,3010 U
0038,0011 X
0038,0014 X
0010,0021 X
0038,0061 X
0038,0064 X
0040,0513 Z
0040,0562 Z
2200,0002 X/Z
0028,1214 U
0010,21D0 X C
0016,004F X
0016,0050 X
0016,0051 X
0016,004E X
0050,0021 X
0400,0404 X
0016,002B X
0018,100B U
3010,0043 Z
0002,0003 U
0010,2000 X
0010,1090 X
0010,1080 X
0400,0550 X
0020,3406 X
0020,3401 X
3008,0056 X/D C
0018,937B X
003A,0310 U
0008,1060 X
0040,1010 X
0400,0551 X
0400,0552 X
0040,A192 X C
0040,A402 U
0040,A193 X C
0040,A171 U
0010,2180 X
0008,1072 X/D
0008,1070 X/Z/D
0040,2010 X
0040,2011 X
0040,2008 X
0040,2009 X
0400,0561 X
0010,1000 X
0010,1002 X
0010,1001 X
60xx,4000 X
60xx,3000 X
0008,0024 X C
0008,0034 X C
300A,0760 D C
0028,1199 U
0040,A07A X
0010,1040 X
0010,1010 X
0010,0030 Z
0010,1005 X
0010,0032 X
0038,0400 X
0010,0050 X
0010,1060 X
0010,0010 Z
0010,0101 X
0010,0102 X
0010,21F0 X
0010,0040 Z
0010,2203 X/Z
0010,1020 X
0010,2155 X
0010,2154 X
0010,1030 X
0010,4000 X
0010,0020 Z
300A,0650 U
0038,0500 X
0040,1004 X
0040,0243 X
0040,0254 X
0040,0250 X C
0040,4051 X C
0040,0251 X C
0040,0253 X
0040,0244 X C
0040,4050 X C
0040,0245 X C
0040,0241 X
0040,4030 X
0040,0242 X
0040,4028 X
0008,1050 X
0008,1052 X
0040,1102 X
0040,1104 X
0040,1103 X
0040,1101 D
0040,A123 D
0008,1048 X
0008,1049 X
0008,1062 X
4008,0114 X
0040,2016 Z
0018,1004 X
0010,21C0 X
0040,0012 X
300A,000E X
3010,007B Z
3010,0081 Z
0070,1101 U
0070,1102 U
3010,0061 X
0040,4052 X C
0018,1030 X/D
300A,0619 D
300A,0623 D
300A,067D Z
300A,067C D
300C,0113 X
0040,100A X
0032,1030 X
3010,005C Z
0040,2001 X
0040,1002 X
0032,1066 X
0032,1067 X
300A,073A D C
3010,000B U
0400,0402 X
300A,0083 U
3010,006F U
3010,0031 U
3006,0024 U
0040,4023 U
0008,1140 X/Z/U*
0040,A172 U
0038,0004 X
0010,1100 X
0008,1120 X
0008,1111 X/Z/D
0400,0403 X
0008,1155 U
0004,1511 U
0008,1110 X/Z
0008,0092 X
0008,0090 Z
0008,0094 X
0008,0096 X
0010,2152 X
3006,00C2 U
0040,0275 X
0032,1070 X
0040,1400 X
0032,1060 X/Z
0040,1001 X
0040,1005 X
0018,9937 X
0000,1001 U
0032,1032 X
0032,1033 X
0018,9185 X
0010,2299 X
0010,2297 X
4008,4000 X
4008,0118 X
4008,0042 X
300E,0008 X/Z
3006,0028 X
3006,0038 X
3006,00A6 Z
3006,0026 Z
3006,0088 X
3006,0085 X
300A,0615 Z
300A,0611 Z
3010,005A Z
300A,0006 X/D C
300A,0004 X
300A,0002 D
300A,0003 X
300A,0007 X/D C
3010,0054 D
300A,062A D
3010,0056 X/D
3010,003B U
0040,4034 X
0038,001E X
0040,0006 X
0040,000B X
0040,0007 X
0040,0004 X C
0040,0005 X C
0040,4008 X C
0040,0009 X
0040,0011 X
0040,4010 X C
0040,0002 X C
0040,4005 X C
0040,0003 X C
0040,0001 X
0040,4027 X
0040,0010 X
0040,4025 X
0032,1020 X
0032,1021 X
0008,0021 X/D C
0008,103E X
0020,000E U
0008,0031 X/D C
0038,0062 X
0038,0060 X
300A,01B2 X
300A,01A6 X
0040,06FA X
0010,21A0 X
0008,0018 U
3010,0015 U
0018,936A D C
0034,0005 D
0008,2112 X/Z/U*
300A,0216 X
3008,0105 X/Z
0018,9369 D C
0038,0050 X
0040,050A X
0040,0602 X
0040,0551 D
0040,0610 Z
0040,0600 X
0040,0554 U
0018,9516 X/D C
0008,1010 X/Z/D
0088,0140 U
3006,0008 Z C
3006,0006 X
3006,0002 D
3006,0004 X
3006,0009 X/D C
0032,4000 X
0008,0020 Z C
0008,1030 X
0020,0010 Z
0032,0012 X
0020,000D U
0008,0030 Z C
0020,0200 U
0018,2042 U
0040,A354 X
0040,DB0D U
0040,DB0C U
4000,4000 X
2030,0020 X
0008,0201 X C
0088,0910 X
0088,0912 X
0088,0906 X
0088,0904 X
0062,0021 U
0008,1195 U
0018,5011 X
3008,0250 X/D C
300A,00B2 X
300A,0608 D
300A,0609 U
300A,0700 U
3010,0077 D
3010,007A Z
3008,0251 X/D C
300A,0736 D C
300A,0734 D
0018,100A X
0040,A124 U
0018,1009 X
3010,0033 D
3010,0034 D
0040,A352 X
0040,A358 X
0040,A088 Z
0040,A075 D
0040,A073 D
0040,A027 D
0038,4000 X
0018,9371 D
0018,9373 X
0018,9367 D
"""


def _parse_table(text: str) -> tuple[dict[int, tuple[str, str]], list[tuple[int, int, str, str]]]:
    """Parse :data:`_TABLE_E1_1` → (exact tag → (basic, option)), [(mask, value, basic, option)]."""
    exact: dict[int, tuple[str, str]] = {}
    masked: list[tuple[int, int, str, str]] = []
    for line in text.strip().splitlines():
        parts = line.split()
        tag_text, basic = parts[0], parts[1]
        option = parts[2] if len(parts) > 2 else ""
        hexdigits = tag_text.replace(",", "")
        if "x" in hexdigits:
            mask = int("".join("0" if ch == "x" else "F" for ch in hexdigits), 16)
            value = int(hexdigits.replace("x", "0"), 16)
            masked.append((mask, value, basic, option))
        else:
            tag = int(hexdigits, 16)
            if tag in exact:
                raise ValueError(f"duplicate row in Table E.1-1 data: {tag_text}")
            exact[tag] = (basic, option)
    return exact, masked


PROFILE_TABLE, PROFILE_MASKED = _parse_table(_TABLE_E1_1)

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
