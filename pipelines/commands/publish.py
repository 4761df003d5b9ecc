"""Versioned shard sets for schedulers: ``partitions``, ``stage-partition``, ``build-set``,
``check-build``, ``publish``, ``corpus-status``, ``corpus-gc``.

One incremental step (what the Airflow DAG in ``dags/`` runs per partition)::

    medcorpus partitions INBOX --start 2026-01-02 --end 2026-01-03          # -> 2026-01-02
    medcorpus stage-partition INBOX 2026-01-02 --corpus-root R --config C   # snapshot the input
    medcorpus build-set 2026-01-02 --corpus-root R --config C               # rerun = resume
    medcorpus check-build --corpus-root R --version 2026-01-02              # validate + quarantine gate
    medcorpus publish 2026-01-02 --corpus-root R                            # atomic rename + CURRENT

The corpus root may be a storage URL (``s3://bucket/corpus``, ``medcorpus[storage]``): staging
and builds then live in a local ``--work-root`` (or ``$MEDCORPUS_WORK_ROOT``) and ``publish``
uploads the checked build under a unique prefix, then replaces the ``versions.json`` pointer
(``pipelines/objstore.py``).

With ``--json`` each command's last stdout line is one JSON object (what a scheduler task keeps).
Exit codes: 0 ok, 1 check failed (validation or quarantine gate: nothing was published),
2 usage error (missing folder, bad version, nothing built).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from pipelines.config import ConfigError
from schemas.canonical import canonical_json

FRACTION_ENV = "MEDCORPUS_MAX_QUARANTINE_FRACTION"
WORK_ROOT_ENV = "MEDCORPUS_WORK_ROOT"


def _root(value: str):
    """A corpus root: a local folder (Path) or a storage URL (kept as a string)."""
    from pipelines.storage import is_url

    return value if is_url(value) else Path(value)


def _local(args: argparse.Namespace):
    """The local :class:`CorpusRoot` of staging and builds (the work root for a URL corpus root)."""
    from pipelines.publish import CorpusRoot
    from pipelines.storage import is_url

    if not is_url(args.corpus_root):
        return CorpusRoot(args.corpus_root)
    work = getattr(args, "work_root", None) or os.environ.get(WORK_ROOT_ENV, "")
    if not work:
        raise ConfigError(
            f"a corpus root URL needs --work-root or ${WORK_ROOT_ENV} (local staging and builds)"
        )
    return CorpusRoot(Path(work))


def _published(args: argparse.Namespace, version: str) -> bool:
    from pipelines.objstore import is_published
    from pipelines.storage import is_url

    if is_url(args.corpus_root):
        return is_published(args.corpus_root, version)
    return _local(args).is_published(version)


def _fraction(value: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0.0 <= f <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {f}")
    return f


def _default_fraction() -> float:
    from pipelines.publish import DEFAULT_MAX_QUARANTINE_FRACTION

    raw = os.environ.get(FRACTION_ENV, "")
    if not raw:
        return DEFAULT_MAX_QUARANTINE_FRACTION
    try:
        return _fraction(raw)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"${FRACTION_ENV}: {exc}") from None


def _emit(args: argparse.Namespace, human: str, obj: dict) -> None:
    print(human)
    if args.json:
        print(canonical_json(obj))


def _user_errors(fn):
    """Turn partition/publish errors into the CLI's one-line user errors (exit 2)."""

    def wrapped(args: argparse.Namespace) -> int:
        from pipelines.partitions import PartitionError
        from pipelines.publish import PublishError

        try:
            return fn(args)
        except (PartitionError, PublishError) as exc:
            raise ConfigError(str(exc)) from None

    return wrapped


def register(sub) -> None:
    """Add the corpus-root commands to the CLI's subparsers ``sub``."""
    _register_inputs(sub)
    _register_check_publish(sub)
    _register_maintenance(sub)


def _common(p: argparse.ArgumentParser, corpus: bool = True) -> None:
    """The corpus-root options (``--corpus-root``, ``--work-root``) and ``--json``."""
    if corpus:
        p.add_argument(
            "--corpus-root",
            type=_root,
            required=True,
            help="corpus root (sets/, versions.json, CURRENT): a folder or a storage URL",
        )
        p.add_argument(
            "--work-root",
            type=Path,
            help=f"local staging and builds of a corpus root URL (default ${WORK_ROOT_ENV})",
        )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")


