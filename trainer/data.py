"""WebDataset loader for medcorpus shards, in the way open_clip reads WebDataset.

Training stream (per rank, per DataLoader worker)::

    seeded shard stream (resampled with replacement, or a seeded pass over the shards split by
    rank then worker) → tar → samples → seeded shuffle buffer → decode → batch + collate
    → with_epoch(batches per worker)

Training samples are augmented (``DataConfig.augment``, see :func:`augment_sample`); evaluation
samples never are.

Every rank yields exactly ``num_batches`` batches per epoch, whatever its shards hold, so DDP
ranks never wait on each other at the end of an epoch. Order is a pure function of
(seed, epoch, rank, worker), which is what makes resume reproducible. The epoch lives in a
shared-memory value, so DataLoader worker processes see :meth:`TrainLoader.set_epoch`.

Batch layout (``collate``), for ``B`` samples and ``K = max_items``:
    ``image`` float32 (B, K, 1, S, S) in [-1, 1];   ``volume`` float32 (B, K, 1, D, H, W) in [-1, 1]
    ``ecg`` float32 (B, K, 12, 5000 / ecg_downsample) in mV;  ``report`` list[str]
    ``labs`` float32 (B, K, 2 · labs_items): train-split percentiles in [0, 1] then missingness
    flags (1 = missing), rows 1 and 2 of ``labs_{i}.npy`` flattened (the Symile-MIMIC input)
    ``{modality}_items`` bool (B, K): which item slots hold data (padding is zeros)
    ``modality_mask`` bool (B, 5) over ``trainer.config.MODALITY_NAMES`` (image, volume, ecg,
    report, labs; the sample has ≥ 1 item)
    ``labels`` float32 (B, len(ALL_LABELS)): findings asserted ``present`` in ``report_*.json``
    ``labels_known`` bool (B,): the sample has a structured report;  ``key`` list[str]
"""

from __future__ import annotations

import io
import json
import logging
import math
import multiprocessing as mp
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from schemas.contract import ECG_LEADS, ECG_RATE_HZ, ECG_SECONDS, SHARDS_DIR, SIZES_FILE, SPLITS, parse_member
from schemas.labels import ALL_LABELS
from trainer import remote
from trainer.config import MODALITY_NAMES, DataConfig

log = logging.getLogger(__name__)

LABEL_INDEX: dict[str, int] = {name: i for i, name in enumerate(ALL_LABELS)}
ECG_SAMPLES = ECG_RATE_HZ * ECG_SECONDS


class ShardSetError(ValueError):
    """The shard folder is missing, empty or inconsistent (message names no PHI)."""


# --------------------------------------------------------------------------- shard listing


def split_dir(shards: str | Path, split: str) -> Path:
    """Folder of ``split``: accepts a build output dir (``OUT``), its ``shards/`` or the split dir."""
    root = Path(shards)
    for cand in (root / SHARDS_DIR / split, root / split):
        if cand.is_dir():
            return cand
    if root.is_dir() and root.name == split:
        return root
    raise ShardSetError(f"no shard folder for split {split!r} under the given path")


def _remote_split_dir(fs, url: str, split: str) -> str:
    """:func:`split_dir` for a storage URL (a published set, its ``shards/`` or the split)."""
    root = url.rstrip("/")
    for cand in (f"{root}/{SHARDS_DIR}/{split}", f"{root}/{split}"):
        if fs.isdir(cand):
            return cand
    if root.rsplit("/", 1)[-1] == split and fs.isdir(root):
        return root
    raise ShardSetError(f"no shard folder for split {split!r} under the given URL")


def _name(url: str) -> str:
    return str(url).rstrip("/").rsplit("/", 1)[-1]


