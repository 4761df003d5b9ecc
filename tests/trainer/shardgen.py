"""Tiny contract-conforming shard sets for the trainer tests, written with ``webdataset.TarWriter``.

Each sample holds a subset of: ``image_{i}.png`` (+ ``image_{i}.raw.npy``), ``ecg_{i}.npy``
float16 (12, 5000), ``volume_{i}.npy`` int16 (X, Y, Z), ``report_{i}.txt`` / ``report_{i}.json``,
and ``meta.json``; members in sorted name order; keys ``[a-z0-9_-]``; ``sizes.json`` per split.
A hidden class ``c`` drives every modality (bright square position, ECG frequency, report word)
so a model can learn the alignment.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image

from schemas.contract import SHARDS_DIR, SIZES_FILE, is_valid_key, shard_name

CLASS_WORDS = ("cardiomegaly", "pleural effusion", "pneumothorax", "nodule")
CLASS_LABELS = ("cardiomegaly", "pleural_effusion", "pneumothorax", "nodule")


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def make_sample(
    index: int, rng: np.random.Generator, *, modalities: tuple[str, ...], n_images: int = 1, image_hw=(40, 32)
) -> dict[str, bytes | str]:
    """One sample of class ``index % 4`` holding ``modalities`` (``n_images`` images)."""
    c = index % len(CLASS_WORDS)
    key = f"s{index:05d}-{c}"
    assert is_valid_key(key)
    sample: dict[str, bytes | str] = {"__key__": key}
    if "image" in modalities:
        for i in range(n_images):
            h, w = image_hw
            img = (rng.random((h, w)) * 60).astype(np.uint8)
            y, x = (c // 2) * (h // 2), (c % 2) * (w // 2)
            img[y : y + h // 2, x : x + w // 2] += 150
            sample[f"image_{i}.png"] = _png(img)
            sample[f"image_{i}.raw.npy"] = _npy(img.astype(np.int16) * 16)
    if "ecg" in modalities:
        t = np.arange(5000) / 500.0
        sig = np.sin(2 * np.pi * (1 + c) * t)[None, :] * np.linspace(0.5, 1.5, 12)[:, None]
        sig = sig + rng.normal(0, 0.05, sig.shape)
        sample["ecg_0.npy"] = _npy(sig.astype(np.float16))
    if "volume" in modalities:
        vol = rng.integers(-1000, -900, size=(12, 10, 8)).astype(np.int16)
        vol[c * 3 : c * 3 + 3] = 400
        sample["volume_0.npy"] = _npy(vol)
    if "report" in modalities:
        word = CLASS_WORDS[c]
        sample["report_0.txt"] = f"FINDINGS: {word} is seen. Case {index}.".encode()
        findings = [{"label": CLASS_LABELS[c], "assertion": "present"}]
        findings.append({"label": CLASS_LABELS[(c + 1) % 4], "assertion": "negated"})
        report = {
            "schema_version": "1.0",
            "report_type": "radiology",
            "language": "en",
            "sections": {"findings": word},
            "findings": findings,
            "normal": False,
        }
        sample["report_0.json"] = json.dumps(report, sort_keys=True).encode()
    sample["meta.json"] = json.dumps({"key": key, "modalities": sorted(modalities)}).encode()
    return {k: sample[k] for k in sorted(sample)}


def write_split(root: Path, split: str, samples: list[dict], per_shard: int) -> list[Path]:
    """Write ``samples`` as ``root/shards/{split}/{split}-XXXXXX.tar`` + ``sizes.json``."""
    d = Path(root) / SHARDS_DIR / split
    d.mkdir(parents=True, exist_ok=True)
    paths, sizes = [], {}
    for s_index, start in enumerate(range(0, len(samples), per_shard)):
        chunk = samples[start : start + per_shard]
        path = Path(root) / SHARDS_DIR / shard_name(split, s_index)
        with wds.TarWriter(str(path)) as tw:
            for s in chunk:
                tw.write(s)
        sizes[path.name] = len(chunk)
        paths.append(path)
    (d / SIZES_FILE).write_text(json.dumps(sizes, sort_keys=True))
    return paths


def make_shard_set(
    root: Path,
    *,
    n: dict[str, int] | None = None,
    per_shard: int = 8,
    modalities: tuple[str, ...] = ("image", "ecg", "report"),
    drop_every: int = 0,
    seed: int = 0,
) -> Path:
    """A shard set under ``root`` with ``n[split]`` samples per split; returns ``root``.

    ``drop_every=k`` removes one modality (cycling through ``modalities``) from every k-th sample,
    to exercise missing-modality handling.
    """
    n = n or {"train": 32, "val": 8, "test": 12}
    rng = np.random.default_rng(seed)
    offset = 0
    for split, count in n.items():
        samples = []
        for i in range(offset, offset + count):
            mods = modalities
            if drop_every and i % drop_every == 0:
                drop = modalities[(i // drop_every) % len(modalities)]
                mods = tuple(m for m in modalities if m != drop)
            samples.append(make_sample(i, rng, modalities=mods))
        write_split(root, split, samples, per_shard)
        offset += count
    return Path(root)
