"""A TorchScript checkpoint as the embedder of a modality (``dedup.<modality>_checkpoint``)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from schemas.modality import Modality
from schemas.records import InputKind
from tests.fixtures.dedup_variants import input_item
from workers.embed.embedders import TorchScriptEmbedder, embedder_fingerprint, make_embedder

torch = pytest.importorskip("torch")


def _save_encoder(path, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12 * 5000, 8)).eval()
    torch.jit.save(torch.jit.script(model), str(path))
    return model


@pytest.fixture()
def ecg_records(examples_dir, ctx):
    from workers.ecg.wfdb import decode_wfdb

    src = examples_dir / "ecg/ptbxl_500hz"
    records = []
    for n in (6000, 6001, 6002):
        hea = src / f"HR0{n}.hea"
        records += decode_wfdb(input_item(hea, ctx.pseudo, InputKind.WFDB, [str(src / f"HR0{n}.mat")]), ctx)
    return records


def test_checkpoint_embeds_the_stored_ecg_and_normalises(ecg_records, tmp_path):
    model = _save_encoder(tmp_path / "enc.pt", seed=0)
    emb = make_embedder(Modality.ECG, str(tmp_path / "enc.pt"))
    assert isinstance(emb, TorchScriptEmbedder)
    out = emb(ecg_records)
    assert out.shape == (3, 8) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)
    # the input is the stored member (float16 12 x 5000, mV), as float32
    stored = [np.load(io.BytesIO(dict(r.payload)["npy"])) for r in ecg_records]
    assert all(s.shape == (12, 5000) and s.dtype == np.float16 for s in stored)
    with torch.no_grad():
        want = model(torch.from_numpy(np.stack(stored).astype(np.float32))).numpy()
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_checkpoint_identity_is_its_bytes(tmp_path):
    _save_encoder(tmp_path / "a.pt", seed=0)
    _save_encoder(tmp_path / "b.pt", seed=1)
    a, b = (embedder_fingerprint(Modality.ECG, str(tmp_path / n)) for n in ("a.pt", "b.pt"))
    assert a != b  # other weights: the embedding cache must not be reused
    assert a == embedder_fingerprint(Modality.ECG, str(tmp_path / "a.pt"))
    assert a != embedder_fingerprint(Modality.ECG)  # vs the weight-free thumbnail
