"""`Turnstile`: at most so many requests start in a turn of the event loop, in order; the work that
can wait goes in a turn with no request waiting, or when it has waited too long."""

from __future__ import annotations

import asyncio
import itertools
import time

from reelchat.api.turnstile import Turnstile


async def _turn_by_turn(order: list[int], total: int) -> list[int]:
    """How many had gone, after each turn of the loop, until `total` have."""
    seen = [len(order)]
    while len(order) < total:
        await asyncio.sleep(0)
        seen.append(len(order))
    return seen


async def test_a_burst_starts_a_few_requests_per_turn_in_the_order_they_came() -> None:
    gate = Turnstile(per_turn=10)
    order: list[int] = []

    async def request(i: int) -> None:
        await gate.enter()
        order.append(i)

    tasks = [asyncio.create_task(request(i)) for i in range(100)]
    seen = await _turn_by_turn(order, 100)
    assert max(b - a for a, b in itertools.pairwise(seen)) <= 10
    assert order == list(range(100))
    await asyncio.gather(*tasks)
    await asyncio.sleep(0)
    assert len(gate) == 0


async def test_a_request_cancelled_while_it_waits_holds_nobody_up() -> None:
    gate = Turnstile(per_turn=1)
    order: list[int] = []

    async def request(i: int) -> None:
        await gate.enter()
        order.append(i)

    tasks = [asyncio.create_task(request(i)) for i in range(5)]
    await asyncio.sleep(0)  # the first went; the rest wait
    tasks[1].cancel()
    tasks[2].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [0, 3, 4]


async def test_work_that_can_wait_goes_after_the_waiting_requests() -> None:
    gate = Turnstile(per_turn=4, max_wait_s=5.0)
    order: list[str] = []

    async def request(i: int) -> None:
        await gate.enter()
        order.append(f"r{i}")

    async def echo() -> None:
        await gate.after_requests()
        order.append("echo")

    tasks = [asyncio.create_task(request(i)) for i in range(12)]
    tasks.append(asyncio.create_task(echo()))
    await asyncio.gather(*tasks)
    assert order.index("echo") == 12  # after every request that was waiting


async def test_work_that_can_wait_goes_after_max_wait_even_if_requests_keep_coming() -> None:
    gate = Turnstile(per_turn=2, max_wait_s=0.05)
    done: list[float] = []
    stop = False

    async def flood() -> None:  # a request waiting at every turn
        while not stop:
            await gate.enter()

    async def echo() -> None:
        await gate.after_requests()
        done.append(time.monotonic())

    floods = [asyncio.create_task(flood()) for _ in range(8)]
    await asyncio.sleep(0)
    started = time.monotonic()
    await asyncio.wait_for(echo(), 2.0)
    stop = True
    await asyncio.gather(*floods)
    assert 0.04 <= done[0] - started < 1.0
