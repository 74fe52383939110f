"""Identifiers: `task_` + lowercase ULID, `s_` + 32 hex for videos, `video_` + 32 hex for the Videos API."""

from __future__ import annotations

import os
import re
import secrets
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"

# Bare patterns (for searching text); check a whole string with the compiled forms' .fullmatch.
TASK_ID_PATTERN = r"task_[0-9a-hjkmnp-tv-z]{26}"  # lowercase Crockford base32 (no i, l, o, u)
SID_PATTERN = r"s_[0-9a-f]{32}"
VIDEO_ID_PATTERN = r"video_[0-9a-f]{32}"
TASK_ID_RE = re.compile(TASK_ID_PATTERN)
SID_RE = re.compile(SID_PATTERN)
VIDEO_ID_RE = re.compile(VIDEO_ID_PATTERN)


def ulid(now_ms: int | None = None) -> str:
    """A 26-character lowercase ULID: 48 bits of milliseconds then 80 random bits (sorts by time)."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def new_task_id() -> str:
    return "task_" + ulid()


def new_sid() -> str:
    return "s_" + secrets.token_hex(16)


def new_video_id() -> str:
    return "video_" + secrets.token_hex(16)


def new_character_id() -> str:
    return "char_" + secrets.token_hex(16)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)
