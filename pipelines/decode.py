"""Per-item decode step: dispatch an input to its worker, cache the result, quarantine bad input.

Bad input (``QuarantineError``) becomes a ``QuarantineRecord``. A missing package (``ImportError``)
stops the build (``preflight.MissingDependency``). Any other exception is a bug:
in strict mode it propagates and fails the build; otherwise the item is quarantined with
``decoder_error`` and the exception *type* only (its message could hold PHI).

Decoded results are cached as sidecars keyed by (file content, companions, source config,
worker code): a rerun or a changed shard/split setting re-mixes instead of re-decoding.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import pickle
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from pipelines.blobs import BlobStore, to_header
from pipelines.preflight import from_import_error
from pipelines.watchdog import ChildDied, ItemTimeout, call_with_limit, describe_exit
from schemas.atomic import atomic_open
from schemas.modality import Modality
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import DecodedRecord, InputItem, InputKind, QuarantineRecord, SeriesSlice, row_source_id
from workers.context import WorkerContext

log = logging.getLogger(__name__)

#: kind → "module:function" of the worker entry point
DECODERS: dict[InputKind, str] = {
    InputKind.DICOM: "workers.dicom.decode:decode_dicom",
    InputKind.WFDB: "workers.ecg.wfdb:decode_wfdb",
    InputKind.NIFTI: "workers.volume.nifti:decode_nifti",
    InputKind.REPORT_TABLE: "workers.report.ingest:decode_report_table",
    InputKind.REPORT_TEXT: "workers.report.ingest:decode_report_text",
    InputKind.IMAGE_FILE: "workers.image.decode:decode_image_file",
}
SERIES_ASSEMBLER = "workers.dicom.series:assemble_series"

#: best guess of an input's modality before decoding (for quarantine accounting)
KIND_MODALITY: dict[InputKind, Modality] = {
    InputKind.DICOM: Modality.IMAGE,
    InputKind.WFDB: Modality.ECG,
    InputKind.NIFTI: Modality.VOLUME,
    InputKind.REPORT_TABLE: Modality.REPORT,
    InputKind.REPORT_TEXT: Modality.REPORT,
    InputKind.IMAGE_FILE: Modality.IMAGE,
    InputKind.EMPTY: Modality.UNKNOWN,
    InputKind.UNKNOWN: Modality.UNKNOWN,
}
SIGNAL_SUFFIXES = (".dat", ".mat", ".xyz", ".atr", ".qrs", ".edf")


@dataclass(frozen=True)
class DecodeTask:
    """One unit of decode work, picklable for worker processes of any runner."""

    item: InputItem
    ctx: WorkerContext
    strict: bool
    cache_dir: str  # "" disables the cache
    #: (InputKind value, "module:function") pairs replacing DECODERS entries for this task: a
    #: test hook that travels with the task into any worker or watchdog process (a monkeypatch
    #: of DECODERS does not)
    decoder_overrides: tuple[tuple[str, str], ...] = ()


def _resolve(spec: str):
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


@cache
def code_fingerprint(packages: tuple[str, ...]) -> str:
    """sha256 over the source (``*.py``, path and bytes) of the project's ``packages``."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for pkg in packages:
        for p in sorted((root / pkg).rglob("*.py")):
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def worker_code_fingerprint() -> str:
    """sha256 over the source of ``workers/`` and ``schemas/``: a code change invalidates caches."""
    return code_fingerprint(("workers", "schemas"))


def keyed_cache_key(task: DecodeTask, identity: hashlib._Hash) -> str:
    """A decode-cache key: the item's ``identity`` digest + its source, config, test hook and
    worker code, keyed (the cache must change with the secret: pseudonyms are baked in)."""
    h = identity
    item = task.item
    h.update(repr((item.source_id, item.kind, item.source_name, item.licence, item.row_range)).encode())
    h.update(repr((task.ctx.image, task.ctx.volume, task.ctx.ecg, task.ctx.report, task.ctx.limits)).encode())
    h.update(repr(task.decoder_overrides).encode())
    h.update(worker_code_fingerprint().encode())
    return task.ctx.pseudo.token("decode-cache", h.hexdigest(), 40)


def _cache_key(task: DecodeTask) -> str:
    """Content-based key (``decode_item``): file names and bytes."""
    h = hashlib.sha256()
    for path in (task.item.path, *task.item.companions):
        h.update(Path(path).name.encode() + b"\0")
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    return keyed_cache_key(task, h)


def quarantine(item: InputItem, reason: ReasonCode, message: str, stage: str = "decode") -> QuarantineRecord:
    return QuarantineRecord(
        source_id=item.source_id,
        source_name=item.source_name,
        modality=KIND_MODALITY[item.kind],
        stage=stage,
        reason=reason,
        message=message,
    )


def quarantine_units(item: InputItem, reason: ReasonCode, message: str) -> list[QuarantineRecord]:
    """Quarantine what ``item`` stands for when its decode fails as a whole (timeout, crash): the
    file, or each row of a report-table part (its rows are its units; the other parts stand)."""
    if not item.row_range:
        return [quarantine(item, reason, message)]
    one = quarantine(item, reason, message)
    first, stop = item.row_range[:2]
    return [replace(one, source_id=row_source_id(item.source_id, i)) for i in range(first, stop)]


