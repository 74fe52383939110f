"""Holding many streams: one keep-alive timer per process, keep-alives at the configured interval, the
store read now and then instead of on every tick, and `/healthz` and the per-key cap answered from a
recent query instead of one per request. (How fast: `bench/chat_load.py`.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from reelchat.domain import TaskEvent, TaskStatus
from reelchat.protocol.chat_parse import parse_chat_body
from reelchat.protocol.chat_turn import Turn
from reelchat.service.capacity import UnfinishedCounts
from reelchat.service.chat import ChatServing, Snapshot
from reelchat.service.factory import build_service
from reelchat.service.health import DatabaseProbe
from reelchat.service.keepalive import TICK, KeepaliveWheel
from reelchat.service.videos import VideoService
from reelchat.service.worker_cpu import plan_cpu_share
from reelchat.settings import Settings


def wheel_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "reelchat-keepalive-wheel"]


def drain(queue: asyncio.Queue[TaskEvent]) -> int:
    ticks = 0
    while not queue.empty():
        ticks += queue.get_nowait() is TICK
    return ticks


async def test_many_streams_share_one_timer_and_each_is_ticked_every_interval() -> None:
    wheel = KeepaliveWheel(0.2)
    queues: list[asyncio.Queue[TaskEvent]] = [asyncio.Queue() for _ in range(500)]
    with contextlib_exit_stack(wheel, queues):
        assert len(wheel) == 500
        assert len(wheel_tasks()) == 1  # one timer, however many streams
        await asyncio.sleep(0.2 * 3 + 0.05)
        ticks = [drain(q) for q in queues]
        assert min(ticks) >= 2, ticks
        assert max(ticks) <= 4, ticks
        # each beat woke one slot's streams, not all of them: 16 slots per interval
        assert wheel.beats >= 3 * 16 - 2
    assert len(wheel) == 0
    await asyncio.sleep(0.05)  # the timer ends with the last stream
    assert wheel_tasks() == []
    await wheel.close()


class contextlib_exit_stack:
    """Registers every queue with the wheel for the block's duration."""

    def __init__(self, wheel: KeepaliveWheel, queues: list[asyncio.Queue[TaskEvent]]) -> None:
        self._managers = [wheel.register(q) for q in queues]

    def __enter__(self) -> None:
        for m in self._managers:
            m.__enter__()

    def __exit__(self, *exc: object) -> None:
        for m in self._managers:
            m.__exit__(None, None, None)


async def test_a_stream_joining_late_is_ticked_one_interval_after_it_joined() -> None:
    wheel = KeepaliveWheel(0.3)
    early: asyncio.Queue[TaskEvent] = asyncio.Queue()
    late: asyncio.Queue[TaskEvent] = asyncio.Queue()
    with wheel.register(early):
        await asyncio.sleep(0.15)
        with wheel.register(late):
            joined = time.monotonic()
            assert await asyncio.wait_for(late.get(), 1.0) is TICK
            waited = time.monotonic() - joined
            assert 0.3 - 0.3 / 16 - 0.05 <= waited <= 0.3 + 0.1, waited
    await wheel.close()


# ---- ChatServing.follow, on a real store, with no worker taking the task ------------------------


@asynccontextmanager
async def idle_service(home: Path) -> AsyncIterator[VideoService]:
    """A service whose store is migrated but whose workers never start: its tasks stay queued."""
    service = build_service(Settings(home=home))
    await service.store.migrate()
    try:
        yield service
    finally:
        await service.store.close()


async def follow_for(chat: ChatServing, seconds: float, after: Callable[[str], object] | None = None) -> list[Snapshot]:
    req = parse_chat_body(
        b'{"model": "sora-2", "stream": true, "messages": [{"role": "user", "content": "a boat"}]}',
        chat.seconds_by_model(),
    )
    assert isinstance(req.turn, Turn)
    turn = await chat.start("default", "sora-2", req.turn)
    snapshots: list[Snapshot] = []

    async def run() -> None:
        async for snapshot in chat.follow(turn):
            snapshots.append(snapshot)
            if len(snapshots) == 1 and after is not None:
                after(turn.task.id)

    runner = asyncio.create_task(run())
    await asyncio.sleep(seconds)
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    return snapshots


async def test_a_waiting_stream_gets_a_keepalive_every_interval_from_the_shared_wheel(
    make_home: Callable[[str], Path],
) -> None:
    async with idle_service(make_home("follow-ticks")) as service:
        chat = ChatServing(service, keepalive_s=0.1, give_up_s=60)
        snapshots = await follow_for(chat, 0.55)
        await chat.close()
    assert snapshots[0].tick is False
    assert snapshots[0].task.status is TaskStatus.QUEUED
    ticks = [s for s in snapshots[1:] if s.tick]
    assert 4 <= len(ticks) <= 6, len(ticks)
    assert chat.keepalives.beats >= 4 * 16 - 2  # the wheel, not a timer of the stream's own


