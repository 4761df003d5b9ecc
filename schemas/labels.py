"""Finding vocabularies for the structured report (radiology and ECG).

Labels are lower-snake-case identifiers; the report JSON Schema enumerates them so an LLM
under structured outputs can only emit known labels.
"""

from __future__ import annotations

#: the 14 CheXpert observations plus extra chest-radiograph findings and devices
CXR_LABELS: tuple[str, ...] = (
    "no_finding",
    "enlarged_cardiomediastinum",
    "cardiomegaly",
    "lung_opacity",
    "lung_lesion",
    "edema",
    "consolidation",
    "pneumonia",
    "atelectasis",
    "pneumothorax",
    "pleural_effusion",
    "pleural_other",
    "fracture",
    "support_devices",
    "nodule",
    "mass",
    "granuloma",
    "emphysema",
    "hernia",
    "scoliosis",
    "calcification",
    "airspace_disease",
    "interstitial_disease",
    "hyperinflation",
    "degenerative_spine",
    "pacemaker",
    "central_line",
    "endotracheal_tube",
    "surgical_clips",
    # added by the report rules (frequent in the Indiana gold labels)
    "copd",
    "kyphosis",
    "scarring",
    "tortuous_aorta",
    "aortic_atherosclerosis",
    "low_lung_volumes",
    "elevated_diaphragm",
    "osteopenia",
    "foreign_body",
)

#: ECG statements, following the PTB-XL SCP-ECG statement groups
ECG_LABELS: tuple[str, ...] = (
    "normal_ecg",
    "sinus_rhythm",
    "sinus_tachycardia",
    "sinus_bradycardia",
    "sinus_arrhythmia",
    "atrial_fibrillation",
    "atrial_flutter",
    "supraventricular_tachycardia",
    "pacemaker_rhythm",
    "premature_atrial_complex",
    "premature_ventricular_complex",
    "left_axis_deviation",
    "right_axis_deviation",
    "first_degree_av_block",
    "second_degree_av_block",
    "third_degree_av_block",
    "complete_right_bundle_branch_block",
    "incomplete_right_bundle_branch_block",
    "complete_left_bundle_branch_block",
    "incomplete_left_bundle_branch_block",
    "left_anterior_fascicular_block",
    "left_posterior_fascicular_block",
    "wpw",
    "left_ventricular_hypertrophy",
    "right_ventricular_hypertrophy",
    "left_atrial_enlargement",
    "right_atrial_enlargement",
    "myocardial_infarction",
    "anterior_mi",
    "inferior_mi",
    "lateral_mi",
    "septal_mi",
    "ischemia",
    "st_t_change",
    "long_qt",
    "low_voltage",
    # added by the report rules (PTB-XL SCP statements)
    "posterior_mi",
    "ivcd",
    "abnormal_qrs",
    "q_waves",
    "digitalis_effect",
)

ALL_LABELS: tuple[str, ...] = CXR_LABELS + ECG_LABELS
ASSERTIONS: tuple[str, ...] = ("present", "negated", "uncertain", "historical", "family")
