"""What one API key has used, counted from the task rows (so every replica counts alike)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..domain import TaskStatus
from .schema import tasks

__all__ = ["KeyUsage", "UsageStore"]

_UNFINISHED = (TaskStatus.QUEUED.value, TaskStatus.IN_PROGRESS.value)


@dataclass(frozen=True)
class KeyUsage:
    """A key's tasks: created since `requests_since` (their times, oldest first), unfinished now
    (count and seconds), and completed since `charged_since` (completion time and seconds, oldest first)."""

    requested_at: list[float]
    unfinished: int
    unfinished_seconds: int
    completed: list[tuple[float, int]]

    @property
    def charged_seconds(self) -> int:
        return sum(seconds for _, seconds in self.completed)


class UsageStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def of_key(self, key_id: str, *, requests_since: float, charged_since: float) -> KeyUsage:
        mine = tasks.c.key_id == key_id
        async with self.engine.connect() as conn:
            requested = await conn.execute(
                sa.select(tasks.c.created_at)
                .where(mine, tasks.c.created_at >= requests_since)
                .order_by(tasks.c.created_at)
            )
            requested_at = [float(t) for t in requested.scalars()]
            count, seconds = (
                await conn.execute(
                    sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(tasks.c.seconds), 0)).where(
                        mine, tasks.c.status.in_(_UNFINISHED), tasks.c.deleted == sa.false()
                    )
                )
            ).one()
            # deleting a finished video gives nothing back: it was made
            completed = await conn.execute(
                sa.select(tasks.c.completed_at, tasks.c.seconds)
                .where(mine, tasks.c.status == TaskStatus.COMPLETED.value, tasks.c.completed_at >= charged_since)
                .order_by(tasks.c.completed_at)
            )
            done = [(float(at), int(s)) for at, s in completed]
        return KeyUsage(requested_at, int(count), int(seconds), done)
