"""First bytes before bookkeeping: chat replies still being admitted go before the stores of replies
already answered.

A chat reply's first bytes (the role chunk and the echo) need no query; storing its task (the
idempotency claim, the insert) needs several, and all of it shares one event loop. Under a burst of
1,000 requests, replies that have sent their echo would otherwise store their tasks between the
admission of the ones behind them, and the last request's first chunk would wait for the whole
burst's writes. So a reply stores its task once no other reply is being admitted, or after
`max_wait_s` at most: the first chunks of a burst leave first, then its tasks are stored (each still
before its reply shows the task's ID, so the durability rule holds).

"No other reply is being admitted" also needs a moment with no new one: a burst's requests arrive a
fraction of a millisecond apart, and a store (an idempotency claim and an insert, most of two
milliseconds of the loop's time) run in every such gap would delay each first chunk behind it. So
the gate is quiet once `settle_s` has passed since the last admission began.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress

__all__ = ["AdmissionGate"]


class AdmissionGate:
    def __init__(self, max_wait_s: float = 1.0, storing_at_once: int = 32, settle_s: float = 0.025) -> None:
        self.max_wait_s = max_wait_s
        self.settle_s = settle_s
        self._admitting = 0
        self._last_entry = 0.0  # loop time the last admission began
        self._quiet = asyncio.Event()
        self._quiet.set()
        # when a burst's admissions end, its thousands of stores are due at once: they go a few dozen
        # at a time (the database pool serves about as many), so no turn of the loop runs them all
        self.storing = asyncio.Semaphore(storing_at_once)

    def __len__(self) -> int:
        return self._admitting

    def enter(self) -> Callable[[], None]:
        """One reply being admitted; returns its `leave`, safe to call more than once."""
        self._admitting += 1
        self._last_entry = asyncio.get_running_loop().time()
        self._quiet.clear()
        left = False

        def leave() -> None:
            nonlocal left
            if left:
                return
            left = True
            self._admitting -= 1
            if self._admitting == 0:
                self._quiet.set()

        return leave

    async def wait_quiet(self) -> None:
        """Until no reply is being admitted and none began for `settle_s`, or `max_wait_s` at most (a
        steady stream of new replies delays a store by that much, never more)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that lands
        # as the event is set (a client that leaves then would go unnoticed)
        with suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                while True:
                    if self._admitting:
                        await self._quiet.wait()
                    settled = self._last_entry + self.settle_s - loop.time()
                    if settled <= 0 and not self._admitting:
                        return
                    if settled > 0:
                        await asyncio.sleep(settled)
