"""Deterministic, atomic WebDataset tar writing.

Byte-identical output for the same samples: USTAR headers with fixed fields (mtime 0, uid/gid 0,
empty owner names, mode 0644), members in the order given (callers sort them), standard
10240-byte record padding. A shard is written to ``<name>.tmp-<pid>`` and renamed into place on
close, so no partial shard is ever visible under its final name.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

from schemas.contract import is_valid_key


def tar_member_size(n_bytes: int) -> int:
    """Bytes a member of ``n_bytes`` occupies in a tar: 512-byte header + data padded to 512."""
    return 512 + (n_bytes + 511) // 512 * 512


class TarShardWriter:
    """Write samples ``(key, {member: bytes})`` into one tar, atomically.

    >>> with TarShardWriter(Path("train-000000.tar")) as w:   # doctest: +SKIP
    ...     w.write("a1b2", {"meta.json": b"{}", "ecg_0.npy": b"..."})
    """

    def __init__(self, path: Path, mode: int = 0o640) -> None:
        self.path = Path(path)
        self.mode = mode
        self.tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        self._file = None
        self._tar: tarfile.TarFile | None = None
        self.n_samples = 0

    def __enter__(self) -> TarShardWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.mode)
        self._file = os.fdopen(fd, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.USTAR_FORMAT)
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
        assert self._tar is not None and self._file is not None
        try:
            self._tar.close()
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write a small file atomically (temp + fsync + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
