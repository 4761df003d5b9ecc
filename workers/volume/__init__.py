"""Volumes: NIfTI files in, RAS volume records out (plus CT metadata tables and slice redundancy).

In: a NIfTI-1/NIfTI-2 file (``.nii``, ``.nii.gz``, ``.hdr``/``.img``; ``InputKind.NIFTI``) and a
worker context (``VolumeConfig``: 4-D policy, optional target spacing in mm, slice reduction).
Out, from :func:`workers.volume.nifti.decode_nifti`: one ``VolumeRecord`` per 3-D volume whose
payload is an array of shape (X, Y, Z) in RAS orientation (axis 0 → right, 1 → anterior,
2 → superior), CT as int16 Hounsfield units, other volumes in their native dtype (float64 →
float32); the affine (4 × 4, mm) and voxel spacing (mm) travel in the record, the slice
redundancy summary in its meta. No identity: NIfTI has no patient, study or time. Bad input →
``QuarantineError`` with a reason code (``volume_*``).

Modules:

- ``nifti``: the decoder (load, 4-D policy, RAS reorientation, value convention, resampling);
- ``ct_metadata``: CT-RATE's per-volume metadata table (rescale slope/intercept → int16 HU,
  spacing text → (X, Y, Z) voxel sizes in mm), applied driver-side by ``pipelines.tables``;
- ``redundancy``: adjacent-slice NCC, exact/hash duplicates and the greedy "Less is More" slice
  selection of a 3-D array along one axis (Z for NIfTI, axis 0 for DICOM stacks: the DICOM
  series assembler in ``workers.dicom.series`` uses it too).
"""
