"""Generate the learnable benchmark: raw DICOM radiographs, WFDB ECGs and report CSVs that share
hidden attributes, in the formats ``medcorpus build`` ingests.

Each synthetic patient has one study (``study_id`` = 8 digits) with:

- a chest radiograph, DICOM CR or DX (alternating), MONOCHROME2, 12 bits stored, 256 x 256, with
  fake identity (PatientID, PatientName, dates, InstitutionName, UIDs) for de-identification to
  remove; hidden attributes **cardiomegaly** (cardiac silhouette width), **pleural effusion**
  (none/left/right: a dense base with a meniscus) and **nodule** (none/left/right: a dense disc);
- a 12-lead ECG, WFDB format 16, 500 Hz, 10 s, named ``s{study_id}`` (so the study id links it),
  with ``patient_id`` in a header comment; hidden **rhythm** (sinus rhythm / sinus bradycardia /
  sinus tachycardia / atrial fibrillation) and **rate**, **T-wave inversion** and **low voltage**;
- a radiology report and a cardiology report (two CSVs, columns report_id, patient_id,
  study_id, text) templated from the same attributes with varied wording and negations.

The ECG uses a vectorised sum-of-Gaussians beat model (P, Q, R, S, T per lead, as in McSharry's
ECGSYN) because neurokit2's 12-lead ``ecg_simulate(method="multileads")`` took ~0.5 s per record
here and has no control over P waves (needed for atrial fibrillation).

The hidden attributes go to ``--truth`` (a CSV outside the input folder), never into the inputs.
Usage: ``python bench/learnable/generate.py OUT_INPUT_DIR --patients 600 --seed 0``
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("bench.learnable")

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
FS = 500
SECONDS = 10
RHYTHMS = ("sinus_rhythm", "sinus_bradycardia", "sinus_tachycardia", "atrial_fibrillation")
RHYTHM_P = (0.4, 0.2, 0.2, 0.2)
SIDES = ("none", "left", "right")


@dataclass(frozen=True)
class Study:
    """Hidden attributes of one synthetic study (the ground truth of the benchmark)."""

    patient_id: str
    study_id: str
    cardiomegaly: bool
    effusion: str
    nodule: str
    rhythm: str
    rate: int
    t_inversion: bool
    low_voltage: bool
    modality: str
    age: int
    sex: str


def draw_study(i: int, rng: np.random.Generator) -> Study:
    rhythm = RHYTHMS[rng.choice(len(RHYTHMS), p=RHYTHM_P)]
    lo, hi = {
        "sinus_rhythm": (62, 95),
        "sinus_bradycardia": (42, 57),
        "sinus_tachycardia": (105, 145),
        "atrial_fibrillation": (70, 140),
    }[rhythm]
    return Study(
        patient_id=f"P{100000 + i:06d}",
        study_id=f"{50000000 + 7 * i + 3:08d}",
        cardiomegaly=bool(rng.random() < 0.4),
        effusion=SIDES[rng.choice(3, p=(0.5, 0.25, 0.25))],
        nodule=SIDES[rng.choice(3, p=(0.5, 0.25, 0.25))],
        rhythm=rhythm,
        rate=int(rng.integers(lo, hi + 1)),
        t_inversion=bool(rng.random() < 0.35),
        low_voltage=bool(rng.random() < 0.25),
        modality="CR" if i % 2 == 0 else "DX",
        age=int(rng.integers(25, 88)),
        sex="F" if rng.random() < 0.5 else "M",
    )


# --------------------------------------------------------------------------- radiograph


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def render_cxr(s: Study, rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A PA chest radiograph, float in [0, 1] (bright = dense), (size, size)."""
    from scipy.ndimage import gaussian_filter

    yy, xx = np.mgrid[0:size, 0:size] / float(size)
    sy, sx = rng.normal(0, 0.02, 2)
    scale = rng.uniform(0.93, 1.07)
    yy = (yy - 0.5 - sy) / scale + 0.5
    xx = (xx - 0.5 - sx) / scale + 0.5
    img = np.full((size, size), 0.08)
    img[_ellipse(yy, xx, 0.58, 0.5, 0.55, 0.47)] = 0.5  # soft tissue
    lung_ry, lung_rx = rng.uniform(0.27, 0.31), rng.uniform(0.14, 0.17)
    lungs = {"right": (0.46, 0.30), "left": (0.46, 0.70)}  # patient's right is image left (PA)
    lung_mask = np.zeros_like(img, dtype=bool)
    for cy, cx in lungs.values():
        lung_mask |= _ellipse(yy, xx, cy, cx, lung_ry, lung_rx)
    img[lung_mask] = 0.18
    # ribs: faint periodic arcs inside the lungs
    rib = 0.05 * (np.sin((yy + 0.15 * (xx - 0.5) ** 2) * 2 * np.pi * 9 + rng.uniform(0, 6)) > 0.6)
    img = img + rib * lung_mask
    img[(np.abs(xx - 0.5) < 0.05) & (yy > 0.12) & (yy < 0.62)] = 0.62  # mediastinum
    half_w = (rng.uniform(0.35, 0.41) if s.cardiomegaly else rng.uniform(0.19, 0.24)) * 0.5
    half_h = 0.14 if s.cardiomegaly else 0.115
    img[_ellipse(yy, xx, 0.64, 0.53, half_h, half_w)] = 0.7  # heart, shifted to the patient's left
    img[(yy > 0.74 + 0.06 * np.abs(xx - 0.5)) & (np.abs(xx - 0.5) < 0.36)] = 0.62  # diaphragm/abdomen
    for side, (cy, cx) in lungs.items():
        inside = _ellipse(yy, xx, cy, cx, lung_ry, lung_rx)
        if s.effusion == side:
            lateral = cx + (-1 if side == "right" else 1) * lung_rx
            level = cy + lung_ry * rng.uniform(0.4, 0.6)
            menisc = yy > level - 0.1 * np.clip(1 - np.abs(xx - lateral) / (2 * lung_rx), 0, 1)
            img[inside & menisc] = 0.6
        if s.nodule == side:
            ny = cy + rng.uniform(-0.55, 0.15) * lung_ry
            nx = cx + rng.uniform(-0.5, 0.5) * lung_rx
            r = rng.uniform(0.05, 0.065)
            img += 0.45 * np.exp(-(((yy - ny) ** 2 + (xx - nx) ** 2) / (2 * (r / 1.5) ** 2)))
    img = gaussian_filter(img, rng.uniform(1.0, 2.0))
    img = img * rng.uniform(0.85, 1.1) + rng.normal(0, 0.02, img.shape)
    img += 0.05 * (yy - 0.5) * rng.normal()  # exposure gradient
    return np.clip(img, 0.0, 1.0)