def list_shards(shards: str | Path, split: str) -> tuple[list[str], int]:
    """Sorted shard paths (or URLs) of ``split`` and their total sample count (from ``sizes.json``).

    ``shards`` is a build output folder (or its ``shards/``, or the split folder), the same
    layout under a storage URL (``s3://bucket/corpus/sets/<version>/<id>``: listed with fsspec,
    read with webdataset's ``pipe:`` through :func:`trainer.remote.shard_url`), or a brace/glob
    pattern of shard files, local or on the store (``s3://b/set/shards/train/train-{000000..000041}.tar``,
    ``s3://b/corpus/sets/*/*/shards/*/*.tar``) of which the names ``{split}-*.tar`` are taken.

    ``sizes.json`` of each shard folder maps shard file name → sample count (open_clip); keys
    given as ``split/name.tar`` are accepted too. Without ``sizes.json`` the tars are counted (slow).
    """
    try:
        local = not remote.is_url(shards)
        if remote.has_pattern(shards) and not (local and Path(shards).exists()):
            tars = [
                u
                for u in remote.expand(str(shards))
                if _name(u).startswith(f"{split}-") and u.endswith(".tar")
            ]
            if not tars:
                raise ShardSetError(f"the shard pattern matches no shard of split {split!r}")
        elif not local:
            fs = remote.filesystem(str(shards))
            d = _remote_split_dir(fs, str(shards), split)
            tars = sorted(remote.full_url(fs, p) for p in fs.glob(f"{d}/{split}-*.tar"))
        else:
            d = split_dir(shards, split)
            tars = [str(p) for p in sorted(d.glob(f"{split}-*.tar"))]
        if not tars:
            raise ShardSetError(f"split {split!r} has no shards")
        folders: dict[str, list[str]] = {}
        for t in tars:
            folders.setdefault(str(t)[: -len(_name(t)) - 1], []).append(t)
        total = sum(_folder_total(folder, names, split) for folder, names in folders.items())
    except remote.StorageUnavailable as exc:
        raise ShardSetError(str(exc)) from None
    return tars, total


def _read_text(path: str) -> str | None:
    """A small file's text, local or on the store; None if it does not exist."""
    if not remote.is_url(path):
        p = Path(path)
        return p.read_text(encoding="utf-8") if p.is_file() else None
    try:
        return remote.filesystem(path).cat_file(path).decode("utf-8")
    except FileNotFoundError:
        return None


def _folder_total(folder: str, tars: list[str], split: str) -> int:
    """Samples in ``tars`` (all in ``folder``), from the folder's ``sizes.json``."""
    text = _read_text(f"{folder}/{SIZES_FILE}")
    if text is None:
        log.warning("split %s has no %s; counting samples (slow)", split, SIZES_FILE)
        return sum(_count_samples(t) for t in tars)
    try:
        raw = json.loads(text)
    except ValueError:
        raise ShardSetError(f"{SIZES_FILE} of split {split!r} is not valid JSON") from None
    sizes = {_name(k): int(v) for k, v in raw.items()}
    missing = [t for t in tars if _name(t) not in sizes]
    if missing:
        raise ShardSetError(f"{SIZES_FILE} of split {split!r} lacks {len(missing)} shard(s)")
    return sum(sizes[_name(t)] for t in tars)


def _open_tar(url: str):
    """A tar file read in order, local or on the store (a stream: no seeks over the network)."""
    import tarfile

    if not remote.is_url(url):
        return tarfile.open(url)
    return tarfile.open(fileobj=remote.open_input(url), mode="r|*")


def probe_labs_items(shards: str | Path, split: str) -> int:
    """``n_items`` of the first ``labs_{i}.npy`` in ``split``'s shards (every labs member of one
    build has the same items, in the same order: ``labs_normalisation.json``)."""
    for url in list_shards(shards, split)[0]:
        with _open_tar(url) as tf:
            for member in tf:
                _, _, name = member.name.rpartition("/")[2].partition(".")  # "{key}.labs_0.npy"
                parsed = parse_member(name)
                if not (member.isfile() and parsed and parsed[0] == "labs" and parsed[2] == "npy"):
                    continue
                f = tf.extractfile(member)
                arr = _load_npy(f.read()) if f is not None else None
                if arr is not None and arr.ndim == 2 and arr.shape[0] == 3 and arr.shape[1] > 0:
                    return int(arr.shape[1])
    raise ShardSetError(f"split {split!r} holds no labs members: remove labs from data.modalities")


def _count_samples(path: str) -> int:
    keys = set()
    with _open_tar(str(path)) as tf:
        for member in tf:
            if member.isfile():
                keys.add(member.name.split(".", 1)[0])
    return len(keys)


