"""Helpers for the runner-equivalence tests. They live in an importable module (not in a test
file) because Beam's SDK workers and Dask's worker processes import them by name
(``decoder_overrides`` names ``tests.pipelines.runner_helpers:decode_bug``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

BUG_MESSAGE = "injected decoder bug for the runner tests"


# --- bug injection into a real build ---------------------------------------------------------------


def decode_bug(item, ctx):
    """A 'decoder' with a bug: any exception that is not a QuarantineError."""
    raise RuntimeError(BUG_MESSAGE)


@contextlib.contextmanager
def repo_on_pythonpath(repo: Path):
    """Beam's worker-pool processes are fresh ``python -m`` processes: make ``tests.*`` importable."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo), old) if p)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


# --- the demo build on a small subset of the sample data -------------------------------------------


def demo_subset(
    examples: Path, dst: Path, ecg_ids=("6000", "6001", "6002", "1"), series_slices: int = 4
) -> Path:
    """Copy a small subset of ``examples/data`` to ``dst/data`` (same layout as the demo): DICOM
    images, ``series_slices`` slices of the CT series, PTB-XL ECGs with their report rows (and a
    few unpaired ones), every deliberately broken file of ``quarantine_demo``."""
    import shutil

    src = examples
    out = dst / "data"
    files = [src / "dicom" / "cr" / "6154", src / "dicom" / "ct" / "CT_small.dcm"]
    files += sorted((src / "dicom" / "ct" / "series_01").iterdir())[:series_slices]
    for stem in ("HR06000", "HR06001", "HR06002"):
        files += [src / "ecg" / "ptbxl_500hz" / f"{stem}.hea", src / "ecg" / "ptbxl_500hz" / f"{stem}.mat"]
    files += sorted((src / "ecg" / "ptbxl_100hz").iterdir())
    files += sorted((src / "quarantine_demo").iterdir())
    for f in files:
        target = out / f.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    # report rows of the copied ECGs plus a few unpaired ones (the CSV has no quoted newlines)
    lines = (src / "reports" / "ptbxl_reports.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    rows = [ln for ln in lines[1:] if ln.split(",", 1)[0] in ecg_ids] + lines[1:4]
    (out / "reports").mkdir(parents=True)
    (out / "reports" / "ptbxl_reports.csv").write_text("".join([lines[0], *dict.fromkeys(rows)]))
    return dst


def demo_config(input_dir: Path, strict: bool = True):
    """``examples/demo.yaml`` with the sources ``input_dir`` has, 2 workers, 3 samples per shard."""
    from dataclasses import replace

    from pipelines.config import ShardConfig, load_config

    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "demo.yaml")
    sources = tuple(s for s in cfg.sources if (input_dir / s.path).is_dir())
    return replace(
        cfg, sources=sources, strict=strict, workers=2, shards=ShardConfig(max_samples=3, max_bytes=64 << 20)
    )
