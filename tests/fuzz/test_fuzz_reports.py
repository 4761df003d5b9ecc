"""Fuzz the report path (``workers.report.ingest``: CSV/TSV/JSONL/JSON tables and plain text).

Seeds are real PTB-XL rows (``shared/data/reports/ptbxl_ecg``, CC BY 4.0; German and English
free text, umlauts) as the CSV export itself, and re-written as TSV, JSON lines, a JSON array
and a plain-text report with header lines. (The Indiana reports are CC BY-NC-ND: no
derivatives, so they are not mutated here.) Mutations: re-encoding (UTF-16 with and without BOM,
cp1252, Latin-1, UTF-8 BOM, invalid UTF-8), NUL and control bytes, huge fields (beyond the text
limit and beyond the CSV field limit), ragged rows, stray quotes and delimiters, broken or
duplicate headers, line-ending changes, JSON oddities (non-objects, nested values, huge
integers, deep nesting, NaN, lone surrogates) and generic byte edits.
"""

from __future__ import annotations

import csv
import io
import json
from functools import cache

from hypothesis import given
from hypothesis import strategies as st

from schemas.records import InputKind
from tests.fuzz.harness import EXAMPLES, CaseDir, fuzz_ctx, fuzz_settings, reached, run_case
from tests.fuzz.mutate import FRAC, apply_byte_op, byte_op

PTBXL = "reports/ptbxl_ecg/ptbxl_database_subset_partA.csv"
N_ROWS = 4
#: the fuzz context's text limit (kept small so a case costs milliseconds, not the seconds the
#: NLP pipeline needs for a 200,000-character report); the default limit is tested in test_limits
MAX_TEXT = 20_000
FORMATS = ("csv", "csv", "csv", "tsv", "jsonl", "jsonl", "json", "txt")
SUFFIXES = {"csv": ".csv", "tsv": ".tsv", "jsonl": ".jsonl", "json": ".json", "txt": ".txt"}
FIELD_SIZES = (0, 1, 5_000, MAX_TEXT - 10, MAX_TEXT + 10, 100_000, 1_000_000)
FILLERS = ("Sinusrhythmus normales EKG. ", "x", "\u202e\u0301\U0001f600 ", "Ü" * 7 + " ", "\x00\x07\x1b")
JSON_VALUES = (
    '{"a": 1}',
    "[1, 2]",
    "1" * 5000,
    "NaN",
    "-Infinity",
    '"\\ud800"',
    '"\\u0000"',
    "null",
    "true",
    "[" * 50_000 + "]" * 50_000,
    "1e999",
)


@cache
def ptbxl_rows(shared_data) -> tuple[list[str], list[dict]]:
    with open(shared_data / PTBXL, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for _, r in zip(range(N_ROWS), reader, strict=False)]
        return list(reader.fieldnames or []), rows


def render(shared_data, fmt: str) -> bytes:
    """The seed rows in ``fmt`` (CSV: the real export's own bytes)."""
    header, rows = ptbxl_rows(shared_data)
    if fmt == "csv":
        lines = (shared_data / PTBXL).read_bytes().split(b"\n")
        return b"\n".join(lines[: N_ROWS + 1]) + b"\n"
    if fmt == "tsv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=header, delimiter="\t", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue().encode("utf-8")
    keep = ("ecg_id", "patient_id", "recording_date", "report", "age", "sex")
    objs = [{k: r[k] for k in keep} for r in rows]
    if fmt == "jsonl":
        return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs).encode("utf-8")
    if fmt == "json":
        return json.dumps(objs, ensure_ascii=False, indent=1).encode("utf-8")
    r = rows[0]
    return (
        f"Patient ID: {r['patient_id']}\nExam date: {r['recording_date']}\n\nBefund:\n{r['report']}\n"
    ).encode()


encoding_op = st.tuples(
    st.just("encoding"),
    st.sampled_from(["utf-16", "utf-16-le", "cp1252", "latin-1", "utf-8-sig", "bad-utf8"]),
)
field_op = st.tuples(
    st.just("field"),
    st.integers(0, N_ROWS - 1),
    st.sampled_from(["report", "patient_id", "recording_date", "ecg_id"]),
    st.sampled_from(FIELD_SIZES),
    st.sampled_from(FILLERS),
)
row_op = st.tuples(
    st.just("row"),
    st.sampled_from(
        ["drop_delim", "add_delim", "quote", "newline_in_field", "blank", "dup_header", "header"]
    ),
    st.integers(0, N_ROWS),
    FRAC,
)
json_op = st.tuples(st.just("json"), st.integers(0, N_ROWS - 1), st.sampled_from(JSON_VALUES), st.booleans())
line_end_op = st.tuples(st.just("line_ends"), st.sampled_from(["\r\n", "\r", "\n\n", "\x0b"]))
report_cases = st.tuples(
    st.sampled_from(FORMATS),
    st.lists(st.one_of(field_op, row_op, json_op, line_end_op), max_size=3),
    st.one_of(st.just(()), st.just(()), st.tuples(encoding_op)),
    st.one_of(st.just([]), st.just([]), st.lists(byte_op, min_size=1, max_size=2)),
    st.sampled_from(["fmt", "fmt", "fmt", "none", "txt"]),  # file suffix: the format's, none, .txt
)


