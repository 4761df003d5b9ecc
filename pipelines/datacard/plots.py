"""Figures of the data card, rendered with matplotlib (Agg) to PNG bytes.

Every function returns deterministic PNG bytes (no timestamp or software metadata), ready to be
inlined as ``data:image/png;base64``. Conventions of the inputs follow ``schemas.contract``:

* ECG: float16 array (12, n) in mV at ``rate_hz``, leads in the order I, II, III, aVR, aVL,
  aVF, V1–V6. Drawn on the standard 12-lead layout: 3 rows x 4 columns of 2.5 s each
  (I/aVR/V1/V4, II/aVL/V2/V5, III/aVF/V3/V6) plus a 10 s lead II rhythm strip, on ECG paper:
  25 mm/s and 10 mm/mV (1 mm minor squares = 0.04 s x 0.1 mV, 5 mm major = 0.2 s x 0.5 mV),
  with a 1 mV calibration pulse.
* Volume: int16 array (X, Y, Z) in RAS (nibabel axis codes: ``R`` means
  the index increases towards the patient's right), spacing in mm per axis. Mid-slices of the
  three planes in radiological display: axial and coronal with the patient's right on the
  viewer's left, anterior (axial) / superior (coronal, sagittal) up, sagittal with anterior
  on the left; pixel aspect from the spacing.
* Image thumbnails: the sample's 8-bit PNG rendition, downsized with Pillow (Lanczos).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from schemas.contract import ECG_LEADS  # noqa: E402

#: standard 12-lead layout: rows of 4 leads, each column covering a quarter of the 10 s window
ECG_LAYOUT: tuple[tuple[str, ...], ...] = (
    ("I", "aVR", "V1", "V4"),
    ("II", "aVL", "V2", "V5"),
    ("III", "aVF", "V3", "V6"),
)
ECG_RHYTHM_LEAD = "II"
ECG_ROW_MV = 3.0  # vertical distance between row baselines, mV
PAPER_MM_PER_S = 25.0
PAPER_MM_PER_MV = 10.0
GRID_MINOR = "#f6c9c9"
GRID_MAJOR = "#e58b8b"
TRACE = "#111111"
#: assertion → colour (shared with the HTML legend)
ASSERTION_COLOURS: dict[str, str] = {
    "present": "#1b7f3b",
    "negated": "#b3261e",
    "uncertain": "#b26a00",
    "historical": "#5b5bd6",
    "family": "#7a4e9c",
}


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """Deterministic PNG of ``fig`` (no Software/date metadata); closes the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def thumbnail_png(png: bytes, size: int = 256) -> tuple[bytes, tuple[int, int]]:
    """Downsize an 8-bit PNG so its longest side is at most ``size`` px; returns (png, (w, h))."""
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        img = im.convert("L") if im.mode not in ("L", "RGB") else im.copy()
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue(), img.size


