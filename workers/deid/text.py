"""De-identification of free-text reports: the entry point (the detectors live in ``workers.deid``).

Recall first: a missed identifier is worse than an over-redacted word, but clinical words that a
model needs (eponyms, leads, vertebral levels, lab values, drugs, devices) are protected from weak
evidence. Rule detectors and a small token model (an ensemble) propose spans with a category and a
replacement; overlaps are resolved by priority (then length) and the text is rebuilt:

- ``placeholder``: ``XXXX`` (Indiana/OpenI), ``[** **]`` (MIMIC-III), ``___`` (MIMIC-IV): kept,
  counted, and shielded from other rules;
- ``email``, ``url``, ``phone``, ``id``: ``[EMAIL]``, ``[URL]``, ``[PHONE]``, ``[ID]`` (MRN,
  accession, account, SSN, licence, device and serial numbers, with or without a label);
- ``date``: shifted by ``pseudo.date_shift_days(patient)`` (the offset DICOM and ECG use) and
  written back in the same format; a date-shaped string that is no valid date becomes ``[DATE]``;
- ``time``: clock times → ``[TIME]``;
- ``age``: ages over 89 → ``90+`` (HIPAA Safe Harbor), digits or words;
- ``address``: streets, ZIP codes, cities → ``[ADDRESS]``;
- ``institution``: hospitals, clinics, practices → ``[INSTITUTION]``;
- ``name``: person names → ``[NAME]``, the whole name (no partial names left).

The returned counts are per category and never contain the values. See ``docs/deid.md``.
"""

from __future__ import annotations

from workers.deid.detector import DEFAULT, DeidConfig, find_spans
from workers.deid.pseudonym import Pseudonymizer

#: version of the text de-identification (recorded with each report)
DEID_VERSION = "text-deid-5"
CATEGORIES: tuple[str, ...] = (
    "name", "date", "time", "age", "phone", "email", "url", "id", "address", "institution", "placeholder",
)  # fmt: skip

__all__ = ["CATEGORIES", "DEID_VERSION", "DeidConfig", "deidentify_text", "find_phi_spans"]


def find_phi_spans(
    text: str,
    patient: str,
    pseudo: Pseudonymizer,
    known_identifiers: tuple[str, ...] = (),
    cfg: DeidConfig = DEFAULT,
) -> list[tuple[int, int, str, str]]:
    """All resolved PHI spans of ``text`` as ``(start, end, category, replacement)`` (for audits/tests)."""
    spans = find_spans(text, pseudo.date_shift_days(patient), known_identifiers, cfg)
    return [(s.start, s.end, s.category, s.replacement) for s in spans]


def deidentify_text(
    text: str,
    patient: str,
    pseudo: Pseudonymizer,
    known_identifiers: tuple[str, ...] = (),
    cfg: DeidConfig = DEFAULT,
) -> tuple[str, dict[str, int]]:
    """De-identify one report.

    Args:
        text: the report text (already decoded and normalised to NFC, ``\\n`` line ends).
        patient: the patient *pseudonym* (``pseudo.patient(...)``, ``""`` if unknown); it selects
            the date offset, so dates move exactly like this patient's DICOM and ECG dates.
        pseudo: the build's pseudonymisation service.
        known_identifiers: raw identifiers known from structured fields of the same record
            (patient/physician names, patient ID, accession): removed wherever they occur.
        cfg: detector switches (the defaults are the release settings).

    Returns:
        ``(text, counts)``: the de-identified text and the number of replacements per category
        of :data:`CATEGORIES` (placeholders are kept and counted). Never the values.
    """
    counts = dict.fromkeys(CATEGORIES, 0)
    parts: list[str] = []
    pos = 0
    for start, end, category, repl in find_phi_spans(text, patient, pseudo, known_identifiers, cfg):
        parts.append(text[pos:start])
        parts.append(repl)
        counts[category] += 1
        pos = end
    parts.append(text[pos:])
    return "".join(parts), counts
