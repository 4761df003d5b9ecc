"""One way to turn a parsed YAML/JSON mapping into frozen config dataclasses (build and trainer).

:func:`from_mapping` walks the dataclass's resolved type hints and converts each value, so the
pipeline (``pipelines.config``) and the trainer (``trainer.config``) accept and reject the same
things, with the same one-line :class:`ConfigError`, ``config <key.path>: <problem>``:

- an unknown key is an error (a typo never falls back to a default silently), with the closest
  known key as a hint; a missing key without a default is an error;
- ``bool``: ``true``/``false`` only (not ``"yes"``, not 1);
- ``int``: an integer (not a bool, not a string); a field declared with ``metadata=BYTE_SIZE``
  also takes a size string (``"256MB"``, ``"1GiB"``, see :func:`parse_size`);
- ``float``: a number, or a string that is one (YAML 1.1 reads ``1e-3`` without a dot as a
  string);
- ``str``: a string (a number or a date is refused: quote it in YAML);
- ``tuple[X, ...]``: a list (a single scalar counts as a one-item list); ``tuple[X, Y]``: a list
  of exactly that many values; ``dict``: a mapping;
- a nested dataclass: a mapping (an empty section, YAML ``null``, gives its defaults);
  ``X | None``: ``null`` or an ``X``.

Any other annotation is a bug in the config classes and raises :class:`TypeError` (never passed
through unchecked); ``tests/schemas/test_config_coerce.py`` walks every config class to keep it so.
No I/O, no dependencies beyond the standard library.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any

__all__ = ["BYTE_SIZE", "ConfigError", "coerce", "from_mapping", "parse_size"]


class ConfigError(ValueError):
    """A configuration problem, reported to the user as one line."""


#: field metadata of an ``int`` byte count that also accepts a size string ("512MiB")
BYTE_SIZE: dict[str, bool] = {"byte_size": True}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


def parse_size(value: Any) -> int:
    """``"256MB"`` → 256_000_000, ``"1GiB"`` → 1_073_741_824, ints pass through."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ConfigError(f"not a size: {value!r}")
    unit = (m.group(2) or "").lower().rstrip("b")
    if unit not in _UNITS:
        raise ConfigError(f"unknown size unit in {value!r}")
    return int(float(m.group(1)) * _UNITS[unit])


def _fail(key: str, what: str) -> ConfigError:
    return ConfigError(f"config {key}: {what}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def from_mapping(cls: type, data: Any, key: str = "") -> Any:
    """Build the dataclass ``cls`` from ``data`` (a mapping; ``None`` gives the defaults).

    ``key`` is the dotted path of ``data`` in the file (``""`` at the top level), used in errors.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _fail(key or "top level", f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{key}." if key else ""
    unknown = [str(k) for k in data if k not in known]
    if unknown:
        first = sorted(unknown)[0]
        near = difflib.get_close_matches(first, list(known), n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        more = f"; also unknown: {', '.join(sorted(unknown)[1:])}" if len(unknown) > 1 else ""
        raise _fail(prefix + first, f"unknown key{hint}{more}")
    missing = [
        n
        for n, f in known.items()
        if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise _fail(prefix + missing[0], "missing (no default)")
    kwargs = {
        name: coerce(value, hints[name], prefix + name, byte_size=bool(known[name].metadata.get("byte_size")))
        for name, value in data.items()
    }
    return cls(**kwargs)


def coerce(value: Any, tp: Any, key: str, *, byte_size: bool = False) -> Any:
    """Convert one parsed YAML/JSON value to the annotation ``tp`` (see the module docstring)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, key)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) != 1 or len(typing.get_args(tp)) != 2:
            raise TypeError(f"unsupported config type {tp!r} at {key}")  # only `X | None`
        return None if value is None else coerce(value, args[0], key, byte_size=byte_size)
    if origin is tuple:
        return _tuple(value, typing.get_args(tp), key)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise _fail(key, f"expected a mapping, got {_shown(value)}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(key, f"expected true/false, got {_shown(value)}")
        return value
    if tp is int:
        if byte_size and isinstance(value, str):
            try:
                return parse_size(value)
            except ConfigError as exc:
                raise _fail(key, str(exc)) from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(key, f"expected an integer, got {_shown(value)}")
        return value
    if tp is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise _fail(key, f"expected a number, got {_shown(value)}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(key, f"expected a number, got {_shown(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(key, f"expected a string, got {_shown(value)} (quote it in YAML)")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")  # a bug in the config classes


def _tuple(value: Any, args: tuple, key: str) -> tuple:
    if len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, list | tuple):
            if dataclasses.is_dataclass(args[0]) or isinstance(value, dict) or value is None:
                raise _fail(key, f"expected a list, got {_shown(value)}")
            value = [value]  # a single scalar is a one-item list
        return tuple(coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if not isinstance(value, list | tuple):
        raise _fail(key, f"expected a list of {len(args)} values, got {_shown(value)}")
    if len(value) != len(args):
        raise _fail(key, f"expected {len(args)} values, got {len(value)}")
    return tuple(coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
