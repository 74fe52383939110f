"""Where media bytes live: videos, thumbnails, spritesheets, input images.

Names are flat, unguessable file names (see :func:`new_media_name`); a store never accepts
anything that could point outside its root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import tempfile
import time
from pathlib import Path
from typing import Protocol

__all__ = [
    "MEDIA_EXTENSIONS",
    "LocalStorage",
    "Storage",
    "StorageError",
    "check_media_name",
    "new_media_name",
]

MEDIA_EXTENSIONS = frozenset({"mp4", "webp", "jpg", "jpeg", "png", "gif", "bmp"})

# \Z, not $: "$" also matches before a trailing newline.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,128}\.[a-z0-9]{1,5}\Z")
_TEMP_PREFIX = ".tmp-"  # never matches _SAFE_NAME, so half-written files can't be loaded or served
_STALE_TEMP_SECONDS = 3600.0


class StorageError(ValueError):
    """A media name that is not a safe, plain file name (or an unknown extension)."""


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

    def local_path(self, name: str) -> Path | None:
        """A filesystem path to serve the blob from (it may not exist yet), or None for remote stores."""
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

    def local_path(self, name: str) -> Path | None:
        return self._path(name)

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
