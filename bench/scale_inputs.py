"""Realistic synthetic inputs for the scale benchmark (``bench/bench_scale.py``), made from the real
sample files of the shared data set (``../shared/data``, see its PROVENANCE.md).

What one call of :func:`generate` writes under ``out_dir`` (deterministic for a seed):

``ecg/``      ``n_ecg`` 12-lead WFDB records (format 16 ``.dat`` + ``.hea``, 500 Hz, 10 s), made from
              the five PTB-XL 500 Hz records (``HR06000``..``HR06004``, CC BY 4.0). Layout ``mimic``
              (default) follows MIMIC-IV-ECG: ``files/p{first 4 digits}/p{subject}/s{study}/{study}.hea``;
              layout ``flat`` puts every record in one folder (the discovery stress case). The record
              name is the study id (8 digits, ``4xxxxxxx``), as in MIMIC-IV-ECG.
              Each record is perturbed so that copies of one source are different ECGs for the
              near-duplicate detector (measured: max thumbnail cosine of 0.94 over 3.2e5 pairs of
              copies of one source, threshold 0.97): a time warp (heart rate x0.8-1.25) with a
              random circular start, per-lead gain (+-20%), a cubic baseline drift per lead (up to
              +-0.1 mV per term) and Gaussian noise (sigma 10 uV).
``reports/ecg_reports.csv``
              One row per ECG in the PTB-XL ``ptbxl_database.csv`` layout (28 columns): new
              ``ecg_id`` (= the record's study id, the link key), new ``patient_id``, age/sex of the
              new patient, a recording date, and the free-text ``report`` (with its ``scp_codes``
              and the other clinical columns) of a real PTB-XL row (CC BY 4.0). A patient's studies
              get different report texts (so one patient's reports are not exact duplicates);
              the same text recurs across patients (templates).
``cxr/``      ``n_ecg // cxr_per`` chest radiographs, MIMIC-CXR layout
              ``files/p{first 2 digits}/p{subject}/s{study}/{dicom_id}.dcm``, made from the only chest
              radiograph in the shared data (``dicom/cxr/RG1_J2KI.dcm``, NEMA WG04 via pydicom-data,
              MIT; JPEG 2000 lossy, decoded once) and written uncompressed (Explicit VR Little
              Endian, cheap to decode), each a random crop (60-90% per side) with a random gamma,
              a linear intensity ramp and +-20 pixel-value noise, under a new patient (one of the
              ECG patients) and new Study/Series/SOP Instance UIDs and accession; identifying
              tags of the source (Other Patient IDs, Source Image Sequence) are removed. Measured
              cross-copy near-duplicate rate: about 3e-5 of pairs reach the image threshold 0.95.
``ct/``       ``n_ecg // ct_per`` CT series from the real 20-slice Siemens series
              (``dicom/ct/totalsegmentator_siemens_ct_series``, Apache-2.0), layout
              ``{subject}/{accession}/CT.{SOP Instance UID}`` (no extension, like the source): a random
              run of 6-20 slices and an in-plane crop (45-85% per side) with +-5 stored-value noise,
              written uncompressed, positions updated, new UIDs (study, series, SOP, frame of
              reference, irradiation event), patient and accession.
``medcorpus.yaml``           build config (the structure of examples/demo.yaml), dedup on.
``medcorpus_ecg_only.yaml``  the ECG source alone, dedup off (for the hand-written baseline).
``inputs.json``              parameters, counts, bytes, seconds; written last (completion marker).

Patients: each has 1 + Poisson(2) ECG studies (about 3), one ECG per study, dated within five
years; a chest X-ray is taken 24-72 h after one of its patient's ECGs (Symile-MIMIC's window), a
CT within +-30 days. The config links ECG and report by study (PTB-XL's ``ecg_id``); X-rays and
CTs become single-modality samples of an ECG patient.

Licences: only permissive sources are copied (PTB-XL CC BY 4.0, pydicom-data MIT, TotalSegmentator
Apache-2.0). The Indiana reports (CC BY-NC-ND) are not used. Write the output to a scratch folder;
never commit it.

Speed: the ECG writer uses numpy and writes the WFDB files itself (wfdb.wrsamp is not used);
DICOM datasets are templates whose tags and pixel bytes are replaced per copy. ``jobs`` > 1
splits the work over processes (per-item random streams keep the output identical).

CLI: ``.venv/bin/python bench/scale_inputs.py OUT --n-ecg 1000 [--seed 0] [--layout mimic|flat]
[--cxr-per 100] [--ct-per 1000] [--jobs 1]``
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDCORPUS_SHARED_DATA", REPO.parent / "shared" / "data"))

GENERATOR_VERSION = 1
ECG_SOURCES = tuple(f"HR0600{i}" for i in range(5))
ECG_DIR = "ecg/wfdb/ptbxl_500hz_cinc2021"
PTBXL_CSV = "reports/ptbxl_ecg/ptbxl_database_subset_partA.csv"
CXR_SOURCE = "dicom/cxr/RG1_J2KI.dcm"
CT_SERIES = "dicom/ct/totalsegmentator_siemens_ct_series"
REPORT_TABLE = "reports/ecg_reports.csv"
CONFIG = "medcorpus.yaml"
CONFIG_ECG_ONLY = "medcorpus_ecg_only.yaml"
SUMMARY = "inputs.json"

FS = 500
N_SAMPLES = 5000
ECG_GAIN = 1000.0  # adc units per mV, as in the PTB-XL source records
MAX_SOURCE_ADC = 20000  # the perturbation's headroom inside int16
NOISE_UV = 10.0  # Gaussian noise sigma, in adc units (= uV at gain 1000)
#: MIMIC-IV-ECG stores aVF before aVL (optional: ``mimic_lead_order``)
PTBXL_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
MIMIC_ORDER = (0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11)

# id ranges (disjoint: an ECG study id never equals an X-ray accession)
PATIENT_BASE, PATIENT_RANGE = 10_000_000, 9_999_999
ECG_STUDY_BASE, ECG_STUDY_RANGE = 40_000_000, 9_999_999
CXR_STUDY_BASE, CXR_STUDY_RANGE = 50_000_000, 9_999_999
CT_ACC_BASE, CT_ACC_RANGE = 60_000_000, 9_999_999
EPOCH = datetime(1970, 1, 1)
DATE_LO, DATE_HI = datetime(1995, 1, 1), datetime(2018, 1, 1)
FIVE_YEARS_S = 5 * 365 * 86400

SOURCE_LICENCES = {
    "ecg": "CC-BY-4.0 (PTB-XL via PhysioNet/CinC 2021)",
    "reports": "CC-BY-4.0 (PTB-XL)",
    "cxr": "MIT (pydicom-data; NEMA WG04 RG1)",
    "ct": "Apache-2.0 (TotalSegmentator test data)",
}


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    """Independent random stream per (seed, kind, item): order- and process-independent."""
    return np.random.default_rng([int(seed), int(stream), int(index)])


def _dt(epoch_s: int) -> datetime:
    return EPOCH + timedelta(seconds=int(epoch_s))


# ---------------------------------------------------------------------------------------------
# plan: identities, links and dates (small arrays; the files are written from it)
# ---------------------------------------------------------------------------------------------


def _unique_ids(rng: np.random.Generator, base: int, span: int, n: int) -> np.ndarray:
    if n == 0:
        return np.zeros(0, np.int64)
    return base + rng.choice(span, size=n, replace=False).astype(np.int64)


def _read_ptbxl(shared: Path) -> tuple[list[str], list[list[str]]]:
    with open(shared / PTBXL_CSV, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def make_plan(n_ecg: int, seed: int, cxr_per: int, ct_per: int, shared: Path = SHARED_DATA) -> dict:
    """Who has which ECG/X-ray/CT, when, and which report text: numpy arrays, deterministic."""
    rng = _rng(seed, 0)
    # patients with 1 + Poisson(2) studies each
    sizes: list[int] = []
    while sum(sizes) < n_ecg:
        sizes.extend((1 + rng.poisson(2.0, size=max(16, n_ecg // 2))).tolist())
    sizes_a = np.array(sizes, np.int64)
    n_pat = int(np.searchsorted(np.cumsum(sizes_a), n_ecg) + 1) if n_ecg else 0
    sizes_a = sizes_a[:n_pat]
    if n_pat:
        sizes_a[-1] -= int(sizes_a.sum()) - n_ecg
    patient_ids = np.sort(_unique_ids(rng, PATIENT_BASE, PATIENT_RANGE, n_pat))
    ecg_patient = np.repeat(np.arange(n_pat), sizes_a)  # index into patient arrays
    # per patient: base date, age at base, sex (PTB-XL: 0 male, 1 female)
    span = int((DATE_HI - DATE_LO).total_seconds())
    pat_base = int((DATE_LO - EPOCH).total_seconds()) + rng.integers(0, span, size=n_pat)
    pat_age = rng.integers(18, 91, size=n_pat)
    pat_sex = rng.integers(0, 2, size=n_pat)
    ecg_time = pat_base[ecg_patient] + rng.integers(0, FIVE_YEARS_S, size=n_ecg)
    # a patient's ECGs in time order, study ids random (as in MIMIC-IV-ECG)
    order = np.lexsort((ecg_time, ecg_patient))
    ecg_time = ecg_time[order]
    ecg_study = _unique_ids(rng, ECG_STUDY_BASE, ECG_STUDY_RANGE, n_ecg)
    ecg_base = rng.integers(0, len(ECG_SOURCES), size=n_ecg)
    # report texts: distinct (normalised) texts within a patient
    _, body = _read_ptbxl(shared)
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(body):
        groups.setdefault(" ".join(row[10].lower().split()), []).append(i)
    group_rows = list(groups.values())
    ecg_row = np.zeros(n_ecg, np.int64)
    start = 0
    for p in range(n_pat):
        k = int(sizes_a[p])
        picks = rng.choice(len(group_rows), size=k, replace=k > len(group_rows))
        for j, g in enumerate(picks):
            rows = group_rows[int(g)]
            ecg_row[start + j] = rows[int(rng.integers(0, len(rows)))]
        start += k
    # chest X-rays: 24-72 h after an ECG of the same patient
    n_cxr = n_ecg // cxr_per if cxr_per > 0 else 0
    cxr_anchor = np.sort(rng.choice(n_ecg, size=n_cxr, replace=False)) if n_cxr else np.zeros(0, np.int64)
    cxr_time = ecg_time[cxr_anchor] + rng.integers(24 * 3600, 72 * 3600, size=n_cxr)
    cxr_study = _unique_ids(rng, CXR_STUDY_BASE, CXR_STUDY_RANGE, n_cxr)
    # CT series: within +-30 days of an ECG of the same patient
    n_ct = n_ecg // ct_per if ct_per > 0 else 0
    ct_anchor = np.sort(rng.choice(n_ecg, size=n_ct, replace=False)) if n_ct else np.zeros(0, np.int64)
    ct_time = ecg_time[ct_anchor] + rng.integers(-30 * 86400, 30 * 86400, size=n_ct)
    ct_acc = _unique_ids(rng, CT_ACC_BASE, CT_ACC_RANGE, n_ct)
    return {
        "patient_ids": patient_ids,
        "pat_base": pat_base,
        "pat_age": pat_age,
        "pat_sex": pat_sex,
        "ecg_patient": ecg_patient,
        "ecg_time": ecg_time,
        "ecg_study": ecg_study,
        "ecg_base": ecg_base,
        "ecg_row": ecg_row,
        "cxr_patient": ecg_patient[cxr_anchor],
        "cxr_time": cxr_time,
        "cxr_study": cxr_study,
        "ct_patient": ecg_patient[ct_anchor],
        "ct_time": ct_time,
        "ct_acc": ct_acc,
    }


def _age_at(plan: dict, p: int, t: int) -> int:
    return int(plan["pat_age"][p] + (t - plan["pat_base"][p]) // (365 * 86400))


# ---------------------------------------------------------------------------------------------
# ECG: numpy → WFDB format 16
# ---------------------------------------------------------------------------------------------

_ECG_CACHE: dict = {}


def _ecg_sources(shared: Path, seed: int) -> dict:
    key = (str(shared), seed)
    if key not in _ECG_CACHE:
        import wfdb

        bases, comments = [], []
        for stem in ECG_SOURCES:
            rec = wfdb.rdrecord(str(shared / ECG_DIR / stem), physical=False)
            if rec.d_signal.shape != (N_SAMPLES, 12) or rec.fs != FS:
                raise ValueError(f"unexpected source record {stem}: {rec.d_signal.shape} @ {rec.fs}")
            if list(rec.sig_name) != list(PTBXL_LEADS) or any(g != ECG_GAIN for g in rec.adc_gain):
                raise ValueError(f"unexpected leads or gain in {stem}")
            if np.abs(rec.d_signal).max() > MAX_SOURCE_ADC:
                raise ValueError(f"source record {stem} exceeds {MAX_SOURCE_ADC} adc units")
            bases.append(rec.d_signal.astype(np.float32))
            # keep the clinical comments (Dx/Rx/Hx/Sx); Age/Sex are the new patient's
            comments.append([c for c in rec.comments if c.split(":")[0].strip() not in ("Age", "Sex")])
        t = np.linspace(-1.0, 1.0, N_SAMPLES, dtype=np.float32)
        _ECG_CACHE[key] = {
            "bases": bases,
            "diffs": [np.roll(b, -1, axis=0) - b for b in bases],
            "comments": comments,
            "t": np.stack([t, t * t, t * t * t], axis=1),  # (samples, 3)
            "ramp": np.arange(N_SAMPLES, dtype=np.float32),
            "noise": _rng(seed, 9).standard_normal(1 << 20, dtype=np.float32) * np.float32(NOISE_UV),
        }
    return _ECG_CACHE[key]


def perturb_ecg(
    d: np.ndarray, rng: np.random.Generator, src: dict, diff: np.ndarray | None = None
) -> np.ndarray:
    """(5000, 12) adc float32 → a different-looking ECG of the same rhythm, int16.

    ``diff`` is ``np.roll(d, -1, 0) - d`` (precomputed per source record)."""
    n = d.shape[0]
    if diff is None:
        diff = np.roll(d, -1, axis=0) - d
    rate, off = rng.uniform(0.8, 1.25), rng.uniform(0, n)
    idx = src["ramp"] * np.float32(rate)
    idx += np.float32(off)
    np.fmod(idx, np.float32(n), out=idx)
    i0 = idx.astype(np.int32)
    frac = idx - i0.astype(np.float32)
    x = np.take(d, i0, axis=0)  # time warp with a circular start, linear interpolation
    x += np.take(diff, i0, axis=0) * frac[:, None]
    p = rng.uniform(-1.0, 1.0, size=(4, d.shape[1])).astype(np.float32)
    x *= 1 + np.float32(0.2) * p[0]  # per-lead gain
    x += src["t"] @ (p[1:] * np.float32(100))  # cubic baseline drift per lead
    noise = src["noise"]
    o = int(rng.integers(0, noise.size - x.size))
    x += noise[o : o + x.size].reshape(x.shape)
    np.rint(x, out=x)
    # no clip needed: |source| <= MAX_SOURCE_ADC (checked on load), so |x| < 1.2 * 20000 + 300 + noise
    # stays inside int16 and away from -32768 (format 16's "invalid sample")
    return x.astype(np.int16)


def _checksums(sig: np.ndarray) -> list[int]:
    """WFDB checksums: the 16-bit two's-complement sum of each channel."""
    s = (sig.sum(axis=0, dtype=np.int64) & 0xFFFF).tolist()
    return [v - 0x10000 if v >= 0x8000 else v for v in s]


