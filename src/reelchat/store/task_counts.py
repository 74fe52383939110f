"""Counts over the tasks table: what the per-key queue cap, the metrics and the CLI ask of it
(`Store.counts`, over the task store's engine)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..domain import TaskStatus
from .schema import tasks

__all__ = ["TaskCounts"]


class TaskCounts:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def count_videos(self, tenant: str) -> int:
        """A tenant's videos (not deleted), whatever their state."""
        async with self.engine.connect() as conn:
            value = await conn.execute(
                sa.select(sa.func.count())
                .select_from(tasks)
                .where(tasks.c.tenant == tenant, tasks.c.deleted == sa.false())
            )
            return int(value.scalar() or 0)

    async def unfinished_count(self, tenant: str) -> int:
        """A tenant's queued and running tasks: what its per-key queue cap counts (all servers' alike)."""
        unfinished = tasks.c.status.in_([TaskStatus.QUEUED.value, TaskStatus.IN_PROGRESS.value])
        async with self.engine.connect() as conn:
            value = await conn.execute(
                sa.select(sa.func.count()).select_from(tasks).where(unfinished, tasks.c.tenant == tenant)
            )
            return int(value.scalar() or 0)

    async def depth(self) -> dict[tuple[str, str], int]:
        """Unfinished tasks by (model, status), over every server sharing this database."""
        unfinished = tasks.c.status.in_([TaskStatus.QUEUED.value, TaskStatus.IN_PROGRESS.value])
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(tasks.c.model, tasks.c.status, sa.func.count())
                .where(unfinished, tasks.c.deleted == sa.false())
                .group_by(tasks.c.model, tasks.c.status)
            )
            return {(model, status): int(n) for model, status, n in rows}

    async def running_on(self, node: str) -> int:
        """Tasks in progress under `node`'s lease (its own or its workers' `<node>/...`)."""
        mine = (tasks.c.owner == node) | tasks.c.owner.startswith(node + "/", autoescape=True)
        async with self.engine.connect() as conn:
            value = await conn.execute(
                sa.select(sa.func.count())
                .select_from(tasks)
                .where(tasks.c.status == TaskStatus.IN_PROGRESS.value, tasks.c.deleted == sa.false(), mine)
            )
            return int(value.scalar() or 0)
