"""Where corpus files live: a local path or a storage URL (``s3://``, ``gs://``, ``memory://``).

Local paths go through the standard library; URLs through fsspec (``medcorpus[storage]``: fsspec
plus the file system of the scheme, e.g. s3fs). A missing package stops with one line naming the
extra. Credentials never appear here: fsspec's file systems read them from the environment.
"""

from __future__ import annotations

import re
from typing import IO

_URL = re.compile(r"^[a-z][a-z0-9+.-]*://")


def is_url(path) -> bool:
    """True for ``scheme://...`` (not for local paths, ``file://`` included: it is local)."""
    s = str(path)
    return bool(_URL.match(s)) and not s.startswith("file://")


def open_input(path, mode: str = "rb") -> IO[bytes]:
    """Open ``path`` (a local path or a storage URL) for reading."""
    if not is_url(path):
        return open(str(path).removeprefix("file://"), mode)  # noqa: SIM115 - the caller closes it
    return filesystem(str(path)).open(str(path), mode)


def _quiet_clients() -> None:
    from trainer.remote import quiet_clients

    quiet_clients()


def filesystem(url: str):
    """The fsspec file system of ``url`` (credentials and endpoint from the environment)."""
    try:
        import fsspec
    except ImportError:
        from pipelines.errors import UserError

        raise UserError("fsspec is not installed: install medcorpus[storage]") from None
    protocol = url.split("://", 1)[0]
    _quiet_clients()
    try:
        # no instance cache: another process may have replaced the pointer since
        return fsspec.filesystem(protocol, skip_instance_cache=True)
    except ImportError as exc:
        from pipelines.errors import UserError

        raise UserError(
            f"storage {protocol}:// needs {exc.name or 'its fsspec driver'}: install medcorpus[storage]"
        ) from None


def join(root, *parts: str) -> str:
    """``root/part/...`` for a URL (``/`` separators, no doubled slashes)."""
    out = str(root).rstrip("/")
    for p in parts:
        out += "/" + str(p).strip("/")
    return out


def shard_url(url: str) -> str:
    """A URL webdataset opens: local paths as they are; storage URLs through webdataset's
    ``pipe:`` (``python -m trainer.remote cat URL``, fsspec underneath, credentials from the
    environment). One implementation, in the trainer (which may not import ``pipelines``)."""
    from trainer.remote import shard_url as _shard_url

    return _shard_url(url)
