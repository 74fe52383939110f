"""The task and key store, on SQLite and on PostgreSQL: the same behaviour on both.

PostgreSQL comes from REELCHAT_TEST_PG_URL (default postgresql+asyncpg://postgres@127.0.0.1:5432/test);
each test gets a fresh database, dropped afterwards. Unreachable PostgreSQL skips those tests,
except under CI (CI env var set), where it fails them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pg import fresh_database

from reelchat.domain import Orientation, Task, TaskStatus
from reelchat.ids import new_sid, new_task_id, new_video_id
from reelchat.service.keys import authenticate, create_key, hash_key
from reelchat.store.schema import MIGRATIONS
from reelchat.store.tasks import Store


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    async with fresh_database("reelchat_test") as (url, _admin):
        yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = Store(db_url)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_task(tenant: str = "alice", *, created: datetime | None = None, **kw: Any) -> Task:
    fields: dict[str, Any] = dict(
        id=new_task_id(),
        video_id=new_video_id(),
        sid=new_sid(),
        tenant=tenant,
        model="sora-2",
        prompt="cows and horses dancing",
        engine_prompt="cows and horses dancing",
        orientation=Orientation.PORTRAIT,
        seconds=10,
        size="96x160",
        width=96,
        height=160,
        fps=4,
        frames=41,
        steps=4,
        seed=12345,
        created_at=created or datetime.now(UTC),
    )
    fields.update(kw)
    return Task(**fields)


async def test_migrate_twice_is_idempotent(db_url: str) -> None:
    s = Store(db_url)
    try:
        assert await s.migrate() == [v for v, _, _ in MIGRATIONS]
        task = make_task()
        await s.insert_task(task)
        assert await s.migrate() == []
    finally:
        await s.close()
    again = Store(db_url)  # another process starting on the same database
    try:
        assert await again.migrate() == []
        assert await again.get_task(task.id) is not None  # nothing was dropped or rebuilt
    finally:
        await again.close()


async def test_insert_and_get_round_trip(store: Store) -> None:
    task = make_task(
        prompt="让牛的头上顶着光圈 <b>&</b>",
        engine_prompt="source. 让牛的头上顶着光圈",
        orientation=Orientation.LANDSCAPE,
        size="160x96",
        width=160,
        height=96,
        seed=2**31 + 7,
        has_image=True,
        image_name="0123456789abcdef0123456789abcdef.png",
        params={"strength": 0.6},
        created=T0,
    )
    await store.insert_task(task)
    got = await store.get_task(task.id)
    assert got is not None
    assert got == task  # every field, unicode, big seed, params and the aware timestamp come back
    assert got.created_at == T0
    assert got.created_at.tzinfo is not None
    assert (await store.get_by_sid(task.sid)) == task
    assert (await store.get_by_video_id(task.video_id)) == task
    assert await store.get_task(new_task_id()) is None
    assert await store.get_by_sid(new_sid()) is None


async def test_claim_is_exclusive_across_two_stores(db_url: str) -> None:
    """Two workers (two processes, two connection pools) race for the same tasks: one wins each."""
    a, b = Store(db_url), Store(db_url)
    await a.migrate()
    try:
        tasks = [make_task() for _ in range(4)]
        for t in tasks:
            await a.insert_task(t)
        for t in tasks:
            results = await asyncio.gather(a.claim(t.id), b.claim(t.id), a.claim(t.id))
            winners = [r for r in results if r is not None]
            assert len(winners) == 1, results
            assert winners[0].status is TaskStatus.IN_PROGRESS
            assert winners[0].attempt == 1
            assert winners[0].started_at is not None
            stored = await b.get_task(t.id)
            assert stored is not None
            assert stored.attempt == 1
            assert stored.status is TaskStatus.IN_PROGRESS
    finally:
        await a.close()
        await b.close()


async def test_fenced_complete_and_fail(store: Store) -> None:
    task = make_task()
    await store.insert_task(task)
    assert not await store.complete(task.id, 0, video_name="a.mp4", thumbnail_name="a.webp", spritesheet_name=None)
    claimed = await store.claim(task.id)
    assert claimed is not None
    assert claimed.attempt == 1
    assert await store.claim(task.id) is None  # already taken

    # a stale attempt can neither finish nor fail the task, nor move its progress
    assert not await store.complete(task.id, 2, video_name="x.mp4", thumbnail_name="x.webp", spritesheet_name=None)
    assert not await store.fail(task.id, 0, code="boom", message="stale worker")
    assert not await store.set_progress(task.id, 7, 50)
    unchanged = await store.get_task(task.id)
    assert unchanged is not None
    assert (unchanged.status, unchanged.progress, unchanged.video_name, unchanged.error_code) == (
        TaskStatus.IN_PROGRESS,
        0,
        None,
        None,
    )

    assert await store.set_progress(task.id, 1, 40)
    assert await store.complete(task.id, 1, video_name="v.mp4", thumbnail_name="v.webp", spritesheet_name="v.jpg")
    done = await store.get_task(task.id)
    assert done is not None
    assert done.status is TaskStatus.COMPLETED
    assert done.progress == 100
    assert (done.video_name, done.thumbnail_name, done.spritesheet_name) == ("v.mp4", "v.webp", "v.jpg")
    assert done.completed_at is not None
    assert done.started_at is not None
    assert done.completed_at >= done.started_at
    # a finished task stays finished, whatever a late worker says
    assert not await store.fail(task.id, 1, code="late", message="too late")
    assert not await store.complete(task.id, 1, video_name="w.mp4", thumbnail_name="w.webp", spritesheet_name=None)
    final = await store.get_task(task.id)
    assert final is not None
    assert final.status is TaskStatus.COMPLETED
    assert final.video_name == "v.mp4"

    other = make_task()
    await store.insert_task(other)
    assert await store.claim(other.id) is not None
    assert await store.fail(other.id, 1, code="engine_unavailable", message="no pipeline")
    failed = await store.get_task(other.id)
    assert failed is not None
    assert failed.status is TaskStatus.FAILED
    assert (failed.error_code, failed.error_message) == ("engine_unavailable", "no pipeline")


async def test_requeue_interrupted(store: Store) -> None:
    running, finished, waiting = (
        make_task(created=T0),
        make_task(created=T0 + timedelta(seconds=1)),
        make_task(created=T0 + timedelta(seconds=2)),
    )
    for t in (running, finished, waiting):
        await store.insert_task(t)
    assert await store.claim(running.id) is not None
    assert await store.claim(finished.id) is not None
    assert await store.complete(finished.id, 1, video_name="f.mp4", thumbnail_name="f.webp", spritesheet_name=None)

    assert await store.requeue_interrupted() == 1  # only the task a dead process left running
    back = await store.get_task(running.id)
    assert back is not None
    assert back.status is TaskStatus.QUEUED
    assert back.attempt == 1
    assert [i for i, _ in await store.queued()] == [running.id, waiting.id]  # oldest first
    done = await store.get_task(finished.id)
    assert done is not None
    assert done.status is TaskStatus.COMPLETED

    rerun = await store.claim(running.id)
    assert rerun is not None
    assert rerun.attempt == 2
    # the dead process's attempt can't overwrite the new run
    assert not await store.complete(running.id, 1, video_name="old.mp4", thumbnail_name="o.webp", spritesheet_name=None)
    assert await store.complete(running.id, 2, video_name="new.mp4", thumbnail_name="n.webp", spritesheet_name=None)
    assert await store.requeue_interrupted() == 0


async def test_requeue_never_takes_a_live_servers_work(store: Store) -> None:
    """Two servers share one database: a restarting server re-runs its own interrupted tasks and
    those whose server stopped renewing its lease, never a live server's running task."""
    mine, theirs_live, theirs_dead = (make_task(created=T0 + timedelta(seconds=i)) for i in range(3))
    for t in (mine, theirs_live, theirs_dead):
        await store.insert_task(t)
    assert await store.claim(mine.id, owner="node-a") is not None
    assert await store.claim(theirs_live.id, owner="node-b") is not None
    assert await store.claim(theirs_dead.id, owner="node-c") is not None
    await asyncio.sleep(1.2)
    assert await store.heartbeat(theirs_live.id, 1)  # node-b is alive and renewing

    assert await store.requeue_interrupted(owner="node-a", lease_s=1.0) == 2
    states = {t.id: (await store.get_task(t.id)).status for t in (mine, theirs_live, theirs_dead)}  # type: ignore[union-attr]
    assert states == {
        mine.id: TaskStatus.QUEUED,
        theirs_live.id: TaskStatus.IN_PROGRESS,
        theirs_dead.id: TaskStatus.QUEUED,
    }


