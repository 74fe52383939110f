"""The task store: SQLAlchemy Core over an async engine (SQLite with WAL, or PostgreSQL).

Every state change is one durable UPDATE. Work that may run twice (after a crash, on two replicas)
is fenced by `attempt`: only the attempt that claimed a task can finish it. `crashes` is another
count: how many times in a row the process died while the engine was making the video.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..domain import Task, TaskEvent, TaskStatus
from .characters import CharacterStore
from .fair_queue import next_queued
from .idempotency import IdempotencyStore
from .keys import KeyStore
from .schema import MIGRATION_LOCK_KEY, MIGRATIONS, metadata, schema_migrations, tasks
from .task_counts import TaskCounts
from .task_rows import row_to_task, sqlite_pragmas, task_to_row
from .usage import UsageStore
from .webhooks import OutboxEvent, WebhookStore


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # a burst of streams each writes its task at once: keep connections open rather than churn them
        kwargs: dict[str, Any] = {"pool_size": 10, "max_overflow": 20}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        self.keys = KeyStore(self.engine)  # the same database and pool
        self.usage = UsageStore(self.engine)
        self.idempotency = IdempotencyStore(self.engine)
        self.characters = CharacterStore(self.engine)
        self.webhooks = WebhookStore(self.engine)
        self.counts = TaskCounts(self.engine)  # counts over the tasks table (caps, metrics)
        self._pending_inserts: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._insert_writer: asyncio.Task[None] | None = None
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", sqlite_pragmas)

    async def migrate(self) -> list[int]:
        """Apply pending migrations in order; returns the versions applied now."""
        applied_now: list[int] = []
        async with self.engine.begin() as conn:
            if not self.is_sqlite:  # replicas starting together: one migrates, the others wait, then see it done
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            await conn.run_sync(lambda c: schema_migrations.create(c, checkfirst=True))
            done = set((await conn.execute(sa.select(schema_migrations.c.version))).scalars())
            for version, name, fn in MIGRATIONS:
                if version in done:
                    continue
                await conn.run_sync(fn)
                await conn.execute(
                    schema_migrations.insert().values(version=version, name=name, applied_at=time.time())
                )
                applied_now.append(version)
        return applied_now

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        """One round trip to the database; raises when it does not answer."""
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # ---- tasks -------------------------------------------------------------------------------

    async def insert_task(self, task: Task) -> None:
        """Durable when this returns. Concurrent inserts share one transaction (group commit): SQLite
        has one write lock, and a burst of 100 separate commits would queue on it one by one."""
        values = task_to_row(task)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_inserts.append((values, done))
        if self._insert_writer is None or self._insert_writer.done():
            self._insert_writer = asyncio.create_task(self._write_inserts())
        await asyncio.shield(done)  # a caller that goes away doesn't abort the others' commit

    async def _write_inserts(self) -> None:
        while self._pending_inserts:
            batch, self._pending_inserts = self._pending_inserts, []
            try:
                async with self.engine.begin() as conn:
                    await conn.execute(tasks.insert(), [values for values, _ in batch])
            except Exception as e:
                if len(batch) == 1:
                    batch[0][1].set_exception(e)
                    continue
                # one bad row must not fail its neighbours: retry them one by one
                for values, done in batch:
                    try:
                        async with self.engine.begin() as conn:
                            await conn.execute(tasks.insert(), [values])
                        done.set_result(None)
                    except Exception as one:
                        done.set_exception(one)
                continue
            for _, done in batch:
                done.set_result(None)

    async def _one(self, where: sa.ColumnElement[bool]) -> Task | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(tasks).where(where))).first()
        return row_to_task(row) if row is not None else None

    async def get_task(self, task_id: str) -> Task | None:
        return await self._one(tasks.c.id == task_id)

    async def get_by_sid(self, sid: str) -> Task | None:
        return await self._one(tasks.c.sid == sid)

    async def get_by_video_id(self, video_id: str) -> Task | None:
        return await self._one(tasks.c.video_id == video_id)

    async def list_tasks(self, tenant: str, *, after: str | None, limit: int, order: str) -> tuple[list[Task], bool]:
        """A page of a tenant's live videos, newest first for order=desc; (page, has_more)."""
        desc = order == "desc"
        q = sa.select(tasks).where(tasks.c.tenant == tenant, tasks.c.deleted == sa.false())
        if after is not None:
            anchor = await self._one((tasks.c.video_id == after) & (tasks.c.tenant == tenant))
            if anchor is not None and anchor.created_at is not None:
                key = (anchor.created_at.timestamp(), anchor.id)
                cmp = sa.tuple_(tasks.c.created_at, tasks.c.id)
                q = q.where(cmp < key if desc else cmp > key)
        q = q.order_by(*(c.desc() if desc else c.asc() for c in (tasks.c.created_at, tasks.c.id)))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(q.limit(limit + 1))).fetchall()
        page = [row_to_task(r) for r in rows[:limit]]
        return page, len(rows) > limit

    async def claim(self, task_id: str, owner: str = "local") -> Task | None:
        """queued -> in_progress with attempt+1, owned by `owner`; None when the task isn't queued (or
        is held back after a crash until its `not_before`)."""
        now = time.time()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                tasks.update()
                .where(
                    tasks.c.id == task_id,
                    tasks.c.status == TaskStatus.QUEUED.value,
                    tasks.c.deleted == sa.false(),
                    tasks.c.not_before.is_(None) | (tasks.c.not_before <= now),
                )
                .values(
                    status=TaskStatus.IN_PROGRESS.value,
                    attempt=tasks.c.attempt + 1,
                    started_at=now,
                    progress=0,
                    owner=owner,
                    heartbeat_at=now,
                    not_before=None,
                    preview=None,
                )
            )
            if result.rowcount != 1:
                return None
            row = (await conn.execute(sa.select(tasks).where(tasks.c.id == task_id))).one()
        return row_to_task(row)

    async def _fenced_update(
        self, task_id: str, attempt: int, *, outbox: OutboxEvent | None = None, **values: Any
    ) -> bool:
        """One attempt-fenced UPDATE; with `outbox`, the event's webhook deliveries are written in the
        same transaction when (and only when) the update wins."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                tasks.update()
                .where(
                    tasks.c.id == task_id,
                    tasks.c.attempt == attempt,
                    tasks.c.status == TaskStatus.IN_PROGRESS.value,
                    tasks.c.deleted == sa.false(),
                )
                .values(**values)
            )
            if result.rowcount == 1 and outbox is not None:
                key_id = (await conn.execute(sa.select(tasks.c.key_id).where(tasks.c.id == task_id))).scalar_one()
                await self.webhooks.add_in(conn, outbox, key_id)
        return result.rowcount == 1

    async def engine_started(self, task_id: str, attempt: int) -> bool:
        """Durable before the engine starts: if the process dies now, the next claim counts a crash."""
        return await self._fenced_update(task_id, attempt, in_engine=True)

    async def engine_returned(self, task_id: str, attempt: int, media: Sequence[str]) -> bool:
        """The engine came back with a video: the media names about to be written are recorded first.
        `in_engine` stays set until the outcome: a process that dies while encoding or storing the
        video counts a crash too (a video whose encode kills the process must end, not loop), and
        the crash streak ends only when the task completes."""
        return await self._fenced_update(task_id, attempt, media_pending=list(media))

    async def release(self, task_id: str, attempt: int) -> bool:
        """A graceful stop: the task goes back to the queue as it was (its crash count unchanged)."""
        return await self._fenced_update(
            task_id, attempt, status=TaskStatus.QUEUED.value, in_engine=False, owner=None, progress=0, preview=None
        )

    async def set_progress(self, task_id: str, attempt: int, progress: int, *, preview: int | None = None) -> bool:
        """The latest progress, and with `preview` the count of preview pictures stored so far (one write)."""
        if preview is None:
            return await self._fenced_update(task_id, attempt, progress=progress)
        return await self._fenced_update(task_id, attempt, progress=progress, preview=preview)

    async def heartbeat(self, task_id: str, attempt: int) -> bool:
        return await self._fenced_update(task_id, attempt, heartbeat_at=time.time())

    async def set_upstream_job(self, task_id: str, attempt: int, job_id: str) -> bool:
        return await self._fenced_update(task_id, attempt, upstream_job_id=job_id)

    async def complete(
        self,
        task_id: str,
        attempt: int,
        *,
        video_name: str,
        thumbnail_name: str,
        spritesheet_name: str | None,
        phases: dict[str, float] | None = None,
        outbox: OutboxEvent | None = None,
    ) -> bool:
        return await self._fenced_update(
            task_id,
            attempt,
            outbox=outbox,
            phases=phases,
            status=TaskStatus.COMPLETED.value,
            progress=100,
            in_engine=False,
            crashes=0,
            video_name=video_name,
            thumbnail_name=thumbnail_name,
            spritesheet_name=spritesheet_name,
            completed_at=time.time(),
            preview=None,
        )

    async def fail(
        self,
        task_id: str,
        attempt: int,
        *,
        code: str,
        message: str,
        phases: dict[str, float] | None = None,
        outbox: OutboxEvent | None = None,
    ) -> bool:
        return await self._fenced_update(
            task_id,
            attempt,
            outbox=outbox,
            phases=phases,
            status=TaskStatus.FAILED.value,
            error_code=code,
            error_message=message,
            completed_at=time.time(),
            preview=None,
        )

    async def requeue_interrupted(
        self, owner: str | None = "local", lease_s: float | None = None, backoff: Callable[[int], float] = lambda n: 0.0
    ) -> int:
        """Tasks a dead process left in_progress go back to queued: those `owner` (this node, just
        restarted, or one of its worker processes; None: no node) held, and, with `lease_s`, any
        node's whose heartbeat is older than that.
        A live node's running work is never taken. A task the process died in while its engine ran
        counts one more crash and waits `backoff(crashes)` seconds before it may be claimed again."""
        mine: sa.ColumnElement[bool] = sa.false()
        if owner is not None:  # its worker processes' leases too (`<owner>/worker-<n>`)
            mine = (
                (tasks.c.owner == owner)
                | tasks.c.owner.startswith(owner + "/", autoescape=True)
                | tasks.c.owner.is_(None)
            )
        if lease_s is not None:
            mine = mine | (tasks.c.heartbeat_at < time.time() - lease_s)
        left = sa.and_(tasks.c.status == TaskStatus.IN_PROGRESS.value, tasks.c.deleted == sa.false(), mine)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                tasks.update()
                .where(left, tasks.c.in_engine == sa.false())
                .values(status=TaskStatus.QUEUED.value, preview=None)
            )
            requeued = int(result.rowcount)
            crashed = await conn.execute(
                sa.select(tasks.c.id, tasks.c.attempt, tasks.c.crashes).where(left, tasks.c.in_engine == sa.true())
            )
            for task_id, attempt, crashes in crashed.fetchall():
                result = await conn.execute(
                    tasks.update()
                    .where(tasks.c.id == task_id, tasks.c.attempt == attempt, left)
                    .values(
                        status=TaskStatus.QUEUED.value,
                        in_engine=False,
                        preview=None,
                        crashes=crashes + 1,
                        not_before=time.time() + backoff(crashes + 1),
                    )
                )
                requeued += int(result.rowcount)
        return requeued

    async def queued(self) -> list[tuple[str, float | None]]:
        """(task id, not before) of every queued task, oldest first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(tasks.c.id, tasks.c.not_before)
                .where(tasks.c.status == TaskStatus.QUEUED.value, tasks.c.deleted == sa.false())
                .order_by(tasks.c.created_at, tasks.c.id)
            )
            return [(task_id, not_before) for task_id, not_before in rows]

    async def next_queued(self, picked: Collection[str] = (), window_s: float = 600.0) -> str | None:
        """The queued task to run next, fair across tenants (`fair_queue`); not claimed."""
        return await next_queued(self.engine, picked=picked, window_s=window_s)

    async def move_tenant(self, old: str, new: str) -> int:
        """Every video of tenant `old` (deleted ones too: their lineage) now belongs to `new`."""
        async with self.engine.begin() as conn:
            result = await conn.execute(tasks.update().where(tasks.c.tenant == old).values(tenant=new))
        return int(result.rowcount)

    async def task_events(self, task_ids: Sequence[str]) -> list[TaskEvent]:
        """The current state of these tasks, as the events that would tell a follower (one query; a
        deleted task is `cancelled` with code `deleted`; ids not stored are left out)."""
        if not task_ids:
            return []
        columns = (tasks.c.id, tasks.c.status, tasks.c.progress, tasks.c.error_code, tasks.c.error_message)
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(*columns, tasks.c.deleted).where(tasks.c.id.in_(list(task_ids))))
            found = rows.fetchall()
        events: list[TaskEvent] = []
        for task_id, status, progress, code, message, deleted in found:
            if deleted:
                events.append(TaskEvent(task_id, TaskStatus.CANCELLED, progress, "deleted", None))
            else:
                events.append(TaskEvent(task_id, TaskStatus(status), progress, code, message))
        return events

    async def mark_deleted(self, task_id: str) -> Task | None:
        """Soft-delete: the row stays (lineage of later remixes still points at it), media go."""
        unfinished = tasks.c.status.in_([TaskStatus.QUEUED.value, TaskStatus.IN_PROGRESS.value])
        async with self.engine.begin() as conn:
            # one UPDATE decides, then the row is read inside the same transaction: a completion that
            # committed first shows its media names (to delete), one that comes later is fenced out
            await conn.execute(
                tasks.update()
                .where(tasks.c.id == task_id)
                .values(
                    deleted=True,
                    status=sa.case((unfinished, TaskStatus.CANCELLED.value), else_=tasks.c.status),
                    completed_at=sa.case((unfinished, time.time()), else_=tasks.c.completed_at),
                )
            )
            row = (await conn.execute(sa.select(tasks).where(tasks.c.id == task_id))).first()
        return row_to_task(row) if row is not None else None


__all__: Sequence[str] = ("Store", "metadata")
