"""HOW one item is transformed: decoders, de-identification, NLP, LLM, embeddings, hashing.

Workers are pure functions or small classes with ``setup()``/``__call__``. They never import
Beam, Dask, Airflow or ``pipelines``; they raise ``schemas.QuarantineError`` for bad input.

One subpackage per input modality, then the cross-cutting services (each package docstring
says what comes in and what goes out):

- ``dicom``: DICOM Part 10 files → images, CT/MR slices and volumes (PS3.15 de-identification);
- ``ecg``: WFDB records and DICOM waveforms → 12-lead ECGs;
- ``volume``: NIfTI → RAS volumes, CT metadata tables, slice redundancy;
- ``image``: JPEG/PNG files → images;
- ``report``: report tables, text files and DICOM SR → structured reports (rules, NLP, label model);
- ``labs``: lab values → percentile members;
- ``deid``: pseudonyms and free-text de-identification;
- ``llm``: report structuring with vLLM;
- ``embed``: embeddings and LSH near-duplicate search.

Top-level modules are used by all of them: ``config`` (per-modality settings), ``context``
(``WorkerContext``: settings + pseudonymiser, picklable), ``ids`` (identifier normalisation).
"""