def wfdb_header(
    name: str, sig: np.ndarray, leads: tuple[str, ...], when: datetime, comments: list[str]
) -> str:
    """A WFDB header for a format-16 ``{name}.dat`` holding ``sig`` (samples x channels, int16)."""
    lines = [f"{name} {sig.shape[1]} {FS} {sig.shape[0]} {when:%H:%M:%S} {when:%d/%m/%Y}"]
    init = sig[0].tolist()
    for c, (lead, cs) in enumerate(zip(leads, _checksums(sig), strict=True)):
        lines.append(f"{name}.dat 16 {ECG_GAIN:g}(0)/mV 16 0 {init[c]} {cs} 0 {lead}")
    lines.extend(f"# {c}" for c in comments)
    return "\n".join(lines) + "\n"


def ecg_relpath(study: int, patient: int, layout: str) -> str:
    """Record path (no extension) relative to the ECG source folder."""
    if layout == "flat":
        return str(study)
    return f"files/p{patient // 10000:04d}/p{patient}/s{study}/{study}"


def _write_ecg_chunk(args: tuple) -> int:
    out, shared, seed, layout, mimic_order, lo, hi, plan = args
    src = _ecg_sources(Path(shared), seed)
    ecg_root = os.path.join(out, "ecg")
    made: set[str] = set()
    leads = tuple(PTBXL_LEADS[i] for i in MIMIC_ORDER) if mimic_order else PTBXL_LEADS
    n_bytes = 0
    for k in range(lo, hi):
        p = int(plan["ecg_patient"][k])
        pid, study, t = int(plan["patient_ids"][p]), int(plan["ecg_study"][k]), int(plan["ecg_time"][k])
        b = int(plan["ecg_base"][k])
        sig = perturb_ecg(src["bases"][b], _rng(seed, 1, k), src, src["diffs"][b])
        if mimic_order:
            sig = sig[:, MIMIC_ORDER]
        path = os.path.join(ecg_root, ecg_relpath(study, pid, layout))
        folder, name = os.path.split(path)
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        sex = "Female" if plan["pat_sex"][p] else "Male"
        comments = [f"Age: {_age_at(plan, p, t)}", f"Sex: {sex}", *src["comments"][b]]
        hea = wfdb_header(name, sig, leads, _dt(t), comments).encode("ascii")
        data = sig.astype("<i2", copy=False).tobytes()
        with open(path + ".dat", "wb") as f:
            f.write(data)
        with open(path + ".hea", "wb") as f:
            f.write(hea)
        n_bytes += len(data) + len(hea)
    return n_bytes


