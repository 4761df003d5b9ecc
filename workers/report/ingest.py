"""Report ingest: CSV/TSV/JSONL exports (one report per row) and plain-text files.

Per report: decode bytes (BOM → UTF-8 → cp1252 → Latin-1), normalise (NFC, ``\\n`` line ends,
control characters dropped), de-identify (:func:`workers.deid.text.deidentify_text`, dates
shifted by the patient's offset), detect the language, structure with the rule path
(:func:`workers.report.rules.structure_with_rules`) and emit a :class:`schemas.ReportRecord` with
payload ``("txt", de-identified text)`` and ``("json", structured report)``. Bad rows become
:class:`schemas.QuarantineRecord`s (empty text, unparseable row, text over the limit); a table
that cannot be read at all raises ``QuarantineError(REPORT_TABLE_MALFORMED)``.

Column mapping (:class:`workers.config.ColumnMapping`): ``report_id``, ``patient_id``,
``study_id``, ``timestamp``, ``text`` (one or more columns; several are joined under their
upper-cased names as section headings, or with ``text_join: lines`` one value per line in column
order) and ``report_type`` (a column name, or else the literal type of every row); numeric
``ReportConfig.measurements`` (with their units) and ``fields`` of the row go to the report's
metadata; for plain-text files the named groups of ``ReportConfig.path_regex`` on the
file's path are the columns (MIMIC-CXR's ``p{subject}/s{study}.txt``). With the default mapping
and no ``text`` column, common column names (``report``, ``findings``/``impression``,
``patient_id``, ``accession``, ...) are recognised.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import unicodedata
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from schemas.canonical import canonical_json
from schemas.modality import Modality
from schemas.reasons import QuarantineError, ReasonCode
from schemas.records import DecodedRecord, InputItem, QuarantineRecord, ReportRecord, row_source_id
from schemas.report_schema import REPORT_SCHEMA_VERSION
from workers.config import ColumnMapping, ReportConfig
from workers.context import WorkerContext
from workers.deid.text import DEID_VERSION, deidentify_text
from workers.ids import normalise_id
from workers.report.nlp.lang import detect_language
from workers.report.nlp.pipeline import RULES_VERSION
from workers.report.rules import normalise_report_type, structure_with_rules

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BLANK_VALUES = frozenset({"", "nan", "none", "null", "na", "n/a"})

# ---------------------------------------------------------------------------------------------
# bytes → text


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode report bytes. Returns ``(text, encoding)``.

    Order: BOM (UTF-8/UTF-16) → strict UTF-8 → strict cp1252 → Latin-1 (never fails). Raises
    ``QuarantineError(REPORT_ENCODING)`` for binary content (NUL bytes outside UTF-16).
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise QuarantineError(ReasonCode.REPORT_ENCODING, "invalid UTF-16 text") from exc
    if b"\x00" in data:
        raise QuarantineError(ReasonCode.REPORT_ENCODING, "binary content (NUL bytes) in a text report")
    for enc in ("utf-8", "cp1252"):
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"


def normalise_text(text: str) -> tuple[str, list[str]]:
    """NFC, ``\\r\\n``/``\\r`` → ``\\n``, control characters removed, outer blanks stripped.

    Returns ``(text, steps)`` where ``steps`` names the normalisations that changed something.
    """
    steps = []
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        steps.append("line_endings_lf")
    nfc = unicodedata.normalize("NFC", text)
    if nfc != text:
        steps.append("unicode_nfc")
        text = nfc
    cleaned = _CONTROL.sub("", text)
    if cleaned != text:
        steps.append("control_chars_removed")
        text = cleaned
    return text.strip(), steps


# ---------------------------------------------------------------------------------------------
# timestamps

_TS_FORMATS = (
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y%m%d%H%M%S", "%Y%m%d",
    "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y",
    "%Y/%m/%d %H:%M:%S", "%Y/%m/%d",
)  # fmt: skip


def parse_timestamp(value: str) -> datetime | None:
    """Parse a report timestamp (ISO 8601, US, German, compact); timezone dropped; None if unparseable."""
    value = (value or "").strip()
    if not value or value.lower() in _BLANK_VALUES:
        return None
    try:
        dt = datetime.fromisoformat(value)
        return dt.replace(tzinfo=None)
    except ValueError:
        pass
    core = value.split(".")[0] if re.match(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d\.\d+$", value) else value
    for fmt in _TS_FORMATS:
        try:
            return datetime.strptime(core, fmt)
        except ValueError:
            continue
    return None


# ---------------------------------------------------------------------------------------------
# one report → record


@dataclass(frozen=True)
class ReportFields:
    """Raw fields of one report before de-identification (in memory only, never written)."""

    text: str
    patient_raw: str = ""
    study_raw: str = ""
    timestamp_raw: str = ""
    report_type: str = "radiology"
    known_identifiers: tuple[str, ...] = ()  # raw IDs/names of this record, scrubbed from the text


def _quarantine(item: InputItem, source_id: str, reason: ReasonCode, message: str) -> QuarantineRecord:
    return QuarantineRecord(
        source_id=source_id,
        source_name=item.source_name,
        modality=Modality.REPORT,
        stage="decode",
        reason=reason,
        message=message,
    )


def build_report_record(
    item: InputItem,
    ctx: WorkerContext,
    source_id: str,
    fields: ReportFields,
    meta: dict,
    patient: str | None = None,
    study: str | None = None,
    acquired_at: str | None = None,
) -> ReportRecord | QuarantineRecord:
    """De-identify, structure and package one report.

    ``patient``/``study`` pseudonyms and the *already shifted* ISO ``acquired_at`` may be given
    directly (DICOM SR, via ``dicom_identity``); otherwise they come from ``fields``.
    """
    text, steps = normalise_text(fields.text)
    if not text:
        return _quarantine(item, source_id, ReasonCode.REPORT_EMPTY, "report text is empty")
    if len(text) > ctx.limits.max_text_chars:
        return _quarantine(
            item, source_id, ReasonCode.LIMIT_EXCEEDED, "report text longer than limits.max_text_chars"
        )
    if patient is None:
        patient = ctx.pseudo.patient(normalise_id(fields.patient_raw))
    if study is None:
        study = ctx.pseudo.study(normalise_id(fields.study_raw))
    if acquired_at is None:
        acquired = parse_timestamp(fields.timestamp_raw)
        timestamp_state = (
            "absent" if not fields.timestamp_raw.strip() else ("parsed" if acquired else "unparseable")
        )
        acquired_at = ctx.pseudo.shift_datetime(acquired, patient).isoformat() if acquired else ""
    else:
        timestamp_state = "dicom" if acquired_at else "absent"

    known = tuple(
        v for v in (*fields.known_identifiers, fields.patient_raw, fields.study_raw) if len(v.strip()) >= 3
    )
    deid_text, counts = deidentify_text(text, patient, ctx.pseudo, known)
    language = detect_language(deid_text)
    report_type = normalise_report_type(fields.report_type)
    structured = structure_with_rules(deid_text, report_type, language)
    structured_json = canonical_json(structured)

    meta = {
        **meta,
        "text_steps": steps,
        "deid": {"method": DEID_VERSION, "replaced": counts, "date_shift": "per-patient"},
        "language": language,
        "language_method": "lexicon+langdetect(seed=0)",
        "report_type": report_type,
        "structurer": RULES_VERSION,
        "schema_version": REPORT_SCHEMA_VERSION,
        "timestamp": timestamp_state,
        "n_chars": len(deid_text),
    }
    source_ids = (source_id,)
    return ReportRecord(
        record_id=ctx.pseudo.record_id(source_ids),
        modality=Modality.REPORT,
        source_ids=source_ids,
        source_name=item.source_name,
        licence=item.licence,
        patient=patient,
        study=study,
        acquired_at=acquired_at,
        content_sha256=hashlib.sha256(deid_text.encode("utf-8")).hexdigest(),
        meta_json=canonical_json(meta),
        text=deid_text,
        language=language,
        report_type=report_type,
        structured_json=structured_json,
        payload=(("txt", deid_text.encode("utf-8")), ("json", structured_json.encode("utf-8"))),
    )


# ---------------------------------------------------------------------------------------------
# tables

_AUTO_TEXT = ("report", "report_text", "text", "note", "note_text", "befund", "befundtext", "findings_text")
_AUTO_SECTIONS = ("indication", "comparison", "findings", "impression")
_AUTO = {
    "patient_id": ("patient_id", "subject_id", "patientid", "mrn", "pid", "patient"),
    "study_id": ("study_id", "accession", "accession_number", "accessionnumber", "ecg_id", "studyid"),
    "timestamp": (
        "timestamp",
        "study_date",
        "recording_date",
        "report_date",
        "charttime",
        "date",
        "datetime",
    ),
    "report_id": ("report_id", "note_id", "uid", "id"),
}


@dataclass(frozen=True)
class _Columns:
    text: tuple[str, ...]
    patient_id: str
    study_id: str
    timestamp: str
    report_id: str
    report_type_column: str
    report_type_value: str
    auto: bool


def _resolve_columns(header: list[str], mapping: ColumnMapping, strict: bool = True) -> _Columns:
    """Resolve the mapping against a header. ``strict=False`` (JSON lines, whose objects may omit
    keys) accepts configured columns the first object lacks."""
    names = set(header)
    lower = {h.strip().lower(): h for h in header}
    auto = mapping.text == ColumnMapping().text and not any(c in names for c in mapping.text)
    if auto:
        text = next(((lower[c],) for c in _AUTO_TEXT if c in lower), ())
        if not text:
            text = tuple(lower[c] for c in _AUTO_SECTIONS if c in lower)
        if not text:
            raise QuarantineError(
                ReasonCode.REPORT_TABLE_MALFORMED, "no text column found in the table header"
            )

        def pick(field_name: str) -> str:
            configured = getattr(mapping, field_name)
            if configured:
                return configured if configured in names else ""
            return next((lower[c] for c in _AUTO[field_name] if c in lower), "")

        cols = {f: pick(f) for f in _AUTO}
    else:
        missing = [c for c in mapping.text if c not in names]
        if missing and (strict or len(missing) == len(mapping.text)):
            raise QuarantineError(
                ReasonCode.REPORT_TABLE_MALFORMED, f"text column(s) missing from the table header: {missing}"
            )
        text = tuple(mapping.text)
        cols = {}
        for f in _AUTO:
            configured = getattr(mapping, f)
            if configured and configured not in names and strict:
                raise QuarantineError(
                    ReasonCode.REPORT_TABLE_MALFORMED,
                    f"column {configured!r} ({f}) missing from the table header",
                )
            cols[f] = configured
    rt = mapping.report_type
    return _Columns(
        text=text,
        patient_id=cols["patient_id"],
        study_id=cols["study_id"],
        timestamp=cols["timestamp"],
        report_id=cols["report_id"],
        report_type_column=rt if rt in names else "",
        report_type_value=rt if rt not in names else "",
        auto=auto,
    )


def _value(row: dict, column: str) -> str:
    if not column:
        return ""
    v = row.get(column)
    if v is None:
        return ""
    s = (
        v
        if isinstance(v, str)
        else json.dumps(v, ensure_ascii=False)
        if isinstance(v, (dict, list))
        else str(v)
    )
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON escapes ("\\ud800"): replaced by "?"
        s = s.encode("utf-8", errors="replace").decode("utf-8")
    return "" if s.strip().lower() in _BLANK_VALUES else s


def compose_report_text(row: dict, text_columns: tuple[str, ...], join: str = "sections") -> str:
    """The report text of a row: one column as is; several joined as ``HEADING:\\nvalue`` blocks
    (the column name upper-cased, ``_`` → space) so the sectionizer finds the parts, or with
    ``join="lines"`` the non-empty values (outer blanks stripped) one per line, in column order."""
    if len(text_columns) == 1:
        return _value(row, text_columns[0])
    if join == "lines":
        return "\n".join(v for col in text_columns if (v := _value(row, col).strip()))
    blocks = []
    for col in text_columns:
        v = _value(row, col).strip()
        if v:
            blocks.append(f"{col.replace('_', ' ').strip().upper()}:\n{v}")
    return "\n\n".join(blocks)


def _table_format(path: str, text: str) -> str:
    suffix = Path(path).suffix.lower()
    first = text.lstrip()[:1]
    if suffix in (".jsonl", ".ndjson") or (first == "{" and suffix not in (".csv", ".tsv", ".txt")):
        return "jsonl"
    if first == "[" and suffix == ".json":
        return "json"
    if suffix in (".tsv", ".tab"):
        return "tsv"
    return "csv"


#: row error of a CSV field longer than the parser's field limit (a multiple of max_text_chars)
FIELD_TOO_LONG = "a field is longer than limits.max_text_chars allows"


class _Lines:
    """Lines of ``text`` for ``csv.reader``, with ``pos``: the offset just past the last line read.

    ``csv.reader`` asks for a line only when its current row needs one, so after it returns a
    row, ``pos`` is where the row ends: a boundary a part of the table can start at.
    """

    def __init__(self, text: str, base: int) -> None:
        self._lines = iter(io.StringIO(text, newline=""))
        self.pos = base

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.pos += len(line)
        return line


def _json_rows(text: str, first: int, stop: int):
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # also > 4300-digit integers, deep nesting
        raise QuarantineError(ReasonCode.REPORT_TABLE_MALFORMED, "JSON document is not valid JSON") from exc
    if not isinstance(data, list):
        raise QuarantineError(ReasonCode.REPORT_TABLE_MALFORMED, "JSON document is not a list of reports")
    for i, obj in enumerate(data[first:stop] if stop >= 0 else data[first:], start=first):
        yield (i, obj, "", 0) if isinstance(obj, dict) else (i, None, "JSON item is not an object", 0)


def _jsonl_rows(text: str, first: int, start: int, end: int):
    idx, pos = first, start
    for line in text[start:end].split("\n"):
        pos += len(line) + 1
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):  # also > 4300-digit integers, deep nesting
            yield idx, None, "JSONL line is not valid JSON", pos
        else:
            yield (
                (idx, obj, "", pos)
                if isinstance(obj, dict)
                else (idx, None, "JSONL line is not an object", pos)
            )
        idx += 1


def _csv_header(reader) -> list[str]:
    try:
        header = next(reader)
    except StopIteration as exc:
        raise QuarantineError(ReasonCode.REPORT_TABLE_MALFORMED, "table has no header row") from exc
    except csv.Error as exc:
        raise QuarantineError(ReasonCode.REPORT_TABLE_MALFORMED, "table header cannot be parsed") from exc
    header = [h.strip() for h in header]
    if len(header) < 1 or len(set(header)) != len(header) or not all(header):
        raise QuarantineError(
            ReasonCode.REPORT_TABLE_MALFORMED, "table header has empty or duplicate column names"
        )
    return header


def _csv_rows(text: str, fmt: str, max_field: int, row_range: tuple[int, ...]):
    if fmt == "tsv":
        delimiter = "\t"
    else:
        try:
            delimiter = csv.Sniffer().sniff(text[:65536], delimiters=",\t;|").delimiter
        except csv.Error:
            delimiter = ","
    csv.field_size_limit(max(csv.field_size_limit(), max_field))
    lines = _Lines(text, 0)
    reader = csv.reader(lines, delimiter=delimiter)
    header = _csv_header(reader)
    yield -1, {"__header__": header}, "", lines.pos
    idx = 0
    if row_range:  # a part: its rows only, parsed from its first character
        idx, _, start, end = row_range
        lines = _Lines(text[start:end], start)
        reader = csv.reader(lines, delimiter=delimiter)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield (
                idx,
                None,
                FIELD_TOO_LONG if "field limit" in str(exc) else "row cannot be parsed as CSV",
                -1,
            )
            idx += 1
            continue
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header) and not (
            len(row) > len(header) and not any(c.strip() for c in row[len(header) :])
        ):
            yield idx, None, "row has a different number of fields than the header", lines.pos
        else:
            yield idx, dict(zip(header, row[: len(header)], strict=True)), "", lines.pos
        idx += 1


def _rows(text: str, fmt: str, max_field: int, row_range: tuple[int, ...] = ()):
    """Yield ``(row_index, row_dict | None, error, end)`` over the data rows (of ``row_range``
    only, when given: see ``InputItem.row_range``); raises for a bad table.

    ``end``: the character offset just past the row, where a part of the table may start (``0``
    for a JSON array, whose parts are cut by row index; ``-1`` after a row the CSV parser
    rejected). A CSV table yields ``(-1, {"__header__": [...]}, "", end of the header)`` first.
    """
    first, stop, start, end = row_range or (0, -1, 0, len(text))
    if fmt == "json":
        yield from _json_rows(text, first, stop)
    elif fmt == "jsonl":
        yield from _jsonl_rows(text, first, start, end)
    else:
        yield from _csv_rows(text, fmt, max_field, row_range)


#: column names whose values are identifiers: scrubbed from the row's text wherever they occur
_IDENTIFYING_COLUMN = re.compile(
    r"name|mrn|address|street|city|zip|postcode|phone|fax|email|e-mail|birth|dob|physician|doctor|"
    r"accession|ssn|insurance|account|nurse_name|signed|author",
    re.IGNORECASE,
)


def _identifying_values(row: dict, columns: _Columns) -> tuple[str, ...]:
    """Raw values of the identity columns and of columns named like identifiers (not the text)."""
    out = [_value(row, c) for c in (columns.patient_id, columns.study_id, columns.report_id) if c]
    for col in row:
        if col not in columns.text and _IDENTIFYING_COLUMN.search(str(col)):
            out.append(_value(row, col))
    return tuple(v for v in out if v.strip())


def _number(raw: str, missing: frozenset[str]) -> int | float | None:
    """A measurement value: an int when integral, a float otherwise; None when blank, listed as
    missing, not a number or not finite."""
    raw = raw.strip()
    if not raw or raw in missing:
        return None
    try:
        v = float(raw)
    except ValueError:
        return None
    if not math.isfinite(v):
        return None
    return int(v) if v.is_integer() and abs(v) < 2**53 else v


def row_extras(row: dict, cfg: ReportConfig) -> dict:
    """A row's ``measurements`` (column → ``{"value", "unit"}``) and ``fields`` (column → text)."""
    out: dict = {}
    if cfg.measurements:
        missing = frozenset(str(m).strip() for m in cfg.measurement_missing)
        out["measurements"] = {
            col: {"value": _number(_value(row, col), missing), "unit": str(unit)}
            for col, unit in cfg.measurements.items()
        }
    if cfg.fields:
        out["fields"] = {col: _value(row, col).strip() for col in cfg.fields}
    return out


