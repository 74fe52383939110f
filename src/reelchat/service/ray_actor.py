"""The Ray actor's side of `REELCHAT_EXECUTOR=ray`: one actor per GPU (or per CPU on a cluster
without GPUs), its model resident, running one job at a time.

Like a worker process (`worker_main`), it builds its own store, storage, catalog and engines from
the API's Settings, claims each task in the store itself (so a stale or doubled id is harmless),
encodes and writes the media straight to storage and records the outcome. What goes back to the
API process is the `worker_messages` protocol, as the items of a Ray streaming generator: a
`Progress` per task event, then `Done`. Video bytes never travel through the API process.

This module is imported inside Ray's worker processes; it imports Ray only there (the executor
wraps the class with `ray.remote`), so it loads without Ray installed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from ..catalog import load_catalog
from ..domain import TaskEvent
from ..engines.registry import EngineRegistry
from ..settings import Settings
from ..store.tasks import Store
from .crashes import CrashPolicy
from .mailbox import Mailbox
from .runner import TaskRunner
from .worker_messages import Done, FromWorker, Progress, Ready

log = logging.getLogger("reelchat.actor")


class StreamBus:
    """The actor's side of the API's EventBus: a running job's events go into its stream."""

    def __init__(self) -> None:
        self._streams: dict[str, asyncio.Queue[TaskEvent]] = {}

    def open(self, task_id: str) -> asyncio.Queue[TaskEvent]:
        queue: asyncio.Queue[TaskEvent] = asyncio.Queue()
        self._streams[task_id] = queue
        return queue

    def close(self, task_id: str) -> None:
        self._streams.pop(task_id, None)

    def publish(self, event: TaskEvent) -> None:
        queue = self._streams.get(event.task_id)
        if queue is not None:
            queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(self, task_id: str) -> AsyncIterator[Mailbox[TaskEvent]]:
        raise RuntimeError("an actor has no subscribers: they follow the API process's bus")
        yield Mailbox()  # pragma: no cover  (unreachable: makes this a generator)


class EngineActor:
    """Wrapped by `ray.remote` in the executor. An async actor: `cancel` and `stop` run on its event
    loop while `run` waits on the engine's thread, so they reach a running job."""

    def __init__(self, settings: Settings, models: list[str]) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.settings = settings
        self.models = models  # the catalog entries whose engine this actor keeps resident
        self.bus = StreamBus()
        self.store = Store(settings.resolved_database_url)
        self.engines = EngineRegistry(settings.models_dir, device=settings.device, dtype=settings.dtype)
        self._runner: TaskRunner | None = None

    async def ping(self) -> str:
        """Answers once the actor's process is up (Ray has placed it): the id of its node."""
        import ray  # inside an actor, Ray is there

        node: str = ray.get_runtime_context().get_node_id()
        return node

    async def load(self) -> Ready:
        """Build the runner and load the models (seconds to minutes); the actor then takes jobs."""
        if self._runner is not None:
            return Ready()
        from .factory import build_storage  # the one factory (it imports the executors)

        catalog = load_catalog(self.settings.models_file, self.settings.models_json)
        crashes = CrashPolicy(self.settings.max_attempts, self.settings.crash_backoff_s)
        storage = build_storage(self.settings)
        self._runner = TaskRunner(self.settings, self.store, storage, catalog, self.engines, self.bus, crashes)
        await self.engines.preload(catalog[name] for name in self.models if name in catalog)
        return Ready()

    async def run(self, task_id: str) -> AsyncIterator[FromWorker]:
        """Claim and run `task_id`, yielding its events as they happen, then `Done` (a streaming generator)."""
        runner = self._runner
        if runner is None:
            raise RuntimeError("run before load")
        events = self.bus.open(task_id)
        job = asyncio.create_task(runner.execute(task_id), name=f"reelchat-job-{task_id}")
        try:
            while not job.done() or not events.empty():
                next_event = asyncio.ensure_future(events.get())
                await asyncio.wait({job, next_event}, return_when=asyncio.FIRST_COMPLETED)
                if next_event.done():
                    yield Progress(next_event.result())
                else:
                    next_event.cancel()
            try:
                job.result()
            except Exception:  # the runner records failures itself; this is the last line of defence
                log.exception("job %s crashed the runner", task_id)
            yield Done(task_id)
        finally:
            self.bus.close(task_id)
            if not job.done():  # the caller went away (Ray cancelled us): stop the engine, release the task
                runner.stop_all()
                job.cancel()
                with suppress(asyncio.CancelledError, Exception):
                    await job

    async def cancel(self, task_id: str) -> None:
        """The task was deleted: its engine stops at its next step."""
        if self._runner is not None:
            self._runner.cancel(task_id)

    async def stop(self) -> None:
        """Shutting down: the engine stops at its next step and its task goes back to the queue."""
        if self._runner is not None:
            self._runner.stop_all()

    async def close(self) -> None:
        await self.engines.close()
        await self.store.close()
