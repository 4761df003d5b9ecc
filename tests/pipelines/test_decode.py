"""The decode step's failure semantics: timeouts, bugs (strict vs lenient), cache."""

from __future__ import annotations

import pickle
import time
from dataclasses import replace

import pytest

from pipelines import decode
from schemas.records import InputItem, InputKind
from workers.config import LimitsConfig


@pytest.fixture()
def nifti_item(shared_data):
    p = shared_data / "nifti/nibabel_functional.nii"
    return InputItem("f-test", str(p), InputKind.NIFTI, "s", "MIT", p.stat().st_size)


def faulty(name: str) -> tuple[tuple[str, str], ...]:
    """``DecodeTask.decoder_overrides`` replacing the NIfTI decoder by a faulty one."""
    return (("nifti", f"tests.fixtures.faulty_decoders:{name}"),)


def test_hanging_decoder_is_quarantined_with_timeout(nifti_item, ctx):
    ctx = replace(ctx, limits=LimitsConfig(item_timeout_s=0.3))
    t = time.perf_counter()
    out = decode.decode_item(decode.DecodeTask(nifti_item, ctx, True, "", faulty("hang")))
    assert time.perf_counter() - t < 5
    assert [q.reason.value for q in out] == ["timeout"]


def test_bug_raises_in_strict_mode_and_is_quarantined_otherwise(nifti_item, ctx):
    with pytest.raises(RuntimeError, match="a bug"):
        decode.decode_item(decode.DecodeTask(nifti_item, ctx, True, "", faulty("bug")))
    out = decode.decode_item(decode.DecodeTask(nifti_item, ctx, False, "", faulty("bug")))
    assert [q.reason.value for q in out] == ["decoder_error"]
    assert "a bug" not in out[0].message  # exception messages may hold PHI: only the type is kept


def test_cache_hit_is_read_not_recomputed(nifti_item, ctx, tmp_path, monkeypatch):
    calls = []
    real = decode._decode_with_timeout

    def counted(task, *args, **kwargs):
        calls.append(task)
        return real(task, *args, **kwargs)

    monkeypatch.setattr(decode, "_decode_with_timeout", counted)
    task = decode.DecodeTask(nifti_item, ctx, True, str(tmp_path))
    first = decode.decode_item(task)
    [sidecar] = list(tmp_path.rglob("*.pkl"))
    assert len(calls) == 1 and first
    assert decode.decode_item(task) == first and len(calls) == 1  # a hit: the decoder did not run
    # the hit is the sidecar's content (a tampered sidecar is what comes back), not a recompute
    sidecar.write_bytes(pickle.dumps(["from the sidecar"]))
    assert decode.decode_item(task) == ["from the sidecar"] and len(calls) == 1
    # a different secret must not reuse the sidecar (pseudonyms are baked into records)
    from workers.deid.pseudonym import Pseudonymizer

    other = replace(task, ctx=replace(ctx, pseudo=Pseudonymizer("a-different-secret-42")))
    assert decode.decode_item(other) != ["from the sidecar"] and len(calls) == 2
    assert len(list(tmp_path.rglob("*.pkl"))) == 2
