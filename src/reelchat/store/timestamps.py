"""Times in the tables are unix seconds (floats); in the domain they are aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["to_datetime", "to_timestamp"]


def to_timestamp(dt: datetime | None) -> float | None:
    return dt.timestamp() if dt is not None else None


def to_datetime(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None
