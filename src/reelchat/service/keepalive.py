"""`KeepaliveWheel`: one timer for every open chat reply of a process, however many there are.

A reply that has nothing new to say sends a keep-alive every `interval_s`. A timer per reply
(`wait_for(events.get(), timeout)`) costs each one a timer handle and a cancellation on every
wait, and wakes all of them on the same beat. Instead, a reply registers its event queue here and
the wheel's one task puts `TICK` into it once per interval; the reply wakes on its queue as it
would for any event, so a waiting reply holds no timer, no task and no store query.

The interval is cut into `slots`: a reply joins the slot that has just fired, so it is ticked one
interval after it registered, then every interval; and each beat wakes only the replies of one
slot (1/16 of them by default), which spreads 5,000 keep-alives over the interval instead of
writing them all at once. The task runs while a reply is registered, and ends with the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from ..domain import TaskEvent, TaskStatus
from .mailbox import Inbox

__all__ = ["TICK", "KeepaliveWheel"]

# Put into a follower's event queue when its keep-alive is due; compared by identity, never published.
TICK = TaskEvent(task_id="", status=TaskStatus.QUEUED, progress=0, error_code="keepalive")


class KeepaliveWheel:
    def __init__(self, interval_s: float, slots: int = 16) -> None:
        self.interval_s = interval_s
        self._slot_s = interval_s / slots
        self._slots: list[set[Inbox[TaskEvent]]] = [set() for _ in range(slots)]
        self._cursor = 0  # the slot that fired last
        self._members = 0
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.beats = 0  # times the wheel's timer fired (all replies share it)

    def __len__(self) -> int:
        return self._members

    @contextlib.contextmanager
    def register(self, queue: Inbox[TaskEvent]) -> Iterator[None]:
        """`TICK` goes into `queue` every interval while the context is open."""
        slot = self._slots[self._cursor]
        slot.add(queue)
        self._members += 1
        if not self._closed and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._turn(), name="reelchat-keepalive-wheel")
        try:
            yield
        finally:
            slot.discard(queue)
            self._members -= 1

    async def _turn(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while self._members:
            due += self._slot_s
            await asyncio.sleep(max(0.0, due - loop.time()))
            if loop.time() - due > self.interval_s:  # the loop was stalled for a whole turn: don't catch up in a burst
                due = loop.time()
            self._cursor = (self._cursor + 1) % len(self._slots)
            self.beats += 1
            for queue in list(self._slots[self._cursor]):
                with contextlib.suppress(asyncio.QueueFull):  # a bounded queue that is full has news anyway
                    queue.put_nowait(TICK)

    async def close(self) -> None:
        """Stop the timer (the lifespan's end); replies still registered get no more ticks."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
