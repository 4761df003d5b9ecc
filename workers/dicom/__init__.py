"""DICOM decoding: one Part 10 file in, records out (images, CT/MR slices and volumes).

In: a file path (``DecodeItem``) and a worker context (pseudonym secret, filters, limits).
Out, from :func:`workers.dicom.decode.decode_dicom`:

- ``ImageRecord``: the display image as an 8-bit PNG (longest side resized to the image
  config) after Modality LUT → VOI LUT → MONOCHROME1 inversion (``pixels``), plus ``raw.npy``
  with the stored values of every frame (modality units, e.g. HU for CT);
- ``SeriesSlice`` for single-frame CT/MR slices, which ``series.assemble_series`` stacks into a
  ``VolumeRecord``: float array (slices, rows, columns) in HU/modality units, RAS orientation,
  spacing in mm;
- waveform and SR objects are handed to ``workers.ecg.dicom`` and ``workers.report.sr``;
- bad input → a quarantine record with a reason code (``read``: truncation, bad transfer
  syntax, bomb-sized pixel data).

De-identification (PS3.15 Annex E basic profile) is ``workers.deid.dicom``, beside the text
de-identification and the pseudonyms it shares with every modality.

Modules: ``read`` (file reading), ``identity``
(pseudonymous patient/study, shifted time), ``pixels`` (pixel pipeline), ``records`` (record
assembly from the de-identified dataset only), ``series`` (slice sorting and stacking),
``decode`` (dispatch).
"""
