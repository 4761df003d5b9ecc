"""``medcorpus inspect DIR``: print a few samples of a shard set (members, sizes, meta summary)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipelines.config import ConfigError


def register(sub) -> None:
    p = sub.add_parser("inspect", help="print a few samples of a shard set")
    p.add_argument("build", type=Path, help="a build output folder (or a folder of .tar shards)")
    p.add_argument("-n", type=int, default=3, help="samples to show")
    p.add_argument("--split", default=None, help="only this split")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import webdataset as wds

    root = args.build / "shards" if (args.build / "shards").is_dir() else args.build
    if not root.is_dir():
        raise ConfigError(f"no shards found under {args.build}")
    pattern = f"{args.split}/*.tar" if args.split else "**/*.tar"
    tars = sorted(str(p) for p in root.glob(pattern))
    if not tars:
        raise ConfigError(f"no .tar shards under {root}")
    ds = wds.WebDataset(tars, shardshuffle=False, empty_check=False)
    for i, sample in enumerate(ds):
        if i >= args.n:
            break
        meta = json.loads(sample["meta.json"])
        print(f"{sample['__key__']}  split={meta['split']}  modalities={'+'.join(meta['modalities'])}")
        for name in sorted(k for k in sample if not k.startswith("__")):
            print(f"    {name:<18} {len(sample[name]):>10,d} bytes")
        for it in meta["items"]:
            extra = {
                k: it[k] for k in ("dicom_modality", "shape", "leads", "language", "acquired_at") if k in it
            }
            print(f"    - {it['member_prefix']}: {json.dumps(extra, ensure_ascii=False)[:160]}")
    return 0
