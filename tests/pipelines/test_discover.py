"""Content-based discovery on real sample files (many have no extension)."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from pipelines.config import SourceConfig
from pipelines.discover import discover, discover_folder, list_folders, sniff
from schemas.records import InputKind
from workers.deid.pseudonym import Pseudonymizer

P = Pseudonymizer("discover-test-secret")


def test_sniff_real_files_by_content(shared_data, tmp_path):
    d = shared_data
    assert sniff(d / "dicom/dicomdir_sample/77654033/CR1/6154") is InputKind.DICOM  # no extension
    assert sniff(d / "nifti/totalsegmentator_example_ct.nii.gz") is InputKind.NIFTI
    assert sniff(d / "nifti/nibabel_functional.nii") is InputKind.NIFTI
    assert sniff(d / "ecg/wfdb/mitdb_100/100.hea") is InputKind.WFDB  # header starts with a comment
    assert sniff(d / "reports/ptbxl_ecg/ptbxl_database_subset_partA.csv") is InputKind.REPORT_TABLE
    # renamed copies: extension must not matter
    for src, kind in [
        (d / "dicom/ct/CT_small.dcm", InputKind.DICOM),
        (d / "nifti/totalsegmentator_example_ct.nii.gz", InputKind.NIFTI),
        (d / "reports/ptbxl_ecg/scp_statements.csv", InputKind.REPORT_TABLE),
    ]:
        dst = tmp_path / f"export_{kind.value}.bin"
        shutil.copy(src, dst)
        assert sniff(dst) is kind
    gz = tmp_path / "ct.gz"
    gz.write_bytes(gzip.compress((d / "dicom/ct/CT_small.dcm").read_bytes()))
    assert sniff(gz) is InputKind.DICOM


def test_bad_files(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "noise.dcm").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "note.txt").write_text("Findings: no acute cardiopulmonary process.\n")
    assert sniff(tmp_path / "empty") is InputKind.EMPTY
    assert sniff(tmp_path / "noise.dcm") is InputKind.UNKNOWN
    assert sniff(tmp_path / "note.txt") is InputKind.REPORT_TEXT


def test_wfdb_companions_are_claimed(shared_data):
    items = discover(shared_data / "ecg", (SourceConfig(name="ecg"),), P)
    by_name = {i.path.rsplit("/", 1)[1]: i for i in items}
    assert by_name["s0010_re.hea"].kind is InputKind.WFDB
    assert sorted(c.rsplit("/", 1)[1] for c in by_name["s0010_re.hea"].companions) == [
        "s0010_re.dat",
        "s0010_re.xyz",
    ]
    assert "s0010_re.dat" not in by_name and "HR06000.mat" not in by_name


def test_order_and_ids_deterministic_and_phi_free(shared_data):
    a = discover(shared_data / "dicom", (SourceConfig(name="d"),), P)
    b = discover(shared_data / "dicom", (SourceConfig(name="d"),), P)
    assert a == b
    assert len({i.source_id for i in a}) == len(a)
    assert all(i.source_id.startswith("f") and "." not in i.source_id and "/" not in i.source_id for i in a)


def test_first_source_claims_file(examples_dir):
    srcs = (SourceConfig(name="series", path="dicom/ct/series_01"), SourceConfig(name="all", path="dicom"))
    items = discover(examples_dir, srcs, P)
    assert sum(i.source_name == "series" for i in items) == 20
    assert not any(i.source_name == "all" and "series_01" in i.path for i in items)


def test_multi_segment_record_claims_its_segments(shared_data, tmp_path):
    import wfdb

    from tests.workers.ecg.test_wfdb import _write_segments

    r = wfdb.rdrecord(str(shared_data / "ecg/wfdb/ptbxl_500hz_cinc2021/HR06000"), physical=False)
    _write_segments(r, tmp_path)
    items = discover(tmp_path, (SourceConfig(name="ms"),), P)
    assert [(i.path.rsplit("/", 1)[1], i.kind) for i in items] == [("msrec.hea", InputKind.WFDB)]
    assert sorted(c.rsplit("/", 1)[1] for c in items[0].companions) == [
        "seg_1.dat",
        "seg_1.hea",
        "seg_2.dat",
        "seg_2.hea",
    ]


def test_garbled_wfdb_header_and_json_array_export(tmp_path):
    (tmp_path / "rec.hea").write_text("this is not a record line\n# Age: 50\n")
    (tmp_path / "export.json").write_text('[{"report": "Sinusrhythmus"}, {"report": "Normales EKG"}]\n')
    assert sniff(tmp_path / "rec.hea") is InputKind.WFDB  # quarantined by the WFDB decoder, not a report
    assert sniff(tmp_path / "export.json") is InputKind.REPORT_TABLE


# --- folder-wise discovery: list_folders + discover_folder ----------------------------------

#: reference listings, recorded from the former one-pass implementation (rglob over each
#: source, one folder listing per WFDB header): sha256 of the lines
#: "source<TAB>relative path<TAB>kind<TAB>comma-joined relative companions" in discovery order
_OVERLAP = (
    SourceConfig(name="mit", path="ecg/wfdb/mitdb_100"),
    SourceConfig(name="ecg", path="ecg", exclude=("*.atr", "ptbxl_100hz")),
    SourceConfig(name="all", exclude=()),
)
_REFERENCE = {
    "shared_all": (50, {"dicom": 34, "nifti": 3, "report_table": 5, "wfdb": 8}, "c86ee72cc7d5531a"),
    "shared_overlap": (
        51,
        {"dicom": 34, "nifti": 3, "report_table": 5, "report_text": 1, "wfdb": 8},
        "ff59cc320794cb63",
    ),
    "examples_demo": (
        38,
        {"dicom": 28, "empty": 1, "nifti": 1, "report_table": 1, "unknown": 1, "wfdb": 6},
        "676bf024edae1029",
    ),
}


def _cases(shared_data, examples_dir):
    from pipelines.config import load_config

    root = examples_dir.parent
    return {
        "shared_all": (shared_data, (SourceConfig(name="all"),)),
        "shared_overlap": (shared_data, _OVERLAP),
        "examples_demo": (root, load_config(root / "demo.yaml").sources),
    }


def _lines(root, sources, items):
    bases = {s.name: (root / s.path).resolve() for s in sources}
    out = []
    for i in items:
        base = bases[i.source_name]
        rels = [Path(q).relative_to(base).as_posix() for q in (i.path, *i.companions)]
        out.append("\t".join([i.source_name, rels[0], i.kind.value, ",".join(rels[1:])]))
    return out


def test_discover_matches_the_former_implementation(shared_data, examples_dir):
    for case, (root, sources) in _cases(shared_data, examples_dir).items():
        items = discover(root, sources, P)
        count, kinds, digest = _REFERENCE[case]
        assert len(items) == count, case
        assert dict(Counter(i.kind.value for i in items)) == kinds, case
        lines = _lines(root, sources, items)
        # order: sources in config order, then relative path; IDs keyed on that path
        names = [s.name for s in sources]
        keys = [(names.index(ln.split("\t")[0]), ln.split("\t")[1]) for ln in lines]
        assert keys == sorted(keys), case
        assert [i.source_id for i in items] == [P.source_id("/".join(ln.split("\t")[:2])) for ln in lines]
        assert hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16] == digest, (case, lines)
    # companions: every WFDB header claims exactly its same-named files
    items = discover(shared_data, (SourceConfig(name="all"),), P)
    comps = {Path(i.path).name: [Path(c).name for c in i.companions] for i in items if i.companions}
    assert comps == {
        "100.hea": ["100.atr", "100.dat"],
        "s0010_re.hea": ["s0010_re.dat", "s0010_re.xyz"],
        "00001_lr.hea": ["00001_lr.dat"],
        **{f"HR0600{k}.hea": [f"HR0600{k}.mat"] for k in range(5)},
    }
    assert all(i.kind is InputKind.WFDB for i in items if i.companions)
    # overlapping sources: mitdb_100 is "mit"'s, the folder "ecg" excludes goes to "all"
    items = discover(shared_data, _OVERLAP, P)
    owner = {Path(i.path).relative_to(shared_data).as_posix(): i.source_name for i in items}
    assert owner["ecg/wfdb/mitdb_100/100.hea"] == "mit"
    assert owner["ecg/wfdb/ptbdb_s0010_re/s0010_re.hea"] == "ecg"
    assert owner["ecg/wfdb/ptbxl_100hz/00001_lr.hea"] == "all"
    assert "ecg/wfdb/mitdb_100/100.atr" not in owner  # a companion of mit's header


def _folder_wise(root, sources):
    items = []
    for index in range(len(sources)):
        folders = list_folders(root, sources, index)
        assert folders == sorted(set(folders))
        part = []
        for rel in folders:
            got = discover_folder(root, sources, index, rel, P)
            folder = (root / sources[index].path).resolve() / rel
            assert all(Path(i.path).parent == folder for i in got)  # only direct children
            assert [i.path for i in got] == sorted(i.path for i in got)
            part += got
        items += sorted(part, key=lambda i: i.path)  # one base per source: path order = rel order
    return items


def test_folder_wise_discovery_equals_discover(shared_data, examples_dir):
    for case, (root, sources) in _cases(shared_data, examples_dir).items():
        assert _folder_wise(root, sources) == discover(root, sources, P), case
    folders = list_folders(shared_data, (SourceConfig(name="ecg", path="ecg/wfdb"),), 0)
    assert folders == ["mitdb_100", "ptbdb_s0010_re", "ptbxl_100hz", "ptbxl_500hz_cinc2021"]
    assert list_folders(shared_data, (SourceConfig(name="m", path="ecg/wfdb/mitdb_100"),), 0) == [""]
    one = (SourceConfig(name="m", path="ecg/wfdb/mitdb_100"),)
    assert discover_folder(shared_data, one, 0, ".", P) == discover_folder(shared_data, one, 0, "", P)


def test_folder_order_paths_symlinks_and_exclusions(tmp_path):
    for rel in ("a-c", "a/z", "a/b/x", "docs/n.txt", "a/README.md", ".git/config"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("Findings: none.\n")
    (tmp_path / "link").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "a/link.txt").symlink_to(tmp_path / "a/z")
    srcs = (SourceConfig(name="s", exclude=("docs", ".*", "README*")),)
    assert list_folders(tmp_path, srcs, 0) == ["", "a", "a/b"]  # no docs, .git, link
    items = discover(tmp_path, srcs, P)
    # by relative path ("a-c" < "a/b/x" < "a/z"), not folder by folder
    assert [Path(i.path).relative_to(tmp_path).as_posix() for i in items] == ["a-c", "a/b/x", "a/z"]
    assert _folder_wise(tmp_path, srcs) == sorted(items, key=lambda i: i.path)
    assert discover_folder(tmp_path, srcs, 0, "docs", P) == []  # an excluded folder
    assert discover_folder(tmp_path, srcs, 0, "link", P) == []  # reached through a symlink
    with pytest.raises(ValueError):
        discover_folder(tmp_path, srcs, 0, "../x", P)
    with pytest.raises(FileNotFoundError):
        list_folders(tmp_path, (SourceConfig(name="gone", path="missing"),), 0)


def _wfdb_folder(folder: Path, shared_data: Path, n: int) -> None:
    """``n`` copies of a small real WFDB record under new record names."""
    src = shared_data / "ecg/wfdb/ptbxl_100hz"
    hea, dat = (src / "00001_lr.hea").read_text(), (src / "00001_lr.dat").read_bytes()
    folder.mkdir(parents=True)
    for k in range(n):
        name = f"rec{k:04d}"
        (folder / f"{name}.hea").write_text(hea.replace("00001_lr", name))  # record line and signal files
        (folder / f"{name}.dat").write_bytes(dat)


def test_discovery_lists_each_folder_once(shared_data, tmp_path, monkeypatch):
    calls = Counter()

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(os, "scandir", counting("scandir", os.scandir))
    monkeypatch.setattr(os, "listdir", counting("listdir", os.listdir))
    monkeypatch.setattr(Path, "iterdir", counting("iterdir", Path.iterdir))
    src = (SourceConfig(name="ecg"),)
    listings = {}
    for n in (10, 200):
        root = tmp_path / str(n)
        _wfdb_folder(root / "ecg", shared_data, n)
        calls.clear()
        folder_items = discover_folder(root, src, 0, "ecg", P)
        assert sum(calls.values()) == 1  # one listing of the folder, whatever its size
        calls.clear()
        items = discover(root, src, P)
        listings[n] = sum(calls.values())
        assert items == folder_items and len(items) == n
        assert all(i.kind is InputKind.WFDB and len(i.companions) == 1 for i in items)
        assert all(i.companions[0] == i.path[: -len(".hea")] + ".dat" for i in items)
    assert listings[10] == listings[200] == 3  # list_folders: base + ecg; discover_folder: ecg


def test_overlapping_sources_file_goes_to_the_first(tmp_path):
    for rel in ("inner/x.txt", "inner/skip.txt", "inner/deep/y.txt", "z.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("Findings: none.\n")
    srcs = (
        SourceConfig(name="inner", path="inner", exclude=("skip*",)),
        SourceConfig(name="outer"),
    )
    items = discover(tmp_path, srcs, P)
    owner = {Path(i.path).relative_to(tmp_path).as_posix(): i.source_name for i in items}
    assert owner == {
        "inner/deep/y.txt": "inner",
        "inner/x.txt": "inner",
        "inner/skip.txt": "outer",  # excluded by the first source: the next one lists it
        "z.txt": "outer",
    }
    assert [i.source_id for i in items if i.source_name == "inner"] == [
        P.source_id("inner/deep/y.txt"),
        P.source_id("inner/x.txt"),
    ]
    assert list_folders(tmp_path, srcs, 1) == ["", "inner"]  # not inner/deep: all of it is inner's
    assert discover_folder(tmp_path, srcs, 1, "inner/deep", P) == []
    # the other way round the outer source takes everything
    rev = (srcs[1], srcs[0])
    assert {i.source_name for i in discover(tmp_path, rev, P)} == {"outer"}
    assert list_folders(tmp_path, rev, 1) == []


def test_signal_files_a_header_claims_are_never_opened(shared_data, monkeypatch):
    """Headers are sniffed first; the ``.dat`` files they claim (most of the bytes) are not read."""
    import pipelines.discover as discover_mod

    read: list[str] = []
    real = discover_mod._read_head

    def spy(path, *a, **kw):
        read.append(Path(path).name)
        return real(path, *a, **kw)

    monkeypatch.setattr(discover_mod, "_read_head", spy)
    items = discover(shared_data / "ecg", (SourceConfig(name="ecg"),), P)
    wfdb_items = [i for i in items if i.kind is InputKind.WFDB]
    claimed = {Path(c).name for i in wfdb_items for c in i.companions}
    assert any(c.endswith(".dat") for c in claimed)
    assert not claimed & set(read), sorted(claimed & set(read))
    assert {Path(i.path).name for i in wfdb_items} <= set(read)