def _edit(text: str, fmt: str, op: tuple) -> str:
    kind = op[0]
    lines = text.split("\n")
    if kind == "field":
        _, row, column, size, filler = op
        value = (filler * (size // max(len(filler), 1) + 1))[:size]
        if fmt in ("jsonl", "json"):
            objs = _json_objs(text, fmt)
            if objs is None:
                return text
            objs[row % len(objs)][column] = value
            return _json_dump(objs, fmt)
        if fmt == "txt":
            return text + value
        delim = "\t" if fmt == "tsv" else ","
        try:
            rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delim))
        except csv.Error:  # an earlier edit made a field longer than the csv module's limit
            return text
        if len(rows) < 2 or column not in rows[0]:
            return text
        target = rows[1 + row % (len(rows) - 1)]
        col = rows[0].index(column)
        if col < len(target):
            target[col] = value
        buf = io.StringIO()
        csv.writer(buf, delimiter=delim, lineterminator="\n").writerows(rows)
        return buf.getvalue()
    if kind == "row":
        _, how, row, frac = op
        i = row % len(lines)
        line = lines[i]
        p = frac * len(line) // 65536
        if how == "drop_delim":
            for d in (",", "\t"):
                j = line.find(d, p)
                if j != -1:
                    line = line[:j] + line[j + 1 :]
                    break
        elif how == "add_delim":
            line = line[:p] + ("\t" if fmt == "tsv" else ",") + line[p:]
        elif how == "quote":
            line = line[:p] + '"' + line[p:]
        elif how == "newline_in_field":
            line = line[:p] + '"\n"' + line[p:]
        elif how == "blank":
            lines.insert(i, "")
        elif how == "dup_header":
            lines.insert(i, lines[0])
        else:  # header: rename a column to empty / a duplicate / drop the text column's name
            head = lines[0].split("\t" if fmt == "tsv" else ",")
            j = frac % max(len(head), 1)
            head[j] = ("", head[0], "text_x")[frac % 3]
            lines[0] = ("\t" if fmt == "tsv" else ",").join(head)
            return "\n".join(lines)
        lines[i] = line
        return "\n".join(lines)
    if kind == "json":
        _, row, raw, as_line = op
        if fmt == "jsonl" and as_line:
            i = row % len(lines)
            lines[i] = raw
            return "\n".join(lines)
        key = '"report": '
        j = text.find(key)
        for _ in range(row):
            j = text.find(key, j + 1) if j != -1 else -1
        if j == -1:
            return text
        end = text.find('", "', j + len(key) + 1)
        return text[: j + len(key)] + raw + (text[end + 1 :] if end != -1 else "}")
    if kind == "line_ends":
        return text.replace("\n", op[1])
    raise ValueError(kind)


def _json_objs(text: str, fmt: str) -> list[dict] | None:
    try:
        objs = [json.loads(x) for x in text.splitlines() if x.strip()] if fmt == "jsonl" else json.loads(text)
    except (ValueError, RecursionError):
        return None
    return objs if isinstance(objs, list) and objs and all(isinstance(o, dict) for o in objs) else None


def _json_dump(objs: list[dict], fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs)
    return json.dumps(objs, ensure_ascii=False)


def _encode(text: str, encoding: str) -> bytes:
    if encoding == "bad-utf8":
        data = text.encode("utf-8")
        mid = len(data) // 2
        return data[:mid] + b"\xc3\x28\xff\xfe" + data[mid:]
    return text.encode(encoding, errors="replace")


def mutate_report(shared_data, case) -> tuple[str, bytes]:
    """(file name, bytes) of one case."""
    fmt, ops, encodings, byte_ops, naming = case
    text = render(shared_data, fmt).decode("utf-8")
    for op in ops:
        text = _edit(text, fmt, op)
    data = _encode(text, encodings[0][1]) if encodings else text.encode("utf-8", errors="surrogatepass")
    for op in byte_ops:
        data = apply_byte_op(data, op)
    suffix = {"fmt": SUFFIXES[fmt], "none": "", "txt": ".txt"}[naming]
    return f"export_QzxFuzz{suffix}", data


def _ctx():
    return fuzz_ctx(max_text_chars=MAX_TEXT)


def test_seeds_decode_unmutated(shared_data, tmp_path):
    """Control: every seed format decodes to report records only (one per row). A JSON array
    is left out: discovery sniffs it as a plain-text report, not as a table (reported)."""
    for fmt in dict.fromkeys(f for f in FORMATS if f != "json"):
        with CaseDir(tmp_path) as case:
            (case.folder / f"reports{SUFFIXES[fmt]}").write_bytes(render(shared_data, fmt))
            ((item, out),) = run_case("report-seeds", case.folder, _ctx())
        assert [type(r).__name__ for r in out] == ["ReportRecord"] * (1 if fmt == "txt" else N_ROWS), fmt


def test_fuzz_reports(shared_data, tmp_path):
    """Mutated real report exports: every row written or quarantined, never a crash or hang."""
    ctx = _ctx()
    before = reached("reports", InputKind.REPORT_TABLE) + reached("reports", InputKind.REPORT_TEXT)

    @fuzz_settings(reach=0.7)
    @given(case=report_cases)
    def one_case(case):
        name, data = mutate_report(shared_data, case)
        with CaseDir(tmp_path) as d:
            (d.folder / name).write_bytes(data)
            run_case("reports", d.folder, ctx)

    one_case()
    after = reached("reports", InputKind.REPORT_TABLE) + reached("reports", InputKind.REPORT_TEXT)
    assert after - before >= EXAMPLES
