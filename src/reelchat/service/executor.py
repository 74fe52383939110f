"""Where jobs run. In-process (default): a FIFO queue drained by N worker tasks owned by the app lifespan.

The queue holds only task ids; the store holds the tasks. Losing the queue (a crash) loses nothing:
on start the service re-enqueues every task still queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("reelchat.executor")

Runner = Callable[[str], Awaitable[None]]


class InProcessExecutor:
    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._queued: set[str] = set()

    def start(self, runner: Runner) -> None:
        self._tasks = [
            asyncio.create_task(self._work(runner), name=f"reelchat-worker-{i}") for i in range(self.workers)
        ]

    def submit(self, task_id: str) -> None:
        if task_id not in self._queued:
            self._queued.add(task_id)
            self._queue.put_nowait(task_id)

    def pending(self) -> int:
        """Tasks waiting for a worker."""
        return len(self._queued)

    async def _work(self, runner: Runner) -> None:
        while True:
            task_id = await self._queue.get()
            self._queued.discard(task_id)
            try:
                await runner(task_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # the runner records failures itself; this is the last line of defence
                log.exception("job %s crashed the runner", task_id)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