async def test_events_arrive_at_once_and_a_keepalive_is_skipped_after_news(make_home: Callable[[str], Path]) -> None:
    async with idle_service(make_home("follow-events")) as service:
        chat = ChatServing(service, keepalive_s=0.2, give_up_s=60)

        def publish_progress(task_id: str) -> None:
            service.bus.publish(TaskEvent(task_id, TaskStatus.IN_PROGRESS, 40))

        snapshots = await follow_for(chat, 0.5, after=publish_progress)
        await chat.close()
    assert snapshots[1].tick is False
    assert snapshots[1].task.status is TaskStatus.IN_PROGRESS
    assert snapshots[1].task.progress == 40
    # the first tick after news says nothing: a keep-alive only after a whole quiet interval
    assert [s.tick for s in snapshots[2:]] in ([True], [True, True], []), [s.tick for s in snapshots]
    assert len(snapshots) <= 3


async def test_a_missed_event_is_caught_by_the_periodic_store_read_not_by_every_tick(
    make_home: Callable[[str], Path],
) -> None:
    async with idle_service(make_home("follow-resync")) as service:
        chat = ChatServing(service, keepalive_s=0.1, give_up_s=60, resync_s=0.3)

        def claim_behind_the_bus(task_id: str) -> None:
            # another server's worker takes the task: the row changes, no event reaches this process
            asyncio.get_running_loop().create_task(service.store.claim(task_id, owner="elsewhere"))

        snapshots = await follow_for(chat, 0.75, after=claim_behind_the_bus)
        await chat.close()
    statuses = [(s.tick, s.task.status) for s in snapshots]
    seen_at = next(i for i, s in enumerate(snapshots) if s.task.status is TaskStatus.IN_PROGRESS)
    # two ticks pass on the queued state before the third tick's read finds the claim
    assert [t for t, _ in statuses[1:seen_at]] == [True, True], statuses
    assert snapshots[seen_at].tick is False


# ---- /healthz and the per-key cap: a recent answer, one query at a time ---------------------------


async def test_the_database_probe_answers_many_calls_with_one_query() -> None:
    pings = 0
    hang = asyncio.Event()

    async def ping() -> None:
        nonlocal pings
        pings += 1
        if pings >= 3:
            await hang.wait()  # the database stops answering

    probe = DatabaseProbe(ping, fresh_s=0.1, stale_s=0.4)
    assert set(await asyncio.gather(*(probe.check() for _ in range(100)))) == {"ok"}
    assert pings == 1
    await asyncio.sleep(0.15)
    assert await probe.check() == "ok"  # the last answer, while one query runs in the background
    await asyncio.sleep(0.01)
    assert pings == 2
    await asyncio.sleep(0.15)
    assert await probe.check() == "ok"  # starts the query that hangs
    await asyncio.sleep(0.5)
    answer = await probe.check()
    assert answer.startswith("error: no answer for"), answer
    assert pings == 3  # never two queries at once
    await probe.close()


async def test_the_per_key_cap_reads_the_store_once_per_burst_and_refuses_on_a_fresh_count() -> None:
    stored = {"alice": 0}

    async def count(tenant: str) -> int:
        await asyncio.sleep(0.01)
        return stored[tenant]

    counts = UnfinishedCounts(count, fresh_s=10.0)
    admitted = await asyncio.gather(*(counts.admit("alice", 5) for _ in range(8)))
    assert admitted.count(None) == 5
    assert counts.queries == 1
    assert sorted(a for a in admitted if a is not None) == [5, 5, 5]
    # tasks finished meanwhile: an estimate at the cap is checked against the store before refusing
    stored["alice"] = 1
    assert await counts.admit("alice", 5) is None
    assert counts.queries == 2


# ---- worker processes: CPU share -----------------------------------------------------------------


def test_workers_leave_a_core_to_the_api_process_on_cpu_and_keep_torchs_default_on_cuda(tmp_path: Path) -> None:
    one = Settings(home=tmp_path)
    assert plan_cpu_share(one, cores=2, cuda=False).threads == 1
    assert plan_cpu_share(one, cores=1, cuda=False).threads == 1
    assert plan_cpu_share(one, cores=16, cuda=False).threads == 15
    assert plan_cpu_share(Settings(home=tmp_path, workers=3), cores=16, cuda=False).threads == 5
    assert plan_cpu_share(one, cores=16, cuda=True).threads is None
    assert plan_cpu_share(Settings(home=tmp_path, worker_threads=4), cores=2, cuda=True).threads == 4
    assert plan_cpu_share(one, cores=2, cuda=False).nice == 10
    assert plan_cpu_share(Settings(home=tmp_path, worker_nice=0), cores=2, cuda=False).nice == 0


async def test_tasks_admitted_while_the_store_counts_are_kept() -> None:
    stored = {"alice": 2}

    async def count(tenant: str) -> int:
        await asyncio.sleep(0.05)
        return stored[tenant]

    counts = UnfinishedCounts(count, fresh_s=0.01)
    assert await counts.admit("alice", 100) is None  # read (2), plus this one
    await asyncio.sleep(0.02)  # lapsed: the next admits go ahead while a refresh runs behind them
    for _ in range(5):
        assert await counts.admit("alice", 100) is None
    await asyncio.sleep(0.1)  # the refresh (2 stored) has landed: the 5 admitted meanwhile are kept
    assert counts._counts["alice"].value == 7  # without them: 2, and 5 more would pass a cap of 7 unchecked
