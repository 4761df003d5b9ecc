"""glibc heap settings for the processes that decode and write (workers, watchdog helpers).

With glibc's defaults a decoder that allocates and frees a few MB per item pays for that memory
again on every item: freed memory at the top of the heap goes back to the OS as soon as more
than 128 kB is free there (``M_TRIM_THRESHOLD``), and arrays over the mmap threshold get fresh
pages each time, so the next item page-faults the same memory back in. Measured on this
project's 2-core VM, one process, 400 PTB-XL ECGs (decode + blob write, ``bench``-style loop):
3.5-4.5 ms an ECG, of which 1.5-1.8 ms kernel time, against 1.6-2.2 ms (0.02-0.1 ms kernel) with
the settings below; 30 radiographs: 76-91 ms an image against 68 ms, same peak RSS (161 MB).

The settings (``mallopt``, once per process, before the work): keep 64 MB at the heap top
(``M_TOP_PAD``) and serve blocks up to 32 MB from the heap (``M_MMAP_THRESHOLD``, the ceiling of
glibc's own dynamic threshold), so freed memory is reused instead of returned and refaulted. A
process keeps up to ~64 MB more resident; a larger block (a CT volume) is still mapped and
unmapped on its own. ``MEDCORPUS_GLIBC_MALLOC=1`` keeps glibc's defaults. Not glibc (musl,
macOS): nothing to do.
"""

from __future__ import annotations

import ctypes
import os

M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
TOP_PAD_BYTES = 64 << 20
MMAP_THRESHOLD_BYTES = 32 << 20

_applied: bool | None = None


def keep_heap() -> bool:
    """Apply the settings in this process (once; later calls are free). True when applied."""
    global _applied
    if _applied is None:
        _applied = False
        if os.environ.get("MEDCORPUS_GLIBC_MALLOC", "") not in ("", "0"):
            return False
        try:
            mallopt = ctypes.CDLL("libc.so.6").mallopt
        except (OSError, AttributeError):  # not glibc
            return False
        _applied = bool(mallopt(M_TOP_PAD, TOP_PAD_BYTES)) and bool(
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        )
    return _applied