def _check_extra_columns(header: list[str], cfg: ReportConfig) -> None:
    missing = sorted(c for c in (*cfg.measurements, *cfg.fields) if c not in header)
    if missing:
        raise QuarantineError(
            ReasonCode.REPORT_TABLE_MALFORMED,
            f"measurement/field column(s) missing from the table header: {missing}",
        )


def _read_table(item: InputItem) -> tuple[str, str, str]:
    """``(text, encoding, format)`` of a report table; text newline-normalised."""
    try:
        data = Path(item.path).read_bytes()
    except OSError as exc:
        raise QuarantineError(ReasonCode.UNREADABLE_FILE, "report table could not be read") from exc
    if not data.strip():
        raise QuarantineError(ReasonCode.REPORT_EMPTY, "report table is empty")
    text, encoding = decode_bytes(data)
    del data
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text, encoding, _table_format(item.path, text)


def _first_object_columns(text: str, fmt: str, ctx: WorkerContext) -> _Columns | None:
    """JSON/JSONL: the columns of the table's first object (as the whole-table decode sees them)."""
    for _idx, row, _error, _end in _rows(text, fmt, ctx.limits.max_text_chars * 4 + 1024):
        if row is not None:
            return _resolve_columns(list(row.keys()), ctx.report.columns, strict=False)
    return None


