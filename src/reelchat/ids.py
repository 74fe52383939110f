"""Identifiers: `task_` + lowercase ULID, `s_` + 32 hex for videos, `video_` + 32 hex for the Videos API."""

from __future__ import annotations

import os
import re
import threading
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"

# Bare patterns (for searching text); check a whole string with the compiled forms' .fullmatch.
TASK_ID_PATTERN = r"task_[0-9a-hjkmnp-tv-z]{26}"  # lowercase Crockford base32 (no i, l, o, u)
SID_PATTERN = r"s_[0-9a-f]{32}"
VIDEO_ID_PATTERN = r"video_[0-9a-f]{32}"
TASK_ID_RE = re.compile(TASK_ID_PATTERN)
SID_RE = re.compile(SID_PATTERN)
VIDEO_ID_RE = re.compile(VIDEO_ID_PATTERN)


class _Entropy:
    """The system's CSPRNG (`os.urandom`), read 4 KiB at a time: a chat reply makes five ids, and five
    system calls per request were a measurable part of a burst's CPU. Each byte is handed out once; a
    forked child starts with nothing read (it must never repeat its parent's ids)."""

    _READ = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._at + n > len(self._buffer):
                self._buffer, self._at = os.urandom(max(self._READ, n)), 0
            out = self._buffer[self._at : self._at + n]
            self._at += n
            return out

    def forget(self) -> None:
        # a fresh lock too: another thread may have held the parent's at the fork
        self._lock = threading.Lock()
        self._buffer, self._at = b"", 0


_ENTROPY = _Entropy()
os.register_at_fork(after_in_child=_ENTROPY.forget)


def token_bytes(n: int) -> bytes:
    """`n` bytes from the system's CSPRNG (as `secrets.token_bytes`)."""
    return _ENTROPY.take(n)


def token_hex(n: int) -> str:
    """`n` random bytes as hex (as `secrets.token_hex`)."""
    return _ENTROPY.take(n).hex()


def ulid(now_ms: int | None = None) -> str:
    """A 26-character lowercase ULID: 48 bits of milliseconds then 80 random bits (sorts by time)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(_ENTROPY.take(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def new_task_id() -> str:
    return "task_" + ulid()


def new_sid() -> str:
    return "s_" + token_hex(16)


def new_video_id() -> str:
    return "video_" + token_hex(16)


def new_character_id() -> str:
    return "char_" + token_hex(16)


def new_key_id() -> str:
    return "key_" + token_hex(8)
