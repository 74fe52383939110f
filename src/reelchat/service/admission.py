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
during a burst (`burst_count` admissions begun within `burst_s`: 80 a second) the gate is quiet only once `settle_s`
has passed since the last admission began. Steady traffic (tens of requests a second) is no burst:
there a store goes in any moment with no admission in progress, as before, not a second late.

And when it is quiet, the thousands of stores a burst left waiting go `per_turn` to a turn of the
loop, in the order they came, not all in the turn the gate opens: waking 5,000 of them at once was
a turn of a quarter of a second that every stream and `/healthz` waited for.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

__all__ = ["AdmissionGate"]


class AdmissionGate:
    def __init__(
        self,
        max_wait_s: float = 1.0,
        storing_at_once: int = 32,
        settle_s: float = 0.025,
        per_turn: int = 32,
        burst_s: float = 0.1,
        burst_count: int = 8,
    ) -> None:
        self.max_wait_s = max_wait_s
        self.settle_s = settle_s
        self.per_turn = per_turn
        self._admitting = 0
        self._last_entry = 0.0  # loop time the last admission began
        self._entries: deque[float] = deque(maxlen=burst_count)  # when the last `burst_count` admissions began
        self.burst_s = burst_s
        self._waiting: deque[tuple[float, asyncio.Future[None]]] = deque()  # (deadline, waiter), in order
        self._pump: asyncio.Handle | None = None
        # the stores let through then go a few dozen at a time (the database pool serves about as many)
        self.storing = asyncio.Semaphore(storing_at_once)

    def __len__(self) -> int:
        return self._admitting

    def quiet_for(self) -> float:
        """Seconds since the last admission began (0 while one is in progress)."""
        if self._admitting:
            return 0.0
        return asyncio.get_running_loop().time() - self._last_entry if self._last_entry else float("inf")

    def enter(self) -> Callable[[], None]:
        """One reply being admitted; returns its `leave`, safe to call more than once."""
        self._admitting += 1
        self._last_entry = asyncio.get_running_loop().time()
        self._entries.append(self._last_entry)
        left = False

        def leave() -> None:
            nonlocal left
            if left:
                return
            left = True
            self._admitting -= 1
            if self._admitting == 0 and self._waiting:
                self._schedule()

        return leave

    async def wait_quiet(self) -> None:
        """Until no reply is being admitted and none began for `settle_s`, or `max_wait_s` at most (a
        steady stream of new replies delays a store by that much, never more)."""
        loop = asyncio.get_running_loop()
        if not self._waiting and self._may_go(loop.time(), loop.time() + self.max_wait_s):
            return
        waiter = loop.create_future()
        self._waiting.append((loop.time() + self.max_wait_s, waiter))
        self._schedule()
        await waiter  # a cancelled wait leaves its future done: the pump skips it

    def _quiet(self, now: float) -> bool:
        return not self._admitting and now - self._last_entry >= self.settle_s

    def _bursting(self, now: float) -> bool:
        return len(self._entries) == self._entries.maxlen and now - self._entries[0] < self.burst_s

    def _may_go(self, now: float, deadline: float) -> bool:
        """Whether the head of the line goes now: its wait is over, or nobody is being admitted this
        moment and (during a burst) none has begun for `settle_s`."""
        if deadline <= now or self._quiet(now):
            return True
        return not self._admitting and not self._bursting(now)

    def _schedule(self) -> None:
        """The pump, when the head of the line may go: now if it may, else at the first moment it
        might (a leave() reschedules while admissions are in progress)."""
        if self._pump is not None:
            self._pump.cancel()
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = self._waiting[0][0]
        if self._may_go(now, deadline):
            self._pump = loop.call_soon(self._release)
            return
        when = deadline
        if not self._admitting:  # bursting: until it settles, or until the burst window has passed
            when = min(when, self._last_entry + self.settle_s, self._entries[0] + self.burst_s)
        self._pump = loop.call_at(when, self._release)

    def _release(self) -> None:
        self._pump = None
        now = asyncio.get_running_loop().time()
        released = 0
        while self._waiting and released < self.per_turn:
            deadline, waiter = self._waiting[0]
            if waiter.done():  # its reply went away
                self._waiting.popleft()
            elif self._may_go(now, deadline):
                self._waiting.popleft()
                waiter.set_result(None)
                released += 1
            else:
                break
        if self._waiting:
            self._schedule()
