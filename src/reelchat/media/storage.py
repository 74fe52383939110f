"""Where media bytes live: videos, thumbnails, spritesheets, input images.

Names are flat, unguessable file names (see :func:`new_media_name`); a store never accepts
anything that could point outside its root. Two stores: :class:`LocalStorage` here (a directory, the
default) and ``s3_storage.S3Storage`` (a bucket; ``REELCHAT_STORAGE_URL=s3://…``).

Errors::

    StorageError (ValueError)       a name that is not a safe media file name: answer 404
    StorageUnavailable (Exception)  the store did not answer (an S3 outage): answer 503
    StorageConfigError (Exception)  the store as configured cannot be used: refuse to start
    FileNotFoundError               no blob by that name
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

__all__ = [
    "CHUNK_BYTES",
    "CONTENT_TYPES",
    "MEDIA_EXTENSIONS",
    "Blob",
    "LocalStorage",
    "Storage",
    "StorageConfigError",
    "StorageError",
    "StorageUnavailable",
    "check_media_name",
    "content_type",
    "new_media_name",
]

CONTENT_TYPES = {
    "mp4": "video/mp4",
    "webp": "image/webp",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "bmp": "image/bmp",
}
MEDIA_EXTENSIONS = frozenset(CONTENT_TYPES)
CHUNK_BYTES = 256 * 1024  # what a streamed read yields at a time

# \Z, not $: "$" also matches before a trailing newline.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}\.[a-z0-9]{1,5}\Z")
_TEMP_PREFIX = ".tmp-"  # never matches _SAFE_NAME, so half-written files can't be loaded or served
_STALE_TEMP_SECONDS = 3600.0


class StorageError(ValueError):
    """A media name that is not a safe, plain file name (or an unknown extension)."""


class StorageUnavailable(Exception):
    """The store did not answer or refused (a network error, an S3 5xx, denied access)."""


class StorageConfigError(Exception):
    """The configured store cannot be used; the message names the setting and the fix."""


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(name.rsplit(".", 1)[-1].lower(), "application/octet-stream")


def check_media_name(name: str) -> str:
    """Return ``name`` if it is a plain file name like ``3f9a...c1.mp4``, else raise StorageError."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise StorageError(f"invalid media name: {name!r}")
    if name.rsplit(".", 1)[1] not in MEDIA_EXTENSIONS:  # e.g. reelchat.db when the media dir is the home
        raise StorageError(f"unsupported media extension: {name!r}")
    return name


def new_media_name(ext: str) -> str:
    """A fresh, unguessable name: 32 hex characters, a dot, ``ext`` (mp4, webp, jpg, jpeg, png, gif, bmp)."""
    if ext not in MEDIA_EXTENSIONS:
        raise StorageError(f"unsupported media extension: {ext!r}")
    return f"{secrets.token_hex(16)}.{ext}"


class Blob(Protocol):
    """A blob opened for serving: its size and version are fixed from here on."""

    @property
    def size(self) -> int: ...

    @property
    def etag(self) -> str:
        """A strong validator, quoted (``"…"``), for the ``ETag`` header."""
        ...

    async def read(self, start: int, end: int) -> AsyncIterator[bytes]:
        """Start reading bytes ``start``..``end`` (inclusive) and return them as chunks.

        The read starts before this returns, so a blob deleted since :meth:`Storage.open` raises
        FileNotFoundError here, before any byte is sent. The chunks close the blob when exhausted
        or closed; call :meth:`close` instead when not reading at all.
        """
        ...

    async def close(self) -> None: ...


