"""Report tables decoded in row-range parts (``plan_table_parts``): the parts together give exactly
the records of the whole-table decode, on real Indiana rows in CSV, JSONL and JSON with the
awkward cases (quoted line breaks, blank lines, broken rows) next to the cuts."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from pipelines.decode import DecodeTask, _decode_uncached, quarantine_units
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import InputItem, InputKind, QuarantineRecord, ReportRecord, row_source_id
from workers.config import ColumnMapping, LimitsConfig, ReportConfig
from workers.context import WorkerContext
from workers.deid.pseudonym import Pseudonymizer
from workers.report.ingest import decode_report_table, plan_table_parts

INDIANA = ColumnMapping(
    report_id="uid",
    patient_id="uid",
    study_id="uid",
    text=("indication", "comparison", "findings", "impression"),
)
N_ROWS = 40


@pytest.fixture(scope="module")
def ctx() -> WorkerContext:
    pseudo = Pseudonymizer("test-secret-0123456789")
    return WorkerContext(pseudo=pseudo, report=ReportConfig(columns=INDIANA), limits=LimitsConfig())


@pytest.fixture(scope="module")
def indiana(shared_data) -> tuple[list[str], list[dict]]:
    with open(
        shared_data / "reports/indiana_cxr/indiana_reports_partA.csv", encoding="utf-8", newline=""
    ) as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), [r for r, _ in zip(reader, range(N_ROWS), strict=False)]


def _item(path) -> InputItem:
    return InputItem("ftable01", str(path), InputKind.REPORT_TABLE, "test-source", "CC0", path.stat().st_size)


def _write_csv(path, header: list[str], rows: list[dict]) -> None:
    """Rows 2 and 3 get quoted line breaks, blank lines follow rows 4 and 9, row 6 is short."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for i, row in enumerate(rows):
        values = [row[c] for c in header]
        if i in (2, 3):
            values[header.index("findings")] = row["findings"].replace(". ", ".\n", 1) + "\nEnd."
        w.writerow(values[:2] if i == 6 else values)
        if i in (4, 9):
            buf.write("\n,,\n")
    path.write_text(buf.getvalue(), encoding="utf-8")


def _write_jsonl(path, rows: list[dict]) -> None:
    lines = [json.dumps(r) for r in rows]
    lines[5] = "{not json"
    lines[8] = "[1, 2]"
    lines.insert(3, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_json(path, rows: list[dict]) -> None:
    items: list = list(rows)
    items[7] = "a string, not an object"
    path.write_text(json.dumps(items, indent=1), encoding="utf-8")


WRITERS = {
    "csv": lambda p, header, rows: _write_csv(p, header, rows),
    "jsonl": lambda p, header, rows: _write_jsonl(p, rows),
    "json": lambda p, header, rows: _write_json(p, rows),
}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
@pytest.mark.parametrize("rows_per_part", [3, 7])
def test_parts_give_exactly_the_whole_tables_records(indiana, ctx, tmp_path, fmt, rows_per_part):
    path = tmp_path / f"reports.{fmt}"
    WRITERS[fmt](path, *indiana)
    item = _item(path)
    whole = decode_report_table(item, ctx)
    assert len(whole) == N_ROWS
    assert sum(isinstance(r, ReportRecord) for r in whole) >= N_ROWS - 3
    assert any(isinstance(r, QuarantineRecord) for r in whole)  # the broken rows

    parts = plan_table_parts(item, ctx.limits.max_text_chars, rows_per_part)
    assert len(parts) == math.ceil(N_ROWS / rows_per_part)
    ranges = [p.row_range[:2] for p in parts]
    assert ranges[0][0] == 0 and ranges[-1][1] == N_ROWS
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # contiguous
    assert all(p.source_id == item.source_id and p.path == item.path for p in parts)
    got = [r for p in parts for r in decode_report_table(p, ctx)]
    assert got == whole


def test_a_table_that_fits_one_part_or_cannot_be_parsed_stays_whole(indiana, ctx, tmp_path):
    path = tmp_path / "reports.csv"
    _write_csv(path, *indiana)
    assert plan_table_parts(_item(path), ctx.limits.max_text_chars, N_ROWS) == [_item(path)]
    assert plan_table_parts(_item(path), ctx.limits.max_text_chars, 0) == [_item(path)]
    broken = tmp_path / "broken.json"
    broken.write_text('[{"findings": "x"}, ' * 50, encoding="utf-8")
    assert plan_table_parts(_item(broken), ctx.limits.max_text_chars, 3) == [_item(broken)]


def test_a_table_level_fault_is_quarantined_once_by_the_first_part(indiana, ctx, tmp_path):
    """The table changed between planning and decoding: its header is now malformed."""
    path = tmp_path / "reports.csv"
    _write_csv(path, *indiana)
    parts = plan_table_parts(_item(path), ctx.limits.max_text_chars, 10)
    path.write_text("uid,,findings\n" + path.read_text(encoding="utf-8").split("\n", 1)[1], encoding="utf-8")
    with pytest.raises(QuarantineError) as exc:
        decode_report_table(parts[0], ctx)
    assert exc.value.reason is ReasonCode.REPORT_TABLE_MALFORMED
    first = _decode_uncached(DecodeTask(parts[0], ctx, strict=False, cache_dir=""))
    assert [(q.source_id, q.reason) for q in first] == [("ftable01", ReasonCode.REPORT_TABLE_MALFORMED)]
    assert all(decode_report_table(p, ctx) == [] for p in parts[1:])


def test_a_failed_part_quarantines_each_of_its_rows(indiana, ctx, tmp_path):
    path = tmp_path / "reports.csv"
    _write_csv(path, *indiana)
    part = plan_table_parts(_item(path), ctx.limits.max_text_chars, 10)[2]
    qs = quarantine_units(part, ReasonCode.TIMEOUT, "decoding exceeded limits.item_timeout_s=1")
    assert [q.source_id for q in qs] == [row_source_id(part.source_id, i) for i in range(20, 30)]
    assert {q.reason for q in qs} == {ReasonCode.TIMEOUT}
    assert quarantine_units(_item(path), ReasonCode.TIMEOUT, "x")[0].source_id == part.source_id
