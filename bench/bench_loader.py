"""Benchmark: the trainer's WebDataset loader against a plain sequential ``tarfile`` read + decode.

Both sides decode the same shards with the same :class:`trainer.data.SampleDecoder` (PNG →
resized tensor, ECG npy → float32, report text/json → text + labels), so the ratio measures the
loader machinery: shard streaming, shuffle buffer, batching/collation and DataLoader workers.

Usage: ``python bench/bench_loader.py [--shards BUILD_OUT] [--workers 0 2] [--samples N]``.
Without ``--shards`` it writes a synthetic corpus of contract-conforming samples (256 x 256 PNG +
raw.npy, a float16 (12, 5000) ECG, two reports) into a temporary folder first.
Prints one line per configuration (steady-state samples/s over epochs 2..E, first epoch apart since
it includes starting the worker processes; ratio = loader steady / baseline) and a JSON summary.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np


def write_synthetic(root: Path, n: int, per_shard: int = 64) -> Path:
    """``n`` samples as root/shards/train/train-XXXXXX.tar + sizes.json (webdataset.TarWriter)."""
    import webdataset as wds
    from PIL import Image

    rng = np.random.default_rng(0)
    d = root / "shards" / "train"
    d.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for s in range(0, n, per_shard):
        name = f"train-{s // per_shard:06d}.tar"
        with wds.TarWriter(str(d / name)) as tw:
            for i in range(s, min(n, s + per_shard)):
                yy, xx = np.mgrid[0:256, 0:256]
                img = (128 + 60 * np.sin(xx / (5 + i % 7)) + rng.normal(0, 10, (256, 256))).clip(0, 255)
                png = io.BytesIO()
                Image.fromarray(img.astype(np.uint8), mode="L").save(png, format="PNG")
                raw, ecg = io.BytesIO(), io.BytesIO()
                np.save(raw, (img * 16).astype(np.int16))
                np.save(ecg, rng.normal(0, 0.3, (12, 5000)).astype(np.float16))
                rep = {"findings": [{"label": "cardiomegaly", "assertion": "present"}]}
                tw.write(
                    {
                        "__key__": f"k{i:08d}",
                        "ecg_0.npy": ecg.getvalue(),
                        "image_0.png": png.getvalue(),
                        "image_0.raw.npy": raw.getvalue(),
                        "meta.json": b"{}",
                        "report_0.json": json.dumps(rep).encode(),
                        "report_0.txt": b"FINDINGS: The heart is enlarged. No pleural effusion.",
                        "report_1.json": json.dumps({"findings": []}).encode(),
                        "report_1.txt": b"ECG INTERPRETATION: Sinus rhythm, ventricular rate 72 bpm.",
                    }
                )
        sizes[name] = min(n, s + per_shard) - s
    (d / "sizes.json").write_text(json.dumps(sizes))
    return root


def baseline(urls: list[str], decoder) -> tuple[int, float]:
    """Sequential tarfile read, grouping members by key, same decoder; returns (samples, seconds)."""
    t0 = time.perf_counter()
    n = 0
    for url in urls:
        current, sample = None, {}
        with tarfile.open(url) as tf:
            for member in tf:
                if not member.isfile():
                    continue
                key, suffix = member.name.split(".", 1)
                if key != current:
                    if sample:
                        decoder(sample)
                        n += 1
                    current, sample = key, {"__key__": key}
                sample[suffix] = tf.extractfile(member).read()
        if sample:
            decoder(sample)
            n += 1
    return n, time.perf_counter() - t0


def run_loader(shards: Path, cfg, workers: int, batch_size: int, epochs: int) -> dict[str, float]:
    """First epoch (includes starting the worker processes) and the steady state of the next ones."""
    from dataclasses import replace

    from trainer.data import make_train_loader

    dcfg = replace(cfg, workers=workers, batch_size=batch_size)
    loader = make_train_loader(shards, dcfg, seed=0)
    t0 = time.perf_counter()
    n_first = sum(len(b["key"]) for b in loader)
    t1 = time.perf_counter()
    n_steady = 0
    for epoch in range(1, epochs):
        loader.set_epoch(epoch)
        n_steady += sum(len(b["key"]) for b in loader)
    t2 = time.perf_counter()
    return {
        "first_epoch_samples_per_s": n_first / (t1 - t0),
        "steady_samples_per_s": n_steady / (t2 - t1),
        "samples_per_epoch": n_first,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=Path, default=None, help="a build output (uses its train split)")
    p.add_argument("--samples", type=int, default=512, help="synthetic samples when --shards is not given")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3, help="loader epochs; the first one is reported apart")
    a = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from trainer.config import DataConfig
    from trainer.data import SampleDecoder, list_shards

    tmp = None
    shards = a.shards
    if shards is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_loader_")
        shards = write_synthetic(Path(tmp.name), a.samples)
    # augmentation off: both sides run exactly the same decode, the ratio is the loader machinery
    cfg = DataConfig(
        modalities=("image", "ecg", "report"),
        image_size=a.image_size,
        shuffle_buffer=256,
        shuffle_initial=64,
        augment=False,
    )
    urls, total = list_shards(shards, "train")
    for url in urls:  # warm the page cache: both sides read from memory
        Path(url).read_bytes()
    runs = [baseline(urls, SampleDecoder(cfg)) for _ in range(a.epochs)]
    n_base = runs[0][0]
    base_rate = statistics.median(n / t for n, t in runs)
    print(
        f"baseline tarfile+decode: {n_base} samples, median {base_rate:.1f} samples/s over {len(runs)} passes"
    )
    results = {
        "samples": total,
        "baseline_samples_per_s": base_rate,
        "loader": {},
        "cpus": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
    }
    for w in a.workers:
        r = run_loader(shards, cfg, w, a.batch_size, a.epochs)
        r["ratio_vs_baseline"] = r["steady_samples_per_s"] / base_rate
        results["loader"][f"workers={w}"] = r
        print(
            f"loader workers={w}: {r['steady_samples_per_s']:.1f} samples/s steady "
            f"(first epoch {r['first_epoch_samples_per_s']:.1f}), ratio {r['ratio_vs_baseline']:.2f}x"
        )
    print(json.dumps(results))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
