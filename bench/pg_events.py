"""How fast does a task event cross replicas over PostgreSQL LISTEN/NOTIFY?

Two `PgEventBus` instances (two replicas' buses, each with its one listen connection) on a fresh
database of the PostgreSQL at --url. One publishes progress events of --tasks tasks at --rate events
per second in total; the other has --subscribers local subscribers per task. It prints the latency
from publish to the arrival in the other replica's subscriber queue (p50 / p99 / max), the events
lost (none expected), and the events per second the pair sustained when publishing as fast as it
can (--burst events in one go).

    .venv/bin/python bench/pg_events.py [--url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import time
from collections.abc import Sequence

import asyncpg
from sqlalchemy.engine import make_url

from reelchat.domain import TaskEvent, TaskStatus
from reelchat.service.mailbox import Mailbox
from reelchat.service.pg_events import PgEventBus, asyncpg_dsn


class NoWork:
    def queued(self, task_id: str) -> None:
        pass

    def may_have_missed(self) -> None:
        pass


async def no_states(_ids: Sequence[str]) -> list[TaskEvent]:
    return []  # the store is not part of this measurement


async def measure(url: str, tasks: int, subscribers: int, rate: float, events: int, burst: int) -> None:
    a, b = PgEventBus(url, catch_up_s=3600), PgEventBus(url, catch_up_s=3600)
    await a.start(no_states, NoWork())
    await b.start(no_states, NoWork())
    ids = [f"task_bench{i:06d}" for i in range(tasks)]
    sent: dict[tuple[str, int], float] = {}
    latencies: list[float] = []
    try:
        queues = []
        contexts = []
        for task_id in ids:
            for _ in range(subscribers):
                cm = b.subscribe(task_id)
                queues.append(await cm.__aenter__())
                contexts.append(cm)

        expected = [events]
        arrived = asyncio.Event()

        async def drain(queue: Mailbox[TaskEvent]) -> None:
            while True:
                event = await queue.get()
                latencies.append(time.perf_counter() - sent[(event.task_id, event.progress)])
                if len(latencies) >= expected[0]:
                    arrived.set()

        drainers = [asyncio.create_task(drain(q)) for q in queues[::subscribers]]  # one per task
        interval = 1.0 / rate
        for n in range(events):
            task_id, progress = ids[n % tasks], 1 + n // tasks
            sent[(task_id, progress)] = time.perf_counter()
            a.publish(TaskEvent(task_id, TaskStatus.IN_PROGRESS, progress))
            await asyncio.sleep(interval)
        await asyncio.sleep(1.0)
        lost = events - len(latencies)
        ms = sorted(x * 1000 for x in latencies)
        print(f"paced: {events} events at {rate:.0f}/s over {tasks} tasks, {subscribers} subscriber(s) each")
        print(
            f"  publish -> other replica's subscriber: p50 {statistics.median(ms):.2f} ms, "
            f"p99 {ms[int(len(ms) * 0.99) - 1]:.2f} ms, max {ms[-1]:.2f} ms; lost {lost}"
        )
        latencies.clear()
        arrived.clear()
        expected[0] = burst
        start = time.perf_counter()
        for n in range(burst):
            task_id, progress = ids[n % tasks], 100_000 + n
            sent[(task_id, progress)] = time.perf_counter()
            a.publish(TaskEvent(task_id, TaskStatus.IN_PROGRESS, progress))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arrived.wait(), timeout=60)
        took = time.perf_counter() - start
        rate_in = len(latencies) / took
        print(f"burst: {burst} events published at once: {len(latencies)} arrived in {took:.2f} s ({rate_in:.0f}/s)")
        for d in drainers:
            d.cancel()
        for cm in contexts:
            await cm.__aexit__(None, None, None)
    finally:
        await a.close()
        await b.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--burst", type=int, default=20000)
    args = parser.parse_args()
    server = make_url(args.url)
    name = f"reelchat_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(asyncpg_dsn(args.url))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = server.set(database=name).render_as_string(hide_password=False)
        await measure(url, args.tasks, args.subscribers, args.rate, args.events, args.burst)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
