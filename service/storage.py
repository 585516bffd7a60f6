"""Where Callboard keeps file bytes: a small interface, and a local-disk backend.

Files are named by *keys* (``outputs/<task>/<asset>.mp4``): relative, ``/``-separated,
no ``..`` and no empty segments. The database (the ``assets`` table) records which key
belongs to whom; this module only stores bytes, so an object store can replace the
local backend without touching callers.

Writes are atomic: bytes go to a temporary file beside the target and are renamed into
place with ``os.replace`` when complete, so a reader (the file route, a worker) never
sees half a file, and a crash leaves at worst a ``.part`` file that :meth:`put` never
exposes. All methods block; async callers run large operations with
``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from service.settings import Settings

_KEY = re.compile(r"^[A-Za-z0-9._\-]+(/[A-Za-z0-9._\-]+)*$")
CHUNK = 256 * 1024


class InvalidKey(ValueError):
    """A key that could escape the storage root or is malformed."""


@dataclasses.dataclass(frozen=True)
class Stat:
    size: int
    mtime: float


class Writer:
    """A streaming, atomic write: ``write()`` chunks, then leave the ``with`` block.

    Leaving the block normally renames the file into place; an exception discards it.
    ``size`` and ``sha256`` describe what was written.
    """

    def __init__(self, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".", suffix=".part")
        self._fh = os.fdopen(fd, "wb")
        self._tmp = Path(tmp)
        self._final = final
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self._hash.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def commit(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self._final)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class Storage(Protocol):
    """What callers may rely on from any backend."""

    def writer(self, key: str) -> Writer: ...

    def put_file(self, key: str, source: Path, *, move: bool = False) -> Stat: ...

    def open(self, key: str) -> BinaryIO: ...

    def stat(self, key: str) -> Stat | None: ...

    def delete(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def local_path(self, key: str) -> Path | None: ...

    def iter_chunks(self, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]: ...


class LocalStorage:
    """Files under one directory (``<data dir>/files``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        if not _KEY.match(key) or any(part in (".", "..") for part in key.split("/")):
            raise InvalidKey(f"invalid storage key {key!r}")
        return self.root / key

    def writer(self, key: str) -> Writer:
        """Start an atomic streaming write of ``key`` (replacing any previous bytes)."""
        return Writer(self._path(key))

    def put_file(self, key: str, source: Path, *, move: bool = False) -> Stat:
        """Store a local file under ``key``; ``move`` renames it when on the same disk."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if move:
            try:
                os.replace(source, target)
                return self._stat_path(target)
            except OSError:
                pass  # another filesystem: copy below, then remove the source
        with self.writer(key) as out, source.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                out.write(chunk)
        if move:
            source.unlink(missing_ok=True)
        return self._stat_path(target)

    def open(self, key: str) -> BinaryIO:
        """Open for reading (seekable); FileNotFoundError when absent."""
        return self._path(key).open("rb")

    def stat(self, key: str) -> Stat | None:
        try:
            return self._stat_path(self._path(key))
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it existed. Empty parent directories go too."""
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return True

    def delete_prefix(self, prefix: str) -> int:
        """Remove every file whose key starts with ``prefix/`` (a folder); how many."""
        folder = self._path(prefix.rstrip("/"))
        if not folder.is_dir():
            return 0
        removed = 0
        for path in sorted(folder.rglob("*"), reverse=True):
            if path.is_file() or path.is_symlink():
                path.unlink(missing_ok=True)
                removed += 1
            elif path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()
        with contextlib.suppress(OSError):
            folder.rmdir()
        return removed

    def local_path(self, key: str) -> Path | None:
        """The file's path on this machine (local backend only; None elsewhere)."""
        return self._path(key)

    def iter_chunks(self, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Read ``length`` bytes (all when None) from ``start`` in chunks."""
        with self.open(key) as fh:
            fh.seek(start)
            remaining = length
            while remaining is None or remaining > 0:
                chunk = fh.read(CHUNK if remaining is None else min(CHUNK, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    @staticmethod
    def _stat_path(path: Path) -> Stat:
        st = path.stat()
        return Stat(size=st.st_size, mtime=st.st_mtime)


def from_settings(settings: Settings) -> LocalStorage:
    """The configured backend (local disk under the data directory).

    Constructing it is free (no I/O), so callers build it from the settings they are
    given rather than reaching for a global.
    """
    return LocalStorage(settings.data_dir / "files")


def copy_or_link(source: Path, target: Path) -> None:
    """Put a copy of ``source`` at ``target`` atomically (a hard link when possible)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
