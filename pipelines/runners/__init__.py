"""Backends of the dataflow API (``pipelines.flow``): ``local``, ``beam``, ``dask``.

Each is a thin adapter with identical output: the build graph (``pipelines.build``) owns every
decision; a backend only decides where the per-element functions run and how keys are shuffled.
Pick one with ``pipelines.flow.make_flow(name, workers, **options)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

#: Environment of worker processes: one BLAS/OpenMP thread each, as Dask's nanny sets by default
#: (``distributed.nanny.pre-spawn-environ``). A build runs one worker per core; a worker whose
#: OpenBLAS also starts a thread per core oversubscribes them: the LSH signature (a 3,000 x 966
#: float32 matrix-vector product per ECG) took 7-12 ms instead of ~1 ms with 2 workers on 2 cores.
ONE_THREAD_ENV: Mapping[str, str] = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


#: Dask's nanny writes its ``pre-spawn-environ`` into the *parent's* ``os.environ`` when it starts a
#: worker and never removes it, so after any LocalCluster every process this one spawns inherits
#: ``MALLOC_TRIM_THRESHOLD_=65536``, which switches off glibc's dynamic mmap threshold: numpy work
#: on arrays over 128 kB then costs 1.6-1.9x the CPU (see ``pipelines.runners.dask``).
DASK_MALLOC_TRIM = ("MALLOC_TRIM_THRESHOLD_", "65536")


def drop_dask_malloc_trim() -> None:
    """Remove the malloc setting a Dask nanny left in ``os.environ`` (any other value is the user's)."""
    name, value = DASK_MALLOC_TRIM
    if os.environ.get(name) == value:
        del os.environ[name]


@contextmanager
def worker_environ(extra: Mapping[str, str] = ONE_THREAD_ENV) -> Iterator[None]:
    """Set ``extra`` in ``os.environ`` (where not set already) while worker processes are spawned.

    Spawned children copy the parent's environment at start; the driver's own libraries read
    these variables when they were loaded, so the driver keeps its thread pools. A value the
    user set explicitly wins.
    """
    drop_dask_malloc_trim()
    added = [k for k in extra if k not in os.environ]
    for k in added:
        os.environ[k] = extra[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)
