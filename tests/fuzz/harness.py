"""Shared machinery of the fuzz suite: settings, the real entry points, and the accounting check.

Every fuzz case is one mutated copy of a real file from ``shared/data`` (plus its companions),
written under a fresh folder whose name is a fake identifier. The case goes through the same
entry points a build uses: :func:`pipelines.discover.discover` (content sniffing with
:func:`pipelines.discover.sniff`, WFDB companions) and :func:`pipelines.decode.decode_item` with
``strict=True`` and no cache. In strict mode any exception other than ``QuarantineError`` escapes
``decode_item``: that is a decoder bug and fails the test (Hypothesis then shrinks the case).

Each case must be *accounted for*: every discovered item yields records or quarantine records
(see :func:`check_accounted`), and no item hits the per-item wall-clock limit (a hang).

Modes (environment variables):

- ``MEDCORPUS_FUZZ_EXAMPLES``: cases per parser (default 1,000; 10,000 with ``MEDCORPUS_FULL=1``).
- ``MEDCORPUS_FUZZ_SEED``: explore another fixed stream of cases (default: Hypothesis'
  ``derandomize``, i.e. the same cases on every run of the same code).
- ``MEDCORPUS_FUZZ_ITEM_TIMEOUT``: per-item wall-clock limit in seconds (default 30).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as hyp_seed

from pipelines.config import SourceConfig
from pipelines.decode import DecodeTask, decode_item
from pipelines.discover import discover, sniff
from schemas.contract import MODALITY_SUFFIXES
from schemas.reasons import ReasonCode
from schemas.records import (
    EcgRecord,
    ImageRecord,
    InputItem,
    InputKind,
    QuarantineRecord,
    ReportRecord,
    SeriesSlice,
    VolumeRecord,
)
from workers.config import LimitsConfig
from workers.context import WorkerContext
from workers.deid.pseudonym import Pseudonymizer

FULL = os.environ.get("MEDCORPUS_FULL") == "1"
EXAMPLES = int(os.environ.get("MEDCORPUS_FUZZ_EXAMPLES", "10000" if FULL else "1000"))
SEED = os.environ.get("MEDCORPUS_FUZZ_SEED", "")
ITEM_TIMEOUT_S = float(os.environ.get("MEDCORPUS_FUZZ_ITEM_TIMEOUT", "30"))
SECRET = "fuzz-secret-0123456789abcdef"
#: folder name of every case: a fake identifier that must never reach a quarantine message
CANARY_DIR = "PatientQzxFuzz7731"
_ITEM_CLASSES = (ImageRecord, VolumeRecord, EcgRecord, ReportRecord)
_UNIT_ID = re.compile(r"^(?P<file>f[0-9a-f]{16})(?:-(?:r|v)\d{6})?$")

#: per parser: cases run, and the outcome of each decoded unit (record type or reason code)
STATS: dict[str, Counter] = {}


def fuzz_settings(reach: float = 1.0) -> Callable[[Callable], Callable]:
    """Hermetic, reproducible Hypothesis settings: no example database, no deadline, a fixed
    stream of cases (``derandomize``, or ``MEDCORPUS_FUZZ_SEED``).

    ``reach``: the share of cases expected to reach the parser under test (the rest become
    empty/unknown files for discovery); ``EXAMPLES / reach`` cases are run so that about
    ``EXAMPLES`` reach it (tests assert the count).
    """

    def decorate(fn: Callable) -> Callable:
        wrapped = settings(
            max_examples=math.ceil(EXAMPLES / reach),
            derandomize=not SEED,
            database=None,
            deadline=None,
            print_blob=True,
            phases=(Phase.explicit, Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
        )(fn)
        return hyp_seed(int(SEED))(wrapped) if SEED else wrapped

    return decorate


def reached(parser: str, kind: InputKind) -> int:
    """Cases of ``parser`` whose file discovery classified as ``kind`` (reached its decoder)."""
    return STATS.get(parser, Counter())[f"kind:{kind.value}"]


def fuzz_ctx(**limits) -> WorkerContext:
    """Default worker configs, the per-item time limit, optional limit overrides."""
    return WorkerContext(
        pseudo=Pseudonymizer(SECRET),
        limits=replace(LimitsConfig(), item_timeout_s=ITEM_TIMEOUT_S, **limits),
    )


class CaseDir:
    """A fresh folder ``<tmp>/<CANARY_DIR>/`` for one case, removed afterwards."""

    def __init__(self, parent: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="case-", dir=parent))
        self.folder = self.root / CANARY_DIR
        self.folder.mkdir()

    def __enter__(self) -> CaseDir:
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def run_case(parser: str, folder: Path, ctx: WorkerContext) -> list[tuple[InputItem, list]]:
    """Discover the files of ``folder`` and decode each item strictly, as a build would.

    Returns ``[(item, records)]``; raises whatever a decoder raises besides QuarantineError.
    """
    items = discover(folder.parent, (SourceConfig(name="fuzz", path=folder.name, exclude=()),), ctx.pseudo)
    assert items, "discovery lost the case's files"
    results = []
    for item in items:
        assert item.kind is sniff(Path(item.path)), "discover and sniff disagree"
        with _quiet():
            out = decode_item(DecodeTask(item, ctx, strict=True, cache_dir=""))
        check_accounted(item, out, ctx)
        results.append((item, out))
    stats = STATS.setdefault(parser, Counter())
    stats["cases"] += 1
    for item, out in results:
        stats[f"kind:{item.kind.value}"] += 1
        for rec in out:
            key = rec.reason.value if isinstance(rec, QuarantineRecord) else type(rec).__name__
            stats[f"out:{key}"] += 1
    return results


@contextmanager
def _quiet():
    """Library warnings and log records of thousands of broken inputs are noise here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def check_accounted(item: InputItem, out: list, ctx: WorkerContext) -> None:
    """The contract a build relies on for one decoded item (see module docstring)."""
    assert isinstance(out, list)
    if not out:  # a table with a header and no rows: the build counts it as report_empty
        assert item.kind is InputKind.REPORT_TABLE, f"{item.kind.value} input produced no records"
        return
    units: list[str] = []
    for rec in out:
        if isinstance(rec, QuarantineRecord):
            assert isinstance(rec.reason, ReasonCode)
            assert rec.reason is not ReasonCode.TIMEOUT, f"decoder hung (> {ITEM_TIMEOUT_S:g} s)"
            assert rec.reason is not ReasonCode.DECODER_ERROR
            assert rec.source_name == item.source_name
            assert isinstance(rec.message, str) and rec.message
            assert CANARY_DIR not in rec.message and item.path not in rec.message, "path in a message"
            units.append(rec.source_id)
        elif isinstance(rec, SeriesSlice):
            assert (rec.source_name, rec.licence) == (item.source_name, item.licence)
            assert len(rec.pixels) == rec.rows * rec.columns * 2
            json.loads(rec.meta_json)
            units.append(rec.source_id)
        else:
            assert isinstance(rec, _ITEM_CLASSES), f"unexpected record type {type(rec).__name__}"
            assert rec.source_ids, "record without source ids"
            assert rec.record_id == ctx.pseudo.token("record", "|".join(rec.source_ids))
            assert (rec.source_name, rec.licence) == (item.source_name, item.licence)
            assert re.fullmatch(r"[0-9a-f]{64}", rec.content_sha256)
            assert isinstance(json.loads(rec.meta_json), dict)
            suffixes = {s for s, _ in rec.payload}
            assert suffixes and suffixes <= set(MODALITY_SUFFIXES[rec.modality]), suffixes
            assert all(isinstance(b, bytes) and b for _, b in rec.payload)
            units.extend(rec.source_ids)
    for uid in units:
        m = _UNIT_ID.match(uid)
        assert m and m.group("file") == item.source_id, "a record names another item's source id"
    assert len(units) == len(set(units)), "an input unit was produced twice"


def summary_lines() -> list[str]:
    """One line per parser: cases run and outcome counts (for the terminal summary)."""
    lines = []
    for parser, c in sorted(STATS.items()):
        outs = ", ".join(f"{k[4:]}={v}" for k, v in sorted(c.items()) if k.startswith("out:"))
        kinds = ", ".join(f"{k[5:]}={v}" for k, v in sorted(c.items()) if k.startswith("kind:"))
        lines.append(f"{parser}: {c['cases']} cases; kinds: {kinds}; outcomes: {outs}")
    return lines