def _write_reports(out: Path, plan: dict, shared: Path, layout: str) -> int:
    header, body = _read_ptbxl(shared)
    col = {c: i for i, c in enumerate(header)}
    order = np.argsort(plan["ecg_study"], kind="stable")  # the table is sorted by ecg_id, as PTB-XL
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for k in order.tolist():
        p = int(plan["ecg_patient"][k])
        t = int(plan["ecg_time"][k])
        pid, study = int(plan["patient_ids"][p]), int(plan["ecg_study"][k])
        row = list(body[int(plan["ecg_row"][k])])
        row[col["ecg_id"]] = str(study)
        row[col["patient_id"]] = f"{pid}.0"
        row[col["age"]] = f"{_age_at(plan, p, t)}.0"
        row[col["sex"]] = str(int(plan["pat_sex"][p]))
        row[col["recording_date"]] = f"{_dt(t):%Y-%m-%d %H:%M:%S}"
        row[col["filename_lr"]] = ""
        row[col["filename_hr"]] = ecg_relpath(study, pid, layout)
        w.writerow(row)
    data = buf.getvalue().encode("utf-8")
    path = out / REPORT_TABLE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


# ---------------------------------------------------------------------------------------------
# DICOM: templates with new identities and perturbed pixels (uncompressed)
# ---------------------------------------------------------------------------------------------