# --------------------------------------------------------------------------- decoding


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.float32)
            lo, hi = float(arr.min()), float(arr.max())
            return (arr - lo) / max(hi - lo, 1.0)
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def _load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _square_resize_2d(img: np.ndarray, size: int) -> torch.Tensor:
    """(rows, cols) in [0, 1] → (1, size, size) in [-1, 1], zero-padded to a centred square."""
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))
    h, w = t.shape
    side = max(h, w)
    if h != w:
        pad_h, pad_w = side - h, side - w
        t = F.pad(t, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    t = t[None, None]
    if side != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=side > size, align_corners=False)
    return (t[0] * 2.0 - 1.0).clamp_(-1.0, 1.0)


class SampleDecoder:
    """Turn one raw WebDataset sample (``{"__key__": ..., "ecg_0.npy": bytes, ...}``) into tensors.

    Picklable (it runs in DataLoader workers). Only the modalities in ``cfg.modalities`` are
    decoded; the presence mask covers all of :data:`MODALITY_NAMES`. Member names outside the
    contract are ignored. Decoding labs needs ``cfg.labs_items`` (see :func:`probe_labs_items`);
    a labs member of another width (another build) is treated as absent.
    """

    def __init__(
        self, cfg: DataConfig, *, augment: bool = False, seed: int = 0, epoch: SharedEpoch | None = None
    ) -> None:
        if "labs" in cfg.modalities and cfg.labs_items <= 0:
            raise ShardSetError("data.labs_items is unresolved: call probe_labs_items on the shards first")
        self.cfg = cfg
        self.modalities = tuple(cfg.modalities)
        self.augment, self.seed, self.epoch = augment, seed, epoch

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        cfg = self.cfg
        items: dict[str, dict[int, dict[str, bytes]]] = {m: {} for m in MODALITY_NAMES}
        for name, value in sample.items():
            if name.startswith("__"):
                continue
            parsed = parse_member(name)
            if parsed is None or parsed[0] == "meta":
                continue
            modality, index, suffix = parsed
            if modality not in items:  # a modality this trainer does not know
                continue
            items[modality].setdefault(index, {})[suffix] = value
        out: dict[str, Any] = {"key": sample["__key__"]}
        out["modality_mask"] = torch.tensor([bool(items[m]) for m in MODALITY_NAMES], dtype=torch.bool)
        k = cfg.max_items
        if "image" in self.modalities:
            shape = (1, cfg.image_size, cfg.image_size)
            out["image"], out["image_items"] = self._stack(items["image"], k, shape, self._image)
        if "volume" in self.modalities:
            shape = (1, *cfg.volume_size)
            out["volume"], out["volume_items"] = self._stack(items["volume"], k, shape, self._volume)
        if "ecg" in self.modalities:
            shape = (len(ECG_LEADS), ECG_SAMPLES // cfg.ecg_downsample)
            out["ecg"], out["ecg_items"] = self._stack(items["ecg"], k, shape, self._ecg)
        if "labs" in self.modalities:
            shape = (2 * cfg.labs_items,)
            out["labs"], out["labs_items"] = self._stack(items["labs"], k, shape, self._labs)
        texts, labels, known = [], np.zeros(len(ALL_LABELS), dtype=np.float32), False
        for index in sorted(items["report"]):
            parts = items["report"][index]
            if "txt" in parts:
                texts.append(parts["txt"].decode("utf-8", errors="replace").strip())
            if "json" in parts:
                known = True
                for finding in json.loads(parts["json"]).get("findings", []):
                    if finding.get("assertion") == "present" and finding.get("label") in LABEL_INDEX:
                        labels[LABEL_INDEX[finding["label"]]] = 1.0
        out["report"] = "\n\n".join(t for t in texts if t)[: cfg.text_max_chars]
        out["labels"] = torch.from_numpy(labels)
        out["labels_known"] = known
        if self.augment:
            epoch = self.epoch.get() if self.epoch is not None else 0
            rng = np.random.default_rng([self.seed, epoch, zlib.crc32(out["key"].encode("utf-8"))])
            augment_sample(out, rng)
        return out

    @staticmethod
    def _stack(found: dict[int, dict[str, bytes]], k: int, shape: tuple[int, ...], fn) -> tuple:
        # numpy allocation: torch.zeros goes through the OpenMP pool, slow on a busy machine
        data = torch.from_numpy(np.zeros((k, *shape), dtype=np.float32))
        mask = torch.from_numpy(np.zeros(k, dtype=np.bool_))
        slot = 0
        for index in sorted(found):
            if slot >= k:
                break
            t = fn(found[index])
            if t is None:
                continue
            data[slot] = t
            mask[slot] = True
            slot += 1
        return data, mask

    def _image(self, parts: dict[str, bytes]) -> torch.Tensor | None:
        if self.cfg.image_source == "raw" and "raw.npy" in parts:
            arr = _load_npy(parts["raw.npy"]).astype(np.float32)
            if arr.ndim == 3:  # (frames, rows, cols): first frame
                arr = arr[0]
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / max(hi - lo, 1e-6)
        elif "png" in parts:
            arr = _decode_png(parts["png"])
        else:
            return None
        return _square_resize_2d(arr, self.cfg.image_size)

    def _ecg(self, parts: dict[str, bytes]) -> torch.Tensor | None:
        if "npy" not in parts:
            return None
        arr = _load_npy(parts["npy"]).astype(np.float32)
        if arr.ndim != 2:
            return None
        fixed = np.zeros((len(ECG_LEADS), ECG_SAMPLES), dtype=np.float32)
        leads, n = min(arr.shape[0], len(ECG_LEADS)), min(arr.shape[1], ECG_SAMPLES)
        fixed[:leads, :n] = arr[:leads, :n]
        np.nan_to_num(fixed, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        np.clip(fixed, -self.cfg.ecg_clip_mv, self.cfg.ecg_clip_mv, out=fixed)
        f = self.cfg.ecg_downsample
        if f > 1:
            fixed = fixed[:, : (ECG_SAMPLES // f) * f].reshape(len(ECG_LEADS), -1, f).mean(axis=2)
        return torch.from_numpy(np.ascontiguousarray(fixed))

    def _labs(self, parts: dict[str, bytes]) -> torch.Tensor | None:
        """(3, n_items) value/percentile/missing → (2·n_items,) percentiles then missingness."""
        if "npy" not in parts:
            return None
        arr = _load_npy(parts["npy"])
        if arr.ndim != 2 or arr.shape != (3, self.cfg.labs_items):
            log.warning(
                "labs member of shape %s, expected (3, %d): treated as absent", arr.shape, self.cfg.labs_items
            )
            return None
        vec = np.concatenate([arr[1], arr[2]]).astype(np.float32)
        np.nan_to_num(vec, copy=False, nan=0.5, posinf=1.0, neginf=0.0)
        return torch.from_numpy(np.clip(vec, 0.0, 1.0))

    def _volume(self, parts: dict[str, bytes]) -> torch.Tensor | None:
        if "npy" not in parts:
            return None
        arr = _load_npy(parts["npy"])
        if arr.ndim == 4:
            arr = arr[..., 0]
        if arr.ndim != 3:
            return None
        target = self.cfg.volume_size
        # stride-subsample very large volumes to ≤ 2x the target before interpolating (memory)
        steps = tuple(max(1, s // (2 * t)) for s, t in zip(arr.shape, target, strict=True))
        arr = arr[:: steps[0], :: steps[1], :: steps[2]].astype(np.float32)
        lo, hi = self.cfg.hu_window
        arr = (np.clip(arr, lo, hi) - lo) / (hi - lo) * 2.0 - 1.0
        t = torch.from_numpy(np.ascontiguousarray(arr))[None, None]
        t = F.interpolate(t, size=target, mode="trilinear", align_corners=False)
        return t[0]


def augment_sample(out: dict[str, Any], rng: np.random.Generator) -> None:
    """Training augmentation, in place, seeded per (seed, epoch, key) so resume replays it.

    Images: small affine (rotation ±5°, scale 0.9–1.1, shift ±5 %, no flips: laterality is a
    finding), gain/offset jitter and Gaussian noise. ECGs: circular time shift, amplitude scale
    0.85–1.15, 0.02 mV noise. Volumes: intensity jitter. Padding slots stay zero.
    """
    if "image" in out:
        x, items = out["image"], out["image_items"]
        for i in range(x.shape[0]):
            if not items[i]:
                continue
            a = np.deg2rad(rng.uniform(-5, 5))
            sc = rng.uniform(0.9, 1.1)
            tx, ty = rng.uniform(-0.1, 0.1, 2)
            theta = torch.tensor(
                [[np.cos(a) / sc, -np.sin(a) / sc, tx], [np.sin(a) / sc, np.cos(a) / sc, ty]],
                dtype=torch.float32,
            )[None]
            grid = F.affine_grid(theta, list(x[i : i + 1].shape), align_corners=False)
            img = F.grid_sample(
                x[i : i + 1], grid, mode="bilinear", padding_mode="border", align_corners=False
            )[0]
            noise = torch.from_numpy(rng.normal(0, 0.03, img.shape).astype(np.float32))
            x[i] = (img * rng.uniform(0.9, 1.1) + rng.uniform(-0.1, 0.1) + noise).clamp_(-1, 1)
    if "ecg" in out:
        x, items = out["ecg"], out["ecg_items"]
        for i in range(x.shape[0]):
            if items[i]:
                shifted = torch.roll(x[i], int(rng.integers(x.shape[-1])), dims=-1)
                noise = torch.from_numpy(rng.normal(0, 0.02, shifted.shape).astype(np.float32))
                x[i] = shifted * rng.uniform(0.85, 1.15) + noise
    if "volume" in out:
        x, items = out["volume"], out["volume_items"]
        for i in range(x.shape[0]):
            if items[i]:
                x[i] = (x[i] * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.05)).clamp_(-1, 1)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack decoded samples into a batch (see the module docstring for the layout)."""
    batch: dict[str, Any] = {
        "key": [s["key"] for s in samples],
        "report": [s["report"] for s in samples],
        "modality_mask": torch.stack([s["modality_mask"] for s in samples]),
        "labels": torch.stack([s["labels"] for s in samples]),
        "labels_known": torch.tensor([s["labels_known"] for s in samples], dtype=torch.bool),
    }
    for m in ("image", "volume", "ecg", "labs"):
        if m in samples[0]:
            batch[m] = torch.stack([s[m] for s in samples])
            batch[f"{m}_items"] = torch.stack([s[f"{m}_items"] for s in samples])
    return batch


# --------------------------------------------------------------------------- seeded streams


class SharedEpoch:
    """An epoch counter in shared memory, readable from DataLoader worker processes."""

    def __init__(self, epoch: int = 0) -> None:
        self.value = mp.Value("i", epoch)

    def set(self, epoch: int) -> None:
        self.value.value = epoch

    def get(self) -> int:
        return self.value.value


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


class ShardStream(IterableDataset):
    """Infinite stream of ``{"url": shard}`` for one rank (and DataLoader worker).

    ``resampled``: shards drawn with replacement from an RNG seeded by
    (seed, epoch, rank, worker). Otherwise: successive passes over all shards, each shuffled
    by (seed, epoch, pass) identically on every rank, then split by rank and by worker
    (``urls[rank::world][worker::workers]``), so within a pass no two consumers share a shard.
    """

    def __init__(
        self, urls: list[str], *, seed: int, epoch: SharedEpoch, rank: int, world: int, resampled: bool
    ) -> None:
        super().__init__()
        self.urls, self.seed, self.epoch = list(urls), seed, epoch
        self.rank, self.world, self.resampled = rank, world, resampled

    def __iter__(self) -> Iterator[dict[str, str]]:
        epoch = self.epoch.get()
        worker, workers = _worker()
        if self.resampled:
            rng = random.Random(f"shards-{self.seed}-{epoch}-{self.rank}-{worker}")
            while True:
                yield {"url": rng.choice(self.urls)}
        n_pass = 0
        while True:
            urls = list(self.urls)
            random.Random(f"pass-{self.seed}-{epoch}-{n_pass}").shuffle(urls)
            mine = urls[self.rank :: self.world][worker::workers]
            if not mine:
                raise ShardSetError("more rank x worker consumers than shards: use resampled shards")
            for url in mine:
                yield {"url": url}
            n_pass += 1


class SeededShuffle(wds.PipelineStage):
    """Sample shuffle buffer whose RNG is seeded by (seed, epoch, rank, worker)."""

    def __init__(self, bufsize: int, initial: int, *, seed: int, epoch: SharedEpoch, rank: int) -> None:
        self.bufsize, self.initial, self.seed, self.epoch, self.rank = bufsize, initial, seed, epoch, rank

    def run(self, src: Iterator) -> Iterator:
        worker, _ = _worker()
        rng = random.Random(f"samples-{self.seed}-{self.epoch.get()}-{self.rank}-{worker}")
        return wds.shuffle(self.bufsize, self.initial, rng=rng)(src)


def _skip_bad_sample(exn: Exception) -> bool:
    """WebDataset handler: log (type only, no paths) and skip a sample that fails to read/decode."""
    log.warning("skipping an unreadable sample (%s)", type(exn).__name__)
    return True


# --------------------------------------------------------------------------- loaders


@dataclass
class TrainLoader:
    """A DataLoader over the training stream with a fixed number of batches per epoch.

    ``num_batches`` is the per-rank batch count of every epoch (a multiple of the worker count);
    ``num_samples`` is the nominal epoch length over all ranks.
    """

    dataloader: DataLoader
    epoch: SharedEpoch
    num_batches: int
    num_samples: int
    seed: int

    def set_epoch(self, epoch: int) -> None:
        self.epoch.set(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.dataloader)

    def __len__(self) -> int:
        return self.num_batches


def make_train_loader(
    shards: str | Path,
    cfg: DataConfig,
    *,
    seed: int,
    rank: int = 0,
    world: int = 1,
    pin_memory: bool = False,
    batch_multiple: int = 1,
) -> TrainLoader:
    """Build the training loader of ``cfg.train_split`` for ``rank`` of ``world``.

    Batches per worker = ceil(samples / (batch_size * world * workers)), rounded up so the
    per-rank total is a multiple of ``batch_multiple`` (the gradient-accumulation count).
    """
    urls, total = list_shards(shards, cfg.train_split)
    urls = [remote.shard_url(u) for u in urls]  # storage URLs: webdataset's pipe:
    num_samples = cfg.samples_per_epoch or total
    if num_samples <= 0:
        raise ShardSetError(f"split {cfg.train_split!r} holds no samples")
    workers = max(1, cfg.workers)
    if not cfg.resampled and len(urls) < world * workers:
        raise ShardSetError(
            f"{len(urls)} shard(s) for {world} rank(s) x {workers} worker(s): set data.resampled or fewer workers"
        )
    global_batch = cfg.batch_size * world
    per_worker = math.ceil(num_samples / (global_batch * workers))
    while (per_worker * workers) % batch_multiple:
        per_worker += 1
    epoch = SharedEpoch(0)
    pipeline = wds.DataPipeline(
        ShardStream(urls, seed=seed, epoch=epoch, rank=rank, world=world, resampled=cfg.resampled),
        wds.tarfile_to_samples(handler=_skip_bad_sample),
        SeededShuffle(cfg.shuffle_buffer, cfg.shuffle_initial, seed=seed, epoch=epoch, rank=rank),
        wds.map(SampleDecoder(cfg, augment=cfg.augment, seed=seed, epoch=epoch), handler=_skip_bad_sample),
        wds.batched(cfg.batch_size, collation_fn=collate, partial=False),
    ).with_epoch(per_worker)
    dl = DataLoader(
        pipeline,
        batch_size=None,
        shuffle=False,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        pin_memory=pin_memory,
        prefetch_factor=4 if cfg.workers > 0 else None,
    )
    return TrainLoader(dl, epoch, per_worker * workers, num_samples, seed)


def make_eval_loader(
    shards: str | Path,
    split: str,
    cfg: DataConfig,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
) -> tuple[DataLoader, int]:
    """A single ordered pass over every sample of ``split`` (partial last batch kept).

    Returns the loader and the sample count from ``sizes.json``. Shards are split over workers,
    so with ``workers > 1`` samples arrive interleaved (deterministically).
    """
    if split not in SPLITS:
        raise ShardSetError(f"unknown split {split!r}")
    urls, total = list_shards(shards, split)
    urls = [remote.shard_url(u) for u in urls]
    n_workers = min(cfg.workers if workers is None else workers, len(urls))
    pipeline = wds.DataPipeline(
        wds.SimpleShardList(urls),
        wds.split_by_worker,
        wds.tarfile_to_samples(handler=_skip_bad_sample),
        wds.map(SampleDecoder(cfg), handler=_skip_bad_sample),
        wds.batched(batch_size or cfg.batch_size, collation_fn=collate, partial=True),
    )
    dl = DataLoader(pipeline, batch_size=None, shuffle=False, num_workers=n_workers)
    return dl, total
