"""``medcorpus validate DIR``: re-hash shards against the manifest, check accounting and splits."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.config import ConfigError


def register(sub) -> None:
    p = sub.add_parser("validate", help="re-hash shards against the manifest; check the accounting identity")
    p.add_argument("build", help="a build output folder, or the output URL of a build (s3://...)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipelines.storage import is_url
    from pipelines.validate import validate_build

    build = args.build if is_url(args.build) else Path(args.build)
    if not is_url(build) and not build.is_dir():
        raise ConfigError(f"build folder not found: {args.build}")
    rep = validate_build(build)
    for e in rep.errors[:50]:
        print(f"  FAIL {e}")
    status = "OK" if rep.ok else f"FAILED ({len(rep.errors)} problems)"
    print(
        f"medcorpus validate: {status}: {rep.n_shards} shards, {rep.n_samples} samples, {rep.n_units} input units"
    )
    return 0 if rep.ok else 1