_DICOM_CACHE: dict = {}


def _uid(seed: int, *parts) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["medcorpus-scale", str(seed), *map(str, parts)])


def _set_identity(ds, pid: int, sex: int, age: int, when: datetime) -> None:
    ds.PatientName = f"SYNTH^P{pid}"
    ds.PatientID = str(pid)
    ds.PatientBirthDate = f"{when.year - age:04d}0101"
    ds.PatientSex = "F" if sex else "M"
    for kw in ("OtherPatientIDs", "OtherPatientIDsSequence", "PatientAge"):
        if kw in ds:
            delattr(ds, kw)


def _set_dates(ds, when: datetime, keywords_date: tuple[str, ...], keywords_time: tuple[str, ...]) -> None:
    for kw in keywords_date:
        if kw in ds:
            setattr(ds, kw, f"{when:%Y%m%d}")
    for kw in keywords_time:
        if kw in ds:
            setattr(ds, kw, f"{when:%H%M%S}")


def _set_pixels(ds, arr: np.ndarray) -> None:
    from pydicom.uid import ExplicitVRLittleEndian

    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.PixelData = np.ascontiguousarray(arr, dtype="<u2").tobytes()
    ds["PixelData"].VR = "OW"
    ds["PixelData"].is_undefined_length = False


def _cxr_template(shared: Path) -> dict:
    key = ("cxr", str(shared))
    if key not in _DICOM_CACHE:
        import pydicom

        ds = pydicom.dcmread(shared / CXR_SOURCE)
        pixels = ds.pixel_array.astype(np.uint16)  # decoded once (JPEG 2000)
        for kw in ("SourceImageSequence", "OtherPatientIDs", "PixelData"):
            if kw in ds:
                delattr(ds, kw)
        ds.ImageComments = "synthetic benchmark copy (crop, gamma, ramp, noise)"
        ds.BurnedInAnnotation = "NO"
        bits = int(ds.BitsStored)
        _DICOM_CACHE[key] = {"ds": ds, "pixels": pixels, "max": (1 << bits) - 1}
    return _DICOM_CACHE[key]


