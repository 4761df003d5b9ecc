"""The project's one canonical JSON encoding.

Every record's ``meta_json``, every JSON member of a shard and every JSON text that is hashed
into a key or cached goes through :func:`canonical_json`, so the bytes of a value never depend
on which stage wrote it:

- keys sorted, compact separators (``,`` and ``:``), no trailing newline;
- ``ensure_ascii=False``: non-ASCII text is written as UTF-8, not ``\\uXXXX`` escapes;
- NaN and ±Infinity are not JSON: they are written as ``null`` (a header field of a broken input,
  such as a DICOM ``DS`` of ``NaN``, is "not available", never invalid JSON).

Pretty-printed files meant for people (``build.json``, ``stats.json``, ``sizes.json``) are a
different format and do not use this.
"""

from __future__ import annotations

import json
import math
from typing import Any


def canonical_json(obj: Any) -> str:
    """``obj`` as canonical JSON text (sorted keys, compact, UTF-8 characters, NaN/±inf → null)."""
    try:
        return _dumps(obj)
    except ValueError:  # a non-finite float somewhere (rare): replace, then encode
        return _dumps(_finite(obj))


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float (also NumPy's) replaced by ``None``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def canonical_bytes(obj: Any) -> bytes:
    """:func:`canonical_json` of ``obj`` encoded as UTF-8."""
    return canonical_json(obj).encode("utf-8")
