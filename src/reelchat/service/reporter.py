"""The executor's side of the engine Reporter: progress from a worker thread to events and the store,
and live preview pictures to the media storage.

A preview is written by the process that runs the engine (a worker process, a Ray actor), like the
video itself: its WebP goes straight to the storage under the task's one preview name (overwritten),
and the count of previews so far goes to the store with the progress, in the same write. /source reads
the store, so any replica links the picture (`preview_url=…?v=<count>`) while the task runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import numpy as np
import numpy.typing as npt

from ..catalog import parse_size
from ..domain import Task, TaskEvent, TaskStatus
from ..media import encode
from ..media.storage import Storage
from ..store.tasks import Store
from .events import EventBus

log = logging.getLogger("reelchat.service")

FLUSH_INTERVAL_S = 0.25
PREVIEW_INTERVAL_S = 1.0  # at most one preview picture written per second, whatever the steps' pace
PREVIEW_MAX_SIDE = 320  # a preview's longer side at most (never more than the video's)


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
        previews: Storage | None = None,
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
        self._previews = previews  # where preview pictures go (None: no previews)
        self._picture: npt.NDArray[np.uint8] | None = None  # the engine's latest, not yet written
        self._preview_count = 0
        self._preview_written = 0  # the count last written to the store
        self._preview_at = -PREVIEW_INTERVAL_S  # monotonic time of the last picture written

    def wants_previews(self) -> bool:
        return self._previews is not None

    def preview(self, picture: npt.NDArray[np.uint8]) -> None:
        # from the engine's thread: one reference swap (atomic); the flush loop takes the latest
        self._picture = picture

    async def write_preview(self) -> None:
        """Store the engine's latest picture, if there is one and the last is a second old. Advisory:
        a failed write costs that picture, never the job."""
        picture, storage = self._picture, self._previews
        if picture is None or storage is None or time.monotonic() - self._preview_at < PREVIEW_INTERVAL_S:
            return
        self._picture = None
        self._preview_at = time.monotonic()
        try:
            width, height = parse_size(self._task.size)
            size = encode.thumbnail_size(width, height, PREVIEW_MAX_SIDE)
            data = await asyncio.to_thread(encode.encode_preview, picture, size)
            await storage.save(self._task.preview_name, data)
        except Exception:
            log.warning("could not store a preview of %s", self._task.id, exc_info=True)
            return
        self._preview_count += 1

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
        if self._latest != self._last_written or self._preview_count != self._preview_written:
            self._last_written = self._latest
            preview = self._preview_count if self._preview_count != self._preview_written else None
            self._preview_written = self._preview_count
            try:
                await self._store.set_progress(self._task.id, self._task.attempt, self._latest, preview=preview)
            except Exception:
                log.warning("could not record progress of %s", self._task.id, exc_info=True)

    @asynccontextmanager
    async def flushing(self) -> AsyncIterator[None]:
        """Write progress to the store in the background while the engine runs."""

        async def loop() -> None:
            last_beat = time.monotonic()
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                await self.write_preview()
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