def decode_report_table(item: InputItem, ctx: WorkerContext) -> list[DecodedRecord]:
    """One :class:`ReportRecord` or :class:`QuarantineRecord` per data row of a report table
    (of ``item.row_range`` only, for a part: :func:`plan_table_parts`).

    Source id of row ``i``: :func:`row_source_id`. A part decodes exactly the records the
    whole-table decode gives for its rows. A table-level fault (unreadable, malformed header) is
    quarantined once, by the table's first part; the other parts then return nothing.
    """
    try:
        return _decode_table(item, ctx)
    except QuarantineError:
        if item.row_range and item.row_range[0] > 0:
            return []
        raise


def _decode_table(item: InputItem, ctx: WorkerContext) -> list[DecodedRecord]:
    text, encoding, fmt = _read_table(item)
    columns: _Columns | None = None
    if item.row_range and fmt in ("json", "jsonl"):
        columns = _first_object_columns(text, fmt, ctx)
    out: list[DecodedRecord] = []
    for idx, row, error, _end in _rows(text, fmt, ctx.limits.max_text_chars * 4 + 1024, item.row_range):
        if idx == -1:
            columns = _resolve_columns(row["__header__"], ctx.report.columns)
            _check_extra_columns(row["__header__"], ctx.report)
            continue
        source_id = row_source_id(item.source_id, idx)
        if row is None:
            reason = ReasonCode.LIMIT_EXCEEDED if error == FIELD_TOO_LONG else ReasonCode.REPORT_UNPARSEABLE
            out.append(_quarantine(item, source_id, reason, error))
            continue
        if columns is None:  # JSON/JSONL: the header is the union of the first object's keys
            columns = _resolve_columns(list(row.keys()), ctx.report.columns, strict=False)
        if not any(c in row for c in columns.text):
            out.append(
                _quarantine(item, source_id, ReasonCode.REPORT_UNPARSEABLE, "row lacks the text column(s)")
            )
            continue
        out.append(_table_row_record(item, ctx, source_id, idx, row, columns, fmt, encoding))
    if columns is None and not item.row_range:
        raise QuarantineError(ReasonCode.REPORT_TABLE_MALFORMED, "table has no rows")
    return out


