"""``medcorpus build INPUT --out DIR [--config FILE]``: build (or resume) a corpus."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from pipelines.config import ConfigError, ShardConfig, load_config, parse_size, validate_config


def register(sub) -> None:
    p = sub.add_parser("build", help="build (or resume) a corpus from an input folder")
    p.add_argument(
        "input",
        type=_out,
        help="input folder (sources are relative to it), or a storage URL mirrored into --input-mirror",
    )
    p.add_argument(
        "--out",
        type=_out,
        required=True,
        help="output folder (shards, manifests, cache), or a storage URL (s3://bucket/corpus) for the "
        "shards and manifests (the build then runs in --work-dir)",
    )
    p.add_argument(
        "--input-mirror",
        type=Path,
        metavar="DIR",
        help="local copy of an input URL, kept in step by the workers (default "
        "$MEDCORPUS_WORK_ROOT/inputs/in-<hash of the URL>)",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        metavar="DIR",
        help="local work folder of a build whose --out is a URL (blob store, caches, spill); "
        "default $MEDCORPUS_WORK_ROOT/builds/out-<hash of the URL>",
    )
    p.add_argument("--config", type=Path, help="YAML config (see examples/demo.yaml)")
    p.add_argument("--workers", type=int, help="parallel worker processes (overrides config)")
    p.add_argument("--runner", choices=["local", "beam", "dask"], help="executor (overrides config)")
    p.add_argument("--max-samples-per-shard", type=int, help="shard sample limit (overrides config)")
    p.add_argument("--max-shard-bytes", help="shard byte limit, e.g. 256MB (overrides config)")
    p.add_argument("--strict", action="store_true", help="fail on unexpected decoder exceptions (bugs)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write decode sidecars")
    p.add_argument("--quiet", action="store_true", help="no progress bars (for schedulers)")
    p.add_argument(
        "--dedup-against",
        metavar="CORPUS_ROOT",
        help="deduplicate against the published sets of this corpus root and write the set's index "
        "segment (build-set passes it; see pipelines/corpus_index.py)",
    )
    p.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        help="dask runner: scheduler address, e.g. tcp://scheduler:8786 (default: a local cluster)",
    )
    p.add_argument(
        "--beam-option",
        action="append",
        default=[],
        metavar="FLAG",
        help="beam runner: a Beam pipeline flag, repeatable: --beam-option=--runner=DataflowRunner",
    )
    p.add_argument(
        "--beam-staging",
        metavar="DIR",
        help="beam runner: staging folder every worker can reach; default: a local temp folder",
    )
    p.set_defaults(func=run)


def _out(value: str):
    """An input or output: a local folder (Path) or a storage URL (kept as a string)."""
    from pipelines.storage import is_url

    return value.rstrip("/") if is_url(value) else Path(value)


def apply_overrides(cfg, args: argparse.Namespace):
    shards = cfg.shards
    if args.max_samples_per_shard is not None:
        shards = replace(shards, max_samples=args.max_samples_per_shard)
    if args.max_shard_bytes is not None:
        shards = replace(shards, max_bytes=parse_size(args.max_shard_bytes))
    cfg = replace(
        cfg,
        shards=ShardConfig(shards.max_samples, shards.max_bytes),
        workers=args.workers if args.workers is not None else cfg.workers,
        runner=args.runner or cfg.runner,
        strict=cfg.strict or args.strict,
    )
    validate_config(cfg)
    return cfg


def run(args: argparse.Namespace) -> int:
    from pipelines import preflight
    from pipelines.build import run_build
    from pipelines.flow import make_flow

    if isinstance(args.input, Path) and not args.input.is_dir():
        raise ConfigError(f"input folder not found: {args.input}")
    if args.input_mirror is not None and isinstance(args.input, Path):
        raise ConfigError("--input-mirror is for an input URL")
    cfg = apply_overrides(load_config(args.config), args)
    if args.work_dir is not None and isinstance(args.out, Path):
        raise ConfigError("--work-dir is for an output URL (a local --out is its own work folder)")
    opts: dict = {}
    if args.dask_scheduler:
        if cfg.runner != "dask":
            raise ConfigError("--dask-scheduler needs --runner dask")
        opts["scheduler_address"] = args.dask_scheduler
    if args.beam_option or args.beam_staging:
        if cfg.runner != "beam":
            raise ConfigError("--beam-option/--beam-staging need --runner beam")
        opts |= {"beam_options": args.beam_option, "staging_dir": args.beam_staging}
    preflight.check(cfg)  # a missing package: one line, before any worker starts
    os.umask(0o027)  # before worker processes start: everything they write is not world-readable
    prior = None
    if getattr(args, "dedup_against", None):
        from pipelines.corpus_index import prior_index

        prior = prior_index(args.dedup_against)
    runner = make_flow(cfg.runner, cfg.workers, quiet=args.quiet, **opts)
    try:
        res = run_build(
            args.input,
            args.out,
            cfg,
            quiet=args.quiet,
            use_cache=not args.no_cache,
            runner=runner,
            prior=prior,
            work_dir=args.work_dir,
            input_mirror=args.input_mirror,
        )
    finally:
        runner.close()
    mods = ", ".join(
        f"{m} {c['inputs']} in/{c['written']} written/{c['quarantined']} quarantined"
        for m, c in res.per_modality.items()
    )
    print(
        f"medcorpus build: {res.n_samples} samples in {res.n_shards} shards "
        f"({res.n_shards_skipped} resumed) from {res.n_files} files / {res.n_units} input units; "
        f"{res.n_quarantined} quarantined; {res.seconds:.1f}s"
    )
    print(f"  per modality: {mods}")
    out = res.out_url or str(res.out_dir)
    print(f"  shards: {out}/shards  manifest: {out}/manifest.parquet")
    print(f"  data card: {out}/datacard.html")
    if res.out_url:
        print(f"  work folder: {res.out_dir}")
    if res.demo_build:
        print("  NOTE: demo build (public demo secret): pseudonyms are not secret")
    if res.n_decoder_errors:
        print(f"  WARNING: {res.n_decoder_errors} unexpected decoder errors (bugs; see quarantine.parquet)")
    return 0
