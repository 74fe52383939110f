"""HTTP Range requests (RFC 9110 §14) for serving media, framework-free.

Only a single ``bytes=`` range is honoured. A request for several ranges is *ignored* (the
caller answers 200 with the whole body, which RFC 9110 allows); browsers seeking in a <video>
only ever ask for one. Syntactically invalid headers and unknown units are ignored too.
"""

from __future__ import annotations

import re

__all__ = ["RangeNotSatisfiable", "content_range", "parse_range"]

# ASCII digits only: \d would also accept other scripts' digits, which int() then happily parses.
# Possessive runs (`*+`): no run of blanks can be split two ways, so matching is linear in the header.
_RANGE_SPEC = re.compile(r"(?<![ \t])[ \t]*+([0-9]{0,19}+)[ \t]*+-[ \t]*+([0-9]{0,19}+)[ \t]*+\Z")  # 19 digits: int64


class RangeNotSatisfiable(Exception):
    """The range lies wholly past the end: answer 416 with ``Content-Range: bytes */<size>``."""

    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable for a {size}-byte body")
        self.size = size

    @property
    def content_range(self) -> str:
        return f"bytes */{self.size}"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Resolve a ``Range`` header against a body of ``size`` bytes.

    Returns an inclusive ``(start, end)`` to answer 206 with, or None to answer 200 with the
    whole body (no header, another unit, bad syntax, several ranges). Raises
    :class:`RangeNotSatisfiable` when the one range starts at or past the end (or is an empty
    suffix), which includes any range of an empty body.

    ``bytes=0-`` → (0, size-1); ``bytes=100-199`` → (100, 199) (end clamped to size-1);
    ``bytes=-500`` → the last 500 bytes (the whole body when it is shorter).
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if not header:
        return None
    unit, sep, specs = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    if "," in specs:
        return None  # multi-range: ignored (see the module docstring)
    match = _RANGE_SPEC.match(specs)
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None  # "bytes=-"
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid range-spec: ignore the header
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, min(end, size - 1)


def content_range(start: int, end: int, size: int) -> str:
    """The ``Content-Range`` value for a 206 answer: ``bytes start-end/size``."""
    return f"bytes {start}-{end}/{size}"
