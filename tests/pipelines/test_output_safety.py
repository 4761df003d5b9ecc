"""Output safety of a production-mode build (``deid: {demo: false}``) on real sample files.

- tar member names are generated (``{key}.{member}`` by the contract), never taken from input:
  files named like traversal paths, with dots, spaces, newlines or leading dashes build fine;
- symlinks (to a file or a folder outside the input) are not followed;
- the pseudonymisation secret, planted through ``$MEDCORPUS_SECRET``, appears in no output
  file, no tar member, no parquet cell and no log line, in any of its encodings;
- outputs are not readable by other users (the build runs under umask 022, so this checks
  the code's own modes rather than the environment's);
- without a secret (or with a short one) a non-demo build stops with a one-line error.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
import pytest

from schemas.contract import MEMBER_RE, is_valid_key
from tests.conftest import REPO

SECRET = "SecretCanary-7f3a9c1e5b2d4068-QZX"
#: input names that must never surface in an output (name → source file in shared/data)
ODD_INPUTS = {
    "dicom/1.2.840.113619.2.55/CT.1.3.12.2.1107.dcm": "dicom/ct/CT_small.dcm",
    "dicom/study v1.2 (copy)/etc..passwd": "dicom/dicomdir_sample/77654033/CR1/6154",
    "dicom/a..b/%2e%2e%2f%2e%2e%2fetc%2fpasswd": "dicom/mr/MR_small.dcm",
    "dicom/x/-rf line\nbreak.dcm": "dicom/dicomdir_sample/77654033/CT2/17106",
    "ecg/HR06000.hea": "ecg/wfdb/ptbxl_500hz_cinc2021/HR06000.hea",
    "ecg/HR06000.mat": "ecg/wfdb/ptbxl_500hz_cinc2021/HR06000.mat",
}
NAME_FRAGMENTS = ("113619", "passwd", "study v1.2", "%2e%2e", "line\nbreak", "-rf ", "OutsideQzx")
N_INPUT_FILES = 6  # the four DICOM files, the WFDB header (its .mat is a companion), the CSV


def _build(inp: Path, out: Path, cfg: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "-v",
            "build",
            str(inp),
            "--config",
            str(cfg),
            "--out",
            str(out),
        ]
        + ["--strict"],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=lambda: os.umask(0o022),
        timeout=900,
    )


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MEDCORPUS_SECRET", "HOSPITAL_KEY")}
    return dict(env, PYTHONPATH=str(REPO), **extra)


@pytest.fixture(scope="module")
def safe_build(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    inp = root / "input"
    for rel, src in ODD_INPUTS.items():
        (inp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / src, inp / rel)
    (inp / "reports").mkdir()
    lines = (shared_data / "reports/ptbxl_ecg/ptbxl_database_subset_partA.csv").read_bytes().split(b"\n")
    (inp / "reports" / "export.csv").write_bytes(b"\n".join(lines[:4]) + b"\n")
    # outside the input: a DICOM with a recognisable name, reachable only through symlinks
    outside = root / "outside"
    outside.mkdir()
    ds = pydicom.dcmread(shared_data / "dicom/ct/CT_small.dcm")
    ds.PatientName = "OutsideQzx^Symlinked"
    ds.save_as(outside / "outside.dcm")
    (inp / "dicom" / "link_to_file.dcm").symlink_to(outside / "outside.dcm")
    (inp / "dicom" / "link_to_dir").symlink_to(outside, target_is_directory=True)
    cfg = root / "cfg.yaml"
    cfg.write_text(
        "deid: {demo: false}\nworkers: 1\nsources:\n  - {name: hospital, path: ., licence: test}\n"
    )
    out = root / "out"
    res = _build(inp, out, cfg, _env(MEDCORPUS_SECRET=SECRET))
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res.stdout + res.stderr


def _tar_members(out: Path):
    for tar_path in sorted(out.rglob("*.tar")):
        with tarfile.open(tar_path) as tf:
            for m in tf.getmembers():
                yield tar_path, m, tf.extractfile(m).read() if m.isfile() else b""


def test_member_names_are_generated_not_taken_from_input(safe_build):
    out, _ = safe_build
    members = list(_tar_members(out))
    assert members, "the build wrote no tar members"
    for _, m, _ in members:
        key, _, member = m.name.partition(".")
        assert is_valid_key(key) and MEMBER_RE.match(member), m.name
        assert "/" not in m.name and ".." not in m.name and not m.name.startswith(("-", "."))
        assert m.isfile() and (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0)
        assert not any(frag.lower() in m.name.lower() for frag in NAME_FRAGMENTS), m.name
    for tar_path in out.rglob("*.tar"):
        rel = tar_path.relative_to(out).as_posix()
        assert re.fullmatch(r"shards/(train|val|test)/(train|val|test)-\d{6}\.tar", rel), rel


def test_odd_names_build_fine_and_symlinks_are_not_followed(safe_build):
    out, log = safe_build
    inputs = pq.read_table(out / "inputs.parquet").to_pylist()
    assert len({row["file_id"] for row in inputs}) == N_INPUT_FILES, inputs
    assert len(inputs) == N_INPUT_FILES - 1 + 3  # units: the CSV's three rows count one each
    quarantined = pq.read_table(out / "quarantine.parquet").to_pylist()
    assert quarantined == [], quarantined
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    mods = sorted(m for row in manifest for m in row["modalities"])
    assert mods.count("report") == 3 and "ecg" in mods and ("image" in mods or "volume" in mods)
    blobs = _output_blobs(out) + [("log", log.encode())]
    for frag in NAME_FRAGMENTS:
        hits = [name for name, data in blobs if frag.encode() in data]
        assert hits == [], f"input name fragment {frag!r} in {hits}"


def _output_blobs(out: Path) -> list[tuple[str, bytes]]:
    """Every file of the build (raw), every tar member, every parquet cell (decoded)."""
    blobs = []
    for p in sorted(out.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(out).as_posix()
        blobs.append((rel, p.read_bytes()))
        if p.suffix == ".parquet":
            buf = io.StringIO()
            for row in pq.read_table(p).to_pylist():
                buf.write(repr(row))
            blobs.append((f"{rel} (cells)", buf.getvalue().encode()))
    blobs += [(f"{t.name}:{m.name}", data) for t, m, data in _tar_members(out)]
    return blobs


def _secret_forms(s: str) -> list[bytes]:
    raw = s.encode()
    forms = {raw, s.lower().encode(), s.upper().encode(), raw.hex().encode(), raw.hex().upper().encode()}
    forms |= {s.encode("utf-16-le"), s.encode("utf-16-be"), raw.decode().encode("utf-32-le")}
    for offset in range(3):  # base64 at every alignment: the core that does not depend on neighbours
        enc = base64.b64encode(b"\0" * offset + raw)
        forms.add(enc[4 if offset else 0 : -4])
        forms.add(base64.urlsafe_b64encode(b"\0" * offset + raw)[4 if offset else 0 : -4])
    return sorted(forms)


def test_secret_never_written_anywhere(safe_build):
    out, log = safe_build
    blobs = _output_blobs(out) + [("log", log.encode())]
    assert len(blobs) > 20
    leaks = [name for name, data in blobs for form in _secret_forms(SECRET) if form in data]
    assert leaks == [], f"secret found in {sorted(set(leaks))}"
    # the scan itself finds the secret when it is there
    assert any(form in f"x{SECRET}y".encode() for form in _secret_forms(SECRET))
    assert any(form in base64.b64encode(b"ab" + SECRET.encode()) for form in _secret_forms(SECRET))


def test_outputs_are_not_readable_by_other_users(safe_build):
    out, _ = safe_build
    exposed = []
    for p in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if mode & 0o007:
            exposed.append(f"{oct(mode)} {p.relative_to(out).as_posix() or '.'}")
        if p.is_file() and mode & 0o022:
            exposed.append(f"{oct(mode)} {p.relative_to(out).as_posix()} (writable by others)")
    # writers of what this found on 2026-11-28: the decode cache (pipelines/decode.py), the embed
    # cache (pipelines/dedup.py), the lock file (pipelines/build.py) and folders made without a mode
    assert exposed == [], "\n".join(exposed)


@pytest.mark.parametrize(
    "secret_env,value",
    [("MEDCORPUS_SECRET", None), ("MEDCORPUS_SECRET", "short-secret-15"), ("HOSPITAL_KEY", None)],
)
def test_build_without_a_secret_fails_with_one_line(tmp_path, examples_dir, secret_env, value):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"deid: {{demo: false, secret_env: {secret_env}}}\n")
    env = _env(**({secret_env: value} if value else {}))
    out = tmp_path / "out"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "build",
            str(examples_dir),
            "--config",
            str(cfg),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert secret_env in lines[0] and "secret" in lines[0]
    if value:
        assert value not in res.stderr + res.stdout
    assert not out.exists() or not any(out.iterdir()), "a failed build left output behind"
