"""The NLP of the report rule path: language detection and the medspaCy pipeline with its data.

In: de-identified report text (``str``, NFC) and, for the pipeline, the target domains
(``cxr``, ``ecg``). Out: :func:`workers.report.nlp.lang.detect_language` gives an ISO 639-1 code
(``"und"`` when undetermined), deterministically; :func:`workers.report.nlp.pipeline.get_nlp`
gives a process-wide spaCy ``Language`` whose docs carry target entities (one label per
matched span, token-aligned), ConText modifiers (negated, uncertain, historical, family,
hypothetical) and sections. No downloaded model.

Modules: ``lang`` (lexicon first, seeded langdetect for ties), ``pipeline`` (build and cache the
pipeline, ``RULES_VERSION``), ``rules`` (ConText modifiers and section headings, data only),
``vocab`` (label → regular expressions in English, German and Swedish, data only).
"""
