"""``pipelines.heap.keep_heap``: freed heap memory is reused instead of page-faulted back in.

Each case runs in a fresh interpreter (glibc's settings are per process): a numpy loop that
allocates and frees ~2 MB per round, like a decoder per item, counting minor page faults.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

PROBE = """
import json, resource, sys
import numpy as np
from pipelines.heap import keep_heap
applied = keep_heap() if sys.argv[1] == "keep" else False
x = np.random.default_rng(0).standard_normal((5000, 12))
for _ in range(3):
    (x * 2.0).astype(np.float32).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    y = x * 2.0  # 480 kB
    z = [y[:, i].copy() for i in range(12)]  # 12 x 40 kB
    (y.astype(np.float16), sum(v.sum() for v in z))
    del y, z
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(mode: str, **env: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keep_heap_stops_the_per_item_page_faults():
    default, kept = _probe("default"), _probe("keep")
    assert kept["applied"] is True
    assert default["faults"] > 200 * 5  # glibc's defaults: freed pages fault back in, round after round
    assert kept["faults"] < default["faults"] / 10


def test_the_opt_out_keeps_glibc_defaults():
    assert _probe("keep", MEDCORPUS_GLIBC_MALLOC="1")["applied"] is False