async def test_a_death_before_the_engine_started_counts_no_crash(store: Store) -> None:
    """Claimed, then the process died (loading a model, reading the source): ten times over, the
    task is still an innocent one, ready at once."""
    task = make_task(created=T0)
    await store.insert_task(task)
    for attempt in range(1, 11):
        claimed = await store.claim(task.id)
        assert claimed is not None
        assert claimed.attempt == attempt
        assert claimed.crashes == 0
        assert await store.requeue_interrupted() == 1
    assert await store.queued() == [(task.id, None)]


async def test_a_death_in_the_engine_counts_a_crash_and_holds_the_task_back(store: Store) -> None:
    task = make_task(created=T0)
    await store.insert_task(task)
    for crashes in (1, 2):
        claimed = await store.claim(task.id)
        assert claimed is not None
        assert await store.engine_started(task.id, claimed.attempt)
        assert await store.requeue_interrupted(backoff=lambda n: 0.3 * n) == 1
        back = await store.get_task(task.id)
        assert back is not None
        assert back.status is TaskStatus.QUEUED
        assert back.crashes == crashes
        [(_, not_before)] = await store.queued()
        assert not_before is not None
        assert not_before > time.time()
        assert await store.claim(task.id) is None  # not yet
        await asyncio.sleep(not_before - time.time() + 0.05)
    # the third run gets through its engine: the media names to come are recorded first, and a
    # death while encoding or writing them still counts (an encode that kills the process must end)
    claimed = await store.claim(task.id)
    assert claimed is not None
    assert claimed.crashes == 2
    assert await store.engine_started(task.id, claimed.attempt)
    assert await store.engine_returned(task.id, claimed.attempt, ["v.mp4", "t.webp", "s.jpg"])
    assert await store.requeue_interrupted() == 1
    back = await store.get_task(task.id)
    assert back is not None
    assert back.crashes == 3
    assert back.media_pending == ["v.mp4", "t.webp", "s.jpg"]
    # only a completed video ends the streak
    again = await store.claim(task.id)
    assert again is not None
    assert await store.engine_started(task.id, again.attempt)
    assert await store.engine_returned(task.id, again.attempt, ["v2.mp4", "t2.webp", "s2.jpg"])
    assert await store.complete(
        task.id, again.attempt, video_name="v2.mp4", thumbnail_name="t2.webp", spritesheet_name="s2.jpg"
    )
    done = await store.get_task(task.id)
    assert done is not None
    assert done.crashes == 0