def _decode_uncached(task: DecodeTask) -> list[DecodedRecord]:
    item = task.item
    if item.kind is InputKind.EMPTY:
        return [quarantine(item, ReasonCode.EMPTY_FILE, "file is empty (0 bytes)")]
    if item.kind is InputKind.UNKNOWN:
        if Path(item.path).suffix.lower() in SIGNAL_SUFFIXES:
            return [quarantine(item, ReasonCode.ORPHAN_COMPANION, "signal file without a WFDB header")]
        return [quarantine(item, ReasonCode.UNSUPPORTED_FORMAT, "not DICOM, WFDB, NIfTI or a text report")]
    if item.size_bytes > task.ctx.limits.max_file_bytes:
        return [quarantine(item, ReasonCode.LIMIT_EXCEEDED, "file larger than limits.max_file_bytes")]
    decoder = _resolve(dict(task.decoder_overrides).get(item.kind.value, DECODERS[item.kind]))
    try:
        return list(decoder(item, task.ctx))
    except QuarantineError as exc:
        return [quarantine(item, exc.reason, exc.message)]
    except MemoryError:
        return quarantine_units(item, ReasonCode.LIMIT_EXCEEDED, "decoding exhausted memory")
    except ImportError as exc:  # a broken environment stops the build; it is not bad input
        raise from_import_error(exc) from None
    except Exception as exc:
        if task.strict:
            raise
        log.error(
            "decoder bug on source %s: %s (quarantined as decoder_error)", item.source_id, type(exc).__name__
        )
        return quarantine_units(item, ReasonCode.DECODER_ERROR, f"unexpected {type(exc).__name__} in decoder")


def _decode_with_timeout(task: DecodeTask, run=_decode_uncached) -> list[DecodedRecord]:
    """Run the decoder (``run(task)``) under a wall-clock limit, in this process's watchdog helper.

    ``run`` may post-process in the helper too: the build's decode stage passes one that moves
    payloads to the blob store there, so only headers cross the pipe back.

    Signal-free (``pipelines.watchdog``): the limit holds in any thread of any runner's worker.
    A hung decoder is killed and quarantined as ``timeout``; a decoder that kills its process
    (segfault, OOM kill) is quarantined as ``decoder_error``, or raises in strict mode.
    """
    limit = task.ctx.limits.item_timeout_s
    if limit <= 0:
        return run(task)
    try:
        return call_with_limit(run, task, limit)
    except ItemTimeout:
        return quarantine_units(
            task.item, ReasonCode.TIMEOUT, f"decoding exceeded limits.item_timeout_s={limit:g}"
        )
    except ChildDied as exc:
        if task.strict:
            raise
        log.error(
            "decoder process died on source %s (%s; quarantined as decoder_error)",
            task.item.source_id,
            describe_exit(exc.returncode),
        )
        return quarantine_units(
            task.item, ReasonCode.DECODER_ERROR, f"decoder process died ({describe_exit(exc.returncode)})"
        )


@dataclass(frozen=True)
class DecodeToHeaders:
    """Decode, then move payloads to the blob store (runs inside the watchdog helper process)."""

    blob_root: str

    def __call__(self, task: DecodeTask) -> list:
        store = BlobStore(self.blob_root)
        return [to_header(r, store) for r in _decode_uncached(task)]


def decode_item(task: DecodeTask) -> list[DecodedRecord]:
    """Decode one input (from cache when possible). Runs in any runner's worker process."""
    if not task.cache_dir or task.item.kind in (InputKind.EMPTY, InputKind.UNKNOWN):
        return _decode_with_timeout(task)
    try:
        key = _cache_key(task)
    except OSError:
        return [quarantine(task.item, ReasonCode.UNREADABLE_FILE, "file could not be read")]
    path = Path(task.cache_dir) / "decode" / key[:2] / f"{key}.pkl"
    if path.exists():
        with open(path, "rb") as f:
            return pickle.load(f)
    records = _decode_with_timeout(task)
    with atomic_open(path, durable=False, mode=0o666) as f:  # a cache: recomputed if lost
        pickle.dump(records, f, protocol=5)
    return records


def series_group_key(s: SeriesSlice) -> str:
    """Group key of a slice: its source and (pseudonymous) series."""
    return f"{s.source_name}/{s.series_key}"


class SeriesAssembler:
    """Group step: all slices of one series → a volume (or images / quarantine records).

    Picklable callable ``(group_key, slices) -> records`` for any runner's ``group_map``.
    """

    def __init__(self, ctxs: dict[str, WorkerContext], strict: bool) -> None:
        self.ctxs = ctxs
        self.strict = strict

    def __call__(self, key: str, slices: list[SeriesSlice]) -> list[DecodedRecord]:
        assembler = _resolve(SERIES_ASSEMBLER)
        ctx = self.ctxs[slices[0].source_name]
        try:
            return list(assembler(list(slices), ctx))
        except QuarantineError as exc:
            return [
                QuarantineRecord(
                    s.source_id, s.source_name, Modality.VOLUME, "series", exc.reason, exc.message
                )
                for s in slices
            ]
        except Exception as exc:
            if self.strict:
                raise
            log.error("series assembler bug: %s (quarantined as decoder_error)", type(exc).__name__)
            return [
                QuarantineRecord(
                    s.source_id,
                    s.source_name,
                    Modality.VOLUME,
                    "series",
                    ReasonCode.DECODER_ERROR,
                    f"unexpected {type(exc).__name__} in series assembly",
                )
                for s in slices
            ]
