"""Deterministic, atomic WebDataset tar writing.

Byte-identical output for the same samples: USTAR headers with fixed fields (mtime 0, uid/gid 0,
empty owner names, mode 0644), members in the order given (callers sort them), standard
10240-byte record padding. A shard is written through :func:`schemas.atomic.atomic_open` (temp
file, fsync, rename on close), so no partial shard is ever visible under its final name. The
writer hashes the bytes as it writes them (:attr:`TarShardWriter.sha256`): the shard is not read
back to get its digest.
``write_atomic`` is re-exported here from :mod:`schemas.atomic`, the project's one atomic write.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO

from schemas.atomic import atomic_open, write_atomic
from schemas.contract import is_valid_key

__all__ = ["TarShardWriter", "sha256_file", "tar_member_size", "write_atomic"]


def tar_member_size(n_bytes: int) -> int:
    """Bytes a member of ``n_bytes`` occupies in a tar: 512-byte header + data padded to 512."""
    return 512 + (n_bytes + 511) // 512 * 512


class _HashingWriter:
    """A write-only file object that feeds every byte it writes to sha256 on the way through."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._h = hashlib.sha256()

    def write(self, data) -> int:
        self._h.update(data)
        return self._f.write(data)

    def tell(self) -> int:
        return self._f.tell()

    def hexdigest(self) -> str:
        return self._h.hexdigest()


class TarShardWriter:
    """Write samples ``(key, {member: bytes})`` into one tar, atomically.

    >>> with TarShardWriter(Path("train-000000.tar")) as w:   # doctest: +SKIP
    ...     w.write("a1b2", {"meta.json": b"{}", "ecg_0.npy": b"..."})
    """

    def __init__(self, path: Path, mode: int = 0o640) -> None:
        self.path = Path(path)
        self.mode = mode
        self._opened: AbstractContextManager[BinaryIO] | None = None
        self._tar: tarfile.TarFile | None = None
        self._hashed: _HashingWriter | None = None
        self.n_samples = 0
        #: sha256 hex of the finished tar (set once the ``with`` block closed it without error)
        self.sha256 = ""

    def __enter__(self) -> TarShardWriter:
        self._opened = atomic_open(self.path, durable=True, mode=self.mode)
        self._hashed = _HashingWriter(self._opened.__enter__())
        self._tar = tarfile.open(fileobj=self._hashed, mode="w", format=tarfile.USTAR_FORMAT)
        return self

    def write(self, key: str, members: dict[str, bytes]) -> None:
        """Append one sample; member names are written as ``{key}.{member}`` in the given order."""
        if not is_valid_key(key):
            raise ValueError(f"invalid sample key {key!r} (must match [a-z0-9_-], no dots)")
        assert self._tar is not None, "use TarShardWriter as a context manager"
        for member, data in members.items():
            info = tarfile.TarInfo(name=f"{key}.{member}")
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            self._tar.addfile(info, io.BytesIO(data))
        self.n_samples += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._tar is not None and self._opened is not None
        if exc_type is None:
            try:
                self._tar.close()  # the end-of-archive blocks
            except BaseException as e:  # the shard is discarded, as on an error while writing
                self._opened.__exit__(type(e), e, e.__traceback__)
                raise
        self._opened.__exit__(exc_type, exc, tb)  # fsync + rename, or remove the temp file
        if exc_type is None and self._hashed is not None:
            self.sha256 = self._hashed.hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
