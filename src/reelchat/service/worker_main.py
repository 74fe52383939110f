"""The worker process: its own store, storage, catalog and engines, built from the API's Settings.

It loads the models before it says `Ready`, then runs `TaskRunner.execute` for each id the API
sends, one at a time. It encodes and stores the media and records the outcome itself; only task
events go back, over the pipe. It dies with the API process (a SIGKILLed server leaves no worker
behind to finish a job behind the next server's back).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from multiprocessing.connection import Connection

from ..catalog import load_catalog
from ..domain import TaskEvent
from ..engines.registry import EngineRegistry
from ..logs import configure_logging
from ..parent_death import die_with_parent
from ..settings import Settings
from ..store.tasks import Store
from .crashes import CrashPolicy
from .mailbox import Mailbox
from .runner import TaskRunner
from .worker_cpu import apply_cpu_share
from .worker_messages import Cancel, Done, FromWorker, Progress, Ready, Run, Stop, ToWorker

log = logging.getLogger("reelchat.worker")


def run(settings: Settings, conn: Connection, parent_pid: int, log_level: int) -> None:
    """The process's entry point (spawned, never forked)."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the API stops us
    configure_logging(settings.log_format, log_level)
    apply_cpu_share(settings)
    asyncio.run(_serve(settings, conn))


class PipeBus:
    """The worker's side of the API's EventBus: events go over the pipe; subscribers live there."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def publish(self, event: TaskEvent) -> None:
        _send(self._conn, Progress(event))

    @asynccontextmanager
    async def subscribe(self, task_id: str) -> AsyncIterator[Mailbox[TaskEvent]]:
        raise RuntimeError("a worker process has no subscribers: they follow the API process's bus")
        yield Mailbox()  # pragma: no cover  (unreachable: makes this a generator)


def _send(conn: Connection, message: FromWorker) -> None:
    with suppress(OSError):  # the API is gone: we are about to go too
        conn.send(message)


async def _serve(settings: Settings, conn: Connection) -> None:
    from .factory import build_storage  # the one factory (it imports the pool, which imports us)

    loop = asyncio.get_running_loop()
    store = Store(settings.resolved_database_url)
    catalog = load_catalog(settings.models_file, settings.models_json)
    engines = EngineRegistry(
        settings.models_dir, device=settings.device, dtype=settings.dtype, device_memory_gb=settings.device_memory_gb
    )
    crashes = CrashPolicy(settings.max_attempts, settings.crash_backoff_s)
    runner = TaskRunner(settings, store, build_storage(settings), catalog, engines, PipeBus(conn), crashes)
    jobs: asyncio.Queue[str] = asyncio.Queue()
    stopping = asyncio.Event()

    def on_message(message: ToWorker | None) -> None:
        if isinstance(message, Run):
            jobs.put_nowait(message.task_id)
        elif isinstance(message, Cancel):
            runner.cancel(message.task_id)
        else:  # Stop, or the pipe closed (None)
            stopping.set()

    def read() -> None:
        while True:
            try:
                message: ToWorker | None = conn.recv()
            except (EOFError, OSError):
                message = None
            loop.call_soon_threadsafe(on_message, message)
            if message is None or isinstance(message, Stop):
                return

    async def work() -> None:
        await engines.preload(catalog.values())
        _send(conn, Ready())
        while True:
            task_id = await jobs.get()
            try:
                await runner.execute(task_id)
            except Exception:  # the runner records failures itself; this is the last line of defence
                log.exception("job %s crashed the runner", task_id)
            finally:
                _send(conn, Done(task_id))

    loop.add_signal_handler(signal.SIGTERM, stopping.set)  # stopped from outside: as gracefully
    threading.Thread(target=read, name="reelchat-worker-pipe", daemon=True).start()
    worker = asyncio.create_task(work(), name="reelchat-worker")
    worker.add_done_callback(lambda _: stopping.set())  # failed to load: exit, the pool sees it
    await stopping.wait()
    runner.stop_all()  # engines stop at their next step; the cancelled job releases its task
    worker.cancel()
    with suppress(asyncio.CancelledError):
        await worker
    await engines.close()
    await store.close()
