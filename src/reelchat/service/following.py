"""Following one task's state live, whichever replica runs it (what `/source/{id}/events` streams)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

from ..domain import TaskEvent, TaskStatus
from ..store.tasks import Store
from .events import EventBus


async def follow(bus: EventBus, store: Store, task_id: str, idle_s: float) -> AsyncIterator[TaskEvent | None]:
    """The task's state as it changes, from whichever replica runs it, until it finishes: first
    what the store says, then every event (the bus's notifier covers lost ones); None after
    `idle_s` without news (the caller's keep-alive). Nothing is yielded for an unknown task."""
    async with bus.subscribe(task_id) as events:
        task = await store.get_task(task_id)  # read after subscribing: no event slips between
        if task is None:
            return
        current = TaskEvent(task.id, TaskStatus.CANCELLED if task.deleted else task.status, task.progress)
        yield current
        while not current.status.finished:
            try:
                event = await asyncio.wait_for(events.get(), timeout=idle_s)
            except TimeoutError:
                yield None
                continue
            if event.status is TaskStatus.IN_PROGRESS and current.status is TaskStatus.IN_PROGRESS:
                event = dataclasses.replace(event, progress=max(event.progress, current.progress))
            if event != current:
                current = event
                yield current