def ecg_figure(signal: np.ndarray, rate_hz: float, title: str = "", dpi: int = 100) -> bytes:
    """Standard 12-lead ECG plot (3x4 + lead II rhythm strip) on an mV grid; returns PNG bytes.

    ``signal``: (12, n) in mV, canonical lead order; NaN samples (missing leads, padding) are gaps.
    """
    sig = np.asarray(signal, dtype=np.float32)
    if sig.ndim != 2 or sig.shape[0] != len(ECG_LEADS):
        raise ValueError(f"expected ({len(ECG_LEADS)}, n) ECG, got {sig.shape}")
    n = sig.shape[1]
    seconds = n / float(rate_hz)
    t = np.arange(n, dtype=np.float64) / float(rate_hz)
    col_s = seconds / 4.0
    lead_idx = {lead: i for i, lead in enumerate(ECG_LEADS)}
    n_rows = len(ECG_LAYOUT) + 1
    x0, x1 = -0.4, seconds
    y_top, y_bot = 1.6, -ECG_ROW_MV * (n_rows - 1) - 1.6
    width_mm = (x1 - x0) * PAPER_MM_PER_S
    height_mm = (y_top - y_bot) * PAPER_MM_PER_MV
    scale_in = 11.0 / width_mm  # the figure is 11 in wide
    fig = plt.figure(figsize=(11.0, height_mm * scale_in + (0.3 if title else 0.05)))
    ax = fig.add_axes((0, 0, 1, height_mm * scale_in / fig.get_figheight()))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y_bot, y_top)
    ax.set_aspect(PAPER_MM_PER_MV / PAPER_MM_PER_S)
    # paper grid: minor 0.04 s x 0.1 mV, major 0.2 s x 0.5 mV
    for step, colour, lw in ((0.04, GRID_MINOR, 0.3), (0.2, GRID_MAJOR, 0.6)):
        xs = np.arange(np.ceil(x0 / step) * step, x1 + 1e-9, step)
        ystep = 0.1 if step == 0.04 else 0.5
        ys = np.arange(np.ceil(y_bot / ystep) * ystep, y_top + 1e-9, ystep)
        ax.vlines(xs, y_bot, y_top, colors=colour, linewidth=lw, zorder=0)
        ax.hlines(ys, x0, x1, colors=colour, linewidth=lw, zorder=0)
    rows = [*ECG_LAYOUT, (ECG_RHYTHM_LEAD,)]
    for r, leads in enumerate(rows):
        base = -ECG_ROW_MV * r
        # 1 mV x 0.2 s calibration pulse
        ax.plot(
            [-0.35, -0.3, -0.3, -0.1, -0.1, -0.05],
            [base, base, base + 1, base + 1, base, base],
            color=TRACE,
            lw=0.9,
        )
        for c, lead in enumerate(leads):
            if len(leads) == 1:
                lo, hi = 0, n
            else:
                lo, hi = int(round(c * col_s * rate_hz)), int(round((c + 1) * col_s * rate_hz))
            y = sig[lead_idx[lead], lo:hi]
            missing = bool(np.all(np.isnan(y)))
            ax.plot(t[lo:hi], base + y, color=TRACE, lw=0.7, zorder=2)
            ax.text(
                t[lo] + 0.05,
                base + 0.75,
                lead + (" (missing)" if missing else ""),
                fontsize=8,
                color="#333",
                zorder=3,
            )
            if c > 0:
                ax.vlines(t[lo], base - 0.35, base + 0.35, colors=TRACE, linewidth=0.9, zorder=3)
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if title:
        fig.text(0.005, 1 - 0.22 / fig.get_figheight(), title, fontsize=8, color="#333")
    return png_bytes(fig, dpi)


#: CT display window (level, width) in HU: wide enough for lung, soft tissue and bone at a glance
CT_WINDOW = (40.0, 1000.0)


def _window(vol: np.ndarray, hounsfield: bool) -> tuple[float, float, str]:
    if hounsfield:
        level, width = CT_WINDOW
        return level - width / 2, level + width / 2, f"W {width:g} / L {level:g} HU"
    lo, hi = np.nanpercentile(vol, [1, 99])
    return float(lo), float(max(hi, lo + 1)), "1st-99th percentile"


def volume_planes(vol: np.ndarray) -> dict[str, np.ndarray]:
    """The three mid-slices of an (X, Y, Z) RAS volume, as display arrays (row 0 at the top).

    axial (rows anterior→posterior, columns right→left), coronal (superior→inferior,
    right→left), sagittal (superior→inferior, anterior→posterior).
    """
    x, y, z = (s // 2 for s in vol.shape)
    return {
        "axial": vol[:, :, z].T[::-1, ::-1],
        "coronal": vol[:, y, :].T[::-1, ::-1],
        "sagittal": vol[x, :, :].T[::-1, ::-1],
    }


PLANE_ASPECT = {"axial": (1, 0), "coronal": (2, 0), "sagittal": (2, 1)}  # (row axis, column axis)
PLANE_LABELS = {  # (left, right, top, bottom) edge letters
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}


def volume_figure(
    vol: np.ndarray, spacing_mm: Sequence[float], hounsfield: bool, title: str = "", dpi: int = 100
) -> bytes:
    """Axial, coronal and sagittal mid-slices of an (X, Y, Z) RAS volume; returns PNG bytes."""
    v = np.asarray(vol)
    if v.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {v.shape}")
    sp = [float(s) if s and s > 0 else 1.0 for s in (list(spacing_mm) + [1.0, 1.0, 1.0])[:3]]
    lo, hi, wname = _window(v, hounsfield)
    planes = volume_planes(v)
    fig, axes = plt.subplots(1, 3, figsize=(9.0, 3.3), facecolor="black")
    for ax, (name, img) in zip(axes, planes.items(), strict=True):
        ra, ca = PLANE_ASPECT[name]
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, aspect=sp[ra] / sp[ca], interpolation="bilinear")
        ax.set_title(name, color="white", fontsize=9)
        ax.set_axis_off()
        left, right, top, bottom = PLANE_LABELS[name]
        kw = {"color": "#ffd54f", "fontsize": 8, "transform": ax.transAxes}
        ax.text(0.01, 0.5, left, ha="left", va="center", **kw)
        ax.text(0.99, 0.5, right, ha="right", va="center", **kw)
        ax.text(0.5, 0.99, top, ha="center", va="top", **kw)
        ax.text(0.5, 0.01, bottom, ha="center", va="bottom", **kw)
    caption = f"{title}  window {wname}" if title else f"window {wname}"
    fig.text(0.01, 0.02, caption, color="#ccc", fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.08, wspace=0.04)
    return png_bytes(fig, dpi)


