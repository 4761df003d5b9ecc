"""The per-element steps of the build graph (``pipelines.build``), as picklable callables.

Each step takes and yields *headers*: records whose payload lives in the blob store
(``pipelines.blobs``), so what flows between steps (and through an engine's shuffle) is ids,
hashes, times and references, about 1-2 kB per record. Steps that need bytes (series assembly,
the LLM's JSON member, sample ``meta.json``) read or write blobs themselves, in the worker.

Outputs of mixed kind are tagged ``(tag, value)`` pairs, split later with ``flow.Select``:
``rec`` (an item record header), ``slice`` (a CT/MR slice header), ``group`` (a sample group),
``q`` (a quarantine record), ``unit`` (an input unit row), ``dedup`` (a deduplicated unit id).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipelines.blobs import BlobStore, to_header, with_payload
from pipelines.config import LinkConfig, SourceConfig, SplitConfig
from pipelines.decode import (
    DecodeTask,
    DecodeToHeaders,
    SeriesAssembler,
    _decode_with_timeout,
    keyed_cache_key,
    quarantine,
    series_group_key,
)
from pipelines.discover import discover_folder, list_folders
from pipelines.link import PatientLinker, SampleGroup, link_group
from pipelines.samples import member_names, sample_meta
from pipelines.shards import SampleHeader
from pipelines.split import split_of
from schemas.atomic import atomic_open
from schemas.contract import META_MEMBER
from schemas.reasons import ReasonCode
from schemas.records import InputItem, InputKind, QuarantineRecord, ReportRecord, SeriesSlice
from workers.config import LimitsConfig
from workers.context import WorkerContext
from workers.deid.pseudonym import Pseudonymizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unit:
    """One input unit (a file, a table row, a DICOM slice) for ``inputs.parquet`` and accounting."""

    source_id: str
    file_id: str
    source_name: str
    kind: str
    modality: str


# --- discovery ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListFolders:
    """Seed ``source index`` → ``(source index, folder)`` for every folder holding its files."""

    fans_out = True
    root: str
    sources: tuple[SourceConfig, ...]

    def __call__(self, index: int) -> Iterator[tuple[int, str]]:
        for folder in list_folders(Path(self.root), self.sources, index):
            yield index, folder


@dataclass(frozen=True)
class DiscoverFolder:
    """``(source index, folder)`` → the input items whose files lie in that folder."""

    fans_out = True
    root: str
    sources: tuple[SourceConfig, ...]
    pseudo: Pseudonymizer
    #: report tables are cut into row-range parts (``limits.table_rows_per_task``) here, so the
    #: parts spread over the workers like files do
    limits: LimitsConfig = LimitsConfig()

    def __call__(self, element: tuple[int, str]) -> Iterator[InputItem]:
        for item in discover_folder(Path(self.root), self.sources, element[0], element[1], self.pseudo):
            if item.kind is InputKind.REPORT_TABLE and item.size_bytes <= self.limits.max_file_bytes:
                # imported here: the report ingest module loads spaCy and the de-id lexicons
                # (~2 s), which a worker that meets no table (or the driver) never needs
                from workers.report.ingest import plan_table_parts

                yield from plan_table_parts(item, self.limits.max_text_chars, self.limits.table_rows_per_task)
            else:
                yield item


# --- decode ---------------------------------------------------------------------------------------


def _stat_key(task: DecodeTask) -> str:
    """Decode-cache key from file identity (path, size, mtime) + config + worker code, keyed.

    Stat-based, not content-based: a rerun decides what is finished without reading the
    corpus again. A file rewritten in place gets a new mtime and is decoded again.
    """
    h = hashlib.sha256()
    for path in (task.item.path, *task.item.companions):
        st = os.stat(path)
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return keyed_cache_key(task, h)


@dataclass(frozen=True)
class Decode:
    """Input item → tagged headers: ``rec``/``slice``/``q``/``unit`` (payloads go to the blob store).

    Headers are cached per item (``cache_dir/headers``) under a stat-based key, so a rerun
    costs a ``stat`` and a small pickle read per finished item.
    """

    ctxs: dict[str, WorkerContext]
    strict: bool
    blob_root: str
    cache_dir: str = ""
    decoder_overrides: tuple[tuple[str, str], ...] = ()

    def __call__(self, item: InputItem) -> Iterator[tuple[str, object]]:
        task = DecodeTask(
            item, self.ctxs[item.source_name], self.strict, "", decoder_overrides=self.decoder_overrides
        )
        for rec in self._decode(task):
            if isinstance(rec, SeriesSlice):
                yield "slice", (item.source_id, item.kind.value, rec)
                continue
            if isinstance(rec, QuarantineRecord):
                yield "q", rec
                ids = [rec.source_id]
            else:
                yield "rec", rec
                ids = list(rec.source_ids)
            for sid in ids:
                yield "unit", Unit(sid, item.source_id, item.source_name, item.kind.value, rec.modality.value)

    def _decode(self, task: DecodeTask) -> list:
        item = task.item
        path = None
        if self.cache_dir and item.kind not in (InputKind.EMPTY, InputKind.UNKNOWN):
            try:
                key = _stat_key(task)
            except OSError:
                return [quarantine(item, ReasonCode.UNREADABLE_FILE, "file could not be read")]
            path = Path(self.cache_dir, "headers", key[:2], f"{key}.pkl")
            if path.exists():
                with open(path, "rb") as f:
                    return pickle.load(f)
        to_headers = DecodeToHeaders(self.blob_root)
        if item.kind in (InputKind.EMPTY, InputKind.UNKNOWN):  # no decoder runs: no time limit needed
            outs = to_headers(task)
        else:
            outs = _decode_with_timeout(task, to_headers)
        if not outs and not (item.row_range and item.row_range[0] > 0):  # a later part: see the first
            reason = (
                ReasonCode.REPORT_EMPTY
                if item.kind in (InputKind.REPORT_TABLE, InputKind.REPORT_TEXT)
                else ReasonCode.DECODER_ERROR
            )
            outs = [quarantine(item, reason, "input produced no records")]
        if path is not None:
            with atomic_open(path, durable=False, mode=0o666) as f:  # a cache: recomputed if lost
                pickle.dump(outs, f, protocol=5)
        return outs


def slice_series_key(element: tuple[str, str, SeriesSlice]) -> str:
    return series_group_key(element[2])


def slice_order(element: tuple[str, str, SeriesSlice]) -> str:
    return element[2].source_id


@dataclass(frozen=True)
class AssembleSeries:
    """``group`` on series: slice headers → volume (or image/quarantine) headers + unit rows."""

    ctxs: dict[str, WorkerContext]
    strict: bool
    blob_root: str

    def __call__(self, key: str, elements: list) -> Iterator[tuple[str, object]]:
        store = BlobStore(self.blob_root)
        slices = [with_payload(s, store) for _, _, s in elements]
        file_of = {s.source_id: (fid, kind) for fid, kind, s in elements}
        seen: set[str] = set()
        for rec in SeriesAssembler(self.ctxs, self.strict)(key, slices):
            if isinstance(rec, QuarantineRecord):
                yield "q", rec
                ids = [rec.source_id]
            else:
                yield "rec", to_header(rec, store)
                ids = list(rec.source_ids)
            for sid in ids:
                if sid not in file_of or sid in seen:
                    raise RuntimeError("series assembler returned an unknown or repeated slice (bug)")
                seen.add(sid)
                fid, kind = file_of[sid]
                yield "unit", Unit(sid, fid, rec.source_name, kind, rec.modality.value)
        if len(seen) != len(file_of):
            raise RuntimeError(f"series assembler dropped {len(file_of) - len(seen)} slices (bug)")


# --- LLM restructuring of reports -----------------------------------------------------------------


@dataclass(frozen=True)
class LlmRoute:
    """Tag report headers of LLM sources ``llm``, everything else ``rec``."""

    sources: frozenset[str]

    def __call__(self, rec) -> Iterator[tuple[str, object]]:
        yield ("llm" if isinstance(rec, ReportRecord) and rec.source_name in self.sources else "rec"), rec


def llm_bucket(rec) -> str:
    """256 buckets by record id: deterministic batches of a few hundred reports at 10^5."""
    return rec.record_id[:2]


def record_order(rec) -> str:
    return rec.record_id


_STRUCTURERS: dict[str, object] = {}


def _structurer(cfg):
    """One LLM structurer per worker process and config (a server client or an offline worker)."""
    key = repr(cfg)
    if key not in _STRUCTURERS:
        from workers.llm.structurer import LlmStructurer

        s = LlmStructurer(cfg)
        s.setup()
        atexit.register(s.close)
        _STRUCTURERS[key] = s
    return _STRUCTURERS[key]


@dataclass(frozen=True)
class LlmStage:
    """``group`` on bucket: restructure reports with the LLM (see ``pipelines.llm_stage``)."""

    options: tuple[tuple[str, object], ...]
    out_dir: str
    blob_root: str

    def __call__(self, key: str, recs: list) -> Iterator[object]:  # noqa: ARG002
        from pipelines.llm_stage import BATCH, _llm_config, restructure

        cfg = _llm_config(dict(self.options), Path(self.out_dir))
        store = BlobStore(self.blob_root)
        structurer = _structurer(cfg)
        for s in range(0, len(recs), BATCH):
            chunk = [with_payload(r, store) for r in recs[s : s + BATCH]]
            for rec in restructure(structurer, chunk):
                yield to_header(rec, store)


# --- linking --------------------------------------------------------------------------------------


def link_study(key: str, recs: list) -> list[SampleGroup]:
    return link_group(key, recs)


def group_order(g: SampleGroup) -> str:
    return g.group_key


@dataclass(frozen=True)
class LinkPatient:
    """``group`` on patient: time-window linking; tags ``group`` / ``q``."""

    cfg: LinkConfig

    def __call__(self, key: str, groups: list[SampleGroup]) -> Iterator[tuple[str, object]]:
        for g in PatientLinker(self.cfg)(key, groups):
            yield ("q" if isinstance(g, QuarantineRecord) else "group"), g


# --- samples --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildSample:
    """Sample group → :class:`SampleHeader` (split by patient; ``meta.json`` written as a blob)."""

    pseudo: Pseudonymizer
    split: SplitConfig
    blob_root: str

    def __call__(self, group: SampleGroup) -> Iterator[SampleHeader]:
        split = group.split or split_of(group.patient or group.group_key, self.pseudo, self.split)
        key, meta = sample_meta(group, split, self.pseudo, self.pseudo.is_demo)
        members = [
            (name, rec.payload_refs[j][1], rec.payload_refs[j][2]) for name, rec, j in member_names(group)
        ]
        members.append((META_MEMBER, BlobStore(self.blob_root).put(meta), len(meta)))
        parsed = json.loads(meta)
        recs = group.records
        yield SampleHeader(
            key=key,
            split=split,
            members=tuple(sorted(members)),
            patient=group.patient,
            study=group.study,
            modalities=tuple(parsed["modalities"]),
            modality_mask=tuple(parsed["modality_mask"]),
            record_ids=tuple(r.record_id for r in recs),
            source_ids=tuple(sid for r in recs for sid in r.source_ids),
            source_names=tuple(sorted({r.source_name for r in recs})),
            licences=tuple(sorted({r.licence for r in recs})),
            item_modalities=tuple(r.modality.value for r in recs),
            units=tuple((sid, r.modality.value) for r in recs for sid in r.source_ids),
        )
