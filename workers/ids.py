"""Normalisation of raw identifiers before pseudonymisation (so "15709.0" and "15709" agree)."""

from __future__ import annotations

import re

_NUMERIC = re.compile(r"^\s*0*(\d+)(?:\.0*)?\s*$")


def normalise_id(raw: object) -> str:
    """Trim, and write integers (``"006000"``, ``"15709.0"``) in canonical decimal form."""
    if raw is None:
        return ""
    text = str(raw).strip()
    if text.lower() in ("", "nan", "none", "null"):
        return ""
    m = _NUMERIC.match(text)
    return str(int(m.group(1))) if m else text
