"""Patient-level splits, decided before sharding.

A patient's split is a keyed hash of its pseudonym mapped to [0, 1) and cut at the configured
fractions, so it never depends on which other patients are in the build: appending new data
never moves an existing patient. Samples without a patient are split by their group key.
"""

from __future__ import annotations

from pipelines.config import SplitConfig
from workers.deid.pseudonym import Pseudonymizer


def split_of(unit: str, pseudo: Pseudonymizer, cfg: SplitConfig) -> str:
    """``unit`` is a patient pseudonym (or a group key when the patient is unknown)."""
    u = int(pseudo.token("split", unit, 16), 16) / float(1 << 64)
    if u < cfg.train:
        return "train"
    if u < cfg.train + cfg.val:
        return "val"
    return "test"
