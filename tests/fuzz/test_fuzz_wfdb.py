"""Fuzz the WFDB path (``workers.ecg.wfdb.decode_wfdb``): header text and signal files.

Seeds are the real records of ``shared/data/ecg/wfdb``: PTB-XL 100 Hz (format 16), PTB-XL 500 Hz
in CinC form (MATLAB v4 ``.mat``, ``16x1+24``), PTB (15 channels over ``.dat`` + ``.xyz``) and the
first 20 s of MIT-BIH 100 (format 212, a comment before the record line, a blank line between
signal lines). Mutations: record-line fields (signal count, rate, counter frequency, length up to
billions of samples, base time/date), signal-line fields (file name incl. missing/own/traversal
names, format with samples-per-frame/skew/byte offset, gain/baseline/units, ADC fields, lead
name), deleted/duplicated/swapped signal lines, multi-segment layouts (missing, gap and
self-referencing segments), comment lines (NUL, non-UTF-8, 100 kB, identifiers), line endings
and encodings, and generic byte edits of the header and of each signal file (or its deletion).
"""

from __future__ import annotations

import re
from functools import cache

from hypothesis import given
from hypothesis import strategies as st

from schemas.records import InputKind
from tests.fuzz.harness import EXAMPLES, CaseDir, fuzz_ctx, fuzz_settings, reached, run_case
from tests.fuzz.mutate import apply_byte_op, byte_op

#: name → (folder in shared/data/ecg/wfdb, record name, frames kept: None = all)
SEEDS = {
    "ptbxl_100hz": ("ptbxl_100hz", "00001_lr", None),
    "cinc_mat": ("ptbxl_500hz_cinc2021", "HR06000", None),
    "ptb_15ch": ("ptbdb_s0010_re", "s0010_re", None),
    "mitdb_20s": ("mitdb_100", "100", 7200),
}
SEED_DRAW = ["ptbxl_100hz", "ptbxl_100hz", "cinc_mat", "cinc_mat", "ptb_15ch", "mitdb_20s", "mitdb_20s"]

#: record-line fields after the name: signal count, rate (/counter frequency(base)), length,
#: base time, base date; candidate values per field
RECORD_VALUES = (
    ("0", "1", "2", "11", "13", "100", "100000", "-1", "x", str(2**40)),
    ("0", "-1", "0.001", "1", "50", "1e6", "2e8", "1e308", "nan", "inf", "500/0", "500/1000(5)", "abc"),
    ("0", "1", "10", "5000", "1000000", str(2**31), "5000000000", "-5", "x", "1e3"),
    ("25:61:61", "0:0:0", "12:00:00.5", "x", "99:99"),
    ("01/01/0001", "31/12/9999", "32/13/2020", "x", "29/02/2023"),
)
#: draw order of the fields (small indices are drawn most often; the signal count is the field
#: whose bad values make discovery see no WFDB header at all, so it comes last)
RECORD_FIELD_ORDER = (2, 1, 4, 3, 0)
FILE_NAMES = ("missing.dat", "~", "../../etc/passwd", "{rec}.hea", "{rec}.dat", "{rec}.mat", "", "a b.dat")
FORMATS = ("16", "212", "310", "311", "8", "80", "160", "24", "32", "61", "508", "516", "524", "0", "999")
FORMATS += ("16x0", "16x100000", "16+999999999", "16+-5", "16:3", "16x1+24", "212x2", "x")
GAINS = ("0", "-200", "nan", "inf", "1e308", "200(0)/mV", "200(99999)/uV", "200/V", "200/mmHg", "x/mV")
GAINS += ("200(-1)", "1e-300/mV", "200(0)/", "()")
ADC = ("0", "12", "16", "64", "-1", "99", "x", str(2**40))
LEADS = ("I", "II", "aVF", "V7", "", "MLII", "Ableitung-Ü", "X" * 300, "I I", "avl")
COMMENTS = (
    b"# Patient ID: QZX1234567",
    b"# Age: 200",
    b"# Sex: ?",
    b"# Dx: ,,,,",
    b"# \x00\x00\x00",
    b"# \xff\xfe\xc3\x28 bad bytes",
    b"# " + b"y" * 100_000,
    b"# Recorded: 01/02/2003 Dr. Brumbleforth",
    b"#" * 3,
)


