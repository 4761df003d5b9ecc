"""Content-based discovery on real sample files (many have no extension)."""

from __future__ import annotations

import gzip
import shutil

from pipelines.config import SourceConfig
from pipelines.discover import discover, sniff
from schemas.records import InputKind
from workers.pseudonym import Pseudonymizer

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

    from tests.workers.test_ecg_wfdb import _write_segments

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