async def test_release_puts_a_task_back_as_it_was(store: Store) -> None:
    task = make_task(created=T0)
    await store.insert_task(task)
    claimed = await store.claim(task.id)
    assert claimed is not None
    assert await store.engine_started(task.id, claimed.attempt)
    assert await store.release(task.id, claimed.attempt)  # a graceful stop mid-run
    assert await store.requeue_interrupted() == 0
    back = await store.claim(task.id)
    assert back is not None
    assert back.crashes == 0
    assert not await store.release(task.id, claimed.attempt)  # fenced: the old run can't touch the new one


async def test_list_tasks_pages_in_order_within_a_tenant(store: Store) -> None:
    mine = [make_task("alice", created=T0 + timedelta(seconds=i)) for i in range(5)]
    theirs = [make_task("bob", created=T0 + timedelta(seconds=i, milliseconds=500)) for i in range(2)]
    for t in mine + theirs:
        await store.insert_task(t)
    ids = [t.video_id for t in mine]

    page, more = await store.list_tasks("alice", after=None, limit=2, order="desc")
    assert [t.video_id for t in page] == ids[::-1][:2]
    assert more
    page, more = await store.list_tasks("alice", after=page[-1].video_id, limit=2, order="desc")
    assert [t.video_id for t in page] == ids[::-1][2:4]
    assert more
    page, more = await store.list_tasks("alice", after=page[-1].video_id, limit=2, order="desc")
    assert [t.video_id for t in page] == ids[::-1][4:]
    assert not more

    page, more = await store.list_tasks("alice", after=None, limit=3, order="asc")
    assert [t.video_id for t in page] == ids[:3]
    assert more
    page, more = await store.list_tasks("alice", after=page[-1].video_id, limit=3, order="asc")
    assert [t.video_id for t in page] == ids[3:]
    assert not more

    page, more = await store.list_tasks("bob", after=None, limit=10, order="desc")
    assert [t.video_id for t in page] == [t.video_id for t in theirs[::-1]]
    assert not more
    # another tenant's id as the cursor never leaks their videos
    page, _ = await store.list_tasks("bob", after=ids[2], limit=10, order="desc")
    assert {t.tenant for t in page} == {"bob"}
    assert (await store.list_tasks("carol", after=None, limit=10, order="desc")) == ([], False)