def _table_row_record(
    item: InputItem,
    ctx: WorkerContext,
    source_id: str,
    idx: int,
    row: dict,
    columns: _Columns,
    fmt: str,
    encoding: str,
) -> DecodedRecord:
    fields = ReportFields(
        text=compose_report_text(row, columns.text, ctx.report.columns.text_join),
        patient_raw=_value(row, columns.patient_id),
        study_raw=_value(row, columns.study_id),
        timestamp_raw=_value(row, columns.timestamp),
        report_type=_value(row, columns.report_type_column) or columns.report_type_value,
        known_identifiers=_identifying_values(row, columns),
    )
    meta = {
        "decoder": "report_table",
        "source_format": fmt,
        "encoding": encoding,
        "row_index": idx,
        "text_columns": list(columns.text),
        "column_mapping": "auto" if columns.auto else "config",
        **row_extras(row, ctx.report),
    }
    if columns.report_id:
        rid = normalise_id(_value(row, columns.report_id))
        meta["report_key"] = ctx.pseudo.token("report", rid) if rid else ""
    return build_report_record(item, ctx, source_id, fields, meta)


def plan_table_parts(item: InputItem, max_text_chars: int, rows_per_part: int) -> list[InputItem]:
    """A report table as row-range parts of at most ``rows_per_part`` data rows (one decode task
    each, so a 10^5-row table is neither one long task nor one task's memory), or ``[item]``.

    Reads and parses the table once (no de-identification, no NLP: ~1 % of decoding it). A
    table that cannot be parsed, or that fits one part, stays whole: its decode says what is
    wrong with it. CSV parts start only where a row the parser accepted ends.
    """
    if rows_per_part <= 0:
        return [item]
    try:
        text, _encoding, fmt = _read_table(item)
        cuts = [(0, 0)]  # (first row, first character) of each part
        n, objects = 0, 0
        for idx, row, _error, end in _rows(text, fmt, max_text_chars * 4 + 1024):
            if idx < 0:  # a CSV header: the first part starts after it
                cuts = [(0, end)]
                continue
            n, objects = idx + 1, objects + (row is not None)
            if n - cuts[-1][0] >= rows_per_part and end >= 0:
                cuts.append((n, end))
    except QuarantineError:
        return [item]
    if cuts[-1][0] == n:
        cuts.pop()  # the last cut fell on the last row: nothing after it
    if len(cuts) < 2 or not objects:  # one part; or no row at all, which fails the whole table
        return [item]
    bounds = [*cuts, (n, len(text))]
    return [
        replace(item, row_range=(r0, r1, c0 if fmt != "json" else 0, c1 if fmt != "json" else 0))
        for (r0, c0), (r1, c1) in zip(bounds, bounds[1:], strict=False)
    ]


