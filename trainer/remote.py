"""Shards in object storage (``s3://``, ``gs://``, ...): list them with fsspec, open them the
webdataset way (a ``pipe:`` URL whose command streams the object to stdout).

The trainer depends on :mod:`schemas` only, so the piece both sides need lives here and
``pipelines.storage`` re-exports it (:func:`shard_url`, :func:`quiet_clients`). fsspec and the
file system of the scheme (s3fs for ``s3://``) come with ``medcorpus[storage]``; local paths never
need them. Credentials and the endpoint come from each process's environment
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL_S3``, an instance role):
the ``pipe:`` command names the object URL only, and its subprocess inherits the environment.
"""

from __future__ import annotations

import re
import shlex
import sys
from typing import IO

_URL = re.compile(r"^[a-z][a-z0-9+.-]*://")
_PATTERN = re.compile(r"[*?\[{]")

#: client libraries whose DEBUG logs carry request headers (the access key id in Authorization)
CLIENT_LOGGERS = ("botocore", "aiobotocore", "boto3", "s3fs", "urllib3", "gcsfs", "adlfs", "azure")


class StorageUnavailable(ImportError):
    """fsspec, or the fsspec driver of a URL's scheme, is not installed."""


def is_url(path) -> bool:
    """True for ``scheme://...`` (not for local paths, ``file://`` included: it is local)."""
    s = str(path)
    return bool(_URL.match(s)) and not s.startswith("file://")


def has_pattern(path) -> bool:
    """True when ``path`` holds a glob (``* ? [``) or brace (``{a,b}``, ``{000..009}``) pattern."""
    return bool(_PATTERN.search(str(path)))


def quiet_clients() -> None:
    """Keep storage clients at WARNING even when the root logger is at DEBUG: their DEBUG lines
    print signed request headers, which name the credentials."""
    import logging

    for name in CLIENT_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def filesystem(url: str):
    """The fsspec file system of ``url`` (no instance cache: another process may have replaced an
    object since). Raises :class:`StorageUnavailable` naming the missing package."""
    try:
        import fsspec
    except ImportError:
        raise StorageUnavailable("fsspec is not installed: install medcorpus[storage]") from None
    protocol = str(url).split("://", 1)[0]
    quiet_clients()
    try:
        return fsspec.filesystem(protocol, skip_instance_cache=True)
    except ImportError as exc:
        raise StorageUnavailable(
            f"storage {protocol}:// needs {exc.name or 'its fsspec driver'}: install medcorpus[storage]"
        ) from None


def full_url(fs, path: str) -> str:
    """``path`` as fsspec lists it (``bucket/key``, no scheme) back to a URL."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if is_url(path) else f"{protocol}://{path.lstrip('/')}"


def expand(spec: str) -> list[str]:
    """The objects a URL pattern names, sorted: webdataset's brace expansion
    (``train-{000000..000009}.tar``, ``a::b``), then each part globbed on the store (``*``, ``?``,
    ``[...]``). A part without a glob names one object; it is kept only if it exists (one listing
    per folder, not one request per object)."""
    from webdataset.shardlists import expand_urls

    if not is_url(spec):  # a local pattern: the same expansion, the standard library's glob
        import glob
        import os

        out = set()
        for part in expand_urls(str(spec).removeprefix("file://")):
            out.update(glob.glob(part) if has_pattern(part) else [part] if os.path.isfile(part) else [])
        return sorted(out)
    fs = filesystem(spec)
    found: set[str] = set()
    literal: dict[str, list[str]] = {}
    for part in expand_urls(spec):
        if has_pattern(part):
            found.update(full_url(fs, p) for p in fs.glob(part))
        else:
            literal.setdefault(part.rstrip("/").rsplit("/", 1)[0], []).append(part)
    for folder, parts in literal.items():
        try:
            listed = {full_url(fs, p).rstrip("/") for p in fs.ls(folder, detail=False)}
        except FileNotFoundError:
            listed = set()
        found.update(p for p in parts if p in listed)
    return sorted(found)


def open_input(url: str) -> IO[bytes]:
    """Open a storage URL for reading (the caller closes it)."""
    return filesystem(url).open(url, "rb")


def shard_url(url: str) -> str:
    """A URL webdataset opens: local paths as they are; storage URLs as webdataset's ``pipe:``
    (``python -m trainer.remote cat URL``: fsspec underneath, credentials from the environment)."""
    if not is_url(url):
        return str(url)
    return f"pipe:{shlex.quote(sys.executable)} -m trainer.remote cat {shlex.quote(url)}"


def _cat(url: str) -> int:
    import shutil

    with open_input(url) as f:
        shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "cat":
        print("usage: python -m trainer.remote cat URL", file=sys.stderr)
        sys.exit(2)
    sys.exit(_cat(sys.argv[2]))
