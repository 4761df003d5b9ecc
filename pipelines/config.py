"""The build configuration: one YAML file → frozen dataclasses, loaded in one place.

Precedence: defaults < YAML file < CLI flags (applied with :func:`dataclasses.replace`).
A bad file or value raises :class:`ConfigError` with a one-line message naming the problem.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from schemas.config_coerce import BYTE_SIZE, ConfigError, from_mapping
from schemas.config_coerce import parse_size as parse_size  # re-exported (CLI flags)
from workers.config import (
    EcgConfig,
    ImageConfig,
    LimitsConfig,
    ReportConfig,
    VolumeConfig,
)
from workers.deid.pseudonym import DEMO_SECRET, resolve_secret

DEFAULT_EXCLUDE: tuple[str, ...] = ("README*", "*.md", "*.yaml", "*.yml", ".*", "LICENSE*", "*.license")


@dataclass(frozen=True)
class SourceConfig:
    """One input source: a folder (relative to the build input) and how to read it."""

    name: str
    path: str = "."
    licence: str = "unknown"
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    image: ImageConfig = field(default_factory=ImageConfig)
    volume: VolumeConfig = field(default_factory=VolumeConfig)
    ecg: EcgConfig = field(default_factory=EcgConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


@dataclass(frozen=True)
class DeidConfig:
    """Where the pseudonymisation secret comes from. ``demo`` uses the public demo secret."""

    secret_env: str = "MEDCORPUS_SECRET"
    demo: bool = False


@dataclass(frozen=True)
class ShardConfig:
    """Shard size limits: a shard closes at ``max_samples`` samples or ``max_bytes`` bytes."""

    max_samples: int = 1000
    max_bytes: int = field(default=512 * 1024 * 1024, metadata=BYTE_SIZE)


@dataclass(frozen=True)
class SplitConfig:
    """Patient-level split fractions (must sum to 1)."""

    train: float = 0.8
    val: float = 0.1
    test: float = 0.1


@dataclass(frozen=True)
class LinkWindow:
    """Link a record of ``modality`` to an ``anchor`` record of the same patient when it was
    acquired between ``min_hours`` and ``max_hours`` after the anchor (negative: before).
    Symile-MIMIC: anchor ecg, image within [24, 72] h."""

    anchor: str
    modality: str
    min_hours: float
    max_hours: float


@dataclass(frozen=True)
class AnchorWindow:
    """Items of ``modality`` (``image``, ``volume``, ``ecg``, ``report`` or ``labs``) acquired
    between ``min_hours`` and ``max_hours`` after the anchor time (negative: before); each bound
    is inclusive unless ``include_min``/``include_max`` is false. A ``required`` modality
    missing from the window means no sample for that anchor. Symile-MIMIC: ecg [-24, 24],
    image (24, 72], labs [-24, 24], all required."""

    modality: str
    min_hours: float
    max_hours: float
    include_min: bool = True
    include_max: bool = True
    required: bool = True


@dataclass(frozen=True)
class LinkFilter:
    """Keep only ``modality`` items whose ``field`` (a record attribute such as
    ``view_position``, or a metadata-table field) is one of ``values`` (case-insensitive), and
    drop items with a QC flag kind in ``qc_exclude`` (ECG: ``nan``, ``flat``, ``clipped``, ...).
    Dropped items are quarantined as ``filtered_out``."""

    modality: str
    field: str = ""
    values: tuple[str, ...] = ()
    qc_exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnchorConfig:
    """Samples around anchor rows (hospital admissions) of the ``table`` named in ``tables``.

    Per anchor (in time order) and window: the ``earliest`` item in the window (labs: the
    earliest value per lab item). ``exclusive``: an item joins at most one anchor (the first
    whose window holds it), so every input unit is in at most one sample."""

    table: str
    windows: tuple[AnchorWindow, ...] = ()
    filters: tuple[LinkFilter, ...] = ()
    pick: str = "earliest"
    exclusive: bool = True


@dataclass(frozen=True)
class LinkConfig:
    """Declarative linking rules, applied in order: shared study first (if ``by_study``), then
    patient time windows, or windows around ``anchor`` rows when one is set.
    ``unlinked``: ``keep`` (single-modality samples) or ``drop`` (quarantined with reason
    ``unlinked``, so they are still counted)."""

    by_study: bool = True
    windows: tuple[LinkWindow, ...] = ()
    unlinked: str = "keep"
    anchor: AnchorConfig | None = None


#: the 14 CheXpert observations except "No Finding" (CheXpert train.csv, MIMIC-CXR-JPG chexpert.csv)
CHEXPERT_FINDINGS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)


@dataclass(frozen=True)
class CaptionConfig:
    """Label-derived captions of an identity table (``pipelines.captions``, UniMed-CLIP style).

    Each sample whose items carry this table's labels gets a generated ``report_{i}.txt`` (the
    caption) and ``report_{i}.json`` (a structured report of the same labels), listed under
    ``generated_text`` in its ``meta.json``. ``labels``: label columns, in the order the text
    names them (from ``fields``, else from the ``labels_path`` table). A label is positive,
    uncertain or negative when its value is in ``positive``/``uncertain``/``negative`` (blank or
    any other value: not mentioned). ``templates``: format strings over ``{findings}``, one
    chosen per caption by a stable hash of the sample key; ``names``: label → the words the text
    uses (default: the label lower-cased). No positive and no uncertain label: ``no_finding``
    (then the negatives). Nothing mentioned at all (and ``no_finding_label`` not positive): no
    caption. ``llm_rewrite``: rephrase each caption through the build's ``llm:`` (the report
    structurer's vLLM and cache), kept only if it passes ``pipelines.caption_guard``.
    """

    labels: tuple[str, ...] = CHEXPERT_FINDINGS
    positive: tuple[str, ...] = ("1.0", "1")
    uncertain: tuple[str, ...] = ("-1.0", "-1")
    negative: tuple[str, ...] = ("0.0", "0")
    templates: tuple[str, ...] = ("Findings: {findings}.", "The image shows {findings}.", "{findings}.")
    names: dict = field(default_factory=dict)
    uncertain_phrase: str = "possible {label}"
    negative_phrase: str = "no {label}"
    mention_uncertain: bool = True
    mention_negative: bool = True
    no_finding: str = "No finding."
    no_finding_label: str = "No Finding"
    report_type: str = "radiology"
    language: str = "en"
    llm_rewrite: bool = False


@dataclass(frozen=True)
class TableConfig:
    """A metadata table (CSV/TSV, optionally gzipped) read in a worker, row by row.

    ``role``:

    - ``identity``: each row names one file of ``source`` through ``path_template`` (Python
      format over the row's columns, e.g. ``files/p{subject_id:.2}/p{subject_id}/s{study_id}/
      {dicom_id}.jpg``; relative to ``path_root``, default the table's folder) and gives its
      patient, study and time. ``path_regex`` named groups (matched on the rendered path) are
      usable in the templates too (CheXpert: ``patient(?P<patient>\\d+)``). ``fields``
      are copied into the item's metadata (codes, never free text); ``view`` fills an image's
      view position. ``labels_path`` is a label table joined on ``labels_on`` columns
      (MIMIC-CXR CheXpert labels); its other columns become the item's labels.
      ``parse_column`` + ``parse_regex``: named groups of the regex matched on that column are
      usable in every template (CT-RATE: ``VolumeName`` ``train_1_a_1`` → folder ``train_1``).
      ``slope``, ``intercept``, ``spacing`` (volumes; CT-RATE's metadata CSV): templates giving
      the rescale slope/intercept, applied when the decoded volume is not yet in Hounsfield
      units, and the spacing text (``"{XYSpacing} {ZSpacing}"``), which replaces the header's
      voxel sizes (``workers.volume.ct_metadata``). ``caption``: label-derived captions
      (:class:`CaptionConfig`).
    - ``anchor``: each row is an anchor (``id``, ``patient``, ``time``): a hospital admission.
    - ``labs``: a long lab-event table (``patient``, ``time``, ``item``, ``value``, ``unit``);
      ``items`` keeps those item ids, else the ``top_k`` most frequent (numeric values);
      ``names_path`` (columns ``names_id``, ``names_label``) names the items.
    - ``split``: a published split (MIMIC-CXR-JPG's ``mimic-cxr-2.0.0-split.csv``): ``patient``
      and ``value`` (the split name: train, validate/val, test) per row. Splits stay by patient:
      a patient's split is the one most of its rows name (ties: test, then val); patients the
      table does not list fall back to the ``split:`` fractions.

    ``patient``, ``study``, ``id`` and ``time`` are format templates over the columns
    (``"{subject_id}"``, ``"{StudyDate} {StudyTime}"``); ``time_format`` is a ``strptime``
    format, or ``""`` for ISO 8601 / DICOM ``YYYYMMDD HHMMSS.f``.
    """

    name: str
    role: str
    path: str
    licence: str = "unknown"
    source: str = ""
    path_template: str = ""
    path_root: str = ""
    path_regex: str = ""
    patient: str = ""
    study: str = ""
    id: str = ""
    time: str = ""
    time_format: str = ""
    fields: tuple[str, ...] = ()
    view: str = ""
    labels_path: str = ""
    labels_on: tuple[str, ...] = ()
    parse_column: str = ""
    parse_regex: str = ""
    slope: str = ""
    intercept: str = ""
    spacing: str = ""
    item: str = ""
    value: str = ""
    unit: str = ""
    items: tuple[str, ...] = ()
    top_k: int = 0
    names_path: str = ""
    names_id: str = ""
    names_label: str = ""
    caption: CaptionConfig | None = None


@dataclass(frozen=True)
class DedupConfig:
    """Tiered dedup: exact (decoded content) then near-duplicate (embedding LSH, cosine >=
    threshold per modality). ``same_patient_window_days``: near-duplicates of one patient are
    duplicates only within this many days (0 = any time). ``checkpoints``: optional TorchScript
    encoder per modality (default: weight-free thumbnail embeddings; MiniLM for text)."""

    enabled: bool = True
    image_threshold: float = 0.95
    ecg_threshold: float = 0.97
    volume_threshold: float = 0.97
    report_threshold: float = 0.97
    same_patient_window_days: float = 0.0
    image_checkpoint: str = ""
    ecg_checkpoint: str = ""
    volume_checkpoint: str = ""


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build needs. ``sources`` empty means: the whole input folder, defaults."""

    sources: tuple[SourceConfig, ...] = ()
    deid: DeidConfig = field(default_factory=DeidConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    linking: LinkConfig = field(default_factory=LinkConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    llm: dict = field(default_factory=dict)  # workers.llm.config.LlmConfig fields (see docs/vllm.md)
    tables: tuple[TableConfig, ...] = ()  # metadata tables: identity joins, anchors, labs
    workers: int = 1
    runner: str = "local"
    strict: bool = False  # True: an unexpected exception fails the build (tests use this)

    def resolved_sources(self) -> tuple[SourceConfig, ...]:
        return self.sources or (SourceConfig(name="default"),)

    def secret_source(self) -> str:
        """Where workers find the secret: ``demo``, ``hook:module:function`` or ``env:NAME``."""
        if self.deid.demo:
            return "demo"
        hook = os.environ.get("MEDCORPUS_SECRET_HOOK", "")
        return f"hook:{hook}" if hook else f"env:{self.deid.secret_env}"

    def secret(self) -> str:
        """The pseudonymisation secret (never logged, never written)."""
        if self.deid.demo:
            return DEMO_SECRET
        value = resolve_secret(self.secret_source())
        if len(value) < 16:
            raise ConfigError(
                f"de-identification secret missing: set ${self.deid.secret_env} (>= 16 chars) "
                "or use deid.demo: true for demo data"
            )
        return value


def config_from_dict(data: dict) -> BuildConfig:
    """Validate and build a :class:`BuildConfig` from parsed YAML."""
    if not isinstance(data, dict):
        raise ConfigError("config: the top level must be a mapping")
    data = dict(data)
    raw_sources = data.pop("sources", []) or []
    if not isinstance(raw_sources, list):
        raise ConfigError("sources: expected a list")
    sources = []
    for i, s in enumerate(raw_sources):
        if not isinstance(s, dict) or "name" not in s:
            raise ConfigError(f"sources[{i}]: each source needs a name")
        sources.append(from_mapping(SourceConfig, s, f"sources[{i}]"))
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError("sources: names must be unique")
    cfg = from_mapping(BuildConfig, data)
    cfg = replace(cfg, sources=tuple(sources))
    validate_config(cfg)
    return cfg


def validate_config(cfg: BuildConfig) -> None:
    """Range checks that types alone cannot express."""
    s = cfg.split
    if min(s.train, s.val, s.test) < 0 or abs(s.train + s.val + s.test - 1.0) > 1e-6:
        raise ConfigError("split: fractions must be >= 0 and sum to 1")
    if cfg.shards.max_samples < 1 or cfg.shards.max_bytes < 1024:
        raise ConfigError("shards: max_samples must be >= 1 and max_bytes >= 1KiB")
    if cfg.workers < 1:
        raise ConfigError("workers: must be >= 1")
    if cfg.linking.unlinked not in ("keep", "drop"):
        raise ConfigError("linking.unlinked: must be keep or drop")
    mods = ("image", "volume", "ecg", "report")
    for w in cfg.linking.windows:
        if w.anchor not in mods or w.modality not in mods or w.anchor == w.modality:
            raise ConfigError(f"linking.windows: anchor/modality must be two of {', '.join(mods)}")
        if w.min_hours > w.max_hours:
            raise ConfigError("linking.windows: min_hours must be <= max_hours")
    validate_tables(cfg)
    for name in ("image", "ecg", "volume", "report"):
        t = getattr(cfg.dedup, f"{name}_threshold")
        if not 0.5 <= t <= 1.0:
            raise ConfigError(f"dedup.{name}_threshold: must be in [0.5, 1]")
    for src in cfg.sources:
        if src.report.structurer not in ("rules", "llm"):
            raise ConfigError(f"sources.{src.name}.report.structurer: must be rules or llm")
        validate_report_path(src)
        validate_report_table(src)
    if cfg.runner not in ("local", "beam", "dask"):
        raise ConfigError(f"runner: must be local, beam or dask, got {cfg.runner!r}")
    validate_llm(cfg)


def validate_llm(cfg: BuildConfig) -> None:
    """``llm:`` is read by the LLM structurer's own dataclass (``workers.llm.config.LlmConfig``)
    through the same loader: checked here, when the config is read, if a source uses the LLM or
    the section is given, so a typo stops the build before any work."""
    rewrite = [t.name for t in cfg.tables if t.caption is not None and t.caption.llm_rewrite]
    if rewrite and not cfg.llm:
        raise ConfigError(f"tables.{rewrite[0]}.caption.llm_rewrite: needs the llm: section (docs/vllm.md)")
    if not cfg.llm and all(src.report.structurer != "llm" for src in cfg.resolved_sources()):
        return
    from workers.llm.config import LlmConfig

    try:
        LlmConfig.from_mapping(cfg.llm)
    except ConfigError:
        raise
    except ValueError as exc:  # LlmConfig's own range checks (model required, mode, ...)
        raise ConfigError(f"llm: {exc}") from None


def validate_report_path(src: SourceConfig) -> None:
    """``report.path_regex``: a valid regex with named groups; the columns it names exist."""
    r, where = src.report, f"sources.{src.name}.report"
    if not r.path_regex:
        return
    try:
        groups = set(re.compile(r.path_regex).groupindex)
    except re.error:
        raise ConfigError(f"{where}.path_regex: not a valid regular expression") from None
    if not groups:
        raise ConfigError(f"{where}.path_regex: needs named groups, e.g. (?P<study_id>...)")
    for name in ("patient_id", "study_id", "timestamp", "report_id"):
        column = getattr(r.columns, name)
        if column and column not in groups:
            raise ConfigError(f"{where}.columns.{name}: {column!r} is not a named group of path_regex")


def validate_report_table(src: SourceConfig) -> None:
    """``report.columns.text_join`` and the ``measurements`` (column → unit) of report tables."""
    r, where = src.report, f"sources.{src.name}.report"
    if r.columns.text_join not in ("sections", "lines"):
        raise ConfigError(f"{where}.columns.text_join: must be sections or lines")
    for col, unit in r.measurements.items():
        if not isinstance(col, str) or not col.strip() or not isinstance(unit, str) or not unit.strip():
            raise ConfigError(f"{where}.measurements: column names and units must be non-empty text")
    for col in r.fields:
        if not col.strip():
            raise ConfigError(f"{where}.fields: column names must be non-empty")
    overlap = sorted(set(r.measurements) & (set(r.fields) | set(r.columns.text)))
    if overlap:
        raise ConfigError(
            f"{where}.measurements: column(s) also used as text or fields: {', '.join(overlap)}"
        )


TABLE_ROLES = ("identity", "anchor", "labs", "split")
ANCHOR_MODALITIES = ("image", "volume", "ecg", "report", "labs")


def validate_tables(cfg: BuildConfig) -> None:
    """Metadata tables and anchor linking: names, roles, required columns, windows."""
    names = [t.name for t in cfg.tables]
    if len(set(names)) != len(names):
        raise ConfigError("tables: names must be unique")
    sources = {s.name for s in cfg.sources}
    need = {"identity": ("source", "path_template", "patient"), "anchor": ("id", "patient", "time")}
    need["labs"] = ("patient", "time", "item", "value")
    need["split"] = ("patient", "value")
    for t in cfg.tables:
        if t.role not in TABLE_ROLES:
            raise ConfigError(f"tables.{t.name}.role: must be one of {', '.join(TABLE_ROLES)}")
        missing = [k for k in need[t.role] if not getattr(t, k)]
        if missing:
            raise ConfigError(f"tables.{t.name}: role {t.role} needs {', '.join(missing)}")
        if t.role == "identity" and t.source not in sources:
            raise ConfigError(f"tables.{t.name}.source: no source named {t.source!r}")
        if t.role == "labs" and not t.items and t.top_k < 1:
            raise ConfigError(f"tables.{t.name}: labs need items or top_k >= 1")
        if bool(t.parse_column) != bool(t.parse_regex):
            raise ConfigError(f"tables.{t.name}: parse_column and parse_regex go together")
        if t.parse_regex:
            try:
                re.compile(t.parse_regex)
            except re.error:
                raise ConfigError(f"tables.{t.name}.parse_regex: not a valid regular expression") from None
        if (t.slope or t.intercept or t.spacing) and any(
            s.volume.target_spacing_mm for s in cfg.sources if s.name == t.source
        ):
            raise ConfigError(
                f"tables.{t.name}: metadata spacing/rescale and sources.volume.target_spacing_mm exclude each other"
            )
        if t.caption is not None:
            validate_caption(t)
    a = cfg.linking.anchor
    if a is None:
        if any(t.role in ("anchor", "labs") for t in cfg.tables):
            raise ConfigError("tables: anchor/labs tables need linking.anchor")
        return
    roles = {t.name: t.role for t in cfg.tables}
    if roles.get(a.table) != "anchor":
        raise ConfigError(f"linking.anchor.table: no table {a.table!r} with role anchor")
    if a.pick not in ("earliest", "nearest"):
        raise ConfigError("linking.anchor.pick: must be earliest or nearest")
    if not a.windows:
        raise ConfigError("linking.anchor.windows: at least one window")
    mods = [w.modality for w in a.windows]
    if len(set(mods)) != len(mods) or any(m not in ANCHOR_MODALITIES for m in mods):
        raise ConfigError(
            f"linking.anchor.windows: one window per modality, of {', '.join(ANCHOR_MODALITIES)}"
        )
    for w in a.windows:
        if w.min_hours > w.max_hours:
            raise ConfigError("linking.anchor.windows: min_hours must be <= max_hours")
    if "labs" in mods and sum(r == "labs" for r in roles.values()) != 1:
        raise ConfigError("linking.anchor: a labs window needs exactly one table with role labs")
    for f in a.filters:
        if f.modality not in ANCHOR_MODALITIES or not (f.field or f.qc_exclude):
            raise ConfigError("linking.anchor.filters: each needs a modality and a field or qc_exclude")


def validate_caption(t: TableConfig) -> None:
    """A table's ``caption`` block: labels that exist, usable templates and phrases, disjoint values."""
    c, where = t.caption, f"tables.{t.name}.caption"
    assert c is not None
    if t.role != "identity":
        raise ConfigError(f"{where}: captions come from identity tables only")
    if not c.labels or len(set(c.labels)) != len(c.labels):
        raise ConfigError(f"{where}.labels: at least one label, each once")
    if not t.labels_path:
        missing = [x for x in c.labels if x not in t.fields]
        if missing:
            raise ConfigError(
                f"{where}.labels: not in tables.{t.name}.fields and no labels_path: {', '.join(missing)}"
            )
    if not c.templates:
        raise ConfigError(f"{where}.templates: at least one template")
    for key, texts, want in (
        ("templates", c.templates, {"findings"}),
        ("uncertain_phrase", (c.uncertain_phrase,), {"label"}),
        ("negative_phrase", (c.negative_phrase,), {"label"}),
    ):
        for text in texts:
            try:
                used = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
            except ValueError:
                used = set()
            if used != want:
                raise ConfigError(f"{where}.{key}: {text!r} must use exactly {{{next(iter(want))}}}")
    values = [*c.positive, *c.uncertain, *c.negative]
    if not c.positive or len(set(values)) != len(values) or any(not v.strip() for v in values):
        raise ConfigError(f"{where}: positive/uncertain/negative values must be non-blank and disjoint")
    if not c.no_finding.strip():
        raise ConfigError(f"{where}.no_finding: must not be empty")
    bad = [k for k, v in c.names.items() if k not in c.labels or not isinstance(v, str) or not v.strip()]
    if bad:
        raise ConfigError(
            f"{where}.names: keys must be labels, values non-empty text: {', '.join(map(str, bad))}"
        )
    if c.report_type not in ("radiology", "cardiology", "other"):
        raise ConfigError(f"{where}.report_type: must be radiology, cardiology or other")


def load_config(path: Path | None) -> BuildConfig:
    """Read a YAML config file (``None`` → all defaults)."""
    if path is None:
        return BuildConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file unreadable: {path} ({type(exc).__name__})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file is not valid YAML{where}: {path}") from None
    return config_from_dict(data)
