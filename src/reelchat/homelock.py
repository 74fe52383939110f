"""One serving process per data directory: its tasks' leases carry the directory in their owner name,
so a second process on the same home would mistake the first one's running work for its own."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class HomeLocked(RuntimeError):
    pass


class HomeLock:
    def __init__(self, home: Path) -> None:
        self.path = home / "serve.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel if we are killed
        except BlockingIOError:
            os.close(fd)
            raise HomeLocked(
                f"another reelchat server is already serving {self.path.parent}; give each server its own REELCHAT_HOME"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
