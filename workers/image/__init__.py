"""Image files: JPEG and PNG in, corpus images out (``InputKind.IMAGE_FILE``).

In: one JPEG or PNG file and a worker context (``ImageConfig.rendition_size``, limits).
Out, from :func:`workers.image.decode.decode_image_file`: one ``ImageRecord`` with the same
members as a DICOM image (``schemas.contract``): ``png``, an 8-bit rendition whose longest side
is ``rendition_size`` pixels, and ``raw.npy``, the stored values losslessly, uint8 or uint16
(rows, cols) for grey, uint8 (rows, cols, 3) RGB for colour (EXIF orientation applied, alpha
dropped). Every metadata block of the file (EXIF, XMP, ICC, comments, PNG text) is dropped and
only its kind recorded. Identity is empty: patient, study and time come from a metadata table
joined by path (``pipelines.tables``). Bad input → ``QuarantineError``.

Why its own subpackage and not ``workers.dicom``: a JPEG/PNG file shares only the output
contract with a DICOM image, none of its input handling (no Part 10 reading, PS3.15 profile,
Modality/VOI LUT, photometric interpretation or identity from tags), and it has its own
convention version (``IMAGE_FILE_CONVENTION``); keeping it apart leaves ``workers.dicom`` about
DICOM only.
"""