def _style(ax, title: str) -> None:
    ax.set_title(title, fontsize=10, loc="left")
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)


def histogram(values: Sequence[float], title: str, xlabel: str, bins: int = 20, dpi: int = 100) -> bytes:
    """A small histogram (counts per bin; one bar per value when there are few distinct values)."""
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    vals = np.asarray(values, dtype=float)  # None → nan
    vals = vals[np.isfinite(vals)]
    uniq, counts = np.unique(vals, return_counts=True)
    if 0 < len(uniq) <= 8:
        ax.bar([f"{u:g}" for u in uniq], counts, color="#3b6ea8", width=0.6)
    elif vals.size:
        ax.hist(vals, bins=bins, color="#3b6ea8", edgecolor="white")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("count", fontsize=8)
    _style(ax, title)
    fig.tight_layout()
    return png_bytes(fig, dpi)


def scatter_sizes(sizes: Sequence[tuple[int, int]] | np.ndarray, title: str, dpi: int = 100) -> bytes:
    """Columns x rows of images, one point per image (log axes): ``(columns, rows)`` pairs or an
    ``(n, 2)`` array; returns PNG bytes."""
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    xy = np.asarray(sizes, dtype=float).reshape(-1, 2)
    if len(xy):
        ax.scatter(xy[:, 0], xy[:, 1], s=18, alpha=0.7, color="#3b6ea8")
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("columns (px)", fontsize=8)
    ax.set_ylabel("rows (px)", fontsize=8)
    _style(ax, title)
    fig.tight_layout()
    return png_bytes(fig, dpi)


def barh(counts: Mapping[str, int], title: str, xlabel: str = "count", dpi: int = 100) -> bytes:
    """Horizontal bars of ``counts`` (largest on top); returns PNG bytes."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    fig, ax = plt.subplots(figsize=(4.2, max(1.6, 0.32 * len(items) + 0.9)))
    if items:
        labels, vals = zip(*items, strict=True)
        ax.barh(range(len(items)), vals, color="#3b6ea8")
        ax.set_yticks(range(len(items)), labels, fontsize=8)
        ax.invert_yaxis()
    ax.set_xlabel(xlabel, fontsize=8)
    _style(ax, title)
    fig.tight_layout()
    return png_bytes(fig, dpi)


def entity_bars(
    rows: Sequence[Mapping[str, int]], assertions: Sequence[str], title: str, dpi: int = 100
) -> bytes:
    """Stacked horizontal bars of entity counts by assertion; ``rows`` have ``label`` + counts."""
    fig, ax = plt.subplots(figsize=(6.0, max(1.8, 0.3 * len(rows) + 1.0)))
    left = np.zeros(len(rows))
    for a in assertions:
        vals = np.asarray([r.get(a, 0) for r in rows], dtype=float)
        if vals.any():
            ax.barh(range(len(rows)), vals, left=left, color=ASSERTION_COLOURS.get(a, "#888"), label=a)
            left += vals
    ax.set_yticks(range(len(rows)), [str(r["label"]) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("mentions", fontsize=8)
    if rows:
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    _style(ax, title)
    fig.tight_layout()
    return png_bytes(fig, dpi)