# ---------------------------------------------------------------------------------------------
# plain text

_HEADER_FIELDS = {
    "patient": re.compile(
        r"^[ \t]*(?:patient[ \t]*id|mrn|medical[ \t]+record[ \t]+(?:number|no\.?)|pid|patienten-?(?:id|nummer|nr\.?))"
        r"[ \t]*[:=#][ \t]*(?P<v>[A-Za-z0-9][A-Za-z0-9./-]*)",
        re.IGNORECASE | re.MULTILINE,
    ),
    "study": re.compile(
        r"^[ \t]*(?:accession(?:[ \t]*(?:number|no\.?|#))?|study[ \t]*id|auftrags?-?(?:nummer|nr\.?))"
        r"[ \t]*[:=#][ \t]*(?P<v>[A-Za-z0-9][A-Za-z0-9./-]*)",
        re.IGNORECASE | re.MULTILINE,
    ),
    "timestamp": re.compile(
        r"^[ \t]*(?:exam(?:ination)?[ \t]+date|study[ \t]+date|report[ \t]+date|date(?:[ \t]+of[ \t]+(?:exam|study|service))?"
        r"|datum|untersuchungsdatum)[ \t]*[:=][ \t]*(?P<v>[0-9][0-9./: T-]{5,})",
        re.IGNORECASE | re.MULTILINE,
    ),
}


