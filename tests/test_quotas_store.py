"""The fair queue, per-key usage and idempotency records in the store, on SQLite and on PostgreSQL.

"Replicas" here are two `Store`s on one database, each picking and claiming as a server does.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from pg import fresh_database
from test_store import make_task

from reelchat.domain import ApiKey, KeyLimits, Task, TaskStatus
from reelchat.service import idempotency
from reelchat.service.errors import Busy, Conflict
from reelchat.service.keys import create_key
from reelchat.service.limits import check_limits
from reelchat.store.keys import NameTaken
from reelchat.store.schema import api_keys, schema_migrations, tasks
from reelchat.store.schema import idempotency as idempotency_table
from reelchat.store.tasks import Store


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    async with fresh_database("reelchat_quota") as (url, _admin):
        yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = Store(db_url)
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


async def _queue(store: Store, tenant: str, n: int, start: datetime) -> list[Task]:
    made = [make_task(tenant, created=start + timedelta(milliseconds=i)) for i in range(n)]
    await asyncio.gather(*(store.insert_task(t) for t in made))
    return made


async def _run_next(store: Store) -> Task:
    """What a free worker does: pick, claim, and (instantly) finish."""
    while True:
        task_id = await store.next_queued()
        assert task_id is not None, "the queue ran dry"
        task = await store.claim(task_id, owner=f"node-{id(store)}")
        if task is not None:  # else another replica claimed it first: pick again
            break
    assert await store.complete(task.id, task.attempt, video_name="v", thumbnail_name="t", spritesheet_name=None)
    return task


async def test_a_flood_from_one_key_does_not_hold_back_another_keys_single_job(store: Store, db_url: str) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    await _queue(store, "alice", 500, t0)
    (bob,) = await _queue(store, "bob", 1, t0 + timedelta(seconds=30))  # after all of alice's
    other = Store(db_url)  # a second replica on the same database
    try:
        ran = [await _run_next(store if i % 2 == 0 else other) for i in range(2)]
    finally:
        await other.close()
    assert bob.id in [t.id for t in ran], "bob's single job waited behind alice's flood"


async def test_priority_weights_the_share_of_starts(store: Store) -> None:
    await create_key(store, "alice", limits=KeyLimits(priority=2.0))
    await create_key(store, "bob")
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    await _queue(store, "alice", 40, t0)
    await _queue(store, "bob", 40, t0)
    ran = Counter([(await _run_next(store)).tenant for _ in range(30)])
    assert ran == {"alice": 20, "bob": 10}


async def test_a_picked_task_counts_as_served_before_it_is_claimed(store: Store) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    alice = await _queue(store, "alice", 3, t0)
    (bob,) = await _queue(store, "bob", 1, t0 + timedelta(seconds=1))
    assert await store.next_queued() == alice[0].id
    assert await store.next_queued(picked={alice[0].id}) == bob.id  # two workers of one process
    assert await store.next_queued(picked={alice[0].id, bob.id}) == alice[1].id


async def test_a_held_back_or_deleted_task_is_not_picked(store: Store) -> None:
    (held,) = await _queue(store, "alice", 1, datetime.now(UTC) - timedelta(seconds=5))
    async with store.engine.begin() as conn:
        await conn.execute(tasks.update().where(tasks.c.id == held.id).values(not_before=time.time() + 60))
    (gone,) = await _queue(store, "bob", 1, datetime.now(UTC))
    await store.mark_deleted(gone.id)
    assert await store.next_queued() is None


# ---------------------------------------------------------------------------------------------- keys


async def test_key_names_are_unique_among_active_keys(store: Store) -> None:
    await create_key(store, "alice")
    with pytest.raises(NameTaken):
        await create_key(store, "alice")
    assert await store.keys.revoke("alice") == 1
    key, _ = await create_key(store, "alice")  # a revoked key's name may be used again
    assert (await store.keys.by_name("alice")) == key


async def test_the_migration_renames_duplicate_names_of_an_older_database(db_url: str) -> None:
    store = Store(db_url)
    try:
        await store.migrate()
        # an older database: no unique index, migration 3 not applied, two active keys named alice
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("DROP INDEX ux_api_keys_active_name"))
            await conn.execute(schema_migrations.delete().where(schema_migrations.c.version >= 3))
        first, _ = await create_key(store, "alice")
        second, _ = await create_key(store, "alice")
        await create_key(store, "alice-2")  # the obvious new name is taken
        revoked, _ = await create_key(store, "bob")
        await store.keys.revoke(revoked.id)
        await create_key(store, "bob")  # an active and a revoked bob: not a duplicate
        assert 3 in await store.migrate()
        names = {k.id: k.name for k in await store.keys.list_all()}
        assert names[first.id] == "alice"
        assert names[second.id] == "alice-3"
        assert sorted(names.values()) == ["alice", "alice-2", "alice-3", "bob", "bob"]
        with pytest.raises(NameTaken):
            await create_key(store, "alice-3")
    finally:
        await store.close()


async def test_old_keys_get_no_limits_and_priority_one(store: Store) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            api_keys.insert().values(
                id="key_old", name="old", tenant="old", prefix="rc-xxxx", key_hash="h", created_at=time.time()
            )
        )
    key = await store.keys.by_name("old")
    assert key is not None
    assert key.limits == KeyLimits()


# ---------------------------------------------------------------------------------------------- limits


async def _finish(store: Store, task: Task, status: TaskStatus) -> None:
    claimed = await store.claim(task.id)
    assert claimed is not None
    if status is TaskStatus.COMPLETED:
        await store.complete(task.id, claimed.attempt, video_name="v", thumbnail_name="t", spritesheet_name=None)
    else:
        await store.fail(task.id, claimed.attempt, code="engine_error", message="no")


async def test_daily_seconds_charge_only_completed_videos_and_hold_unfinished_ones(store: Store) -> None:
    key, _ = await create_key(store, "alice", limits=KeyLimits(daily_seconds=15))
    done = make_task("alice", key_id=key.id, seconds=10)
    failed = make_task("alice", key_id=key.id, seconds=10)
    for t in (done, failed):
        await store.insert_task(t)
    await _finish(store, done, TaskStatus.COMPLETED)
    await _finish(store, failed, TaskStatus.FAILED)
    await check_limits(store, key, 5)  # 10 charged (the failed one is not) + 5 fits in 15
    await store.insert_task(make_task("alice", key_id=key.id, seconds=5))  # queued: holds 5 s
    with pytest.raises(Busy) as refused:
        await check_limits(store, key, 1)
    assert refused.value.code == "daily_seconds_exceeded"
    # the completed video leaves the 24 hours first
    assert 86400 - 60 < refused.value.retry_after <= 86400
    assert "15 seconds of video per 24 hours" in refused.value.message


async def test_rpm_and_max_concurrent(store: Store) -> None:
    key, _ = await create_key(store, "alice", limits=KeyLimits(rpm=2))
    for _ in range(2):
        await store.insert_task(make_task("alice", key_id=key.id))
    await check_limits(store, (await create_key(store, "bob"))[0], 10)  # another key: its own count
    with pytest.raises(Busy) as refused:
        await check_limits(store, key, 10)
    assert refused.value.code == "rate_limit_exceeded"
    assert 55 <= refused.value.retry_after <= 60
    key = await _with_limits(store, key.id, KeyLimits(max_concurrent=2))
    with pytest.raises(Busy) as refused:
        await check_limits(store, key, 10)
    assert refused.value.code == "concurrency_limit_exceeded"
    key = await _with_limits(store, key.id, KeyLimits(max_concurrent=3))
    await check_limits(store, key, 10)


async def _with_limits(store: Store, key_id: str, limits: KeyLimits) -> ApiKey:
    await store.keys.set_limits(key_id, limits)
    key = await store.keys.by_name(key_id)
    assert key is not None
    assert key.limits == limits
    return key


# ---------------------------------------------------------------------------------------------- idempotency


async def test_idempotency_replays_conflicts_and_expires(store: Store) -> None:
    task = make_task("alice")
    idem = idempotency.Idempotency("key:k1", idempotency.request_hash("POST /v1/videos", {"prompt": "a"}))
    assert await idempotency.replay(store, 3600, "alice", idem) is None
    assert await idempotency.record(store, 3600, task, idem) is None
    await store.insert_task(task)
    again = await idempotency.replay(store, 3600, "alice", idem)
    assert again is not None
    assert again.id == task.id
    assert await idempotency.replay(store, 3600, "bob", idem) is None  # per tenant
    twin = make_task("alice")
    holder = await idempotency.record(store, 3600, twin, idem)  # a twin request that lost the race
    assert holder is not None
    assert holder.id == task.id
    other = idempotency.Idempotency("key:k1", idempotency.request_hash("POST /v1/videos", {"prompt": "b"}))
    with pytest.raises(Conflict) as conflict:
        await idempotency.replay(store, 3600, "alice", other)
    assert conflict.value.code == "idempotency_key_reused"
    await asyncio.sleep(0.05)
    assert await idempotency.replay(store, 0.01, "alice", other) is None  # expired: a new request
    assert await idempotency.record(store, 0.01, twin, other) is None


async def test_a_burst_of_claims_is_written_together_and_each_learns_whether_the_key_is_its_own(
    store: Store,
) -> None:
    # every chat reply claims its conversation's key: 200 at once were 200 write transactions
    now = time.time()
    await store.idempotency.claim("alice", "held", "h", "task_holder", newer_than=now - 3600)
    await store.idempotency.claim("alice", "stale", "h", "task_old", newer_than=now - 3600)
    async with store.engine.begin() as conn:
        await conn.execute(
            idempotency_table.update().where(idempotency_table.c.key == "stale").values(created_at=now - 7200)
        )
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    claims = [("alice", f"k{i}", f"task_{i}") for i in range(200)]
    claims += [("alice", "k7", "task_twin"), ("bob", "k7", "task_bob")]  # a twin; another tenant's key
    claims += [("alice", "held", "task_late"), ("alice", "stale", "task_new")]
    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    try:
        found = await asyncio.gather(
            *(store.idempotency.claim(t, k, "h", task, newer_than=now - 3600) for t, k, task in claims)
        )
    finally:
        sa.event.remove(store.engine.sync_engine, "before_cursor_execute", count)
    answers = dict(zip([task for _, _, task in claims], found, strict=True))
    assert all(answers[f"task_{i}"] is None for i in range(200))  # each new key is its claimer's
    assert answers["task_bob"] is None  # keys are per tenant
    twin = answers["task_twin"]
    assert twin is not None
    assert twin.task_id == "task_7"  # the twin finds the holder
    held = answers["task_late"]
    assert held is not None
    assert held.task_id == "task_holder"
    assert answers["task_new"] is None  # an expired record is replaced
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) <= 4, inserts  # not one per claim
    record = await store.idempotency.get("alice", "stale", newer_than=now - 3600)
    assert record is not None
    assert record.task_id == "task_new"


async def test_a_burst_of_lookups_shares_a_few_queries_and_each_gets_its_own_answer(store: Store) -> None:
    # every chat request looks its conversation up: 100 at once must not be 100 queries
    now = time.time()
    for i in range(0, 60, 2):  # even keys are recorded; every fourth of them long ago (expired)
        await store.idempotency.claim("alice", f"k{i}", "h", f"task_{i}", newer_than=now - 3600)
    old = [f"k{i}" for i in range(0, 60, 4)]
    async with store.engine.begin() as conn:
        await conn.execute(
            idempotency_table.update().where(idempotency_table.c.key.in_(old)).values(created_at=now - 7200)
        )
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    try:
        found = await asyncio.gather(
            *(
                store.idempotency.get(tenant, f"k{i}", newer_than=now - 3600)
                for i in range(60)
                for tenant in ("alice", "bob")
            )
        )
    finally:
        sa.event.remove(store.engine.sync_engine, "before_cursor_execute", count)
    answers = iter(found)
    for i in range(60):
        mine, bobs = next(answers), next(answers)
        assert bobs is None  # per tenant
        if i % 2 or i % 4 == 0:
            assert mine is None, i
        else:
            assert mine is not None, i
            assert mine.task_id == f"task_{i}"
    assert 1 <= len(statements) <= 3, statements


async def test_a_record_whose_task_was_never_stored_is_replaced(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idempotency, "STORE_WAIT_S", 0.2)
    lost = make_task("alice")
    idem = idempotency.conversation("c" * 64)
    assert await idempotency.record(store, 3600, lost, idem) is None  # the process died before the insert
    retry = make_task("alice")
    assert await idempotency.record(store, 3600, retry, idem) is None
    await store.insert_task(retry)
    found = await idempotency.replay(store, 3600, "alice", idem)
    assert found is not None
    assert found.id == retry.id
    await _finish(store, retry, TaskStatus.COMPLETED)
    assert await idempotency.replay(store, 3600, "alice", idem) is None  # a conversation: finished is not reattached
    assert await idempotency.record(store, 3600, make_task("alice"), idem) is None