@cache
def seed_files(shared_data, name: str) -> tuple[tuple[str, bytes], ...]:
    """(file name, bytes) of a seed record: header first, then its companion files."""
    folder, rec, frames = SEEDS[name]
    base = shared_data / "ecg" / "wfdb" / folder
    header = (base / f"{rec}.hea").read_bytes()
    files = sorted(p for p in base.iterdir() if p.name.split(".")[0] == rec and p.suffix != ".hea")
    out = []
    for p in files:
        data = p.read_bytes()
        if frames is not None and p.suffix == ".dat":  # 212, 2 signals: 3 bytes per frame
            data = data[: frames * 3]
        out.append((p.name, data))
    if frames is not None:
        header = re.sub(rb"^(100 2 360) \d+", rb"\g<1> %d" % frames, header, count=1, flags=re.M)
    return ((f"{rec}.hea", header), *out)


record_op = st.tuples(st.just("record"), st.sampled_from(RECORD_FIELD_ORDER), st.integers(0, 15))
signal_op = st.tuples(
    st.just("signal"),
    st.integers(0, 15),  # which signal line
    st.sampled_from(["file", "fmt", "gain", "adc_res", "adc_zero", "init", "checksum", "block", "lead"]),
    st.integers(0, 31),
)
line_op = st.tuples(
    st.just("lines"), st.sampled_from(["delete", "duplicate", "swap", "comment", "blank"]), st.integers(0, 15)
)
segment_op = st.tuples(st.just("segments"), st.sampled_from(["missing", "gap", "self", "layout0"]))
encoding_op = st.tuples(
    st.just("encoding"), st.sampled_from(["crlf", "cr", "latin1", "utf16", "bom", "tabs"])
)
signal_file_op = st.tuples(
    st.just("signal_file"), st.integers(0, 3), st.one_of(byte_op, st.just(("remove",)))
)
wfdb_cases = st.tuples(
    st.sampled_from(SEED_DRAW),
    st.lists(st.one_of(record_op, signal_op, signal_op, line_op, segment_op, encoding_op), max_size=4),
    st.lists(signal_file_op, max_size=2),
    st.one_of(
        st.just([]), st.just([]), st.just([]), st.lists(byte_op, min_size=1, max_size=1)
    ),  # header bytes
    st.integers(0, 3),  # 0: they may touch the record name too (discovery then sees no WFDB header)
)


