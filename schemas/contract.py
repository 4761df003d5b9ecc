"""The sample/shard contract shared by the writer (pipelines) and the reader (trainer).

Keys:     ``[a-z0-9_-]+``, never a dot (WebDataset splits ``key.member`` at the *first* dot;
          DICOM UIDs are dotted, so they never appear in keys). Keys derive from keyed hashes of
          pseudonymous IDs, never from PHI.
Members:  ``meta.json`` plus ``{modality}_{i}.{suffix}`` with ``i`` = 0, 1, ... per modality:
          ``image_{i}.png``      8-bit model-ready rendition (grey "L", or "RGB" for colour images)
          ``image_{i}.raw.npy``  stored pixel values after the Modality LUT, lossless (rows, cols)
                                 or (frames, rows, cols)
          ``volume_{i}.npy``     int16 (X, Y, Z) in RAS, HU for CT
          ``ecg_{i}.npy``        float16 (12, 5000): mV, 500 Hz, canonical lead order, 10 s
          ``report_{i}.txt``     de-identified report text (UTF-8)
          ``report_{i}.json``    structured report (``schemas.report_schema``)
          ``labs_{i}.npy``       float32 (3, n_items): raw value, train-split percentile in
                                 [0, 1] (missing: the train mean percentile), missing (1.0)
          ``labs_{i}.json``      item ids, names, units, times, missingness, normalisation id
          Members of one sample are written in sorted name order.
Shards:   ``{split}/{split}-{index:06d}.tar`` under ``shards/``; each split folder has a
          ``sizes.json`` mapping shard file name → sample count (open_clip convention).
"""

from __future__ import annotations

import re

from schemas.modality import Modality

KEY_RE = re.compile(r"^[a-z0-9_-]{1,128}$")
MEMBER_RE = re.compile(r"^(meta\.json|(image|volume|ecg|report|labs)_(\d+)\.(png|raw\.npy|npy|txt|json))$")
SPLITS: tuple[str, ...] = ("train", "val", "test")
META_MEMBER = "meta.json"
SIZES_FILE = "sizes.json"
SHARDS_DIR = "shards"

#: corpus conventions, recorded in every sample's meta.json
ECG_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
ECG_RATE_HZ = 500
ECG_SECONDS = 10
ECG_UNITS = "mV"

#: member suffixes each modality writes, in the order items produce them
MODALITY_SUFFIXES: dict[Modality, tuple[str, ...]] = {
    Modality.IMAGE: ("png", "raw.npy"),
    Modality.VOLUME: ("npy",),
    Modality.ECG: ("npy",),
    Modality.REPORT: ("txt", "json"),
    Modality.LABS: ("json", "npy"),
}


def is_valid_key(key: str) -> bool:
    """True if ``key`` is a legal sample key (no dots, lower-case hex-ish, bounded length)."""
    return bool(KEY_RE.match(key))


def member_name(modality: Modality, index: int, suffix: str) -> str:
    """Member name (without the key) of item ``index`` of ``modality``, e.g. ``ecg_0.npy``."""
    name = f"{modality.value}_{index}.{suffix}"
    if not MEMBER_RE.match(name):
        raise ValueError(f"not a contract member name: {name}")
    return name


def parse_member(name: str) -> tuple[str, int, str] | None:
    """``"ecg_1.npy"`` → ``("ecg", 1, "npy")``; ``"meta.json"`` → ``("meta", 0, "json")``."""
    m = MEMBER_RE.match(name)
    if not m:
        return None
    if m.group(1) == META_MEMBER:
        return ("meta", 0, "json")
    return (m.group(2), int(m.group(3)), m.group(4))


def shard_name(split: str, index: int) -> str:
    """Relative shard path under ``shards/``: ``train/train-000000.tar``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    return f"{split}/{split}-{index:06d}.tar"
