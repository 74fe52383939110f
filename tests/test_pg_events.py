"""Task events across replicas over PostgreSQL LISTEN/NOTIFY: two buses (two replicas) on one real
database, a listen connection killed by the server, the payload limit, and the shared notifier that
catches followers up from the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pg import fresh_database
from test_store import make_task

from reelchat.domain import TaskEvent, TaskStatus
from reelchat.service.events import LocalEventBus
from reelchat.service.mailbox import Mailbox
from reelchat.service.pg_events import MAX_PAYLOAD_BYTES, PgEventBus, encode_notice
from reelchat.store.tasks import Store


@dataclass
class Work:
    """A WorkListener that remembers what it was told."""

    queued_ids: list[str] = field(default_factory=list)
    gaps: int = 0

    def queued(self, task_id: str) -> None:
        self.queued_ids.append(task_id)

    def may_have_missed(self) -> None:
        self.gaps += 1


@dataclass
class Replica:
    bus: PgEventBus
    work: Work


@pytest.fixture
async def db() -> AsyncIterator[tuple[str, Any, Store]]:
    async with fresh_database("reelchat_events") as (url, admin):
        store = Store(url)
        await store.migrate()
        try:
            yield url, admin, store
        finally:
            await store.close()


@pytest.fixture
async def replicas(db: tuple[str, Any, Store]) -> AsyncIterator[tuple[Replica, Replica]]:
    url, _admin, store = db
    made: list[Replica] = []
    for _ in range(2):
        bus, work = PgEventBus(url, catch_up_s=0.2), Work()
        await bus.start(store.task_events, work)
        made.append(Replica(bus, work))
    try:
        yield made[0], made[1]
    finally:
        for r in made:
            await r.bus.close()


async def next_event(queue: Mailbox[TaskEvent], within: float = 5.0) -> TaskEvent:
    return await asyncio.wait_for(queue.get(), timeout=within)


async def test_an_event_published_on_one_replica_reaches_the_other_once(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    async with a.bus.subscribe("task_x") as on_a, b.bus.subscribe("task_x") as on_b:
        for p in (10, 20, 30):
            a.bus.publish(TaskEvent("task_x", TaskStatus.IN_PROGRESS, p))
        a.bus.publish(TaskEvent("task_x", TaskStatus.FAILED, 30, "engine_error", "it broke"))
        heard = [await next_event(on_b) for _ in range(4)]
        assert [e.progress for e in heard] == [10, 20, 30, 30]  # every step, in order
        assert heard[-1] == TaskEvent("task_x", TaskStatus.FAILED, 30, "engine_error", "it broke")
        # the publisher's own subscriber heard each one once, at once, and not again from the database
        local = [on_a.get_nowait() for _ in range(4)]
        assert [e.progress for e in local] == [10, 20, 30, 30]
        b.bus.publish(TaskEvent("task_x", TaskStatus.IN_PROGRESS, 40))  # a round trip through b ...
        assert (await next_event(on_a)).progress == 40  # ... proves a's own notices have been and gone
        assert on_a.empty()
    assert (await next_event(on_b)).progress == 40
    assert on_b.empty()


async def test_a_queued_notice_goes_to_the_other_replicas_executor_only(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    async with b.bus.subscribe("task_q") as on_b:
        a.bus.announce("task_q")
        a.bus.publish(TaskEvent("task_q", TaskStatus.IN_PROGRESS, 5))  # sent after the notice: a marker
        assert (await next_event(on_b)).progress == 5
    assert b.work.queued_ids == ["task_q"]
    assert a.work.queued_ids == []  # its own executor already has it


async def test_a_long_error_message_still_fits_one_notice(replicas: tuple[Replica, Replica]) -> None:
    a, b = replicas
    huge = TaskEvent("task_big", TaskStatus.FAILED, 50, "upstream_error", "无" * 10_000)
    assert len(encode_notice(a.bus.origin, "e", huge).encode()) <= MAX_PAYLOAD_BYTES
    async with b.bus.subscribe("task_big") as on_b:
        a.bus.publish(huge)
        got = await next_event(on_b)
    assert got.status is TaskStatus.FAILED
    assert got.error_code == "upstream_error"
    assert got.error_message is not None
    assert got.error_message.startswith("无" * 100)


async def test_a_malformed_notice_is_ignored(db: tuple[str, Any, Store], replicas: tuple[Replica, Replica]) -> None:
    _url, admin, _store = db
    a, b = replicas
    async with b.bus.subscribe("task_m") as on_b:
        # another database user (or an old version) writes garbage on the channel: the listener survives
        conn = await _same_db_connection(admin, db[0])
        try:
            await conn.execute("SELECT pg_notify('reelchat_events', 'not json'), pg_notify('reelchat_events', '{}')")
        finally:
            await conn.close()
        a.bus.publish(TaskEvent("task_m", TaskStatus.IN_PROGRESS, 7))
        assert (await next_event(on_b)).progress == 7
    assert b.bus.reconnects == 0


async def test_a_dropped_listen_connection_reconnects_and_catches_up_from_the_store(
    db: tuple[str, Any, Store], replicas: tuple[Replica, Replica]
) -> None:
    url, admin, store = db
    a = replicas[0]
    # b's notifier re-reads the store only after a gap: its periodic pass is a minute away
    b = Replica(PgEventBus(url, catch_up_s=60), Work())
    await b.bus.start(store.task_events, b.work)
    try:
        task = make_task()
        await store.insert_task(task)
        gaps_before = b.work.gaps
        async with b.bus.subscribe(task.id) as on_b:
            # the task runs, and its events never reach b (as if sent while b's connection was down)
            claimed = await store.claim(task.id, owner="replica-a")
            assert claimed is not None
            await store.set_progress(task.id, claimed.attempt, 42)
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE pid = ANY($1::int[])",
                await _listen_pids(admin, url),
            )
            assert killed == 3  # every replica's one listen connection
            # b reconnects, says it may have missed notices, and its notifier re-reads the store
            event = await next_event(on_b, within=10.0)
            assert event == TaskEvent(task.id, TaskStatus.IN_PROGRESS, 42)
            assert b.bus.reconnects == 1
            assert b.work.gaps == gaps_before + 1
            # and it hears live events again
            async with asyncio.timeout(10):
                await b.bus.wait_listening()
                await a.bus.wait_listening()
            a.bus.publish(TaskEvent(task.id, TaskStatus.IN_PROGRESS, 60))
            assert await next_event(on_b) == TaskEvent(task.id, TaskStatus.IN_PROGRESS, 60)
    finally:
        await b.bus.close()


async def test_the_notifier_never_sends_a_follower_back(db: tuple[str, Any, Store]) -> None:
    """The store's progress lags the events (it is written every quarter second): a catch-up that
    reads an older value delivers nothing; a change of state it does deliver."""
    _url, _admin, store = db
    bus = LocalEventBus(catch_up_s=60)
    task = make_task()
    await store.insert_task(task)
    claimed = await store.claim(task.id)
    assert claimed is not None
    await store.set_progress(task.id, claimed.attempt, 30)
    async with bus.subscribe(task.id) as queue:
        assert await bus.catch_up(store.task_events) == 1  # it began before the claim: news
        assert queue.get_nowait() == TaskEvent(task.id, TaskStatus.IN_PROGRESS, 30)
        bus.publish(TaskEvent(task.id, TaskStatus.IN_PROGRESS, 55))
        queue.get_nowait()
        assert await bus.catch_up(store.task_events) == 0  # 30 in the store is older than 55 heard
        assert await store.release(task.id, claimed.attempt)  # back to the queue (a replica stopped)
        assert await bus.catch_up(store.task_events) == 1
        assert queue.get_nowait().status is TaskStatus.QUEUED
        assert await bus.catch_up(store.task_events) == 0  # told once
        deleted = await store.mark_deleted(task.id)
        assert deleted is not None
        assert await bus.catch_up(store.task_events) == 1
        assert queue.get_nowait() == TaskEvent(task.id, TaskStatus.CANCELLED, 0, "deleted", None)
    assert bus.followed() == []


async def _listen_pids(admin: Any, url: str) -> Sequence[int]:
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'reelchat-listen'",
        url.rsplit("/", 1)[-1],
    )
    return [int(r["pid"]) for r in rows]


async def _same_db_connection(admin: Any, url: str) -> Any:
    import asyncpg

    from reelchat.service.pg_events import asyncpg_dsn

    del admin
    return await asyncpg.connect(asyncpg_dsn(url), timeout=5)