#: identity fields of a text report → the column-mapping field that names their path group
_PATH_FIELDS = {"patient": "patient_id", "study": "study_id", "timestamp": "timestamp", "report": "report_id"}


def path_identity(path: str, path_regex: str, mapping: ColumnMapping) -> dict[str, str] | None:
    """Identity of a text report from its path (``ReportConfig.path_regex``).

    The regex's named groups are the report's columns: ``mapping`` picks the patient, study,
    timestamp and report id among them (a configured column name, else the first table auto
    name present, e.g. ``subject_id``). Returns ``{"patient", "study", "timestamp", "report"}``
    (``""`` where no group gives it), or ``None`` when the path does not match.
    """
    m = re.search(path_regex, Path(path).as_posix())
    if m is None:
        return None
    groups = {k: v or "" for k, v in m.groupdict().items()}
    lower = {k.lower(): k for k in groups}
    out = {}
    for key, field_name in _PATH_FIELDS.items():
        column = getattr(mapping, field_name) or next((lower[c] for c in _AUTO[field_name] if c in lower), "")
        out[key] = groups.get(column, "").strip()
    return out


def decode_report_text(item: InputItem, ctx: WorkerContext) -> list[DecodedRecord]:
    """One plain-text report per file.

    Identity comes from the file's path when ``ctx.report.path_regex`` is set (a path that
    does not match is quarantined ``no_metadata``), then from header lines for what the path
    does not give (``Patient ID:``/``MRN:``, ``Accession:``, ``Exam date:``); otherwise the
    report has no patient (``""``) and no time. The report type is
    ``ctx.report.columns.report_type`` (a literal for text files).
    """
    from_path: dict[str, str] = {}
    if ctx.report.path_regex:
        got = path_identity(item.path, ctx.report.path_regex, ctx.report.columns)
        if got is None:
            raise QuarantineError(ReasonCode.NO_METADATA, "file path does not match report.path_regex")
        from_path = got
    try:
        data = Path(item.path).read_bytes()
    except OSError as exc:
        raise QuarantineError(ReasonCode.UNREADABLE_FILE, "report file could not be read") from exc
    if len(data) > ctx.limits.max_text_chars * 4:
        raise QuarantineError(
            ReasonCode.LIMIT_EXCEEDED, "report file larger than limits.max_text_chars allows"
        )
    text, encoding = decode_bytes(data)
    head = text[:4000]
    found = {k: (m.group("v").strip() if (m := rx.search(head)) else "") for k, rx in _HEADER_FIELDS.items()}
    ident = {k: from_path.get(k) or found.get(k, "") for k in ("patient", "study", "timestamp")}
    fields = ReportFields(
        text=text,
        patient_raw=ident["patient"],
        study_raw=ident["study"],
        timestamp_raw=ident["timestamp"],
        report_type=ctx.report.columns.report_type,
        # identifiers the fields do not carry (a path's report id, a header's overridden ids)
        known_identifiers=tuple(
            v for v in (from_path.get("report", ""), found["patient"], found["study"]) if v
        ),
    )
    meta = {
        "decoder": "report_text",
        "source_format": "text",
        "encoding": encoding,
        "identity_from_header": sorted(k for k, v in found.items() if v and not from_path.get(k)),
    }
    if ctx.report.path_regex:
        meta["identity_from_path"] = sorted(k for k, v in from_path.items() if v)
    if from_path.get("report"):
        meta["report_key"] = ctx.pseudo.token("report", normalise_id(from_path["report"]))
    rec = build_report_record(item, ctx, item.source_id, fields, meta)
    if isinstance(rec, QuarantineRecord):
        raise QuarantineError(rec.reason, rec.message)
    return [rec]
