"""Which queued task runs next: fair across tenants, weighted by their keys' priority.

Every executor asks the store (`Store.next_queued`) rather than keeping its own order, so the rule
is one SQL query over the shared tables and holds for every executor and across replicas sharing
one PostgreSQL: they all see the same running and recently started tasks. The pick is not a claim;
the claim stays the attempt-fenced `Store.claim`, and a replica that loses the race picks again.

The rule, a weighted fair share without state of its own: a tenant's *service* is its tasks
running now plus those started within the last `window_s` seconds (plus those this process has
picked and not yet claimed). The tenant with the least service per unit of priority goes next,
its oldest task first; ties go to the oldest task. So one key's 500 queued jobs never hold back
another key's single job: that key has served nothing and goes next. With two keys always waiting,
priority 2 gets two starts for every one of priority 1. A tenant's weight is the highest priority
among its active keys (1.0 for open mode's `default`).
"""

from __future__ import annotations

import time
from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..domain import TaskStatus
from .schema import api_keys, tasks

__all__ = ["next_queued"]


async def next_queued(
    engine: AsyncEngine, *, picked: Collection[str] = (), window_s: float = 600.0, now: float | None = None
) -> str | None:
    """The id of the queued task that should run next (None when none may run now). `picked`: ids
    this process handed to a worker that may not be claimed yet; they count as served, and are skipped."""
    now = time.time() if now is None else now
    picked = list(picked)
    served_now = (tasks.c.status == TaskStatus.IN_PROGRESS.value) | (tasks.c.started_at >= now - window_s)
    if picked:
        served_now = served_now | tasks.c.id.in_(picked)
    served = sa.select(tasks.c.tenant, sa.func.count().label("n")).where(served_now).group_by(tasks.c.tenant).subquery()
    weights = (
        sa.select(api_keys.c.tenant, sa.func.max(api_keys.c.priority).label("w"))
        .where(api_keys.c.revoked_at.is_(None), api_keys.c.priority > 0)
        .group_by(api_keys.c.tenant)
        .subquery()
    )
    share = sa.cast(sa.func.coalesce(served.c.n, 0), sa.Float) / sa.func.coalesce(weights.c.w, 1.0)
    claimable = sa.and_(
        tasks.c.status == TaskStatus.QUEUED.value,
        tasks.c.deleted == sa.false(),
        tasks.c.not_before.is_(None) | (tasks.c.not_before <= now),
    )
    if picked:
        claimable = claimable & tasks.c.id.not_in(picked)
    query = (
        sa.select(tasks.c.id)
        .select_from(
            tasks.outerjoin(served, served.c.tenant == tasks.c.tenant).outerjoin(
                weights, weights.c.tenant == tasks.c.tenant
            )
        )
        .where(claimable)
        .order_by(share, tasks.c.created_at, tasks.c.id)
        .limit(1)
    )
    async with engine.connect() as conn:
        return (await conn.execute(query)).scalar()
