"""The build graph: discover → decode → assemble series → (LLM) → link → dedup → split → shard.

The whole build is declared once on a dataflow backend (``pipelines.flow``: local, Beam, Dask)
and run once. One rule shapes it: bytes stay in workers. Decoders write payloads to the blob
store and pass on headers; series assembly, linking, dedup, splitting and shard planning see
headers only; shard writers read the blobs and write shards, per-shard stats and manifest
fragments themselves, and unit writers the parts of ``inputs.parquet``. The driver receives small
rows (unit counts, dedup verdicts as Arrow tables built in the workers, quarantine records, one
status row per shard) and merges the fragments into the manifests. A rerun of a finished build with unchanged inputs, config and code
runs nothing (``pipelines.uptodate``).

Same input + config → byte-identical shards and manifests, whatever the runner or worker count.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import TextIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import preflight, uptodate
from pipelines import stages as st
from pipelines.accounting import (
    UnitsPart,
    WriteUnits,
    accounting,
    fate_map,
    fate_of,
    file_counts,
    merge_units,
    unit_bucket,
    unit_order,
    with_fate,
)
from pipelines.blobs import BlobStore
from pipelines.config import BuildConfig, SourceConfig
from pipelines.corpus_index import INDEX_SCHEMA, index_row_order
from pipelines.datacard import write_datacard
from pipelines.decode import KIND_MODALITY
from pipelines.dedup import DEDUP, DEDUP_SCHEMA, declare_dedup, dedup_table, row_order, summarise
from pipelines.errors import UserError
from pipelines.flow import Coll, Flow, Select, make_flow
from pipelines.link import link_key, patient_key
from pipelines.manifest import (
    BUILD,
    INPUTS,
    MANIFEST,
    QUARANTINE,
    SHARDS,
    STATS,
    merge_fragments,
    write_records,
    write_table,
)
from pipelines.rowtables import to_tables
from pipelines.shards import (
    PlanShards,
    ShardResult,
    WriteShard,
    assign_shard,
    fragment_path,
    key_of,
    plan_rows,
    remove_stale,
    shard_of,
    write_sizes,
)
from pipelines.tables import declare_tables, write_table_outputs
from schemas.atomic import write_atomic
from schemas.contract import SHARDS_DIR, SPLITS
from schemas.reasons import ReasonCode
from schemas.records import QuarantineRecord, SampleRecord, ShardRecord
from workers.context import WorkerContext
from workers.deid.pseudonym import Pseudonymizer

log = logging.getLogger(__name__)

CACHE_DIR = "cache"
BLOBS_DIR = "blobs"
TOOL_PACKAGES = ("pydicom", "wfdb", "nibabel", "medspacy", "spacy", "webdataset", "pyarrow", "numpy")


@dataclass(frozen=True)
class BuildResult:
    """Summary of a finished build (also printed by the CLI)."""

    out_dir: Path
    n_files: int
    n_units: int
    n_samples: int
    n_shards: int
    n_shards_skipped: int
    n_quarantined: int
    n_decoder_errors: int
    per_modality: dict
    demo_build: bool
    seconds: float
    out_url: str = ""  # the output URL of a build into object storage (``out_dir``: its work folder)


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("medcorpus", *TOOL_PACKAGES):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _pretty_json(obj) -> bytes:
    """Indented JSON for the files people read (stats.json, build.json, run.json); sorted keys,
    UTF-8. Not :func:`schemas.canonical.canonical_json`: these files are not hashed or merged."""
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False, default=str).encode()


def _ident(x):
    return x


def _unit_file(u: st.Unit) -> tuple[str, str]:
    return u.file_id, u.kind


def declare_build(
    flow: Flow,
    input_dir: Path,
    out_dir: Path,
    cfg: BuildConfig,
    pseudo: Pseudonymizer,
    *,
    use_cache: bool = True,
    decoder_overrides: tuple[tuple[str, str], ...] = (),
    prior=None,
    out_url: str = "",
) -> dict:
    """Declare the whole build on ``flow``; returns the named outputs (small rows) to run.

    ``prior``: a :class:`pipelines.corpus_index.PriorIndex` for a set built into a corpus root
    (dedup against the published sets, and the set's own index segment). ``out_url``: an output
    URL the shard writers upload to (``pipelines.outstore``); ``out_dir`` is then the work folder."""
    sources = cfg.resolved_sources()
    blob_root = str(out_dir / BLOBS_DIR)
    cache_dir = str(out_dir / CACHE_DIR) if use_cache else ""
    root = str(input_dir.resolve())
    tagged, records = _declare_decode(
        flow, root, sources, cfg, pseudo, blob_root, cache_dir, decoder_overrides
    )
    records = _declare_llm(flow, records, sources, cfg, str(out_dir), blob_root)
    # 3c. metadata tables (pipelines.tables): identity joins by unit id, anchors, lab events
    tables = declare_tables(flow, root, cfg, pseudo, blob_root) if cfg.tables else None
    if tables is not None:
        records = tables.join(records)
    # 4. link: GroupByKey on study, then on patient (time windows, or windows around anchors)
    study_groups = records.group(link_key, st.link_study, st.record_order, "link")
    if tables is not None and cfg.linking.anchor is not None:
        linked = tables.link(study_groups)
    else:
        linked = study_groups.group(patient_key, st.LinkPatient(cfg.linking), st.group_order, "link-patient")
    groups = linked.flat_map(Select("group"), "groups")
    extras = [tagged.flat_map(Select("q"), "q-decode"), linked.flat_map(Select("q"), "q-link")]
    extras += tables.quarantine if tables is not None else []
    units = tagged.flat_map(Select("unit"), "units")
    outputs: dict = {}
    # 5. dedup (exact → near → policy), before the split
    if cfg.dedup.enabled:
        groups, dedup_outputs = _declare_dedup(flow, groups, cfg, blob_root, cache_dir, prior, pseudo)
        outputs |= dedup_outputs
    # 6. samples (split by patient), 7. shard plan (keys and sizes only), 8. shards in workers
    if tables is not None:
        groups = tables.assign_splits(groups)  # a split table (MIMIC-CXR-JPG's split file), if any
    samples = groups.flat_map(st.BuildSample(pseudo, cfg.split, blob_root), "samples")
    if tables is not None:  # labs percentiles under the train split (a global stage after the split)
        samples = tables.normalise(samples, str(out_dir))
        outputs |= tables.finish()
    plan = samples.flat_map(plan_rows, "plan-rows").gather(PlanShards(cfg.shards), _ident, "plan")
    assigned = samples.flat_map_with(assign_shard, plan, "assign")
    outputs["shards"] = assigned.group(
        shard_of, WriteShard(str(out_dir), blob_root, out_url), key_of, "write"
    )
    outputs["quarantine"] = flow.union(*extras)
    # 9. every input unit, tagged with its fate, written by workers as parts of inputs.parquet
    fates = [outputs["quarantine"]] + ([outputs["dedup_extras"]] if cfg.dedup.enabled else [])
    fate = flow.union(*fates).flat_map(fate_of, "unit-fates").gather(fate_map, _ident, "unit-fate-map")
    outputs["units"] = units.flat_map_with(with_fate, fate, "units-fate").group(
        unit_bucket, WriteUnits(str(out_dir)), unit_order, "units-write"
    )
    return outputs


def _declare_decode(
    flow: Flow,
    root: str,
    sources: tuple[SourceConfig, ...],
    cfg: BuildConfig,
    pseudo: Pseudonymizer,
    blob_root: str,
    cache_dir: str,
    decoder_overrides: tuple[tuple[str, str], ...],
) -> tuple[Coll, Coll]:
    """Stages 1-3: discovery, decode (payloads to the blob store) and series assembly.

    Returns the tagged decode outputs (records, quarantines, units) and the records alone."""
    ctxs = {
        s.name: WorkerContext(
            pseudo=pseudo, image=s.image, volume=s.volume, ecg=s.ecg, report=s.report, limits=cfg.limits
        )
        for s in sources
    }
    # 1. discovery in workers: source → folders → items (paths never leave the workers' memory)
    folders = flow.create(list(range(len(sources))), "sources").flat_map(
        st.ListFolders(root, sources), "folders"
    )
    items = folders.flat_map(st.DiscoverFolder(root, sources, pseudo, cfg.limits), "discover")
    # 2. decode (payloads → blob store), 3. series → volumes (GroupByKey on series)
    decoded = items.flat_map(st.Decode(ctxs, cfg.strict, blob_root, cache_dir, decoder_overrides), "decode")
    assembled = decoded.flat_map(Select("slice"), "slices").group(
        st.slice_series_key, st.AssembleSeries(ctxs, cfg.strict, blob_root), st.slice_order, "series"
    )
    tagged = flow.union(decoded, assembled)
    return tagged, tagged.flat_map(Select("rec"), "records")


def _declare_llm(
    flow: Flow,
    records: Coll,
    sources: tuple[SourceConfig, ...],
    cfg: BuildConfig,
    out_dir: str,
    blob_root: str,
) -> Coll:
    """Stage 3b: LLM restructuring of the reports of sources with ``report.structurer: llm``,
    batched per bucket in workers; the records unchanged when no source uses it."""
    llm_sources = frozenset(src.name for src in sources if src.report.structurer == "llm")
    if not llm_sources:
        return records
    routed = records.flat_map(st.LlmRoute(llm_sources), "llm-route")
    llm = routed.flat_map(Select("llm"), "llm-reports").group(
        st.llm_bucket,
        st.LlmStage(tuple(sorted(cfg.llm.items())), out_dir, blob_root),
        st.record_order,
        "llm",
    )
    return flow.union(routed.flat_map(Select("rec"), "llm-other"), llm)


def _declare_dedup(
    flow: Flow, groups: Coll, cfg: BuildConfig, blob_root: str, cache_dir: str, prior, pseudo: Pseudonymizer
) -> tuple[Coll, dict]:
    """Stage 5: dedup (exact → near → policy). Returns the kept groups and the dedup outputs
    (extras, verdict rows, counts; and a corpus-root set's index rows and supersedes)."""
    dd = declare_dedup(flow, groups, cfg.dedup, blob_root, cache_dir, prior=prior, pseudo=pseudo)
    # a corpus-root build keeps dict rows: its index step reads their private fields
    rows = (
        dd.rows
        if prior is not None
        else to_tables(dd.rows, DEDUP_SCHEMA, "cluster_id", row_order, "dedup-table")
    )
    outputs = {"dedup_extras": dd.extras, "dedup_rows": rows, "dedup_counts": dd.counts}
    if dd.index is not None:
        # the set's index rows (a vector each) as worker-built tables; supersedes rows are few
        outputs["xset_index"] = to_tables(
            dd.index.flat_map(Select("index"), "xset-index-rows"),
            INDEX_SCHEMA,
            "ckey",
            index_row_order,
            "xset-table",
        )
        outputs["xset_supersedes"] = dd.index.flat_map(Select("supersedes"), "xset-supersedes")
    return dd.groups, outputs


def run_build(
    input_dir: Path,
    out_dir: Path,
    cfg: BuildConfig,
    *,
    quiet: bool = False,
    runner: Flow | None = None,
    use_cache: bool = True,
    decoder_overrides: tuple[tuple[str, str], ...] = (),
    prior=None,
    work_dir: Path | None = None,
    input_mirror: Path | None = None,
) -> BuildResult:
    """Build a corpus from ``input_dir`` into ``out_dir``. Resumable: rerun to finish a killed build.

    ``out_dir`` may be a storage URL (``s3://bucket/corpus``, a string): the build then runs in
    the local work folder ``work_dir`` (default ``$MEDCORPUS_WORK_ROOT/builds/out-<hash>``) and
    its workers upload the shards there; the driver uploads the manifests, ``complete.json`` last
    (``pipelines.outstore``). ``input_dir`` may be a URL too: the workers mirror its objects into
    the local folder ``input_mirror`` first (``pipelines.instore``), and the build reads that.

    ``runner`` is a dataflow backend (``pipelines.flow.make_flow``); by default the config's.
    ``decoder_overrides`` (InputKind value → "module:function") is a test hook that travels
    with the decode tasks into every worker. ``prior`` (``pipelines.corpus_index.PriorIndex``):
    deduplicate against a corpus root's published sets and write this set's index segment.
    """
    t0 = time.perf_counter()
    input_url, input_dir = _input(input_dir, input_mirror)
    remote, out_dir = _output(out_dir, work_dir)
    if not input_url and not input_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {input_dir}")
    preflight.check(cfg, None if runner is None else "local")  # a passed-in backend imported already
    pseudo = Pseudonymizer(cfg.secret(), cfg.secret_source())
    own_runner = runner is None
    flow = runner or make_flow(cfg.runner, cfg.workers, quiet=quiet)
    lock = _prepare_out_dir(out_dir)
    if getattr(flow, "spill_dir", "") is None:  # the local backend spills partitions beside the corpus
        flow.spill_dir = str(out_dir)
    if input_url:
        _mirror(flow, input_url, input_dir, own_runner, lock)
    fp = ""
    if use_cache and not decoder_overrides and prior is None:  # a no-op rerun returns at once
        srcs = [input_dir / s.path for s in cfg.resolved_sources()]
        fp = uptodate.fingerprint(input_dir, srcs, out_dir, _pretty_json(_build_info(cfg, pseudo)), pseudo)
        if uptodate.is_complete(out_dir, fp) if remote is None else remote.is_complete(fp, out_dir):
            try:
                return replace(_finished(out_dir, flow, pseudo, t0), out_url=remote.url if remote else "")
            finally:
                if own_runner:
                    flow.close()
                lock.close()
    uptodate.clear(out_dir)
    if remote is not None:
        remote.begin()  # before anything is written there: the URL holds no finished build now
    try:
        _check_sources(input_dir, cfg)
        BlobStore(str(out_dir / BLOBS_DIR))  # noqa: B018 - the store is a folder; created on first put
        rows, stats, times = _run_graph(
            flow, input_dir, out_dir, cfg, pseudo, use_cache, decoder_overrides, prior, remote
        )
    finally:
        if own_runner:
            flow.close()
        lock.close()
    _finish(out_dir, flow, remote, fp, {r.name for r in rows.results}, (t0, *times), quiet)
    n_err = _log_decoder_errors(sum(q.reason is ReasonCode.DECODER_ERROR for q in rows.quarantined))
    return BuildResult(
        out_dir=out_dir,
        n_files=stats["n_files"],
        n_units=sum(p.n_units for p in rows.units),
        n_samples=stats["n_samples"],
        n_shards=len(rows.results),
        n_shards_skipped=sum(r.skipped for r in rows.results),
        n_quarantined=len(rows.quarantined),
        n_decoder_errors=n_err,
        per_modality=stats["per_modality"],
        demo_build=pseudo.is_demo,
        seconds=time.perf_counter() - t0,
        out_url=remote.url if remote is not None else "",
    )


def _finish(
    out_dir: Path, flow: Flow, remote, fp: str, shards: set[str], marks: tuple[float, ...], quiet: bool
) -> None:
    """After the manifests: the data card, run.json, the no-op stamp; for an output URL, upload
    the driver's files and then the stamp, the last object of the build."""
    shards_url = f"{remote.url}/{SHARDS_DIR}" if remote is not None else ""
    write_datacard(out_dir, quiet=quiet, shards_url=shards_url)  # datacard.html + datacard.json
    _write_run_info(out_dir, flow, (*marks, time.perf_counter()))
    if fp:
        uptodate.mark_complete(out_dir, fp)
    if remote is not None:
        remote.put_outputs(out_dir, shards)
        remote.finish(uptodate.stamp_bytes(fp))


def _input(input_dir, mirror: Path | None) -> tuple[str, Path]:
    """``(input URL or "", the folder the build reads)``: a URL is read from its local mirror."""
    from pipelines.storage import is_url

    if not is_url(input_dir):
        return "", Path(input_dir)
    from pipelines.instore import default_mirror

    url = str(input_dir).rstrip("/")
    return url, Path(mirror) if mirror is not None else default_mirror(url)


def _mirror(flow: Flow, url: str, local: Path, own_flow: bool, lock: TextIO) -> None:
    """Bring the local mirror of the input URL up to date (in the workers); on failure close the
    backend (if the build made it) and the output lock."""
    from pipelines.instore import mirror_input

    try:
        counts = mirror_input(flow, url, local)
    except BaseException:
        if own_flow:
            flow.close()
        lock.close()
        raise
    log.info("input mirror: %(objects)d objects, %(downloaded)d downloaded (%(bytes)d bytes)", counts)


def _output(out, work_dir: Path | None):
    """``(OutputStore or None, the folder the build runs in)`` for ``out``: a path or a URL."""
    from pipelines.storage import is_url

    if not is_url(out):
        return None, Path(out)
    from pipelines.outstore import OutputStore, default_work_dir

    url = str(out).rstrip("/")
    return OutputStore(url), Path(work_dir) if work_dir is not None else default_work_dir(url)


def _run_graph(
    flow: Flow,
    input_dir: Path,
    out_dir: Path,
    cfg: BuildConfig,
    pseudo: Pseudonymizer,
    use_cache: bool,
    decoder_overrides: tuple[tuple[str, str], ...],
    prior,
    remote=None,
) -> tuple[_Rows, dict, tuple[float, float, float]]:
    """Declare and run the build graph, then write a corpus-root set's index segment and the
    manifests. Returns the collected rows, the stats and the perf-counter times (s) at which the
    graph was declared, run and the manifests written."""
    outputs = declare_build(
        flow,
        input_dir,
        out_dir,
        cfg,
        pseudo,
        use_cache=use_cache,
        decoder_overrides=decoder_overrides,
        prior=prior if cfg.dedup.enabled else None,
        out_url=remote.url if remote is not None else "",
    )
    t_graph = time.perf_counter()
    out = flow.run(outputs)
    t_run = time.perf_counter()
    if prior is not None and cfg.dedup.enabled:
        from pipelines.corpus_index import write_outputs

        write_outputs(out_dir, out, prior)
    rows = _collect(out, cfg)
    stats = _write_manifests(out_dir, out, cfg, pseudo, rows)
    return rows, stats, (t_graph, t_run, time.perf_counter())


def _finished(out_dir: Path, flow: Flow, pseudo: Pseudonymizer, t0: float) -> BuildResult:
    """The result of a finished build that is up to date (``pipelines.uptodate``): nothing runs."""
    stats = json.loads((out_dir / STATS).read_text())
    n_shards = pq.ParquetFile(out_dir / SHARDS).metadata.num_rows
    reasons = pq.read_table(out_dir / QUARANTINE, columns=["reason"])["reason"]
    n_err = _log_decoder_errors(int(pc.sum(pc.equal(reasons, ReasonCode.DECODER_ERROR.value)).as_py() or 0))
    log.info("up to date: inputs, config and code unchanged since the finished build in %s", out_dir)
    t = time.perf_counter()
    _write_run_info(out_dir, flow, (t0, t, t, t, t), up_to_date=True)
    return BuildResult(
        out_dir=out_dir,
        n_files=stats["n_files"],
        n_units=stats["n_units"],
        n_samples=stats["n_samples"],
        n_shards=n_shards,
        n_shards_skipped=n_shards,
        n_quarantined=stats["n_quarantined"],
        n_decoder_errors=n_err,
        per_modality=stats["per_modality"],
        demo_build=pseudo.is_demo,
        seconds=time.perf_counter() - t0,
    )


def _log_decoder_errors(n_err: int) -> int:
    """Log the number of inputs that hit an unexpected decoder exception (bugs, not bad input)."""
    if n_err:
        log.error(
            "%d inputs hit unexpected decoder exceptions (bugs): see quarantine reason decoder_error", n_err
        )
    return n_err


def _prepare_out_dir(out_dir: Path) -> TextIO:
    """Create ``out_dir`` (owner and group only), lock it, and clear an interrupted build's temp files."""
    os.umask(0o027)  # outputs (shards, manifests, sidecars, card) readable by owner and group only
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    out_dir.chmod(0o750)
    lock = _lock(out_dir)
    removed = _remove_temp_files(out_dir)
    if removed:
        log.info("removed %d temp files left by an interrupted build", removed)
    return lock


def _check_sources(input_dir: Path, cfg: BuildConfig) -> None:
    for src in cfg.resolved_sources():
        if not (input_dir / src.path).resolve().is_dir():
            raise FileNotFoundError(f"source {src.name!r}: folder not found: {src.path}")


@dataclass(frozen=True)
class _Rows:
    """What the driver received from the run, sorted as the manifests list it."""

    units: list[UnitsPart]  # counts of the inputs.parquet parts the workers wrote
    results: list[ShardResult]
    quarantined: list[QuarantineRecord]
    dedup_table: pa.Table
    dedup_counts: dict
    dedup_ids: list[str]


def _collect(out: dict, cfg: BuildConfig) -> _Rows:
    """Units, shard results, quarantine and dedup rows of a finished run (checked for consistency)."""
    units = sorted(out["units"], key=lambda p: p.bucket)
    quarantined = sorted(out["quarantine"], key=lambda q: (q.source_id, q.stage, q.reason.value))
    dedup_ids: list[str] = []
    dedup_tab = DEDUP_SCHEMA.empty_table()
    dedup_counts: dict = {"enabled": False}
    if cfg.dedup.enabled:
        quarantined += [v for t, v in out["dedup_extras"] if t == "q"]
        quarantined.sort(key=lambda q: (q.source_id, q.stage, q.reason.value))
        dedup_tab, dedup_counts, dedup_ids = summarise(dedup_table(out["dedup_rows"]), out["dedup_counts"][0])
        extra_ids = sorted(v for t, v in out["dedup_extras"] if t == "dedup")
        if extra_ids != dedup_ids:
            raise RuntimeError("dedup verdicts and removed units disagree (bug)")
    results: list[ShardResult] = sorted(out["shards"], key=lambda r: (SPLITS.index(r.split), r.name))
    return _Rows(units, results, quarantined, dedup_tab, dedup_counts, dedup_ids)


def _write_manifests(out_dir: Path, out: dict, cfg: BuildConfig, pseudo: Pseudonymizer, rows: _Rows) -> dict:
    """Write sizes.json and the manifests (last): samples (merged fragments), shards, quarantine,
    inputs, stats, build. Returns the stats."""
    write_sizes(out_dir, rows.results)
    remove_stale(out_dir, {r.name for r in rows.results})
    n_rows = merge_fragments(
        out_dir / MANIFEST, [fragment_path(out_dir, r.name) for r in rows.results], SampleRecord
    )
    shard_rows = [
        ShardRecord(r.name, r.split, r.n_samples, r.n_bytes, r.sha256, r.first_key, r.last_key)
        for r in rows.results
    ]
    stats = _build_stats(rows, n_rows, pseudo)
    if cfg.tables:
        stats["tables"] = write_table_outputs(out, out_dir)
    write_table(out_dir / DEDUP, rows.dedup_table)
    write_records(out_dir / SHARDS, shard_rows, ShardRecord)
    write_records(out_dir / QUARANTINE, rows.quarantined, QuarantineRecord)
    merge_units(out_dir / INPUTS, out_dir, rows.units)
    write_atomic(out_dir / STATS, _pretty_json(stats))
    write_atomic(out_dir / BUILD, _pretty_json(_build_info(cfg, pseudo)))
    return stats


def _build_stats(rows: _Rows, n_rows: int, pseudo: Pseudonymizer) -> dict:
    """``stats.json``: the accounting identity plus per-kind, per-split and per-modality counts."""
    results = rows.results
    written = [pair for r in results for pair in r.written_units]
    stats = accounting(rows.units, written, rows.quarantined)
    n_files, files_per_kind = file_counts(rows.units)
    stats |= {
        "n_files": n_files,
        "files_per_kind": files_per_kind,
        "n_samples": n_rows,
        "samples_per_split": dict(
            sorted(Counter({s: sum(r.n_samples for r in results if r.split == s) for s in SPLITS}).items())
        ),
        "shards_per_split": dict(sorted(Counter(r.split for r in results).items())),
        "samples_with_modalities": _sum_pairs(r.modality_sets for r in results),
        "demo_build": pseudo.is_demo,
        "dedup": rows.dedup_counts,
    }
    stats["samples_per_split"] = {k: v for k, v in stats["samples_per_split"].items() if v}
    return stats


def _build_info(cfg: BuildConfig, pseudo: Pseudonymizer) -> dict:
    """``build.json``: what determines the output (config, tool versions), never how it ran."""
    return {
        "demo_build": pseudo.is_demo,
        "demo_note": "built with the public demo secret: pseudonyms are NOT secret" if pseudo.is_demo else "",
        # execution settings (workers, runner) do not change the output: not recorded
        "config": _recorded_config(cfg),
        "versions": _versions(),
        "kind_modality": {k.value: m.value for k, m in KIND_MODALITY.items()},
    }


def _write_run_info(
    out_dir: Path, flow: Flow, marks: tuple[float, float, float, float, float], up_to_date: bool = False
) -> None:
    """``run.json``: execution facts (runner, timings), kept apart from build.json, which must not
    depend on them. ``marks``: start, graph declared, run done, manifests done, data card done.
    ``up_to_date``: nothing ran (a finished build of the same inputs, config and code)."""
    t0, t_graph, t_run, t_manifest, t_card = marks
    info = {
        "up_to_date": up_to_date,
        "runner": type(flow).__name__,
        "workers": flow.workers,
        "seconds": {
            "declare": round(t_graph - t0, 3),
            "run": round(t_run - t_graph, 3),
            "manifests": round(t_manifest - t_run, 3),
            "datacard": round(t_card - t_manifest, 3),
            "total": round(t_card - t0, 3),
        },
        "stage_seconds": getattr(flow, "stage_seconds", {}),
    }
    write_atomic(out_dir / "run.json", _pretty_json(info))


def _recorded_config(cfg: BuildConfig) -> dict:
    """The config as build.json records it; metadata tables and anchors only when used."""
    out = {k: v for k, v in asdict(cfg).items() if k not in ("workers", "runner")}
    if not cfg.tables:
        out.pop("tables")
    for t in out.get("tables", []):  # recorded only when on: builds without it stay byte-identical
        if t.get("caption") and not t["caption"]["llm_rewrite"]:
            t["caption"].pop("llm_rewrite")
    if cfg.linking.anchor is None:
        out["linking"].pop("anchor")
    return out


def _sum_pairs(pairs_per_shard) -> dict[str, int]:
    total: Counter[str] = Counter()
    for pairs in pairs_per_shard:
        total.update(dict(pairs))
    return dict(sorted(total.items()))


def _lock(out_dir: Path):
    """Exclusive lock on the output folder: two builds never write the same corpus at once."""
    import fcntl

    f = open(out_dir / ".lock", "w")  # noqa: SIM115 - held for the whole build
    try:
        # lockf (POSIX record lock), not flock: forked worker processes must not inherit it
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UserError(f"another build is writing {out_dir} (lock held)") from None
    return f


def _remove_temp_files(out_dir: Path) -> int:
    """Delete ``*.tmp-<pid>`` files and spill folders of interrupted builds (we hold the lock)."""
    n = 0
    for d in out_dir.glob("medcorpus-spill-*"):
        shutil.rmtree(d, ignore_errors=True)
        n += 1
    for p in out_dir.rglob("*.tmp-*"):
        if p.is_file():
            p.unlink()
            n += 1
    return n