def write_dicom(s: Study, img: np.ndarray, path: Path, when: dt.datetime, index: int) -> None:
    """Write ``img`` as a CR/DX DICOM file with fake identifying attributes."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_class = "1.2.840.10008.5.1.4.1.1.1" if s.modality == "CR" else "1.2.840.10008.5.1.4.1.1.1.1"
    sop_uid = generate_uid(entropy_srcs=["bench-sop", s.study_id])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["bench-study", s.study_id])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["bench-series", s.study_id])
    ds.PatientID = s.patient_id
    ds.PatientName = f"SYNTH^PATIENT{index:05d}"
    ds.PatientBirthDate = f"{when.year - s.age}0101"
    ds.PatientSex = s.sex
    ds.AccessionNumber = s.study_id
    ds.StudyID = s.study_id[-6:]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.InstitutionName = "Synthetic General Hospital"
    ds.ReferringPhysicianName = "DOCTOR^SYNTHETIC"
    ds.Modality = s.modality
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = img.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    if s.modality == "DX":
        ds.ImagerPixelSpacing = [0.8, 0.8]
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
    else:
        ds.PixelSpacing = [0.8, 0.8]
    ds.PixelData = (img * 4095).round().astype("<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


# --------------------------------------------------------------------------- ECG

# per-lead amplitudes (mV) of P, Q, R, S, T for a normal axis (rough textbook values)
_P = np.array([0.08, 0.12, 0.05, -0.1, 0.03, 0.08, 0.05, 0.07, 0.07, 0.08, 0.08, 0.07])
_Q = np.array([-0.05, -0.08, -0.05, 0.0, -0.04, -0.06, 0.0, 0.0, -0.02, -0.05, -0.08, -0.08])
_R = np.array([0.7, 1.1, 0.45, -0.75, 0.3, 0.7, 0.25, 0.6, 0.9, 1.3, 1.2, 0.95])
_S = np.array([-0.1, -0.2, -0.15, 0.05, -0.1, -0.15, -1.0, -1.2, -0.7, -0.4, -0.2, -0.1])
_T = np.array([0.25, 0.35, 0.12, -0.3, 0.1, 0.22, 0.05, 0.35, 0.4, 0.35, 0.3, 0.25])
_T_INVERTED = np.array([1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1], dtype=bool)  # I, III, aVL, V1-V6


def render_ecg(s: Study, rng: np.random.Generator) -> np.ndarray:
    """A 12-lead ECG in mV, (5000, 12) at 500 Hz, from a sum-of-Gaussians beat model."""
    n = FS * SECONDS
    t = np.arange(n) / FS
    rr0 = 60.0 / s.rate
    af = s.rhythm == "atrial_fibrillation"
    beats, tb = [], rng.uniform(0.05, rr0)
    while tb < SECONDS + 0.5:
        beats.append(tb)
        if af:
            tb += rr0 * rng.uniform(0.6, 1.4)
        else:
            tb += rr0 * (1 + 0.03 * np.sin(2 * np.pi * 0.25 * tb) + rng.normal(0, 0.01))
    beats = np.asarray(beats)
    gain = rng.uniform(0.8, 1.2, 12) * (0.35 if s.low_voltage else 1.0)
    qt = 0.16 + 0.14 * np.sqrt(rr0)
    t_amp = np.where(_T_INVERTED & s.t_inversion, -np.abs(_T) * 0.9, _T)
    waves = [  # (amplitude per lead, offset from R in s, width sigma in s)
        (_Q * gain, -0.028, 0.008),
        (_R * gain, 0.0, 0.011),
        (_S * gain, 0.03, 0.011),
        (t_amp * rng.uniform(0.8, 1.2), qt, 0.045),
    ]
    if not af:
        waves.append((_P * rng.uniform(0.8, 1.2), -0.16, 0.022))
    sig = np.zeros((n, 12))
    dtb = t[:, None] - beats[None, :]
    for amp, off, width in waves:
        sig += np.exp(-((dtb - off) ** 2) / (2 * width**2)).sum(axis=1)[:, None] * amp[None, :]
    if s.t_inversion:  # a little ST depression where T is inverted
        st = np.exp(-((dtb - qt * 0.55) ** 2) / (2 * 0.05**2)).sum(axis=1)
        sig -= 0.05 * st[:, None] * _T_INVERTED[None, :]
    if af:  # fibrillatory waves, 5-7 Hz, strongest in V1 and the inferior leads
        fw = sum(np.sin(2 * np.pi * rng.uniform(5, 7) * t + rng.uniform(0, 6)) for _ in range(3)) / 3
        lead_w = np.array([0.3, 0.6, 0.6, 0.4, 0.2, 0.6, 1.0, 0.7, 0.5, 0.4, 0.3, 0.3])
        sig += 0.06 * fw[:, None] * lead_w[None, :]
    sig += 0.08 * np.sin(2 * np.pi * rng.uniform(0.1, 0.35) * t + rng.uniform(0, 6))[:, None]  # wander
    sig += rng.normal(0, 0.015, sig.shape)
    return sig


def write_ecg(s: Study, sig: np.ndarray, out_dir: Path, when: dt.datetime) -> None:
    import wfdb

    out_dir.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        f"s{s.study_id}",
        fs=FS,
        units=["mV"] * 12,
        sig_name=list(LEADS),
        p_signal=sig,
        fmt=["16"] * 12,
        comments=[f"patient_id: {s.patient_id}", f"age: {s.age}", f"sex: {s.sex}"],
        base_date=when.date(),
        base_time=when.time(),
        write_dir=str(out_dir),
    )


# --------------------------------------------------------------------------- reports


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def radiology_report(s: Study, rng: np.random.Generator) -> str:
    """Findings + impression text of the radiograph (sides named from the patient's view)."""
    f, imp = [], []
    if s.cardiomegaly:
        f.append(
            _pick(
                rng,
                (
                    "The heart is enlarged.",
                    "Cardiomegaly.",
                    "The cardiac silhouette is enlarged, consistent with cardiomegaly.",
                ),
            )
        )
        imp.append("Cardiomegaly.")
    else:
        f.append(
            _pick(
                rng,
                ("Heart size is normal.", "No cardiomegaly.", "The cardiac silhouette is normal in size."),
            )
        )
    if s.effusion != "none":
        f.append(
            _pick(
                rng,
                (
                    f"There is a {s.effusion} pleural effusion.",
                    f"Small {s.effusion} pleural effusion with blunting of the costophrenic angle.",
                    f"{s.effusion.capitalize()}-sided pleural effusion.",
                ),
            )
        )
        imp.append(f"{s.effusion.capitalize()} pleural effusion.")
    else:
        f.append(
            _pick(rng, ("No pleural effusion.", "The costophrenic angles are sharp, no pleural effusion."))
        )
    if s.nodule != "none":
        mm = int(rng.integers(8, 16))
        f.append(
            _pick(
                rng,
                (
                    f"A {mm} mm nodule is seen in the {s.nodule} lung.",
                    f"There is a {s.nodule} pulmonary nodule measuring {mm} mm.",
                    f"Nodule in the {s.nodule} mid lung zone.",
                ),
            )
        )
        imp.append(f"{s.nodule.capitalize()} lung nodule.")
    else:
        f.append(_pick(rng, ("No focal nodule.", "No pulmonary nodule or mass.")))
    f.append(_pick(rng, ("No pneumothorax.", "There is no pneumothorax.")))
    if not imp:
        imp.append(_pick(rng, ("No acute cardiopulmonary process.", "Normal chest radiograph.")))
    return f"EXAMINATION: Chest radiograph, PA view.\nFINDINGS: {' '.join(f)}\nIMPRESSION: {' '.join(imp)}"


def cardiology_report(s: Study, rng: np.random.Generator) -> str:
    """ECG interpretation text: rhythm, rate, repolarisation, voltage."""
    rhythm = {
        "sinus_rhythm": _pick(rng, ("Sinus rhythm", "Normal sinus rhythm")),
        "sinus_bradycardia": "Sinus bradycardia",
        "sinus_tachycardia": "Sinus tachycardia",
        "atrial_fibrillation": _pick(
            rng, ("Atrial fibrillation", "Atrial fibrillation with irregular ventricular response")
        ),
    }[s.rhythm]
    parts = [f"{rhythm}, ventricular rate {s.rate} bpm."]
    if s.t_inversion:
        parts.append(
            _pick(
                rng,
                (
                    "T wave inversion in the lateral and precordial leads, ST-T changes.",
                    "Nonspecific ST-T changes with T wave inversion.",
                ),
            )
        )
    else:
        parts.append(_pick(rng, ("No ST-T changes.", "Normal repolarisation.")))
    if s.low_voltage:
        parts.append(_pick(rng, ("Low QRS voltage.", "Low voltage in the limb leads.")))
    normal = s.rhythm == "sinus_rhythm" and not s.t_inversion and not s.low_voltage
    parts.append("Normal ECG." if normal else "Abnormal ECG.")
    return "ECG INTERPRETATION: " + " ".join(parts)


# --------------------------------------------------------------------------- driver


def generate(out: Path, patients: int, seed: int, truth: Path | None = None) -> list[Study]:
    """Write ``patients`` studies under ``out`` (dicom/, ecg/, reports/); return the hidden truth."""
    rng = np.random.default_rng(seed)
    studies = [draw_study(i, rng) for i in range(patients)]
    rad_rows, card_rows = [], []
    base = dt.datetime(2031, 3, 1, 8, 0, 0)
    for i, s in enumerate(studies):
        r = np.random.default_rng([seed, i])
        when = base + dt.timedelta(days=int(r.integers(0, 700)), minutes=int(r.integers(0, 600)))
        write_dicom(s, render_cxr(s, r), out / "dicom" / s.patient_id / f"{s.study_id}.dcm", when, i)
        write_ecg(s, render_ecg(s, r), out / "ecg", when + dt.timedelta(minutes=30))
        rad_rows.append(
            {
                "report_id": f"RAD{i:06d}",
                "patient_id": s.patient_id,
                "study_id": s.study_id,
                "text": radiology_report(s, r),
            }
        )
        card_rows.append(
            {
                "report_id": f"ECG{i:06d}",
                "patient_id": s.patient_id,
                "study_id": s.study_id,
                "text": cardiology_report(s, r),
            }
        )
    for name, rows in (("radiology", rad_rows), ("cardiology", card_rows)):
        d = out / "reports" / name
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"{name}_reports.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=["report_id", "patient_id", "study_id", "text"])
            w.writeheader()
            w.writerows(rows)
    if truth is not None:
        truth.parent.mkdir(parents=True, exist_ok=True)
        with open(truth, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(asdict(studies[0])))
            w.writeheader()
            w.writerows(asdict(s) for s in studies)
    return studies


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="input folder to create (dicom/, ecg/, reports/)")
    p.add_argument("--patients", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--truth", type=Path, default=None, help="hidden attributes CSV (default: OUT.truth.csv)")
    a = p.parse_args(argv)
    truth = a.truth or a.out.with_name(a.out.name + ".truth.csv")
    generate(a.out, a.patients, a.seed, truth)
    print(f"wrote {a.patients} studies to {a.out} (truth: {truth})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
