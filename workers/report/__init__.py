"""Reports: report tables, text files and DICOM SR in, de-identified structured reports out.

In: a report table (CSV/TSV/JSONL/JSON, one report per row, columns mapped by
``ReportConfig.columns``; ``InputKind.REPORT_TABLE``), a plain-text report file
(``InputKind.REPORT_TEXT``), or a text DICOM SR dataset handed over by ``workers.dicom.decode``.
Out: one ``ReportRecord`` per report with two payload members, ``txt`` (the de-identified text,
NFC, ``\\n`` line ends, UTF-8) and ``json`` (the structured report: sections, findings as
(label, assertion, section, evidence), the normal flag; valid under
``schemas.report_schema.REPORT_JSON_SCHEMA``), the ISO 639-1 language (``"und"`` when
undetermined) and the de-identification counts per category (counts only, never values). A bad
row → a ``QuarantineRecord``; an unreadable table → ``QuarantineError``.

Modules:

- ``ingest``: table and text decoding (encoding detection, normalisation, column mapping,
  timestamps), then per report: de-identify (``workers.deid.text``) → language → structure;
- ``sr``: DICOM SR content tree → text (headings, ``Concept: value`` lines) → ``ingest``;
- ``rules``: the rule path of structuring (medspaCy sections, target findings, ConText
  assertions, normal flag), optionally combined with the learned label model;
- ``label_model``: per-label logistic regression over n-grams and rule outputs (weights under
  ``workers/resources/labels_model/``; NumPy only at run time);
- ``nlp``: the medspaCy pipeline, its ConText/section rules and target vocabularies, and
  language detection.

The LLM path (``workers.llm``) fills the same JSON schema and falls back to ``rules``.
"""
