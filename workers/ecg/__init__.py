"""ECG decoding: WFDB records and DICOM waveforms in, corpus ECGs out.

In: a WFDB record (``.hea`` + signal files, any format wfdb reads) or a DICOM waveform dataset.
Out: an ``EcgRecord`` whose signal is float16 in mV, shape (12, rate_hz × seconds) =
(12, 5000) at the default 500 Hz × 10 s, leads in the order I, II, III, aVR, aVL, aVF, V1–V6
(found by name, never by channel position); missing leads are NaN rows, short records are
NaN-padded and flagged; QC flags per lead. Bad input → a quarantine record with a reason code.

Modules: ``convention`` (the shared layout: units, resampling, window, QC), ``wfdb`` (WFDB
records, header comments de-identified), ``wfdb_header`` (fast ports of wfdb's header parsers),
``dicom`` (DICOM waveform SOP classes).
"""