def _register_inputs(sub) -> None:
    """``partitions``, ``stage-partition`` and ``build-set``: from the inbox to a local build."""
    from pipelines.partitions import LAYOUTS

    p = sub.add_parser("partitions", help="list the inbox partitions whose data arrived in [start, end)")
    p.add_argument("inbox", type=_root, help="inbox folder or storage URL (daily layout)")
    p.add_argument("--start", required=True, help="interval start, ISO 8601 (UTC if naive)")
    p.add_argument("--end", required=True, help="interval end (exclusive)")
    p.add_argument(
        "--layout", choices=LAYOUTS, default="daily", help="inbox layout (see pipelines/partitions.py)"
    )
    _common(p, corpus=False)
    p.set_defaults(func=_user_errors(run_partitions))

    p = sub.add_parser("stage-partition", help="snapshot one partition as a build input (idempotent)")
    p.add_argument("inbox", type=_root, help="inbox folder or storage URL (daily layout: downloaded)")
    p.add_argument("version", help="partition version, as listed by `medcorpus partitions`")
    p.add_argument("--layout", choices=LAYOUTS, default="daily")
    p.add_argument("--config", type=Path, help="build config: its source folders are created if absent")
    p.add_argument("--copy", action="store_true", help="copy files instead of hard-linking them")
    _common(p)
    p.set_defaults(func=_user_errors(run_stage))

    p = sub.add_parser("build-set", help="build (or resume) the shard set of a staged partition")
    p.add_argument("version")
    p.add_argument("--config", type=Path, help="YAML build config")
    p.add_argument("--workers", type=int, help="parallel worker processes (overrides config)")
    p.add_argument("--runner", choices=["local", "beam", "dask"], help="executor (overrides config)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _common(p)
    p.set_defaults(func=_user_errors(run_build_set))


def _register_check_publish(sub) -> None:
    """``check-build`` (validation and the quarantine gate) and ``publish``."""
    p = sub.add_parser(
        "check-build", help="validate a build and apply the quarantine gate (exit 1 on failure)"
    )
    p.add_argument("build", type=Path, nargs="?", help="a build folder (or give --corpus-root and --version)")
    p.add_argument("--corpus-root", type=_root)
    p.add_argument("--work-root", type=Path, help=f"for a corpus root URL (default ${WORK_ROOT_ENV})")
    p.add_argument("--version")
    p.add_argument(
        "--max-quarantine-fraction",
        type=_fraction,
        help=f"fail when more input units are quarantined (default ${FRACTION_ENV} or 0.25)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    p.set_defaults(func=_user_errors(run_check))

    p = sub.add_parser("publish", help="publish a checked build as an immutable set; move CURRENT (atomic)")
    p.add_argument("version")
    p.add_argument("--max-quarantine-fraction", type=_fraction)
    p.add_argument("--interval-start", help="the scheduler's data interval (recorded in versions.json)")
    p.add_argument("--interval-end")
    _common(p)
    p.set_defaults(func=_user_errors(run_publish))


def _register_maintenance(sub) -> None:
    """``corpus-status`` and ``corpus-gc``."""
    p = sub.add_parser("corpus-status", help="print the published versions and CURRENT of a corpus root")
    _common(p)
    p.set_defaults(func=_user_errors(run_status))

    p = sub.add_parser(
        "corpus-gc",
        help="delete the uploads under ROOT/sets/ that versions.json does not name (object-store roots)",
    )
    p.add_argument(
        "--older-than",
        type=float,
        metavar="HOURS",
        help="only prefixes whose newest object is older (default 24: an upload may be in progress)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    _common(p)
    p.set_defaults(func=_user_errors(run_gc))


def run_partitions(args: argparse.Namespace) -> int:
    from pipelines.partitions import list_partitions

    parts = list_partitions(args.inbox, args.start, args.end, args.layout)
    _emit(
        args,
        f"medcorpus partitions: {len(parts)} partition(s): {', '.join(p.version for p in parts) or '-'}",
        {"partitions": [p.to_json() for p in parts]},
    )
    return 0


def run_stage(args: argparse.Namespace) -> int:
    from pipelines.config import load_config
    from pipelines.partitions import partition_from_version, stage_partition

    part = partition_from_version(args.version, args.layout)
    dirs = tuple(s.path for s in load_config(args.config).resolved_sources()) if args.config else ()
    staged = stage_partition(args.inbox, part, _local(args).staging(), source_dirs=dirs, copy=args.copy)
    how = "reused" if staged.reused else "staged"
    _emit(
        args, f"medcorpus stage-partition: {how} {staged.version}: {staged.n_files} files", staged.to_json()
    )
    return 0


def run_build_set(args: argparse.Namespace) -> int:
    from pipelines import cli
    from pipelines.partitions import INPUT_DIR

    corpus = _local(args)
    if _published(args, args.version):  # a published set is immutable: never rebuilt
        _emit(
            args,
            f"medcorpus build-set: {args.version} is already published; nothing to build",
            {"version": args.version, "build_dir": str(corpus.set_dir(args.version)), "published": True},
        )
        return 0
    inp = corpus.staging() / args.version / INPUT_DIR
    if not inp.is_dir():
        raise ConfigError(f"partition {args.version} is not staged (run stage-partition first)")
    out = corpus.build_dir(args.version)
    argv = ["build", str(inp), "--out", str(out), "--dedup-against", str(args.corpus_root)]
    if args.config:
        argv += ["--config", str(args.config)]
    if args.workers is not None:
        argv += ["--workers", str(args.workers)]
    if args.runner:
        argv += ["--runner", args.runner]
    if args.quiet:
        argv.append("--quiet")
    rc = cli.main(argv)  # the real build command: same flags, same resume behaviour
    if rc == 0:
        _emit(
            args,
            f"medcorpus build-set: built {args.version}",
            {"version": args.version, "build_dir": str(out), "published": False},
        )
    return rc


def run_check(args: argparse.Namespace) -> int:
    from pipelines.publish import check_build

    if args.build is None:
        if not (args.corpus_root and args.version):
            raise ConfigError("give a build folder, or --corpus-root and --version")
        corpus = _local(args)
        build, published = corpus.current_build(args.version), corpus.is_published(args.version)
    else:
        build, published = args.build, False
    if not build.is_dir():
        raise ConfigError(f"build folder not found: {build}")
    frac = args.max_quarantine_fraction if args.max_quarantine_fraction is not None else _default_fraction()
    rep = check_build(build, frac, write_marker=not published)
    for e in rep.validation_errors[:50]:
        print(f"  FAIL {e}")
    if rep.gate_error:
        print(f"  FAIL quarantine gate: {rep.gate_error}")
    q = rep.quarantine
    status = "OK" if rep.ok else "FAILED"
    _emit(
        args,
        f"medcorpus check-build: {status}: {rep.n_shards} shards, {rep.n_samples} samples, "
        f"{q.n_quarantined if q else 0}/{q.n_units if q else 0} input units quarantined",
        rep.to_json(),
    )
    return 0 if rep.ok else 1


def run_publish(args: argparse.Namespace) -> int:
    from pipelines.publish import CheckFailed, publish_set

    frac = args.max_quarantine_fraction if args.max_quarantine_fraction is not None else _default_fraction()
    interval = (args.interval_start, args.interval_end) if args.interval_start and args.interval_end else None
    try:
        if isinstance(args.corpus_root, str):  # a storage URL: upload, then replace the pointer
            from pipelines.objstore import publish_to_store

            local = _local(args)
            staged = local.staging() / args.version / "STAGED.json"
            res = publish_to_store(
                args.corpus_root,
                local.build_dir(args.version),
                args.version,
                max_quarantine_fraction=frac,
                interval=interval,
                staged_partition=json.loads(staged.read_text()).get("partition") if staged.exists() else None,
            )
            shutil.rmtree(local.staging() / args.version, ignore_errors=True)
        else:
            res = publish_set(args.corpus_root, args.version, max_quarantine_fraction=frac, interval=interval)
    except CheckFailed as exc:
        print(f"medcorpus publish: FAILED: {exc}")
        return 1
    how = "already published" if res.already_published else "published"
    _emit(args, f"medcorpus publish: {how} {res.version}; CURRENT = {res.current}", res.to_json())
    return 0


def run_status(args: argparse.Namespace) -> int:
    from pipelines.objstore import read_versions

    index = read_versions(args.corpus_root)
    cur = index.get("current")
    lines = [f"medcorpus corpus-status: {len(index['versions'])} published set(s); CURRENT = {cur or '-'}"]
    lines += [
        f"  {e['version']}: {e['n_samples']} samples, {e['n_shards']} shards" for e in index["versions"]
    ]
    _emit(args, "\n".join(lines), {"current": cur, "versions": index["versions"]})
    return 0


def run_gc(args: argparse.Namespace) -> int:
    from pipelines.objstore import GC_MIN_AGE_HOURS, collect_garbage
    from pipelines.storage import is_url

    if not is_url(args.corpus_root):
        raise ConfigError(
            "corpus-gc is for corpus roots in object storage (a local root publishes by rename)"
        )
    hours = GC_MIN_AGE_HOURS if args.older_than is None else args.older_than
    if hours < 0:
        raise ConfigError("--older-than: must be >= 0")
    rows = collect_garbage(args.corpus_root, older_than_hours=hours, dry_run=args.dry_run)
    done = sum(r["action"] in ("deleted", "would delete") for r in rows)
    verb = "would delete" if args.dry_run else "deleted"
    lines = [f"medcorpus corpus-gc: {len(rows)} unnamed prefix(es); {verb} {done}"]
    lines += [f"  {r['prefix']}: {r['n_objects']} objects, {r['bytes']} bytes: {r['action']}" for r in rows]
    _emit(args, "\n".join(lines), {"dry_run": args.dry_run, "older_than_hours": hours, "orphans": rows})
    return 0
