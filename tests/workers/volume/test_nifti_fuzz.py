"""Mutated copies of the real NIfTI files never crash the decoder: records or QuarantineError.

Seeded mutations: random header bytes, header fields set to edge values (zero/negative dims,
NaN/Inf/huge pixdim, slope, sform rows), truncation. ``MEDCORPUS_FULL=1`` runs 10x more cases.
"""

from __future__ import annotations

import gzip
import random
import struct

import pytest

from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import InputItem, InputKind, VolumeRecord
from tests.conftest import FULL
from workers.volume.nifti import decode_nifti

N_CASES = 300 if FULL else 30
#: (offset, struct format) of NIfTI-1 header fields: dims, datatype, bitpix, pixdim, vox_offset,
#: scl_slope/inter, qform/sform codes, srow_x/y/z
FIELDS = [(40, "<h"), (42, "<h"), (44, "<h"), (46, "<h"), (48, "<h"), (70, "<h"), (72, "<h"), (80, "<f"),
          (84, "<f"), (108, "<f"), (112, "<f"), (116, "<f"), (252, "<h"), (254, "<h"), (280, "<f"), (296, "<f"),
          (312, "<f")]  # fmt: skip


@pytest.mark.parametrize("seed", range(N_CASES))
def test_mutated_nifti_never_crashes(seed, shared_data, tmp_path, ctx):
    rnd = random.Random(seed)
    src = rnd.choice(sorted((shared_data / "nifti").iterdir()))
    raw = bytearray(gzip.decompress(src.read_bytes()) if src.name.endswith(".gz") else src.read_bytes())
    op = rnd.randrange(3)
    if op == 0:
        for _ in range(rnd.randint(1, 4)):
            raw[rnd.randrange(348)] = rnd.randrange(256)
    elif op == 1:
        off, fmt = rnd.choice(FIELDS)
        vals = [0, -1, 7, 32767, -32768] if fmt == "<h" else [0.0, -1.0, float("nan"), float("inf"), 1e30]
        struct.pack_into(fmt, raw, off, rnd.choice(vals))
    else:
        raw = raw[: rnd.randrange(len(raw))]
    path = tmp_path / "m.nii"
    path.write_bytes(bytes(raw))
    try:
        records = decode_nifti(InputItem("f", str(path), InputKind.NIFTI, "t", "l", len(raw)), ctx)
    except QuarantineError as exc:
        assert exc.reason != ReasonCode.DECODER_ERROR
        return
    assert records and all(isinstance(r, VolumeRecord) and r.orientation == "RAS" for r in records)
