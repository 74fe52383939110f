"""How a `Task` maps to a row of the tasks table and back, and the SQLite connection settings."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import sqlalchemy as sa

from ..domain import Orientation, Task, TaskStatus
from .schema import tasks
from .timestamps import to_datetime, to_timestamp

_TIMES = ("created_at", "started_at", "completed_at")  # datetimes in the domain, unix seconds in the table
_FIELDS = [f.name for f in dataclasses.fields(Task) if f.name in tasks.c]


def row_to_task(row: sa.Row[Any]) -> Task:
    m = row._mapping
    values: dict[str, Any] = {name: m[name] for name in _FIELDS}
    values.update({name: to_datetime(m[name]) for name in _TIMES})
    values.update(
        orientation=Orientation(m["orientation"]),
        status=TaskStatus(m["status"]),
        has_image=bool(m["has_image"]),
        deleted=bool(m["deleted"]),
        params=dict(m["params"] or {}),
        media_pending=list(m["media_pending"] or []),
        phases=dict(m["phases"] or {}),
    )
    return Task(**values)


def task_to_row(task: Task) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(task, name) for name in _FIELDS}
    values.update({name: to_timestamp(getattr(task, name)) for name in _TIMES})
    values.update(orientation=task.orientation.value, status=task.status.value)
    values["created_at"] = values["created_at"] or time.time()
    return values


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process; fsync at checkpoints
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
