"""Task events to subscribers (a streaming reply, a page's live view): the contracts and the
in-process implementation. PostgreSQL's, for several replicas, is `pg_events.PgEventBus`.

Events are a latency optimisation; the store is the truth. Subscribers read the task from the store
when they start, and one shared notifier per process (`LocalEventBus`'s catch-up loop) re-reads the
store for every task someone here follows, in one query, every `catch_up_s` and at once after a gap
(a lost listen connection): whatever changed without an event reaching us is delivered as one.
No stream polls the store itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Protocol

from ..domain import TaskEvent, TaskStatus
from .mailbox import Mailbox

log = logging.getLogger("reelchat.events")

ReadStates = Callable[[Sequence[str]], Awaitable[list[TaskEvent]]]
"""The store's current state of these tasks, as events (tasks it doesn't hold are left out)."""


class EventBus(Protocol):
    """Publishes a task's events to whoever follows that task (across replicas, in a scale-out)."""

    def publish(self, event: TaskEvent) -> None:
        """Deliver `event` to the task's current subscribers; never blocks."""

    def subscribe(self, task_id: str) -> AbstractAsyncContextManager[Mailbox[TaskEvent]]:
        """A queue of the task's events from now on, for as long as the context is open."""
        ...


class WorkListener(Protocol):
    """What the API process's bus tells its service about work other replicas queued."""

    def queued(self, task_id: str) -> None:
        """Another replica queued `task_id`: this one's executor may take it (claims are exclusive)."""

    def may_have_missed(self) -> None:
        """Notices may have been lost (the listen connection dropped): look at the store's queue now."""


class EventHub(EventBus, Protocol):
    """The API process's bus: one per process, with its catch-up notifier (and, on PostgreSQL, its
    one listen connection). Worker processes see only an `EventBus` (they publish)."""

    async def start(self, read_states: ReadStates, work: WorkListener) -> None:
        """Begin catching subscribers up from `read_states`, and hearing other replicas."""

    def announce(self, task_id: str) -> None:
        """`task_id` was just queued here: tell other replicas' executors (no subscriber sees this)."""

    async def close(self) -> None:
        """Stop every background task and connection."""


class LocalEventBus:
    """This process's subscribers, and the shared notifier that catches them up from the store."""

    def __init__(self, catch_up_s: float = 3.0) -> None:
        self.catch_up_s = catch_up_s
        self._subscribers: dict[str, set[Mailbox[TaskEvent]]] = defaultdict(set)
        self._latest: dict[str, TaskEvent] = {}  # the last event delivered, per followed task
        self._seq: dict[str, int] = {}  # events delivered, per followed task: a catch-up that races one yields
        self._gap = asyncio.Event()
        self._catch_up: asyncio.Task[None] | None = None

    # ---- EventBus ----------------------------------------------------------------------------------

    def publish(self, event: TaskEvent) -> None:
        self.deliver(event)

    @asynccontextmanager
    async def subscribe(self, task_id: str) -> AsyncIterator[Mailbox[TaskEvent]]:
        queue: Mailbox[TaskEvent] = Mailbox()
        self._subscribers[task_id].add(queue)
        try:
            yield queue
        finally:
            subs = self._subscribers.get(task_id)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    del self._subscribers[task_id]
                    self._latest.pop(task_id, None)
                    self._seq.pop(task_id, None)

    # ---- EventHub ------------------------------------------------------------------------------------

    async def start(self, read_states: ReadStates, work: WorkListener) -> None:
        if self._catch_up is None:
            self._catch_up = asyncio.create_task(self._catch_up_loop(read_states), name="reelchat-events-catch-up")

    def announce(self, task_id: str) -> None:
        """One process: its own executor already has the task."""

    async def close(self) -> None:
        if self._catch_up is not None:
            self._catch_up.cancel()
            with suppress(asyncio.CancelledError):
                await self._catch_up
            self._catch_up = None

    # ---- local fan-out ---------------------------------------------------------------------------------

    def deliver(self, event: TaskEvent) -> None:
        """To this process's subscribers of the task only."""
        subs = self._subscribers.get(event.task_id)
        if not subs:
            return
        self._latest[event.task_id] = event
        self._seq[event.task_id] = self._seq.get(event.task_id, 0) + 1
        for queue in list(subs):
            queue.put_nowait(event)

    def followed(self) -> list[str]:
        """The tasks someone in this process follows."""
        return list(self._subscribers)

    def gap(self) -> None:
        """Events may have been missed: catch every subscriber up from the store now."""
        self._gap.set()

    async def catch_up(self, read_states: ReadStates) -> int:
        """One pass of the shared notifier: re-read every followed task (one query per 500), deliver
        what the store knows that subscribers haven't heard; returns the events delivered."""
        delivered = 0
        followed = self.followed()
        for start in range(0, len(followed), 500):
            ids = followed[start : start + 500]
            seqs = {task_id: self._seq.get(task_id, 0) for task_id in ids}
            for stored in await read_states(ids):
                if self._seq.get(stored.task_id, 0) != seqs.get(stored.task_id):
                    continue  # an event came while we read: it is at least as new; the next pass checks
                if _news(self._latest.get(stored.task_id), stored):
                    self.deliver(stored)
                    delivered += 1
        return delivered

    async def _catch_up_loop(self, read_states: ReadStates) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._gap.wait(), timeout=self.catch_up_s)
            self._gap.clear()
            if not self._subscribers:
                continue
            try:
                await self.catch_up(read_states)
            except Exception:  # the store is away: subscribers keep what they have; next pass retries
                log.warning("could not catch subscribers up from the store", exc_info=True)


def _news(heard: TaskEvent | None, stored: TaskEvent) -> bool:
    """Whether the store's state tells subscribers who last heard `heard` something new."""
    if heard is None:
        return stored.status is not TaskStatus.QUEUED or stored.progress > 0  # they read it when they began
    if heard.status.finished:
        return False
    if stored.status != heard.status:
        return True
    return stored.progress > heard.progress  # the store's progress lags the events: never go back


InProcessEventBus = LocalEventBus  # one process (SQLite): the local fan-out is the whole bus