def perturb_cxr(a: np.ndarray, rng: np.random.Generator, vmax: int) -> np.ndarray:
    h0, w0 = a.shape
    h, w = int(h0 * rng.uniform(0.6, 0.9)), int(w0 * rng.uniform(0.6, 0.9))
    y, x = int(rng.integers(0, h0 - h + 1)), int(rng.integers(0, w0 - w + 1))
    c = a[y : y + h, x : x + w]
    gamma = rng.uniform(0.6, 1.6)
    lut = (np.linspace(0.0, 1.0, vmax + 1) ** gamma * vmax).astype(np.float32)
    ry = np.linspace(-1, 1, h, dtype=np.float32)[:, None] * np.float32(rng.uniform(-0.3, 0.3))
    rx = np.linspace(-1, 1, w, dtype=np.float32)[None, :] * np.float32(rng.uniform(-0.3, 0.3))
    out = lut[c]
    out *= 1 + ry + rx
    out += rng.integers(-20, 21, size=c.shape, dtype=np.int16)
    np.clip(out, 0, vmax, out=out)
    return out.astype(np.uint16)


def cxr_relpath(pid: int, study: int, dicom_id: str) -> str:
    return f"files/p{pid // 1_000_000:02d}/p{pid}/s{study}/{dicom_id}.dcm"