def _lines(header: bytes) -> tuple[list[str], int, list[int]]:
    """Header lines, the index of the record line (-1: none), and the indices of the signal lines."""
    lines = header.decode("latin-1").split("\n")
    content = [i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")]
    return lines, (content[0] if content else -1), content[1:]


def _edit_header(header: bytes, rec: str, op: tuple) -> bytes:
    lines, rec_i, sig_is = _lines(header)
    kind = op[0]
    if rec_i < 0 and kind in ("record", "segments", "lines"):
        return header
    if kind == "record":
        _, field, choice = op
        tokens = lines[rec_i].split()
        values = RECORD_VALUES[field]
        while len(tokens) < field + 2:
            tokens.append("0")
        tokens[field + 1] = values[choice % len(values)]
        lines[rec_i] = " ".join(tokens)
    elif kind == "signal" and sig_is:
        _, which, field, choice = op
        i = sig_is[which % len(sig_is)]
        tokens = lines[i].split()
        while len(tokens) < 9:
            tokens.append("0")
        idx = {"file": 0, "fmt": 1, "gain": 2, "adc_res": 3, "adc_zero": 4, "init": 5}.get(field)
        idx = {"checksum": 6, "block": 7, "lead": 8}.get(field, idx)
        pool = {
            "file": tuple(n.format(rec=rec) for n in FILE_NAMES),
            "fmt": FORMATS,
            "gain": GAINS,
            "lead": LEADS,
        }.get(field, ADC)
        tokens[idx] = pool[choice % len(pool)]
        lines[i] = " ".join(tokens)
    elif kind == "lines":
        _, how, which = op
        if how == "comment":
            return "\n".join(lines).encode("latin-1") + b"\n" + COMMENTS[which % len(COMMENTS)] + b"\n"
        if how == "blank":
            lines.insert(rec_i + 1, "")
        elif sig_is:
            i = sig_is[which % len(sig_is)]
            if how == "delete":
                del lines[i]
            elif how == "duplicate":
                lines.insert(i, lines[i])
            else:
                j = sig_is[(which + 1) % len(sig_is)]
                lines[i], lines[j] = lines[j], lines[i]
    elif kind == "segments":
        tokens = lines[rec_i].split()
        n = tokens[3] if len(tokens) > 3 else "1000"
        seg = {
            "missing": f"{rec}_seg1 {n}",
            "gap": f"~ {n}",
            "self": f"{rec} {n}",
            "layout0": f"{rec}_layout 0",
        }
        lines[rec_i] = f"{tokens[0]}/2 " + " ".join(tokens[1:])
        lines[rec_i + 1 : len(lines)] = [seg[op[1]], f"~ {n}"]
    elif kind == "encoding":
        text = "\n".join(lines)
        how = op[1]
        if how == "utf16":
            return text.encode("utf-16")
        if how == "bom":
            return b"\xef\xbb\xbf" + text.encode("latin-1")
        if how == "latin1":
            return text.replace("I", "\xcf").encode("latin-1")
        sep = {"crlf": "\r\n", "cr": "\r", "tabs": "\n"}[how]
        text = text.replace(" ", "\t") if how == "tabs" else text
        return text.replace("\n", sep).encode("latin-1")
    return "\n".join(lines).encode("latin-1")


def mutate_wfdb(shared_data, case) -> list[tuple[str, bytes | None]]:
    """The case's files: ``(name, bytes)``; ``None`` bytes: the file is left out."""
    name, header_ops, file_ops, header_bytes_ops, touch_name = case
    files = [list(f) for f in seed_files(shared_data, name)]
    rec = files[0][0][: -len(".hea")]
    header = files[0][1]
    for op in sorted(header_ops, key=lambda op: op[0] == "encoding"):  # re-encoding last
        header = _edit_header(header, rec, op)
    keep = 0 if touch_name == 0 else header.find(rec.encode()) + len(rec) + 1
    head, body = header[:keep], header[keep:]
    for op in header_bytes_ops:
        body = apply_byte_op(body, op)
    header = head + body
    files[0][1] = header
    signal_files = files[1:]
    for _, which, op in file_ops:
        target = signal_files[which % len(signal_files)]
        if op == ("remove",):
            target[1] = None
        elif target[1] is not None:
            target[1] = apply_byte_op(target[1], op)
    return [tuple(f) for f in files]


def _write(folder, files) -> None:
    for fname, data in files:
        if data is not None:
            (folder / fname).write_bytes(data)


def test_seeds_decode_unmutated(shared_data, tmp_path):
    """Control: every seed record decodes to one ECG record."""
    ctx = fuzz_ctx()
    for name in SEEDS:
        with CaseDir(tmp_path) as case:
            _write(case.folder, seed_files(shared_data, name))
            results = run_case("wfdb-seeds", case.folder, ctx)
        wfdb = [out for item, out in results if item.kind is InputKind.WFDB]
        assert len(wfdb) == 1 and [type(r).__name__ for r in wfdb[0]] == ["EcgRecord"], name


def test_fuzz_wfdb(shared_data, tmp_path):
    """Mutated real WFDB records: decoded or quarantined, never a crash, never a hang."""
    ctx = fuzz_ctx()
    before = reached("wfdb", InputKind.WFDB)

    @fuzz_settings(reach=0.65)
    @given(case=wfdb_cases)
    def one_case(case):
        files = mutate_wfdb(shared_data, case)
        with CaseDir(tmp_path) as d:
            _write(d.folder, files)
            run_case("wfdb", d.folder, ctx)

    one_case()
    assert reached("wfdb", InputKind.WFDB) - before >= EXAMPLES


def test_billions_of_samples_in_the_window_are_a_limit(shared_data, tmp_path):
    """The mutators reach the limits: 5e9 samples at 2e8 Hz put 2e9 samples per lead in the window."""
    files = seed_files(shared_data, "ptbxl_100hz")
    header = _edit_header(files[0][1], "00001_lr", ("record", 1, RECORD_VALUES[1].index("2e8")))
    header = _edit_header(header, "00001_lr", ("record", 2, RECORD_VALUES[2].index("5000000000")))
    with CaseDir(tmp_path) as d:
        _write(d.folder, [(files[0][0], header), *files[1:]])
        results = run_case("wfdb-controls", d.folder, fuzz_ctx())
    ((_, out),) = [r for r in results if r[0].kind is InputKind.WFDB]
    assert [r.reason.value for r in out] == ["limit_exceeded"]
