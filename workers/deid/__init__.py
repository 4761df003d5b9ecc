"""De-identification: keyed pseudonyms for the whole build, free text and DICOM datasets.

In: raw identifiers (patient, study, source path, DICOM UID) and the deployment secret
(``pseudonym``); a decoded report text (``str``, NFC, ``\\n`` line ends) with the patient's
pseudonym and any known identifiers (``text``).
Out: ``pseudonym.Pseudonymizer`` gives lower-case hex HMAC-SHA256 tokens (patient ``p`` + 16
hex, study ``s`` + 16 hex, source ``f`` + 16 hex), ``2.25.`` UIDs and one date shift per patient,
whole days in [-3650, -1]; the same input gives the same output across DICOM, ECG, reports,
runs and runners. ``text.deidentify_text`` gives the de-identified text (identifiers replaced
by ``[NAME]``, ``[ID]``, ... placeholders, dates shifted by the patient's offset in their own
format, ages over 89 as ``90+``) and counts per category (never values);
``text.find_phi_spans`` gives the resolved spans ``(start, end, category, replacement)``
(character offsets). ``dicom.deidentify`` takes a ``pydicom.Dataset`` (and the worker context
for its pseudonyms) and gives the de-identified copy plus an audit (profile, option, and the
keywords, never the values, of what was removed, emptied, replaced, shifted or cleaned).

Modules:

- ``pseudonym``: the pseudonymisation service (secrets from ``demo``, ``env:NAME`` or a hook);
- ``dicom``: the PS3.15 Annex E Basic Application Level Confidentiality Profile with the
  Retain Longitudinal Temporal Information with Modified Dates option (the table itself is
  data: ``workers/resources/dicom_ps315_profile.csv``), applied by the DICOM reader
  (``workers.dicom.decode``) before any pixel is decoded;
- ``text``: the entry point of free-text de-identification (``DEID_VERSION``, ``CATEGORIES``);
- the detectors it combines, one responsibility per module: ``spans`` (candidate spans and
  their resolution), ``identifiers`` (contact details, IDs, kept placeholders), ``dates``
  (dates shifted in their own format, clock times), ``ages`` (ages over 89), ``locations``
  (addresses, cities, institutions), ``names`` (titles, labels, cues, credentials,
  dictionaries), ``model`` (the statistical token model, an ensemble member), ``clinical`` (the
  clinical allow-list), ``lexicon`` (dictionaries), ``detector`` (the ensemble).
"""
