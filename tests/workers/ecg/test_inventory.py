"""Every ECG file in the shared sample data becomes a correct record or a specific quarantine."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import wfdb

from schemas.contract import ECG_LEADS
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import EcgRecord, InputItem, InputKind
from workers.ecg.dicom import decode_dicom_ecg
from workers.ecg.wfdb import decode_wfdb


def _item(path: Path, kind: InputKind, pseudo, root: Path) -> InputItem:
    companions = tuple(sorted(str(p) for p in path.parent.iterdir() if p.stem == path.stem and p != path))
    return InputItem(
        source_id=pseudo.source_id(path.relative_to(root).as_posix()),
        path=str(path),
        kind=kind,
        source_name="shared",
        licence="see PROVENANCE.md",
        size_bytes=path.stat().st_size,
        companions=companions if kind == InputKind.WFDB else (),
    )


def test_every_ecg_file_is_a_record_or_a_specific_quarantine(shared_data, ctx):
    root = shared_data / "ecg"
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert files, "no ECG sample files found"
    outcomes: dict[str, str] = {}
    claimed: set[Path] = set()

    def decode(path: Path) -> list:
        if path.suffix == ".hea":
            return decode_wfdb(_item(path, InputKind.WFDB, ctx.pseudo, root), ctx)
        return decode_dicom_ecg(pydicom.dcmread(path), _item(path, InputKind.DICOM, ctx.pseudo, root), ctx)

    for path in files:
        if path.suffix == ".hea":
            header = wfdb.rdheader(str(path.with_suffix("")))
            claimed.update(path.parent / f for f in header.file_name)
        elif path.suffix != ".dcm":
            continue
        try:
            (rec,) = decode(path)
        except QuarantineError as exc:
            assert exc.reason != ReasonCode.DECODER_ERROR
            outcomes[path.name] = exc.reason.value
            continue
        assert isinstance(rec, EcgRecord)
        arr = np.load(io.BytesIO(dict(rec.payload)["npy"]))
        assert arr.shape == (12, 5000) and arr.dtype == np.float16 and rec.leads == ECG_LEADS
        assert rec.sampling_rate_hz == 500.0 and rec.units == "mV"
        present = [lead for lead in ECG_LEADS if f"missing:{lead}" not in rec.qc_flags]
        assert present and not np.isnan(arr[[ECG_LEADS.index(lead) for lead in present]].astype(float)).all()
        assert json.loads(rec.meta_json)["convention"]["leads"] == list(ECG_LEADS)
        outcomes[path.name] = "record"
    # every signal file is claimed by a header; annotation files (.atr) are not ECG inputs
    leftovers = {p for p in files if p.suffix not in (".hea", ".dcm")} - claimed
    assert {p.suffix for p in leftovers} <= {".atr"}
    # all the shared ECGs are valid recordings: each one must decode
    assert set(outcomes.values()) == {"record"}, outcomes
    assert len(outcomes) == 9
