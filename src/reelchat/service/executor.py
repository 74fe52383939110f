"""Where jobs run: the `Executor` contract, and its in-process implementation.

The queue holds only task ids; the store holds the tasks. Losing the queue (a crash) loses nothing:
on start the service re-enqueues every task still queued. A task held back after a crash waits
on a timer here until its time comes.

The contract is the one a remote executor implements too (`worker_pool.WorkerPool`, worker
processes; a Ray executor later): a job is a task id, progress comes back as `TaskEvent`s on the
API process's bus, and cancel / stop are messages. Frames and media never come back: whatever runs
the engine encodes, stores the media and records the outcome in the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from .runner import TaskRunner

log = logging.getLogger("reelchat.executor")

Runner = Callable[[str], Awaitable[None]]
Health = Literal["loading", "running", "failed"]


class Executor(Protocol):
    """Runs task ids. It holds ids only: the store holds the tasks, and the task row (its lease and
    attempt) decides who owns a job, whatever executor runs it."""

    async def start(self, runner: TaskRunner) -> None:
        """Load the models where jobs run, then begin taking ids. `runner` is the API process's own:
        an in-process executor runs jobs through it; a remote one reports into its store and bus."""

    def submit(self, task_id: str, not_before: float | None = None) -> None:
        """Run `task_id` when a worker is free, not before `not_before` (unix seconds). Idempotent."""

    def cancel(self, task_id: str) -> None:
        """The task was deleted: its running engine stops at its next step."""

    def pending(self) -> int:
        """Ids submitted and not yet taken by a worker."""
        ...

    def health(self) -> Health:
        """`running` once every worker takes jobs; `loading` while one loads (or reloads) its models."""
        ...

    async def stop(self) -> None:
        """Engines stop at their next step; their tasks go back to the queue, no crash counted."""


class TaskQueue:
    """A FIFO of task ids (with timers for those held back) drained by N asyncio tasks."""

    def __init__(self, drainers: int = 1) -> None:
        self.drainers = drainers
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._queued: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def start(self, run: Runner) -> None:
        self._tasks = [asyncio.create_task(self._work(run), name=f"reelchat-worker-{i}") for i in range(self.drainers)]

    def submit(self, task_id: str, not_before: float | None = None) -> None:
        """Run `task_id` when a drainer is free, and not before `not_before` (unix seconds)."""
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
        """Tasks waiting for a drainer."""
        return len(self._queued) + len(self._timers)

    async def _work(self, run: Runner) -> None:
        while True:
            task_id = await self._queue.get()
            self._queued.discard(task_id)
            try:
                await run(task_id)
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


class InProcessExecutor:
    """Engines in the API process (`REELCHAT_EXECUTOR=inprocess`): N asyncio workers, engines in threads."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._queue = TaskQueue(workers)
        self._runner: TaskRunner | None = None

    async def start(self, runner: TaskRunner) -> None:
        await runner.engines.preload(runner.catalog.values())
        self._runner = runner
        self._queue.start(runner.execute)

    def submit(self, task_id: str, not_before: float | None = None) -> None:
        self._queue.submit(task_id, not_before)

    def cancel(self, task_id: str) -> None:
        if self._runner is not None:
            self._runner.cancel(task_id)

    def pending(self) -> int:
        return self._queue.pending()

    def health(self) -> Health:
        return "running" if self._runner is not None else "loading"

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.stop_all()  # engines stop at their next step; their tasks are released
        await self._queue.stop()