def _write_cxr_chunk(args: tuple) -> int:
    out, shared, seed, lo, hi, plan = args
    tpl = _cxr_template(Path(shared))
    ds = tpl["ds"]
    n_bytes = 0
    for j in range(lo, hi):
        rng = _rng(seed, 2, j)
        p = int(plan["cxr_patient"][j])
        pid, study, t = int(plan["patient_ids"][p]), int(plan["cxr_study"][j]), int(plan["cxr_time"][j])
        when = _dt(t)
        _set_identity(ds, pid, int(plan["pat_sex"][p]), _age_at(plan, p, t), when)
        ds.AccessionNumber = str(study)
        ds.StudyID = str(study)
        ds.StudyInstanceUID = _uid(seed, "cxr-study", j)
        ds.SeriesInstanceUID = _uid(seed, "cxr-series", j)
        sop = _uid(seed, "cxr-sop", j)
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        _set_dates(
            ds,
            when,
            ("StudyDate", "SeriesDate", "ContentDate", "AcquisitionDate", "InstanceCreationDate"),
            ("StudyTime", "SeriesTime", "ContentTime", "AcquisitionTime", "InstanceCreationTime"),
        )
        _set_pixels(ds, perturb_cxr(tpl["pixels"], rng, tpl["max"]))
        dicom_id = "-".join(f"{int(v):08x}" for v in rng.integers(0, 1 << 32, size=5, dtype=np.uint64))
        path = Path(out) / "cxr" / cxr_relpath(pid, study, dicom_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        n_bytes += path.stat().st_size
    return n_bytes


_CT_DROP = (
    "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence",
    "ReferencedImageSequence",
    "SourceImageSequence",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
)


def _ct_template(shared: Path) -> dict:
    key = ("ct", str(shared))
    if key not in _DICOM_CACHE:
        import pydicom

        dss = [pydicom.dcmread(p) for p in sorted((shared / CT_SERIES).iterdir()) if p.is_file()]
        dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
        vol = np.stack([d.pixel_array for d in dss]).astype(np.uint16)
        for d in dss:
            for kw in (*_CT_DROP, "PixelData"):
                if kw in d:
                    delattr(d, kw)
        _DICOM_CACHE[key] = {
            "dss": dss,
            "vol": vol,
            "max": (1 << int(dss[0].BitsStored)) - 1,
            # the source positions (the templates' own are overwritten per copy)
            "ipp": [[float(v) for v in d.ImagePositionPatient] for d in dss],
        }
    return _DICOM_CACHE[key]


def _write_ct(args: tuple) -> int:
    import pydicom.uid

    out, shared, seed, j, plan = args
    tpl = _ct_template(Path(shared))
    vol, dss = tpl["vol"], tpl["dss"]
    rng = _rng(seed, 3, j)
    nz, ny, nx = vol.shape
    z = int(rng.integers(min(6, nz), nz + 1))
    z0 = int(rng.integers(0, nz - z + 1))
    h, w = int(ny * rng.uniform(0.45, 0.85)), int(nx * rng.uniform(0.45, 0.85))
    y0, x0 = int(rng.integers(0, ny - h + 1)), int(rng.integers(0, nx - w + 1))
    crop = vol[z0 : z0 + z, y0 : y0 + h, x0 : x0 + w].astype(np.int32)
    crop += rng.integers(-5, 6, size=crop.shape, dtype=np.int32)
    np.clip(crop, 0, tpl["max"], out=crop)
    p = int(plan["ct_patient"][j])
    pid, acc, t = int(plan["patient_ids"][p]), int(plan["ct_acc"][j]), int(plan["ct_time"][j])
    when = _dt(t)
    study_uid, series_uid = _uid(seed, "ct-study", j), _uid(seed, "ct-series", j)
    frame_uid, event_uid = _uid(seed, "ct-frame", j), _uid(seed, "ct-event", j)
    folder = Path(out) / "ct" / str(pid) / str(acc)
    folder.mkdir(parents=True, exist_ok=True)
    n_bytes = 0
    for i in range(z):
        ds = dss[z0 + i]
        _set_identity(ds, pid, int(plan["pat_sex"][p]), _age_at(plan, p, t), when)
        ds.AccessionNumber = str(acc)
        ds.StudyID = str(acc)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID, ds.IrradiationEventUID = frame_uid, event_uid
        sop = _uid(seed, "ct-sop", j, i)
        ds.SOPClassUID = pydicom.uid.CTImageStorage
        ds.SOPInstanceUID = sop
        ds.file_meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SeriesNumber = 2
        ds.InstanceNumber = i + 1
        _set_dates(
            ds,
            when,
            ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "PerformedProcedureStepStartDate"),
            ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime", "PerformedProcedureStepStartTime"),
        )
        if "AcquisitionDateTime" in ds:
            ds.AcquisitionDateTime = f"{when:%Y%m%d%H%M%S}"
        if "PerformedProcedureStepID" in ds:
            ds.PerformedProcedureStepID = f"PPS{acc}"
        # in-plane crop: move the first pixel's position (orientation is axial [1,0,0,0,1,0])
        orig = tpl["ipp"][z0 + i]
        dy, dx = (float(v) for v in ds.PixelSpacing)
        ds.ImagePositionPatient = [round(orig[0] + x0 * dx, 6), round(orig[1] + y0 * dy, 6), orig[2]]
        _set_pixels(ds, crop[i].astype(np.uint16))
        path = folder / f"CT.{sop}"
        ds.save_as(path, enforce_file_format=True)
        n_bytes += path.stat().st_size
    return n_bytes


# ---------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------

_REPORT_COLUMNS = {
    "report_id": "ecg_id",
    "patient_id": "patient_id",
    "study_id": "ecg_id",
    "timestamp": "recording_date",
    "text": ["report"],
    "report_type": "cardiology",
}


