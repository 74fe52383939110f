"""Where jobs run: the `Executor` contract, and its in-process implementation.

The store holds the tasks and decides their order: a free worker asks it for the next queued task
(fair across tenants, `store.fair_queue`), so losing this process's state (a crash) loses nothing,
and every executor and replica follows one order. A task held back after a crash waits on a timer
here until its time comes.

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
Pick = Callable[[frozenset[str]], Awaitable[str | None]]  # ids picked and not done -> the next id, or None
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
    """N drainers that each, when free, ask the store which queued task runs next (`Pick`: fair
    across tenants, see `store.fair_queue`) and run it. `submit` only wakes them (or sets a timer for
    a task held back), so every executor and every replica share one order: the store's."""

    def __init__(self, drainers: int = 1) -> None:
        self.drainers = drainers
        self._tasks: list[asyncio.Task[None]] = []
        self._waiting: set[str] = set()  # submitted, not yet seen picked (or the queue seen empty)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._picked: set[str] = set()  # handed to a drainer and not done: skipped by the next picks
        self._wake = asyncio.Event()
        self._picking = asyncio.Lock()

    def start(self, run: Runner, pick: Pick) -> None:
        self._tasks = [
            asyncio.create_task(self._work(run, pick), name=f"reelchat-worker-{i}") for i in range(self.drainers)
        ]

    def submit(self, task_id: str, not_before: float | None = None) -> None:
        """A task is queued (in the store): a free drainer looks now, or at `not_before` (unix seconds)."""
        delay = not_before - time.time() if not_before is not None else 0.0
        if delay > 0:
            if task_id not in self._timers:
                self._timers[task_id] = asyncio.get_running_loop().call_later(delay, self._due, task_id)
            return
        if task_id not in self._picked:
            self._waiting.add(task_id)
        self._wake.set()

    def _due(self, task_id: str) -> None:
        self._timers.pop(task_id, None)
        self.submit(task_id)

    def pending(self) -> int:
        """Tasks submitted here and not yet taken (by this process or, once seen, another)."""
        return len(self._waiting) + len(self._timers)

    async def _next(self, pick: Pick) -> str:
        while True:
            async with self._picking:  # one pick at a time here: each sees the ones before it
                self._wake.clear()
                try:
                    task_id = await pick(frozenset(self._picked))
                except Exception:  # the store is away: look again in a while (or at the next submit)
                    log.warning("could not ask the store for the next task", exc_info=True)
                    task_id = None
                    self._wake.set()
                    await asyncio.sleep(1.0)
                if task_id is not None:
                    self._picked.add(task_id)
                    self._waiting.discard(task_id)
                    return task_id
                if not self._wake.is_set():
                    self._waiting.clear()  # nothing claimable: whatever was submitted has been taken
            await self._wake.wait()

    async def _work(self, run: Runner, pick: Pick) -> None:
        while True:
            task_id = await self._next(pick)
            try:
                await run(task_id)
            except asyncio.CancelledError:
                raise
            except Exception:  # the runner records failures itself; this is the last line of defence
                log.exception("job %s crashed the runner", task_id)
            finally:
                self._picked.discard(task_id)

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


def store_pick(runner: TaskRunner) -> Pick:
    """The store's fair order, for `TaskQueue.start`."""

    async def pick(picked: frozenset[str]) -> str | None:
        return await runner.store.next_queued(picked, runner.settings.fair_window_s)

    return pick


class InProcessExecutor:
    """Engines in the API process (`REELCHAT_EXECUTOR=inprocess`): N asyncio workers, engines in threads."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._queue = TaskQueue(workers)
        self._runner: TaskRunner | None = None

    async def start(self, runner: TaskRunner) -> None:
        await runner.engines.preload(runner.catalog.values())
        self._runner = runner
        self._queue.start(runner.execute, store_pick(runner))

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
