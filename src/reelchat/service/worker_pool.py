"""The default executor: engines in worker processes, so the API process only submits, follows
progress and serves (its event loop never competes with a model for the interpreter lock).

One process per slot (`REELCHAT_WORKERS`), spawned (never forked), each with its models resident.
The pool supervises them: a worker that dies is restarted, and the tasks it owned (its lease owner
is `<node id>/worker-<n>`) go back to the queue at once, a crash counted only if it died inside its
engine (the store's `in_engine` flag; see `crashes`). Messages: `worker_messages`.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from contextlib import suppress
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from ..settings import Settings
from . import worker_main
from .executor import Health, TaskQueue, store_pick
from .runner import TaskRunner
from .worker_messages import Cancel, Done, FromWorker, Progress, Ready, Run, Stop, ToWorker

log = logging.getLogger("reelchat.executor")

STOP_GRACE_S = 8.0  # a worker that has not stopped by then is killed (its task is requeued on the next start)
RESTART_DELAY_S = 1.0
MAX_FAILED_STARTS = 3  # deaths in a row before ever being ready: the worker is marked failed


class WorkerFailed(RuntimeError):
    pass


@dataclass
class WorkerSlot:
    index: int
    owner: str  # the lease owner its tasks carry
    state: Health = "loading"
    generation: int = 0
    process: BaseProcess | None = None
    conn: Connection | None = None
    current: str | None = None
    done: asyncio.Future[None] | None = None
    ready: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def send(self, message: ToWorker) -> None:
        if self.conn is not None:
            with suppress(OSError):  # it died: its supervisor deals with that
                self.conn.send(message)


class WorkerPool:
    def __init__(self, settings: Settings, workers: int = 1) -> None:
        self.settings = settings
        self.workers = workers
        self._queue = TaskQueue(workers)
        self._slots: list[WorkerSlot] = []
        self._free: asyncio.Queue[tuple[WorkerSlot, int]] = asyncio.Queue()
        self._supervisors: list[asyncio.Task[None]] = []
        self._runner: TaskRunner | None = None
        self._stopping = False

    # ---- Executor ------------------------------------------------------------------------------

    async def start(self, runner: TaskRunner) -> None:
        """Spawn the workers and return once each has loaded its models (WorkerFailed if one can't)."""
        self._runner = runner
        node = self.settings.resolved_node_id
        self._slots = [WorkerSlot(i, f"{node}/worker-{i}") for i in range(self.workers)]
        self._supervisors = [
            asyncio.create_task(self._supervise(slot), name=f"reelchat-supervisor-{slot.index}") for slot in self._slots
        ]
        await asyncio.gather(*(slot.ready for slot in self._slots))
        self._queue.start(self._dispatch, store_pick(runner))

    def submit(self, task_id: str, not_before: float | None = None) -> None:
        self._queue.submit(task_id, not_before)

    def cancel(self, task_id: str) -> None:
        for slot in self._slots:
            if slot.current == task_id:
                slot.send(Cancel(task_id))

    def pending(self) -> int:
        return self._queue.pending()

    def health(self) -> Health:
        states = {slot.state for slot in self._slots}
        if "failed" in states:
            return "failed"
        return "running" if states == {"running"} else "loading"

    async def stop(self) -> None:
        self._stopping = True
        for slot in self._slots:
            slot.send(Stop())
        if self._supervisors:
            _, late = await asyncio.wait(self._supervisors, timeout=STOP_GRACE_S)
            for slot in self._slots:
                if late and slot.process is not None and slot.process.is_alive():
                    log.warning("worker %d did not stop in %.0f s: killing it", slot.index, STOP_GRACE_S)
                    slot.process.kill()
            await asyncio.gather(*self._supervisors, return_exceptions=True)
        await self._queue.stop()

    # ---- dispatch --------------------------------------------------------------------------------

    async def _dispatch(self, task_id: str) -> None:
        """Hand `task_id` to a free worker and wait until it is done with it (or dies)."""
        while True:
            slot, generation = await self._free.get()
            if slot.generation == generation and slot.state == "running":
                break  # else: a stale entry of a worker that died meanwhile
        slot.current = task_id
        slot.done = asyncio.get_running_loop().create_future()
        slot.send(Run(task_id))
        try:
            await slot.done
        finally:
            slot.current, slot.done = None, None
            if slot.generation == generation and slot.state == "running":
                self._free.put_nowait((slot, generation))

    # ---- supervision -----------------------------------------------------------------------------

    async def _supervise(self, slot: WorkerSlot) -> None:
        failed_starts = 0
        while not self._stopping:
            try:
                was_ready = await self._run_once(slot)
            except Exception:  # the process could not even start (no memory, no file descriptors)
                log.exception("worker %d could not be started", slot.index)
                was_ready = False
            if self._stopping:
                break
            await self._requeue(slot)
            failed_starts = 0 if was_ready else failed_starts + 1
            if failed_starts >= MAX_FAILED_STARTS:
                slot.state = "failed"
                log.error("worker %d died %d times before it was ready: giving up", slot.index, failed_starts)
                if not slot.ready.done():
                    slot.ready.set_exception(WorkerFailed(f"worker {slot.index} could not start"))
                return
            await asyncio.sleep(RESTART_DELAY_S)

    async def _run_once(self, slot: WorkerSlot) -> bool:
        """One life of a worker process; returns whether it got ready."""
        loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        settings = self.settings.model_copy(update={"node_id": slot.owner})
        process = ctx.Process(
            target=worker_main.run,
            args=(settings, child, multiprocessing.current_process().pid, logging.getLogger().getEffectiveLevel()),
            name=f"worker-{slot.index}",
        )
        # started from the event loop's thread on purpose: the worker's parent-death signal follows it
        process.start()
        child.close()
        slot.generation += 1
        slot.state, slot.process, slot.conn = "loading", process, parent
        generation, was_ready = slot.generation, False
        exited: asyncio.Future[None] = loop.create_future()

        def on_message(message: FromWorker) -> None:
            nonlocal was_ready
            if isinstance(message, Progress):
                if self._runner is not None:
                    self._runner.bus.publish(message.event)
            elif isinstance(message, Done):
                if slot.current == message.task_id and slot.done is not None and not slot.done.done():
                    slot.done.set_result(None)
            elif isinstance(message, Ready):
                was_ready, slot.state = True, "running"
                log.info("worker %d (pid %s) ready", slot.index, process.pid)
                if not slot.ready.done():
                    slot.ready.set_result(None)
                self._free.put_nowait((slot, generation))

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        def read() -> None:
            while True:
                try:
                    message: FromWorker = parent.recv()
                except (EOFError, OSError):
                    break
                loop.call_soon_threadsafe(on_message, message)
            with suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(on_exit)

        threading.Thread(target=read, name=f"reelchat-pipe-{slot.index}", daemon=True).start()
        await exited
        await asyncio.to_thread(process.join)
        parent.close()
        slot.conn, slot.state = None, "loading"
        if slot.done is not None and not slot.done.done():
            slot.done.set_result(None)  # its job ended with it
        if not self._stopping:
            log.warning("worker %d (pid %s) exited with %s: restarting it", slot.index, process.pid, process.exitcode)
        return was_ready

    async def _requeue(self, slot: WorkerSlot) -> None:
        """The dead worker's tasks go back to the queue now (no lease to wait out), and to us."""
        runner = self._runner
        if runner is None:
            return
        try:
            await runner.store.requeue_interrupted(owner=slot.owner, backoff=runner.crashes.backoff)
            for task_id, not_before in await runner.store.queued():
                self.submit(task_id, not_before)
        except Exception:  # the lease sweep requeues them later all the same
            log.warning("could not requeue the tasks of worker %d", slot.index, exc_info=True)