def build_config(ecg_only: bool = False, max_samples: int = 1000, max_bytes: str = "512MB") -> dict:
    """The build config (demo.yaml's structure) for a generated input folder."""
    ecg = {
        "name": "scale_ecg",
        "path": "ecg",
        "licence": "CC-BY-4.0",
        "ecg": {"study_id_pattern": "(\\d+)", "partial_leads": "flag"},
    }
    if ecg_only:
        sources = [ecg]
    else:
        sources = [
            {"name": "scale_ct", "path": "ct", "licence": "Apache-2.0"},
            {"name": "scale_cxr", "path": "cxr", "licence": "MIT", "image": {"rendition_size": 512}},
            ecg,
            {
                "name": "scale_reports",
                "path": "reports",
                "licence": "CC-BY-4.0",
                "report": {"columns": dict(_REPORT_COLUMNS)},
            },
        ]
    return {
        "deid": {"secret_env": "MEDCORPUS_SECRET"},
        "sources": sources,
        "dedup": {"enabled": not ecg_only},
        "shards": {"max_samples": max_samples, "max_bytes": max_bytes},
        "split": {"train": 0.8, "val": 0.1, "test": 0.1},
        "workers": 2,
        "runner": "local",
    }


def _write_config(path: Path, cfg: dict, note: str) -> None:
    import yaml

    text = f"# {note}\n# Paths are relative to the build input folder (this folder).\n"
    path.write_text(text + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def generate(
    out_dir,
    n_ecg: int,
    seed: int,
    cxr_per: int = 100,
    ct_per: int = 1000,
    *,
    layout: str = "mimic",
    mimic_lead_order: bool = False,
    jobs: int = 1,
    shared: Path | None = None,
    max_samples: int = 1000,
) -> dict:
    """Write ``n_ecg`` ECGs + report rows, ``n_ecg // cxr_per`` chest X-rays and ``n_ecg // ct_per``
    CT series under ``out_dir`` (must be empty or absent), plus the build configs. Returns the
    summary also written to ``out_dir/inputs.json``."""
    if layout not in ("mimic", "flat"):
        raise ValueError("layout must be mimic or flat")
    if n_ecg < 1:
        raise ValueError("n_ecg must be >= 1")
    shared = Path(shared or SHARED_DATA)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"output folder is not empty: {out}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    plan = make_plan(n_ecg, seed, cxr_per, ct_per, shared)
    n_cxr, n_ct = len(plan["cxr_study"]), len(plan["ct_acc"])
    ecg_tasks = [
        (str(out), str(shared), seed, layout, mimic_lead_order, lo, hi, plan)
        for lo, hi in _chunks(n_ecg, 500)
    ]
    cxr_tasks = [(str(out), str(shared), seed, lo, hi, plan) for lo, hi in _chunks(n_cxr, 10)]
    ct_tasks = [(str(out), str(shared), seed, j, plan) for j in range(n_ct)]
    n_bytes = {"reports": _write_reports(out, plan, shared, layout)}
    t_plan = time.perf_counter()
    # one-time setup (imports, source reads, JPEG 2000 decodes), inherited by forked jobs
    t = time.perf_counter()
    _ecg_sources(shared, seed)
    if n_cxr:
        _cxr_template(shared)
    if n_ct:
        _ct_template(shared)
    seconds: dict[str, float] = {"setup": time.perf_counter() - t}
    if jobs > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork")) as ex:
            t = time.perf_counter()
            n_bytes["ecg"] = sum(ex.map(_write_ecg_chunk, ecg_tasks))
            seconds["ecg"] = time.perf_counter() - t
            t = time.perf_counter()
            n_bytes["cxr"] = sum(ex.map(_write_cxr_chunk, cxr_tasks))
            n_bytes["ct"] = sum(ex.map(_write_ct, ct_tasks))
            seconds["dicom"] = time.perf_counter() - t
    else:
        t, c = time.perf_counter(), time.process_time()
        n_bytes["ecg"] = sum(map(_write_ecg_chunk, ecg_tasks))
        seconds["ecg"] = time.perf_counter() - t
        seconds["ecg_cpu"] = time.process_time() - c
        t = time.perf_counter()
        n_bytes["cxr"] = sum(map(_write_cxr_chunk, cxr_tasks))
        n_bytes["ct"] = sum(map(_write_ct, ct_tasks))
        seconds["dicom"] = time.perf_counter() - t
    if not n_cxr:
        (out / "cxr").mkdir(exist_ok=True)  # the config names the folder
    if not n_ct:
        (out / "ct").mkdir(exist_ok=True)
    note = f"generated by bench/scale_inputs.py: n_ecg={n_ecg} seed={seed} layout={layout}"
    _write_config(out / CONFIG, build_config(max_samples=max_samples), note)
    _write_config(out / CONFIG_ECG_ONLY, build_config(ecg_only=True, max_samples=max_samples), note)
    total = time.perf_counter() - t0
    ct_slices = sum(1 for _ in (out / "ct").rglob("CT.*")) if n_ct else 0
    summary = {
        "generator_version": GENERATOR_VERSION,
        "params": {
            "n_ecg": n_ecg,
            "seed": seed,
            "cxr_per": cxr_per,
            "ct_per": ct_per,
            "layout": layout,
            "mimic_lead_order": mimic_lead_order,
            "max_samples": max_samples,
        },
        "counts": {
            "patients": int(len(np.unique(plan["ecg_patient"]))),
            "ecg": n_ecg,
            "reports": n_ecg,
            "cxr": n_cxr,
            "ct_series": n_ct,
            "ct_slices": ct_slices,
            "files": 2 * n_ecg + 1 + n_cxr + ct_slices,
        },
        "bytes": n_bytes,
        "seconds": {
            "plan_and_reports": round(t_plan - t0, 3),
            **{k: round(v, 3) for k, v in seconds.items()},
            "total": round(total, 3),
        },
        "ecg_records_per_s": round(n_ecg / max(seconds["ecg"], 1e-9), 1),
        # load-independent (jobs == 1 only): records per CPU second of this process
        "ecg_records_per_cpu_s": round(n_ecg / max(seconds["ecg_cpu"], 1e-9), 1)
        if "ecg_cpu" in seconds
        else None,
        "jobs": jobs,
        "licences": SOURCE_LICENCES,
        "config": CONFIG,
        "config_ecg_only": CONFIG_ECG_ONLY,
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return summary


def load_summary(out_dir) -> dict | None:
    """The summary of a finished generation, or ``None`` (absent or incomplete)."""
    p = Path(out_dir) / SUMMARY
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def input_dir_name(n_ecg: int, seed: int, cxr_per: int, ct_per: int, layout: str) -> str:
    return f"n{n_ecg}-seed{seed}-cxr{cxr_per}-ct{ct_per}-{layout}"


def ensure_inputs(
    cache_root,
    n_ecg: int,
    seed: int,
    cxr_per: int = 100,
    ct_per: int = 1000,
    *,
    layout: str = "mimic",
    jobs: int = 1,
    max_samples: int = 1000,
    log=print,
) -> tuple[Path, dict]:
    """The generated input folder for these parameters under ``cache_root``: reused when a
    finished generation (``inputs.json``) of the same generator version and parameters is there,
    else (re)generated. Returns ``(folder, summary)``."""
    out = Path(cache_root) / input_dir_name(n_ecg, seed, cxr_per, ct_per, layout)
    want = {
        "n_ecg": n_ecg,
        "seed": seed,
        "cxr_per": cxr_per,
        "ct_per": ct_per,
        "layout": layout,
        "mimic_lead_order": False,
        "max_samples": max_samples,
    }
    s = load_summary(out)
    if s and s.get("generator_version") == GENERATOR_VERSION and s.get("params") == want:
        log(f"inputs: reusing {out}")
        return out, s
    if out.exists():
        shutil.rmtree(out)
    log(f"inputs: generating {n_ecg} ECGs into {out} ...")
    s = generate(out, n_ecg, seed, cxr_per, ct_per, layout=layout, jobs=jobs, max_samples=max_samples)
    log(
        f"inputs: {s['counts']['files']} files, {sum(s['bytes'].values()) / 1e9:.2f} GB in "
        f"{s['seconds']['total']:.1f}s (ECG {s['ecg_records_per_s']:.0f} records/s)"
    )
    return out, s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Generate realistic synthetic medcorpus inputs (ECG + reports, CXR, CT) from the "
        "shared sample data, with new identities and perturbations.",
        epilog="Writes OUT/medcorpus.yaml; build with: MEDCORPUS_SECRET=... .venv/bin/medcorpus build OUT "
        "--config OUT/medcorpus.yaml --out BUILD",
    )
    ap.add_argument("out", type=Path, help="output folder (must be empty or absent)")
    ap.add_argument("--n-ecg", type=int, required=True, help="number of ECG records (and report rows)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    ap.add_argument("--cxr-per", type=int, default=100, help="one chest X-ray per this many ECGs (0: none)")
    ap.add_argument("--ct-per", type=int, default=1000, help="one CT series per this many ECGs (0: none)")
    ap.add_argument("--layout", choices=["mimic", "flat"], default="mimic", help="ECG folder layout")
    ap.add_argument("--mimic-lead-order", action="store_true", help="store aVF before aVL, as MIMIC-IV-ECG")
    ap.add_argument("--jobs", type=int, default=1, help="processes (output is the same for any value)")
    ap.add_argument("--max-samples", type=int, default=1000, help="shards.max_samples in the written config")
    ap.add_argument("--force", action="store_true", help="delete OUT first if it exists")
    args = ap.parse_args(argv)
    if args.force and args.out.exists():
        shutil.rmtree(args.out)
    s = generate(
        args.out,
        args.n_ecg,
        args.seed,
        args.cxr_per,
        args.ct_per,
        layout=args.layout,
        mimic_lead_order=args.mimic_lead_order,
        jobs=args.jobs,
        max_samples=args.max_samples,
    )
    print(json.dumps(s, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
