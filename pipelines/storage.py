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


#: client libraries whose DEBUG logs carry request headers (the access key id in Authorization)
_CLIENT_LOGGERS = ("botocore", "aiobotocore", "boto3", "s3fs", "urllib3", "gcsfs", "adlfs", "azure")


def _quiet_clients() -> None:
    """Keep storage clients at WARNING even when the root logger is at DEBUG: their DEBUG lines
    print signed request headers, which name the credentials."""
    import logging

    for name in _CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


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
    ``pipe:`` (this module's ``cat``, fsspec underneath, credentials from the environment)."""
    import shlex
    import sys

    if not is_url(url):
        return url
    return f"pipe:{shlex.quote(sys.executable)} -m pipelines.storage cat {shlex.quote(url)}"


def _cat(url: str) -> int:
    import shutil
    import sys

    with open_input(url) as f:
        shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "cat":
        print("usage: python -m pipelines.storage cat URL", file=sys.stderr)
        sys.exit(2)
    sys.exit(_cat(sys.argv[2]))
