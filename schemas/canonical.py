"""The project's one canonical JSON encoding.

Every record's ``meta_json``, every JSON member of a shard and every JSON text that is hashed
into a key or cached goes through :func:`canonical_json`, so the bytes of a value never depend
on which stage wrote it:

- keys sorted, compact separators (``,`` and ``:``), no trailing newline;
- ``ensure_ascii=False``: non-ASCII text is written as UTF-8, not ``\\uXXXX`` escapes;
- ``allow_nan=False``: NaN and ±Infinity are not JSON; a value holding one raises ``ValueError``
  (a bug to fix where the value is made, not a record to write).

Pretty-printed files meant for people (``build.json``, ``stats.json``, ``sizes.json``) are a
different format and do not use this.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """``obj`` as canonical JSON text (sorted keys, compact, UTF-8 characters, no NaN)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_bytes(obj: Any) -> bytes:
    """:func:`canonical_json` of ``obj`` encoded as UTF-8."""
    return canonical_json(obj).encode("utf-8")
