"""The WebDataset loader on shards written with webdataset.TarWriter following schemas/contract."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from schemas.contract import ECG_LEADS, MEMBER_RE
from schemas.labels import ALL_LABELS
from tests.trainer.shardgen import make_sample, make_shard_set, write_split
from trainer.config import MODALITY_NAMES, DataConfig
from trainer.data import ShardSetError, list_shards, make_eval_loader, make_train_loader

ALL4 = ("image", "volume", "ecg", "report")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return make_shard_set(
        tmp_path_factory.mktemp("shards"),
        modalities=ALL4,
        drop_every=3,
        per_shard=5,
        n={"train": 23, "val": 6, "test": 9},
    )


def _members(root: Path, split: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for tar in sorted((root / "shards" / split).glob("*.tar")):
        with tarfile.open(tar) as tf:
            for name in tf.getnames():
                key, member = name.split(".", 1)
                out.setdefault(key, set()).add(member)
    return out


def test_list_shards_reads_sizes_json(shards: Path) -> None:
    urls, total = list_shards(shards, "train")
    assert total == 23 and len(urls) == 5 and urls == sorted(urls)
    # the shards/ folder and the split folder itself are accepted too
    assert list_shards(shards / "shards", "val")[1] == 6
    assert list_shards(shards / "shards" / "test", "test")[1] == 9


def test_list_shards_errors(tmp_path: Path, shards: Path) -> None:
    with pytest.raises(ShardSetError):
        list_shards(tmp_path, "train")
    write_split(
        tmp_path, "train", [make_sample(0, np.random.default_rng(0), modalities=("ecg", "report"))], 4
    )
    (tmp_path / "shards" / "train" / "sizes.json").write_text(json.dumps({"other-000000.tar": 1}))
    with pytest.raises(ShardSetError, match="lacks"):
        list_shards(tmp_path, "train")


def test_eval_loader_decodes_every_member_type_with_masks(shards: Path) -> None:
    cfg = DataConfig(
        modalities=ALL4, batch_size=4, workers=0, max_items=2, image_size=32, volume_size=(8, 8, 8)
    )
    loader, total = make_eval_loader(shards, "test", cfg)
    members = _members(shards, "test")
    seen = 0
    for batch in loader:
        b = len(batch["key"])
        assert batch["image"].shape == (b, 2, 1, 32, 32)
        assert batch["volume"].shape == (b, 2, 1, 8, 8, 8)
        assert batch["ecg"].shape == (b, 2, len(ECG_LEADS), 2500)
        assert batch["modality_mask"].shape == (b, len(MODALITY_NAMES))
        for i, key in enumerate(batch["key"]):
            names = members[key]
            assert all(MEMBER_RE.match(n) for n in names)
            for j, m in enumerate(MODALITY_NAMES):
                assert bool(batch["modality_mask"][i, j]) == any(n.startswith(m + "_") for n in names)
            # one item each in these shards: slot 1 is padding (zeros, masked)
            for m in ("image", "volume", "ecg"):
                has = any(n.startswith(m + "_") for n in names)
                assert batch[f"{m}_items"][i].tolist() == [has, False]
                assert float(batch[m][i, 1].abs().sum()) == 0.0
                if not has:
                    assert float(batch[m][i].abs().sum()) == 0.0
            if "report_0.txt" in names:
                c = int(key.rsplit("-", 1)[1])
                assert batch["report"][i].startswith("FINDINGS:")
                present = {ALL_LABELS[k] for k in batch["labels"][i].nonzero().flatten().tolist()}
                # the shard generator asserts one label present and the next one negated
                assert present == {("cardiomegaly", "pleural_effusion", "pneumothorax", "nodule")[c]}
                assert bool(batch["labels_known"][i])
            else:
                assert batch["report"][i] == "" and not bool(batch["labels_known"][i])
        seen += b
    assert seen == total == 9


def test_decoded_values_follow_the_contract(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    s = make_sample(2, rng, modalities=("image", "ecg", "volume"), n_images=3, image_hw=(20, 10))
    write_split(tmp_path, "val", [s], 4)
    cfg = DataConfig(
        modalities=("image", "ecg", "volume"),
        batch_size=2,
        workers=0,
        max_items=2,
        image_size=20,
        ecg_downsample=1,
        volume_size=(12, 10, 8),
    )
    batch = next(iter(make_eval_loader(tmp_path, "val", cfg)[0]))
    ecg = np.load(io.BytesIO(s["ecg_0.npy"])).astype(np.float32)
    assert torch.allclose(batch["ecg"][0, 0], torch.from_numpy(ecg))  # mV kept, 500 Hz kept
    vol = np.load(io.BytesIO(s["volume_0.npy"])).astype(np.float32)
    expected = (np.clip(vol, -1000, 1000) + 1000) / 2000 * 2 - 1  # same size: interpolation is identity
    assert torch.allclose(batch["volume"][0, 0, 0], torch.from_numpy(expected), atol=1e-6)
    assert batch["image_items"][0].tolist() == [True, True]  # 3 images, 2 kept
    img = batch["image"][0, 0, 0]
    assert img.shape == (20, 20) and float(img[:, :5].max()) == -1.0  # 10-wide image padded to square
    assert -1.0 <= float(img.min()) and float(img.max()) <= 1.0


def test_train_loader_same_batch_count_every_epoch_and_seeded_order(shards: Path) -> None:
    cfg = DataConfig(
        modalities=("image", "report"), batch_size=4, workers=0, shuffle_buffer=8, shuffle_initial=4
    )
    loader = make_train_loader(shards, cfg, seed=5)
    assert loader.num_batches == 6  # ceil(23 / 4)
    orders = []
    for epoch in (0, 1, 0):
        loader.set_epoch(epoch)
        keys = [k for batch in loader for k in batch["key"]]
        assert len(keys) == loader.num_batches * 4
        orders.append(keys)
    assert orders[0] == orders[2]  # same (seed, epoch) → same stream
    assert orders[0] != orders[1]
    other = make_train_loader(shards, cfg, seed=6)
    assert [k for b in other for k in b["key"]] != orders[0]


def test_ranks_get_equal_batches_and_disjoint_shards_per_pass(shards: Path) -> None:
    cfg = DataConfig(
        modalities=("ecg", "report"),
        batch_size=3,
        workers=0,
        resampled=False,
        shuffle_buffer=1,
        shuffle_initial=1,
    )
    counts, first_pass = [], []
    for rank in (0, 1):
        loader = make_train_loader(shards, cfg, seed=0, rank=rank, world=2)
        keys = [k for b in loader for k in b["key"]]
        counts.append(loader.num_batches)
        assert len(keys) == loader.num_batches * 3
        first_pass.append(set(keys))
    assert counts[0] == counts[1] == 4  # ceil(23 / (3 * 2))
    # 5 shards of (5, 5, 5, 5, 3) samples split 3/2 between ranks: without a nominal epoch length the
    # ranks would see different counts; within one pass the ranks never share a sample
    assert not (first_pass[0] & first_pass[1])


def test_non_resampled_needs_enough_shards(shards: Path) -> None:
    cfg = DataConfig(modalities=("ecg", "report"), batch_size=3, workers=3, resampled=False)
    with pytest.raises(ShardSetError, match="resampled"):
        make_train_loader(shards, cfg, seed=0, rank=0, world=2)


def test_dataloader_with_two_workers(shards: Path) -> None:
    cfg = DataConfig(modalities=("image", "ecg", "report"), batch_size=4, workers=2, image_size=16)
    loader = make_train_loader(shards, cfg, seed=3)
    assert loader.num_batches == 6  # 3 per worker x 2 workers
    runs = []
    for _ in range(2):
        loader.set_epoch(0)
        batches = list(loader)
        assert len(batches) == loader.num_batches
        assert all(b["image"].shape == (4, 1, 1, 16, 16) for b in batches)
        runs.append([k for b in batches for k in b["key"]])
    assert runs[0] == runs[1]  # persistent workers re-read the shared epoch: same epoch, same order
    loader.set_epoch(1)
    assert [k for b in loader for k in b["key"]] != runs[0]


def test_unreadable_sample_is_skipped(tmp_path: Path, caplog) -> None:
    rng = np.random.default_rng(0)
    good = [make_sample(i, rng, modalities=("image", "report")) for i in range(4)]
    bad = dict(make_sample(9, rng, modalities=("image", "report")))
    bad["image_0.png"] = b"\x89PNG not really"
    write_split(tmp_path, "test", [*good[:2], bad, *good[2:]], 8)
    cfg = DataConfig(modalities=("image", "report"), batch_size=8, workers=0)
    batches = list(make_eval_loader(tmp_path, "test", cfg)[0])
    assert [k for b in batches for k in b["key"]] == [g["__key__"] for g in good]
    assert "skipping an unreadable sample" in caplog.text
    assert bad["__key__"] not in caplog.text


def test_training_augmentation_is_seeded_per_epoch_and_eval_is_clean(shards: Path) -> None:
    cfg = DataConfig(
        modalities=("image", "ecg", "report"),
        batch_size=23,
        workers=0,
        image_size=16,
        shuffle_buffer=1,
        shuffle_initial=1,
        resampled=False,
    )
    loader = make_train_loader(shards, cfg, seed=0)

    def by_key(epoch: int) -> dict[str, torch.Tensor]:
        loader.set_epoch(epoch)
        b = next(iter(loader))
        both = b["image_items"][:, 0] & b["ecg_items"][:, 0]  # some samples lack one (drop_every)
        return {k: (b["image"][i], b["ecg"][i]) for i, k in enumerate(b["key"]) if both[i]}

    e0, e0_again, e1 = by_key(0), by_key(0), by_key(1)
    clean = {
        k: (b_img, b_ecg)
        for batch in make_eval_loader(shards, "train", cfg)[0]
        for k, b_img, b_ecg in zip(batch["key"], batch["image"], batch["ecg"], strict=True)
    }
    common = sorted(set(e0) & set(e1))
    assert common
    for k in common:
        assert torch.equal(e0[k][0], e0_again[k][0]) and torch.equal(e0[k][1], e0_again[k][1])
        assert not torch.equal(e0[k][0], e1[k][0]) and not torch.equal(e0[k][1], e1[k][1])
        assert not torch.equal(e0[k][0], clean[k][0])
    plain = make_train_loader(shards, DataConfig(**{**cfg.__dict__, "augment": False}), seed=0)
    b = next(iter(plain))
    assert all(torch.equal(b["image"][i], clean[k][0]) for i, k in enumerate(b["key"]))


def test_raw_pixel_source_is_min_max_scaled(tmp_path: Path) -> None:
    s = make_sample(1, np.random.default_rng(2), modalities=("image", "report"), image_hw=(16, 16))
    write_split(tmp_path, "val", [s], 4)
    cfg = DataConfig(
        modalities=("image", "report"), batch_size=2, workers=0, image_size=16, image_source="raw"
    )
    batch = next(iter(make_eval_loader(tmp_path, "val", cfg)[0]))
    raw = np.load(io.BytesIO(s["image_0.raw.npy"])).astype(np.float32)
    expected = (raw - raw.min()) / (raw.max() - raw.min()) * 2 - 1
    assert torch.allclose(batch["image"][0, 0, 0], torch.from_numpy(expected), atol=1e-6)
