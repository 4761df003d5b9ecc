"""The ported wfdb header parsers return exactly what wfdb's own return (values, types, errors)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import wfdb
from wfdb.io import _header

from workers.ecg import wfdb_header as fast

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ecg" / "wfdb"
HEADERS = sorted(DATA.rglob("*.hea"))


def _lines(path: Path) -> tuple[str, list[str]]:
    lines = [ln.strip() for ln in path.read_text(encoding="latin-1").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    return lines[0], lines[1:]


def _outcome(fn, arg):
    """(result, None) or (None, exception type and message)."""
    try:
        return fn(arg), None
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return None, (type(exc), str(exc))


def _same(a, b) -> None:
    assert a == b
    if isinstance(a, dict):  # equal *and* the same types (int 500 vs float 500.0 compare equal)
        for key in a:
            va, vb = a[key], b[key]
            pairs = zip(va, vb, strict=True) if isinstance(va, list) else [(va, vb)]
            assert all(type(x) is type(y) for x, y in pairs), key


def _mutations(line: str, rng: random.Random, n: int = 40) -> list[str]:
    """Variants of a header line: fields dropped, zeroed, made fractional or garbage."""
    out = []
    tokens = line.split(" ")
    for _ in range(n):
        t = list(tokens)
        i = rng.randrange(len(t))
        op = rng.randrange(6)
        if op == 0 and len(t) > 1:
            del t[i:]
        elif op == 1:
            t[i] = "0"
        elif op == 2:
            t[i] = t[i] + ".5"
        elif op == 3:
            t[i] = rng.choice(["x", "-", "(1)", "1/2", "/mV", "200(0)/uV", "16x2+24:3"])
        elif op == 4:
            t.append(rng.choice(["V1", "12:00:00", "01/02/2003", "12:00:00 01/02/2003"]))
        else:
            t[i] = t[i].upper()
        out.append(" ".join(t))
    return out


@pytest.mark.parametrize("path", HEADERS, ids=lambda p: p.name)
def test_sample_headers_parse_as_wfdb_does(path: Path) -> None:
    record_line, signal_lines = _lines(path)
    _same(fast.parse_record_line(record_line), fast._ORIGINAL["record"](record_line))
    _same(fast.parse_signal_lines(signal_lines), fast._ORIGINAL["signal"](signal_lines))


def test_mutated_lines_give_the_same_values_and_errors() -> None:
    rng = random.Random(7)
    compared = errors = 0
    for path in HEADERS:
        record_line, signal_lines = _lines(path)
        for line in _mutations(record_line, rng):
            got, want = _outcome(fast.parse_record_line, line), _outcome(fast._ORIGINAL["record"], line)
            assert got[1] == want[1], line
            if want[1] is None:
                _same(got[0], want[0])
            compared += 1
            errors += want[1] is not None
        for line in _mutations(signal_lines[0], rng):
            lines = [line, *signal_lines[1:]]
            got, want = _outcome(fast.parse_signal_lines, lines), _outcome(fast._ORIGINAL["signal"], lines)
            assert got[1] == want[1], line
            if want[1] is None:
                _same(got[0], want[0])
            compared += 1
            errors += want[1] is not None
    assert compared == 80 * len(HEADERS) and errors > 0  # both paths exercised


def test_install_makes_rdrecord_use_the_ports_with_identical_records() -> None:
    fast.uninstall()
    try:
        stock = [wfdb.rdrecord(str(p.with_suffix(""))).__dict__ for p in HEADERS]
        assert fast.install()
        assert _header._parse_signal_lines is fast.parse_signal_lines
        ported = [wfdb.rdrecord(str(p.with_suffix(""))).__dict__ for p in HEADERS]
    finally:
        fast.install()
    assert len(stock) == len(HEADERS) > 0
    for a, b in zip(stock, ported, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            va, vb = a[key], b[key]
            if hasattr(va, "shape"):
                assert (va == vb).all() and va.dtype == vb.dtype, key
            else:
                assert va == vb, key


def test_install_refuses_a_different_wfdb(monkeypatch: pytest.MonkeyPatch) -> None:
    fast.uninstall()
    try:
        monkeypatch.setitem(fast._PORTED_FROM, "signal", "00000000")
        assert not fast.install()
        assert _header._parse_signal_lines is fast._ORIGINAL["signal"]
    finally:
        monkeypatch.undo()
        fast.install()
