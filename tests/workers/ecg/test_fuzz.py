"""Mutated copies of the real ECG files never crash a decoder: a record or a QuarantineError.

Seeded mutations (header tokens, dropped/duplicated/garbled lines, truncated or empty signal
files; DICOM waveform attributes). ``MEDCORPUS_FULL=1`` runs 10x more cases.
"""

from __future__ import annotations

import copy
import random
import shutil
from pathlib import Path

import pydicom
import pytest

from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import EcgRecord, InputItem, InputKind
from tests.conftest import FULL
from workers.ecg.dicom import decode_dicom_ecg
from workers.ecg.wfdb import decode_wfdb

N_CASES = 400 if FULL else 40
TOKENS = ["0", "-1", "abc", "1e9", "999999999", "16x0", "NaN", "212", "/", "~", "1e-9"]


def _outcome(call) -> str:
    try:
        (rec,) = call()
    except QuarantineError as exc:
        assert exc.reason != ReasonCode.DECODER_ERROR
        return exc.reason.value
    assert isinstance(rec, EcgRecord) and rec.n_samples == 5000
    return "record"


def _mutate_header(lines: list[str], rnd: random.Random) -> list[str]:
    op = rnd.choice(["tok", "drop", "dup", "garble"])
    i = rnd.randrange(len(lines))
    if op == "tok" and lines[i].split():
        toks = lines[i].split()
        toks[rnd.randrange(len(toks))] = rnd.choice(TOKENS)
        lines[i] = " ".join(toks)
    elif op == "drop":
        del lines[i]
    elif op == "dup":
        lines.insert(i, lines[i])
    else:
        lines[i] = "".join(rnd.choice("abc 0123/()+x#:.") for _ in range(rnd.randint(0, 40)))
    return lines


@pytest.mark.parametrize("seed", range(N_CASES))
def test_mutated_wfdb_records_never_crash(seed, shared_data, tmp_path, ctx):
    rnd = random.Random(seed)
    src = rnd.choice(sorted((shared_data / "ecg" / "wfdb").glob("*/*.hea")))
    for p in src.parent.iterdir():
        if p.stem == src.stem:
            shutil.copy(p, tmp_path / p.name)
    hea = tmp_path / src.name
    if rnd.random() < 0.7:
        hea.write_text("\n".join(_mutate_header(hea.read_text().splitlines(), rnd)) + "\n")
    else:
        for p in tmp_path.iterdir():
            if p.suffix in (".dat", ".mat", ".xyz"):
                data = p.read_bytes()
                p.write_bytes(data[: rnd.randrange(len(data))] if rnd.random() < 0.8 else b"")
    item = InputItem(ctx.pseudo.source_id(hea.name), str(hea), InputKind.WFDB, "t", "l", hea.stat().st_size)
    _outcome(lambda: decode_wfdb(item, ctx))


def _mutate_waveform(ds: pydicom.Dataset, rnd: random.Random) -> None:
    g = ds.WaveformSequence[rnd.randrange(len(ds.WaveformSequence))]
    op = rnd.randrange(9)
    if op == 0:
        g.SamplingFrequency = rnd.choice([0, -5, 1e-9, 1e7, 250])
    elif op == 1:
        g.NumberOfWaveformSamples = rnd.choice([0, 1, 5, 10**7, 20000])
    elif op == 2:
        g.NumberOfWaveformChannels = rnd.choice([0, 1, 13, 24])
    elif op == 3:
        g.WaveformBitsAllocated = rnd.choice([8, 32, 64])
    elif op == 4:
        g.WaveformData = bytes(g.WaveformData)[: rnd.randrange(len(g.WaveformData))]
    elif op == 5:
        g.ChannelDefinitionSequence[rnd.randrange(12)].ChannelSensitivity = rnd.choice([0, -1, 1e30])
    elif op == 6:
        g.ChannelDefinitionSequence[rnd.randrange(12)].ChannelSensitivityUnitsSequence[0].CodeValue = "mmHg"
    elif op == 7:
        del g.ChannelDefinitionSequence[rnd.randrange(12)]
    else:
        g.WaveformPaddingValue = rnd.choice([b"\x00\x80", b"\x01", b"\x00\x00\x00\x00"])


@pytest.mark.parametrize("seed", range(N_CASES // 2))
def test_mutated_dicom_waveforms_never_crash(seed, shared_data, ctx):
    path = shared_data / "ecg" / "dicom_waveform" / "waveform_ecg.dcm"
    ds = copy.deepcopy(_DICOM_CACHE.setdefault(path, pydicom.dcmread(path)))
    _mutate_waveform(ds, random.Random(seed))
    item = InputItem(ctx.pseudo.source_id(path.name), str(path), InputKind.DICOM, "t", "l", 1)
    _outcome(lambda: decode_dicom_ecg(ds, item, ctx))


_DICOM_CACHE: dict[Path, pydicom.Dataset] = {}