async def test_soft_delete(store: Store) -> None:
    queued = make_task(created=T0)
    completed = make_task(created=T0 + timedelta(seconds=1))
    await store.insert_task(queued)
    await store.insert_task(completed)
    assert await store.claim(completed.id) is not None
    assert await store.complete(completed.id, 1, video_name="c.mp4", thumbnail_name="c.webp", spritesheet_name=None)

    assert await store.mark_deleted(queued.id) is not None
    gone = await store.get_task(queued.id)
    assert gone is not None
    assert gone.deleted
    assert gone.status is TaskStatus.CANCELLED
    assert await store.claim(queued.id) is None  # and no worker will run it
    assert queued.id not in [i for i, _ in await store.queued()]

    assert await store.mark_deleted(completed.id) is not None
    kept = await store.get_task(completed.id)
    assert kept is not None
    assert kept.status is TaskStatus.COMPLETED
    assert kept.deleted
    assert (await store.list_tasks("alice", after=None, limit=10, order="desc")) == ([], False)
    assert await store.mark_deleted(new_task_id()) is None


async def test_api_keys_add_lookup_revoke(store: Store) -> None:
    assert await store.keys.active_count() == 0
    alice, secret = await create_key(store, "alice")
    bob, bob_secret = await create_key(store, "bob", "team-b")
    assert secret != bob_secret
    assert secret.startswith(alice.prefix)
    assert (alice.tenant, bob.tenant) == ("alice", "team-b")

    found = await store.keys.by_hash(hash_key(secret))
    assert found is not None
    assert (found.id, found.name, found.tenant) == (alice.id, "alice", "alice")
    assert (await authenticate(store, bob_secret)) is not None
    assert await authenticate(store, secret + "x") is None
    assert await authenticate(store, "") is None
    assert await store.keys.active_count() == 2
    assert [k.name for k in await store.keys.list_all()] == ["alice", "bob"]

    # only a hash is stored: the secret is nowhere in the database
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT * FROM api_keys"))).fetchall()
    assert secret not in repr(rows)
    assert bob_secret not in repr(rows)

    assert await store.keys.revoke("alice") == 1
    assert await authenticate(store, secret) is None
    assert await store.keys.revoke("alice") == 0
    assert await store.keys.revoke(bob.id) == 1  # by id as well as by name
    assert await store.keys.active_count() == 0
    listed = {k.name: k for k in await store.keys.list_all()}
    assert listed["alice"].revoked_at is not None
    assert listed["bob"].revoked_at is not None
