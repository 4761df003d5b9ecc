"""wfdb's header-line parsers without per-field pandas lookups (same results, ~20× faster).

``wfdb.rdheader`` (wfdb 4.x) parses each record and signal line with
``wfdb.io._header._parse_record_line`` / ``_parse_signal_lines``, which look up every field's
read default and type in the ``RECORD_SPECS`` / ``SIGNAL_SPECS`` DataFrames with ``.loc``:
14 fields × 12 channels ≈ 170 ``.loc`` calls, ~3 ms per 12-lead header, more than reading
its signal. The functions here are line-for-line ports of wfdb's that read the two spec tables
once into dicts; :func:`install` puts them in place of wfdb's (``rdheader`` calls them through
the module attribute). ``tests/workers/ecg/test_wfdb_header.py`` checks that they return
exactly what wfdb's own return, for every header in the sample data and for mutated lines,
errors included. Installation is refused (wfdb's parsers stay) when wfdb's functions are not
the ones these were ported from (a changed signature or spec table): a newer wfdb is never
silently mis-parsed.
"""

from __future__ import annotations

import datetime
import hashlib
import inspect
import logging
from typing import Any

from wfdb.io import _header
from wfdb.io.header import HeaderSyntaxError, rx_record, rx_signal

log = logging.getLogger(__name__)

#: the spec columns the ports read, per field: (read_default, allowed_types)
_RECORD = {
    f: (_header.RECORD_SPECS.loc[f, "read_default"], _header.RECORD_SPECS.loc[f, "allowed_types"])
    for f in _header.RECORD_SPECS.index
}
_SIGNAL = {
    f: (_header.SIGNAL_SPECS.loc[f, "read_default"], _header.SIGNAL_SPECS.loc[f, "allowed_types"])
    for f in _header.SIGNAL_SPECS.index
}
_RECORD_FIELDS = (
    "record_name",
    "n_seg",
    "n_sig",
    "fs",
    "counter_freq",
    "base_counter",
    "sig_len",
    "base_time",
    "base_date",
)
_SIGNAL_FIELDS = (
    "file_name",
    "fmt",
    "samps_per_frame",
    "skew",
    "byte_offset",
    "adc_gain",
    "baseline",
    "units",
    "adc_res",
    "adc_zero",
    "init_value",
    "checksum",
    "block_size",
    "sig_name",
)
_ORIGINAL = {"record": _header._parse_record_line, "signal": _header._parse_signal_lines}


def parse_record_line(record_line: str) -> dict:
    """``wfdb.io._header._parse_record_line``: record-line fields, typed, defaults filled."""
    match = rx_record.match(record_line)
    if match is None:
        raise HeaderSyntaxError("invalid syntax in record line")
    fields: dict[str, Any] = dict(zip(_RECORD_FIELDS, match.groups(), strict=True))
    for field in _RECORD_FIELDS:
        default, types = _RECORD[field]
        if fields[field] == "":
            fields[field] = default
        elif types == _header.int_types:
            fields[field] = int(fields[field])
        elif types == _header.float_types:
            fs = float(fields[field])
            if field == "fs" and round(fs, 8) == float(int(fs)):  # cast fs to an int if it is close
                fs = int(fs)
            fields[field] = fs
        elif field == "base_time":
            fields[field] = _header.wfdb_strptime(fields[field])
        elif field == "base_date":
            fields[field] = datetime.datetime.strptime(fields[field], "%d/%m/%Y").date()
    if fields["base_date"] and fields["base_time"]:
        fields["base_datetime"] = datetime.datetime.combine(fields["base_date"], fields["base_time"])
    return fields


def parse_signal_lines(signal_lines: list[str]) -> dict[str, list]:
    """``wfdb.io._header._parse_signal_lines``: per-field lists over the channels."""
    n_sig = len(signal_lines)
    fields: dict[str, list] = {f: n_sig * [None] for f in _header.SIGNAL_SPECS.index}
    for ch in range(n_sig):
        match = rx_signal.match(signal_lines[ch])
        if match is None:
            raise HeaderSyntaxError("invalid syntax in signal line")
        for field, value in zip(_SIGNAL_FIELDS, match.groups(), strict=True):
            fields[field][ch] = value
        for field in _SIGNAL:
            default, types = _SIGNAL[field]
            value = fields[field][ch]
            if value == "":
                fields[field][ch] = default
                if field == "baseline" and fields["adc_zero"][ch] != "":  # missing baseline: ADCzero
                    fields["baseline"][ch] = int(fields["adc_zero"][ch])
            elif types is _header.int_types:
                fields[field][ch] = int(value)
            elif types is _header.float_types:
                fields[field][ch] = float(value)
                if field == "adc_gain" and fields["adc_gain"][ch] == 0:  # adc_gain 0 means 200
                    fields["adc_gain"][ch] = 200.0
    return fields


#: sha256 prefix of the source of the functions these port (wfdb 4.3.1); any other source, as
#: in another wfdb release: wfdb's own parsers are kept
_PORTED_FROM = {"record": "c3ccc840", "signal": "4689749a"}


def _source_tag(fn) -> str:
    try:
        return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:8]
    except (OSError, TypeError):
        return ""


def install() -> bool:
    """Put the ports in place of wfdb's parsers (idempotent). False when wfdb's differ from the
    ported versions (then wfdb's own parsers keep running)."""
    if _header._parse_signal_lines is parse_signal_lines:
        return True
    tags = {name: _source_tag(fn) for name, fn in _ORIGINAL.items()}
    specs = (tuple(_header.RECORD_SPECS.index), tuple(_header.SIGNAL_SPECS.index))
    if tags != _PORTED_FROM or specs != (_RECORD_FIELDS, _SIGNAL_FIELDS):
        log.info("wfdb header parsers differ from the ported version: using wfdb's own")
        return False
    _header._parse_record_line = parse_record_line
    _header._parse_signal_lines = parse_signal_lines
    return True


def uninstall() -> None:
    """Restore wfdb's own parsers."""
    _header._parse_record_line = _ORIGINAL["record"]
    _header._parse_signal_lines = _ORIGINAL["signal"]
