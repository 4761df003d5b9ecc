"""The build graph: discover → decode → assemble series → link → split → shard → manifests.

Every decision lives here; runners only execute the per-item functions (``decode_item``,
``assemble_series_task``, ``write_shard``) somewhere. Same input + config → byte-identical
shards and manifests, whatever the runner or worker count.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from pipelines.config import BuildConfig
from pipelines.datacard import write_datacard
from pipelines.decode import (
    KIND_MODALITY,
    DecodeTask,
    SeriesAssembler,
    decode_item,
    quarantine,
    series_group_key,
)
from pipelines.dedup import DEDUP, DEDUP_SCHEMA, run_dedup
from pipelines.discover import discover
from pipelines.errors import UserError
from pipelines.link import PatientLinker, link_group, link_key, patient_key
from pipelines.llm_stage import apply_llm
from pipelines.manifest import (
    BUILD,
    INPUT_SCHEMA,
    INPUTS,
    MANIFEST,
    QUARANTINE,
    SHARDS,
    STATS,
    write_records,
    write_table,
)
from pipelines.runners import Runner, make_runner
from pipelines.samples import build_sample_task
from pipelines.shards import plan_shards, remove_stale, write_shard, write_sizes
from pipelines.split import split_of
from pipelines.writer import write_atomic
from schemas.modality import Modality
from schemas.reasons import ReasonCode
from schemas.records import (
    InputKind,
    ItemRecord,
    QuarantineRecord,
    SampleRecord,
    SeriesSlice,
    ShardRecord,
)
from workers.context import WorkerContext
from workers.pseudonym import Pseudonymizer

log = logging.getLogger(__name__)

CACHE_DIR = "cache"
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


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("medcorpus", *TOOL_PACKAGES):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False, default=str).encode()


def run_build(
    input_dir: Path,
    out_dir: Path,
    cfg: BuildConfig,
    *,
    quiet: bool = False,
    runner: Runner | None = None,
    use_cache: bool = True,
) -> BuildResult:
    """Build a corpus from ``input_dir`` into ``out_dir``. Resumable: rerun to finish a killed build."""
    t0 = time.perf_counter()
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder not found: {input_dir}")
    pseudo = Pseudonymizer(cfg.secret())
    own_runner = runner is None
    runner = runner or make_runner(cfg.runner, cfg.workers, quiet=quiet)
    os.umask(0o027)  # outputs (shards, manifests, sidecars, card) readable by owner and group only
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    out_dir.chmod(0o750)
    lock = _lock(out_dir)
    removed = _remove_temp_files(out_dir)
    if removed:
        log.info("removed %d temp files left by an interrupted build", removed)
    try:
        # 1. discover
        sources = cfg.resolved_sources()
        items = discover(input_dir, sources, pseudo)
        ctxs = {
            s.name: WorkerContext(
                pseudo=pseudo, image=s.image, volume=s.volume, ecg=s.ecg, report=s.report, limits=cfg.limits
            )
            for s in sources
        }
        cache_dir = str(out_dir / CACHE_DIR) if use_cache else ""
        # 2. decode (parallel)
        tasks = [DecodeTask(it, ctxs[it.source_name], cfg.strict, cache_dir) for it in items]
        decoded = runner.map(decode_item, tasks, "decode")
        records: list[ItemRecord] = []
        slices: dict[tuple[str, str], list[SeriesSlice]] = defaultdict(list)
        quarantined: list[QuarantineRecord] = []
        units: dict[str, tuple[str, str, str, str]] = {}  # unit id → (file id, source, kind, modality)

        def add_unit(uid: str, item, modality: Modality) -> None:
            if uid in units:
                raise RuntimeError(f"input unit {uid} produced twice (decoder bug)")
            units[uid] = (item.source_id, item.source_name, item.kind.value, modality.value)

        for item, outs in zip(items, decoded, strict=True):
            if not outs:
                reason = (
                    ReasonCode.REPORT_EMPTY
                    if item.kind in (InputKind.REPORT_TABLE, InputKind.REPORT_TEXT)
                    else ReasonCode.DECODER_ERROR
                )
                outs = [quarantine(item, reason, "input produced no records")]
            for rec in outs:
                if isinstance(rec, QuarantineRecord):
                    quarantined.append(rec)
                    add_unit(rec.source_id, item, rec.modality)
                elif isinstance(rec, SeriesSlice):
                    slices[(rec.source_name, rec.series_key)].append(rec)
                    add_unit(rec.source_id, item, Modality.VOLUME)
                else:
                    records.append(rec)
                    for sid in rec.source_ids:
                        add_unit(sid, item, rec.modality)
        # 3. series → volumes (a keyed group stage: one group per DICOM series)
        all_slices = [s for k in sorted(slices) for s in sorted(slices[k], key=lambda s: s.source_id)]
        slice_units = {s.source_id for s in all_slices}
        assembled_units: set[str] = set()
        assembled = runner.group_map(
            series_group_key, SeriesAssembler(ctxs, cfg.strict), all_slices, "series"
        )
        for outs in assembled:
            for rec in outs:
                if isinstance(rec, QuarantineRecord):
                    quarantined.append(rec)
                    ids = [rec.source_id]
                else:
                    records.append(rec)
                    ids = list(rec.source_ids)
                for sid in ids:
                    if sid not in slice_units or sid in assembled_units:
                        raise RuntimeError("series assembler returned an unknown or repeated slice (bug)")
                    assembled_units.add(sid)
                    if not isinstance(rec, QuarantineRecord):
                        f, s, k, _ = units[sid]
                        units[sid] = (f, s, k, rec.modality.value)
        missing = slice_units - assembled_units
        if missing:
            raise RuntimeError(f"series assembler dropped {len(missing)} slices without a record (bug)")
        # 3b. LLM restructuring of reports (sources with report.structurer: llm)
        llm_sources = {src.name for src in sources if src.report.structurer == "llm"}
        if llm_sources:
            records = apply_llm(records, llm_sources, cfg.llm, out_dir, quiet)
        # 4. link (keyed group stage), 5. split by patient, 6. samples (parallel)
        records.sort(key=lambda r: r.record_id)
        study_groups = [g for gs in runner.group_map(link_key, link_group, records, "link") for g in gs]
        groups = []
        for outs in runner.group_map(patient_key, PatientLinker(cfg.linking), study_groups, "link-patient"):
            for g in outs:
                (quarantined if isinstance(g, QuarantineRecord) else groups).append(g)
        # dedup (exact → near via embedding LSH → patient-aware policy), before the split
        dd = run_dedup(groups, cfg.dedup, runner, cache_dir)
        groups = dd.groups
        quarantined.extend(dd.quarantined)
        demo = pseudo.is_demo
        sample_tasks = [
            (g, split_of(g.patient or g.group_key, pseudo, cfg.split), pseudo, demo) for g in groups
        ]
        samples = runner.map(build_sample_task, sample_tasks, "samples")
        # 7. shards
        plan = plan_shards(samples, cfg.shards, out_dir)
        results = runner.map(write_shard, plan, "write")
        write_sizes(out_dir, results)
        remove_stale(out_dir, plan)
        # 8. manifests (last): samples, shards, quarantine, inputs, stats, build
        rows = []
        for task in plan:
            for i, s in enumerate(task.samples):
                recs = s.group.records
                meta = json.loads(s.members["meta.json"])  # parsed once per sample
                rows.append(
                    SampleRecord(
                        key=s.key,
                        split=s.split,
                        shard=task.name,
                        index_in_shard=i,
                        patient=s.group.patient,
                        study=s.group.study,
                        modalities=tuple(meta["modalities"]),
                        modality_mask=tuple(meta["modality_mask"]),
                        members=tuple(s.members),
                        member_sha256=tuple(s.member_sha256()),
                        sample_sha256=s.sample_sha256(),
                        n_bytes=s.n_bytes,
                        record_ids=tuple(r.record_id for r in recs),
                        source_ids=tuple(sid for r in recs for sid in r.source_ids),
                        source_names=tuple(sorted({r.source_name for r in recs})),
                        licences=tuple(sorted({r.licence for r in recs})),
                    )
                )
        shard_rows = [
            ShardRecord(
                r.name, r.split, r.n_samples, r.n_bytes, r.sha256, t.samples[0].key, t.samples[-1].key
            )
            for r, t in zip(results, plan, strict=True)
        ]
        quarantined.sort(key=lambda q: (q.source_id, q.stage, q.reason.value))
        import pyarrow as pa

        unit_ids = sorted(units)
        inputs_table = pa.table(
            {
                "source_id": unit_ids,
                "file_id": [units[u][0] for u in unit_ids],
                "source_name": [units[u][1] for u in unit_ids],
                "kind": [units[u][2] for u in unit_ids],
                "modality": [units[u][3] for u in unit_ids],
            },
            schema=INPUT_SCHEMA,
        )
        stats = accounting(units, rows, quarantined, dd.deduplicated_ids)
        stats |= {
            "n_files": len(items),
            "files_per_kind": dict(sorted(Counter(it.kind.value for it in items).items())),
            "n_samples": len(rows),
            "samples_per_split": dict(sorted(Counter(r.split for r in rows).items())),
            "shards_per_split": dict(sorted(Counter(r.split for r in results).items())),
            "samples_with_modalities": dict(sorted(Counter("+".join(r.modalities) for r in rows).items())),
            "demo_build": demo,
            "dedup": dd.counts,
        }
        write_table(out_dir / DEDUP, dd.table if dd.table is not None else DEDUP_SCHEMA.empty_table())
        write_records(out_dir / MANIFEST, rows, SampleRecord)
        write_records(out_dir / SHARDS, shard_rows, ShardRecord)
        write_records(out_dir / QUARANTINE, quarantined, QuarantineRecord)
        write_table(out_dir / INPUTS, inputs_table)
        write_atomic(out_dir / STATS, _canonical(stats))
        build_info = {
            "demo_build": demo,
            "demo_note": "built with the public demo secret: pseudonyms are NOT secret" if demo else "",
            # execution settings (workers, runner) do not change the output: not recorded
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("workers", "runner")},
            "versions": _versions(),
            "kind_modality": {k.value: m.value for k, m in KIND_MODALITY.items()},
        }
        write_atomic(out_dir / BUILD, _canonical(build_info))
    finally:
        if own_runner:
            runner.close()
        lock.close()
    write_datacard(out_dir, quiet=quiet)  # the corpus report: datacard.html + datacard.json
    n_err = sum(q.reason is ReasonCode.DECODER_ERROR for q in quarantined)
    if n_err:
        log.error(
            "%d inputs hit unexpected decoder exceptions (bugs): see quarantine reason decoder_error", n_err
        )
    return BuildResult(
        out_dir=out_dir,
        n_files=len(items),
        n_units=len(units),
        n_samples=len(rows),
        n_shards=len(results),
        n_shards_skipped=sum(r.skipped for r in results),
        n_quarantined=len(quarantined),
        n_decoder_errors=n_err,
        per_modality=stats["per_modality"],
        demo_build=demo,
        seconds=time.perf_counter() - t0,
    )


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
    """Delete ``*.tmp-<pid>`` files of interrupted builds (we hold the folder lock)."""
    n = 0
    for p in out_dir.rglob("*.tmp-*"):
        if p.is_file():
            p.unlink()
            n += 1
    return n


def accounting(
    units: dict, rows: list[SampleRecord], quarantined: list[QuarantineRecord], deduplicated: list[str]
) -> dict:
    """Per-modality accounting: inputs = written + quarantined + deduplicated (unit counts)."""
    written_ids = {sid for r in rows for sid in r.source_ids}
    quarantined_ids = {q.source_id for q in quarantined}
    dedup_ids = set(deduplicated)
    per: dict[str, Counter] = defaultdict(Counter)
    for uid, (_, _, _, modality) in units.items():
        per[modality]["inputs"] += 1
        if uid in written_ids:
            per[modality]["written"] += 1
        elif uid in quarantined_ids:
            per[modality]["quarantined"] += 1
        elif uid in dedup_ids:
            per[modality]["deduplicated"] += 1
    reasons = Counter(q.reason.value for q in quarantined)
    dedup_by_mod = Counter(units[u][3] for u in dedup_ids)
    return {
        "per_modality": {
            m: {k: c[k] for k in ("inputs", "written", "quarantined", "deduplicated")}
            for m, c in sorted(per.items())
        },
        "quarantine_reasons": dict(sorted(reasons.items())),
        "deduplicated_per_modality": dict(sorted(dedup_by_mod.items())),
        "n_units": len(units),
        "n_quarantined": len(quarantined),
    }
