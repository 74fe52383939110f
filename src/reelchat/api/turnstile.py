"""At most so many requests start in one turn of the event loop, ahead of the work that can wait;
health probes pass it all.

Every request of a burst becomes ready in the same turn of the loop, and a turn runs everything that
is ready before it looks at the sockets again. A thousand chat requests that arrive together are a
thousand admissions (most of a millisecond each) in one turn: every open stream's keep-alive, every
page and `/healthz` waited for the whole burst (0.6 s at 1,000, 2.7 s at 5,000). Behind the
turnstile a turn starts `per_turn` requests and lets the rest go in the turns after, in the order
they came; the sockets are read between turns, so a probe or a keep-alive waits a few dozen
admissions, not all of them.

Work that a reply can do after its first bytes (its echo) waits with `after_requests` until a turn
with no request waiting, or `max_wait_s` at most: a burst's first chunks go out first.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Turnstile"]


class Turnstile:
    def __init__(self, per_turn: int = 16, max_wait_s: float = 1.0) -> None:
        self.per_turn = per_turn
        self.max_wait_s = max_wait_s
        self._passed = 0  # let through in this turn
        self._requests: deque[asyncio.Future[None]] = deque()
        self._later: deque[tuple[float, asyncio.Future[None]]] = deque()  # (deadline, waiter)
        self._turn_ends: asyncio.Handle | None = None

    def __len__(self) -> int:
        """Requests waiting for a later turn."""
        return len(self._requests)

    async def enter(self) -> None:
        """Returns in this turn while it has room and no request waits, else in a later turn, in order."""
        if self._passed < self.per_turn and not self._requests:
            self._passed += 1
            self._until_next_turn()
            return
        waiter = asyncio.get_running_loop().create_future()
        self._requests.append(waiter)
        self._until_next_turn()
        await waiter

    async def after_requests(self) -> None:
        """Returns at once when no request waits and this turn has room; else in a later turn that has
        no request waiting, or after `max_wait_s` at most."""
        if self._passed < self.per_turn and not self._requests and not self._later:
            self._passed += 1
            self._until_next_turn()
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._later.append((loop.time() + self.max_wait_s, waiter))
        self._until_next_turn()
        await waiter

    def _until_next_turn(self) -> None:
        if self._turn_ends is None:
            # call_soon: runs after everything already ready, once the sockets have been polled
            self._turn_ends = asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._turn_ends = None
        self._passed = 0
        while self._requests and self._passed < self.per_turn:
            self._wake(self._requests.popleft())
        now = asyncio.get_running_loop().time()
        overdue = self.per_turn  # a turn full of requests still lets this many that waited too long go
        while self._later:
            if self._passed < self.per_turn and not self._requests:
                self._wake(self._later.popleft()[1])
            elif self._later[0][0] <= now and overdue > 0:
                overdue -= 1
                self._wake(self._later.popleft()[1])
            else:
                break
        if self._requests or self._later or self._passed:
            self._until_next_turn()

    def _wake(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():  # else its request was cancelled while it waited
            waiter.set_result(None)
            self._passed += 1
