"""Task events to subscribers (a streaming reply, a page's live view): the `EventBus` contract and
its in-process implementation.

Subscribers always re-read the task from the store when they start, so a missed event never
leaves them stale: events are a latency optimisation, the store is the truth.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from ..domain import TaskEvent


class EventBus(Protocol):
    """Publishes a task's events to whoever follows that task (across replicas, in a scale-out)."""

    def publish(self, event: TaskEvent) -> None:
        """Deliver `event` to the task's current subscribers; never blocks."""

    def subscribe(self, task_id: str) -> AbstractAsyncContextManager[asyncio.Queue[TaskEvent]]:
        """A queue of the task's events from now on, for as long as the context is open."""
        ...


class InProcessEventBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[TaskEvent]]] = defaultdict(set)

    def publish(self, event: TaskEvent) -> None:
        for queue in list(self._subscribers.get(event.task_id, ())):
            queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(self, task_id: str) -> AsyncIterator[asyncio.Queue[TaskEvent]]:
        queue: asyncio.Queue[TaskEvent] = asyncio.Queue()
        self._subscribers[task_id].add(queue)
        try:
            yield queue
        finally:
            subs = self._subscribers.get(task_id)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    del self._subscribers[task_id]
