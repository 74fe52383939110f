"""Where jobs run: the `Executor` contract, and its in-process implementation (the default), a FIFO
queue drained by N worker tasks owned by the app lifespan.

The queue holds only task ids; the store holds the tasks. Losing the queue (a crash) loses nothing:
on start the service re-enqueues every task still queued. A task held back after a crash waits
on a timer here until its time comes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger("reelchat.executor")

Runner = Callable[[str], Awaitable[None]]


class Executor(Protocol):
    """Runs task ids through the service's runner. It holds ids only: the store holds the tasks, and
    the task row (its lease and attempt) decides who owns a job, whatever executor runs it."""

    def start(self, runner: Runner) -> None:
        """Begin taking submitted ids; each is passed to `runner` once a worker is free."""

    def submit(self, task_id: str, not_before: float | None = None) -> None:
        """Run `task_id` when a worker is free, not before `not_before` (unix seconds). Idempotent."""

    def pending(self) -> int:
        """Ids submitted and not yet taken by a worker."""
        ...

    async def stop(self) -> None:
        """Stop the workers (a running job is cancelled; its task goes back to the queue)."""


class InProcessExecutor:
    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._queued: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def start(self, runner: Runner) -> None:
        self._tasks = [
            asyncio.create_task(self._work(runner), name=f"reelchat-worker-{i}") for i in range(self.workers)
        ]

    def submit(self, task_id: str, not_before: float | None = None) -> None:
        """Run `task_id` when a worker is free, and not before `not_before` (unix seconds)."""
        if task_id in self._queued or task_id in self._timers:
            return
        delay = not_before - time.time() if not_before is not None else 0.0
        if delay > 0:
            self._timers[task_id] = asyncio.get_running_loop().call_later(delay, self._due, task_id)
            return
        self._queued.add(task_id)
        self._queue.put_nowait(task_id)

    def _due(self, task_id: str) -> None:
        self._timers.pop(task_id, None)
        self.submit(task_id)

    def pending(self) -> int:
        """Tasks waiting for a worker."""
        return len(self._queued) + len(self._timers)

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
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
