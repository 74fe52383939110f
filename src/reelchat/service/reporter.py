"""The executor's side of the engine Reporter: progress from a worker thread to events and the store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from ..domain import Task, TaskEvent, TaskStatus
from ..store.tasks import Store
from .events import EventBus

log = logging.getLogger("reelchat.service")

FLUSH_INTERVAL_S = 0.25


class TaskReporter:
    """Thread-safe: engines call progress() from their worker thread.

    Subscribers hear each new percentage at once; the store gets the latest value at most every
    FLUSH_INTERVAL_S (progress is advisory; the state transitions are what must be durable).
    """

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        task: Task,
        loop: asyncio.AbstractEventLoop,
        cancelled: set[str],
        heartbeat_s: float = 30.0,
    ) -> None:
        self._heartbeat_s = heartbeat_s
        self._store = store
        self._bus = bus
        self._task = task
        self._loop = loop
        self._cancelled = cancelled
        self._last_published = -1
        self._last_written = task.progress
        self._latest = task.progress
        self._stopped = False

    def progress(self, percent: int) -> None:
        self._loop.call_soon_threadsafe(self._on_progress, max(0, min(99, int(percent))))

    def _on_progress(self, percent: int) -> None:
        if percent <= self._last_published:
            return
        self._last_published = percent
        self._latest = percent
        self._bus.publish(TaskEvent(self._task.id, TaskStatus.IN_PROGRESS, percent))

    def cancelled(self) -> bool:
        return self._stopped or self._task.id in self._cancelled

    def stop(self) -> None:
        """Ask the engine to stop at its next step (deadline passed, or the server is shutting down)."""
        self._stopped = True

    @property
    def upstream_job_id(self) -> str | None:
        return self._task.upstream_job_id

    async def remember_upstream_job(self, job_id: str) -> None:
        if not await self._store.set_upstream_job(self._task.id, self._task.attempt, job_id):
            raise RuntimeError("the task was deleted or taken over before the upstream job could be recorded")
        self._task.upstream_job_id = job_id

    async def flush(self) -> None:
        """Write the latest progress. Advisory: a failed write is logged, never fatal to the job."""
        if self._latest != self._last_written:
            self._last_written = self._latest
            try:
                await self._store.set_progress(self._task.id, self._task.attempt, self._latest)
            except Exception:
                log.warning("could not record progress of %s", self._task.id, exc_info=True)

    @asynccontextmanager
    async def flushing(self) -> AsyncIterator[None]:
        """Write progress to the store in the background while the engine runs."""

        async def loop() -> None:
            last_beat = time.monotonic()
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                await self.flush()
                if time.monotonic() - last_beat >= self._heartbeat_s:  # renew this server's lease
                    last_beat = time.monotonic()
                    try:
                        await self._store.heartbeat(self._task.id, self._task.attempt)
                    except Exception:
                        log.warning("could not renew the lease of %s", self._task.id, exc_info=True)

        flusher = asyncio.create_task(loop())
        try:
            yield
        finally:
            flusher.cancel()
            with suppress(asyncio.CancelledError):
                await flusher