class Storage(Protocol):
    """A flat store of named media blobs."""

    async def save(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``, replacing any previous blob, atomically."""
        ...

    async def load(self, name: str) -> bytes:
        """The blob's bytes; raises FileNotFoundError when there is none."""
        ...

    async def delete(self, name: str) -> None:
        """Remove the blob; a missing one is fine."""
        ...

    async def exists(self, name: str) -> bool: ...

    async def open(self, name: str) -> Blob:
        """The blob, for streaming ranges of it; FileNotFoundError when there is none."""
        ...

    def direct_url(self, name: str) -> str | None:
        """A URL clients may fetch the blob from without reelchat (a presigned S3 link), or None."""
        ...


class LocalStorage(Storage):
    """Media as files in one directory. Blocking file I/O runs in a worker thread."""

    def __init__(self, root: Path) -> None:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self._sweep_stale_temps()

    def _path(self, name: str) -> Path:
        path = (self.root / check_media_name(name)).resolve()
        # The name check already rules out separators and "..": this also catches a symlink
        # planted in the root that points elsewhere.
        if path.parent != self.root:
            raise StorageError(f"media name escapes the storage root: {name!r}")
        return path

    def local_path(self, name: str) -> Path:
        """The file's path (it may not exist yet)."""
        return self._path(name)

    def direct_url(self, name: str) -> str | None:
        return None  # served by reelchat (or a web server the operator points at the directory)

    async def open(self, name: str) -> Blob:
        path = self._path(name)
        # opened now, so a file deleted a moment later is still served whole, never a torn stream
        return await asyncio.to_thread(_LocalBlob.open, path)

    async def save(self, name: str, data: bytes) -> None:
        path = self._path(name)
        await asyncio.to_thread(self._write_atomic, path, bytes(data))

    async def load(self, name: str) -> bytes:
        path = self._path(name)
        return await asyncio.to_thread(path.read_bytes)

    async def delete(self, name: str) -> None:
        path = self._path(name)
        await asyncio.to_thread(path.unlink, missing_ok=True)

    async def exists(self, name: str) -> bool:
        path = self._path(name)
        return await asyncio.to_thread(path.is_file)

    def _write_atomic(self, path: Path, data: bytes) -> None:
        """Write a temp file beside ``path``, fsync it, then rename it over ``path``.

        A crash at any point leaves either the old file or the new one under the final name,
        never a partial file; at worst a ``.tmp-*`` file stays behind (swept on the next start).
        """
        fd, tmp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".part", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; a separate web server may serve these
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        """Persist the rename itself (POSIX); a no-op where directories can't be opened."""
        try:
            dir_fd = os.open(self.root, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)

    def _sweep_stale_temps(self) -> None:
        """Remove temp files a killed writer left behind. Recent ones may belong to a live
        writer in another process sharing the root, so only old ones go."""
        cutoff = time.time() - _STALE_TEMP_SECONDS
        for entry in self.root.glob(f"{_TEMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                if entry.is_file() and entry.stat().st_mtime < cutoff:
                    entry.unlink()


class _LocalBlob:
    """An open media file."""

    def __init__(self, f: BinaryIO, size: int, etag: str) -> None:
        self._f = f
        self._size = size
        self._etag = etag

    @classmethod
    def open(cls, path: Path) -> _LocalBlob:
        try:
            # O_NONBLOCK: a FIFO planted under a media name must not hang the open (no effect on files)
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except IsADirectoryError:
            raise FileNotFoundError(f"not a file: {path.name}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FileNotFoundError(f"not a file: {path.name}")
            f = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        return cls(f, st.st_size, f'"{st.st_mtime_ns:x}-{st.st_size:x}"')

    @property
    def size(self) -> int:
        return self._size

    @property
    def etag(self) -> str:
        return self._etag

    async def read(self, start: int, end: int) -> AsyncIterator[bytes]:
        return self._chunks(start, end)

    async def _chunks(self, start: int, end: int) -> AsyncIterator[bytes]:
        try:
            await asyncio.to_thread(self._f.seek, start)
            remaining = end - start + 1
            while remaining > 0:
                data = await asyncio.to_thread(self._f.read, min(CHUNK_BYTES, remaining))
                if not data:
                    break
                remaining -= len(data)
                yield data
        finally:
            self._f.close()  # not awaited: a client that left cancels this generator, and any await with it

    async def close(self) -> None:
        await asyncio.to_thread(self._f.close)
