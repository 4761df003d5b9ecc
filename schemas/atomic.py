"""The project's one way to write a file atomically: a temp file next to it, then a rename.

It lives in ``schemas`` (the one package every layer may import: workers, pipelines and the
trainer) although ``schemas`` otherwise does no I/O; it needs nothing but the standard library.

A reader never sees a half-written file under its final name: the bytes go to
``<name>.tmp-<pid>-<thread>`` in the same folder (so the rename stays on one file system) and
``os.replace`` puts them in place; on an exception the temp file is removed. The temp name is
unique per process and thread, so two writers of the same path (a retried task, two threads
writing the same content-addressed blob) never share a temp file; the last rename wins, and
both wrote the same bytes. Build cleanup removes ``*.tmp-*`` leftovers of killed processes.

fsync policy (``durable``):

- ``durable=True`` (the default) for *final outputs*: shards, manifests, stats, ``sizes.json``,
  build and publish markers, trainer checkpoints. The file's data is fsynced before the rename,
  so after a crash the name holds either the old file or the complete new one, never an empty
  or torn file.
- ``durable=False`` for *caches and intermediates* (decode cache, blob store, embedding and
  LLM caches), where an fsync per entry would cost more than it saves: temp + rename still
  guarantees that no reader sees a half-written file while the system runs (a killed process
  leaves only a temp file). After a power loss (not a process crash) the newest entries may be
  missing or, on some file systems, present but empty; such a file is not detected here.

The containing folder is not fsynced (the rename itself may be lost in a power cut; resume
logic redoes that step); :func:`fsync_dir` is there for the callers that need it (publishing).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

#: marks a temp file of an atomic write (``<name>.tmp-<pid>-<thread>``); cleanups glob ``*.tmp-*``
TMP_MARK = ".tmp-"


def temp_path(path: Path) -> Path:
    """The temp name an atomic write of ``path`` uses in this process and thread."""
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}-{threading.get_ident()}")


@contextmanager
def atomic_open(path: str | os.PathLike, *, durable: bool = True, mode: int = 0o640) -> Iterator[BinaryIO]:
    """Open a temp file next to ``path`` for binary writing; rename it to ``path`` on clean exit.

    Missing parent folders are created. ``mode`` is the permission bits passed to ``os.open``
    (the umask applies; ``0o666`` gives what plain ``open()`` gives). See the module docstring
    for ``durable``.
    """
    path = Path(path)
    tmp = temp_path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    try:
        fd = os.open(tmp, flags, mode)
    except FileNotFoundError:  # a new folder (the common case costs one failed open)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes, *, durable: bool = True, mode: int = 0o640) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, durable=durable, mode=mode) as f:
        f.write(data)


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder, making the renames inside it durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
