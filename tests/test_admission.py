"""Storing answered replies' tasks waits, briefly, for the replies still being admitted
(`AdmissionGate`): under a burst, first chunks leave first."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from reelchat.service.admission import AdmissionGate


async def test_storing_waits_while_replies_are_admitted_but_never_long() -> None:
    gate = AdmissionGate(max_wait_s=0.2)
    leave = gate.enter()
    started = time.monotonic()
    waiting = asyncio.create_task(gate.wait_quiet())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    leave()
    leave()  # safe twice: counts once
    await waiting
    assert time.monotonic() - started < 0.2
    assert len(gate) == 0
    gate.enter()  # never left: the wait ends at max_wait_s
    started = time.monotonic()
    await gate.wait_quiet()
    assert 0.15 < time.monotonic() - started < 1.0


async def test_a_reply_that_goes_away_while_waiting_is_cancelled_even_as_the_gate_opens() -> None:
    # the client leaving must end its reply: the cancellation is never swallowed by the wait
    gate = AdmissionGate(max_wait_s=5.0)
    leave = gate.enter()
    waiting = asyncio.create_task(gate.wait_quiet())
    await asyncio.sleep(0)
    leave()  # the gate opens...
    waiting.cancel()  # ...in the same turn as the client leaves
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_storing_goes_a_few_at_a_time() -> None:
    gate = AdmissionGate(storing_at_once=2)
    inside, most = 0, 0

    async def store() -> None:
        nonlocal inside, most
        async with gate.storing:
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(store() for _ in range(10)))
    assert most == 2


async def test_storing_waits_for_a_burst_to_settle_not_for_each_gap_in_it() -> None:
    # a burst's requests arrive a fraction of a millisecond apart: a store must not run in every gap
    gate = AdmissionGate(max_wait_s=2.0, settle_s=0.1, burst_count=5, burst_s=0.5)
    for _ in range(5):  # a burst: five admissions within half a second
        gate.enter()()
        await asyncio.sleep(0.001)
    waiting = asyncio.create_task(gate.wait_quiet())
    started = time.monotonic()
    for _ in range(5):  # more of the burst, each admission over before the next begins, 40 ms apart
        gate.enter()()
        await asyncio.sleep(0.04)
        assert not waiting.done(), "a store ran between two admissions of the burst"
    await waiting
    # the last admission began ~160 ms in; the store waited the settling time after it
    assert 0.25 < time.monotonic() - started < 1.0


async def test_under_steady_traffic_a_store_goes_in_the_first_moment_nobody_is_admitted() -> None:
    # tens of requests a second are no burst: their stores must not wait a second each
    gate = AdmissionGate(max_wait_s=2.0, settle_s=0.1, burst_count=5, burst_s=0.1)
    gate.enter()()
    await asyncio.sleep(0.04)
    leave = gate.enter()
    waiting = asyncio.create_task(gate.wait_quiet())
    started = time.monotonic()
    await asyncio.sleep(0.01)
    assert not waiting.done()  # an admission is in progress
    leave()
    await waiting
    assert time.monotonic() - started < 0.05


async def test_a_bursts_waiting_stores_are_let_go_a_few_per_turn_in_order() -> None:
    # waking thousands of stores in the turn the gate opens was a quarter-second stall for every stream
    gate = AdmissionGate(max_wait_s=5.0, settle_s=0.02, per_turn=10)
    leave = gate.enter()
    order: list[int] = []

    async def store(i: int) -> None:
        await gate.wait_quiet()
        order.append(i)

    stores = [asyncio.create_task(store(i)) for i in range(100)]
    await asyncio.sleep(0.01)
    assert order == []  # still admitting
    leave()
    seen = [0]
    while len(order) < 100:  # turn by turn: settled after 20 ms, then the gate lets them go
        await asyncio.sleep(0)
        seen.append(len(order))
    assert max(b - a for a, b in itertools.pairwise(seen)) <= 10
    assert sum(1 for a, b in itertools.pairwise(seen) if b > a) >= 10  # over ten turns at least
    assert order == list(range(100))
    await asyncio.gather(*stores)
