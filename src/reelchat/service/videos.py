"""The only orchestrator: submit tasks, run them through engines, store media, answer queries.

A task row is written (status queued) before any work starts; each state change afterwards is one
durable, attempt-fenced write (`runner`). On start, tasks a dead process left queued or running
run again, once the models are loaded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress

from ..catalog import ModelSpec
from ..domain import ApiKey, Character, InputImage, Task, TaskEvent, TaskStatus, VideoRequest
from ..engines.registry import EngineRegistry
from ..ids import SID_RE
from ..media.storage import Storage
from ..media.uploads import CheckedVideo
from ..settings import Settings
from ..store.tasks import Store
from ..store.webhooks import DeliveryRecord
from . import following, idempotency, keys, lineage
from .capacity import UnfinishedCounts, check_capacity
from .characters import CharacterService
from .crashes import CrashPolicy
from .errors import Conflict, NotFound, UnknownModel
from .events import EventBus, EventHub, LocalEventBus
from .executor import Executor
from .health import DatabaseProbe
from .idempotency import Idempotency
from .inputs import ImageInputs
from .limits import check_limits
from .mailbox import Mailbox
from .metrics import PublishTap
from .planning import plan_task
from .runner import TaskRunner
from .video_inputs import VideoInputs

log = logging.getLogger("reelchat.service")

DEFAULT_MODEL = "sora-2"  # what an edit of an uploaded video uses when the request names no model
DELETED_MESSAGE = "The video was deleted."


class VideoService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        storage: Storage,
        catalog: dict[str, ModelSpec],
        engines: EngineRegistry,
        executor: Executor,
        bus: EventHub | None = None,
        on_event: Callable[[TaskEvent], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.catalog = catalog
        self.engines = engines
        self.executor = executor
        self.bus: EventHub = bus or LocalEventBus(settings.events_catch_up_s)
        self.crashes = CrashPolicy(settings.max_attempts, settings.crash_backoff_s)
        # `on_event` sees what this process's runner (or its workers, its actors) publishes: /metrics
        runner_bus: EventBus = PublishTap(self.bus, on_event) if on_event is not None else self.bus
        self.runner = TaskRunner(settings, store, storage, catalog, engines, runner_bus, self.crashes)
        self._opener: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._look_again = asyncio.Event()  # the sweeper looks at the queue now, not at its next period
        self.images = ImageInputs(settings)
        self.uploads = VideoInputs(settings)
        self.characters = CharacterService(store, storage, self.uploads)
        self.database = DatabaseProbe(store.ping)
        self.unfinished = UnfinishedCounts(store.counts.unfinished_count)
        self._seconds_by_model = {name: tuple(spec.allowed_seconds) for name, spec in catalog.items()}  # per request

    # ---- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> int:
        """Migrate the store, then `start`; returns the tasks waiting from an earlier process."""
        await self.store.migrate()
        return await self.start()

    async def close(self) -> None:
        await self.stop()
        await self.store.close()

    async def start(self) -> int:
        """Requeue what a dead process left behind, then (in the background) load the models and
        start the workers; returns the tasks waiting. No task is claimed before its model is loaded."""
        queued = await self._requeue(self.settings.resolved_node_id)
        await self.bus.start(self._task_events, self)
        self._opener = asyncio.create_task(self._open(), name="reelchat-open")
        return queued

    @property
    def ready(self) -> bool:
        """Models loaded and every worker taking tasks."""
        return self._sweeper is not None and self.executor.health() == "running"

    async def _open(self) -> None:
        await self.executor.start(self.runner)  # loads the models where the engines run
        self._sweeper = asyncio.create_task(self._sweep(), name="reelchat-lease-sweeper")
        log.info("workers started: %d task(s) waiting", self.executor.pending())

    async def _requeue(self, node: str | None) -> int:
        """Tasks left running by a dead process (`node`'s own, or any whose lease ran out) go back
        to the queue, and every queued task to the executor."""
        await self.store.requeue_interrupted(owner=node, lease_s=self.settings.lease_s, backoff=self.crashes.backoff)
        queued = await self.store.queued()
        for task_id, not_before in queued:
            self.executor.submit(task_id, not_before)  # a no-op for ids already waiting here
        return len(queued)

    async def _sweep(self) -> None:
        """Every half lease period: re-run tasks of servers that died (their leases ran out), and pick
        up tasks other servers queued whose notice we missed (at once after a gap in the bus).
        Claims are exclusive, so sharing a queue is safe."""
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._look_again.wait(), timeout=self.settings.lease_s / 2)
            self._look_again.clear()
            try:
                await self._requeue(None)  # never this server's own: they are running
            except Exception:
                log.warning("lease sweep failed", exc_info=True)

    async def stop(self) -> None:
        # Running engines stop at their next step so shutdown doesn't wait for a whole video; their
        # tasks go back to the queue (no crash counted) and run again on the next start.
        for task in (self._opener, self._sweeper):
            if task is not None:
                task.cancel()
                with suppress(Exception, asyncio.CancelledError):
                    await task
        await self.database.close()
        await self.executor.stop()
        await self.bus.close()
        await self.engines.close()  # loaded here only by an in-process executor

    # ---- submit ------------------------------------------------------------------------------

    def seconds_by_model(self) -> dict[str, tuple[int, ...]]:
        """The durations each model allows, by name: what reading a chat turn needs to know."""
        return self._seconds_by_model

    def model(self, name: str) -> ModelSpec | None:
        """The catalog entry named `name`, if there is one."""
        return self.catalog.get(name)

    def models(self) -> list[ModelSpec]:
        """The catalog, in its order."""
        return list(self.catalog.values())

    def spec(self, model: str) -> ModelSpec:
        spec = self.catalog.get(model)
        if spec is None:
            names = ", ".join(sorted(self.catalog))
            raise UnknownModel(
                f"The model '{model}' does not exist. Available models: {names}.",
                param="model",
                code="model_not_found",
            )
        return spec

    async def resolve_source(
        self, tenant: str, *, sid: str | None = None, task_id: str | None = None, video_id: str | None = None
    ) -> Task:
        """A finished video of this tenant, by sid, task id or video id; NotFound alike for 'not yours'."""
        task: Task | None = None
        if sid is not None:
            task = await self.store.get_by_sid(sid) if SID_RE.fullmatch(sid) else None
        elif task_id is not None:
            task = await self.store.get_task(task_id)
        elif video_id is not None:
            task = await self.store.get_by_video_id(video_id)
        ref = sid or task_id or video_id
        if task is None or task.tenant != tenant or task.deleted:
            raise NotFound(
                f"No video found with id '{ref}'.", param="sid" if sid else "video_id", code="video_not_found"
            )
        if task.status is not TaskStatus.COMPLETED:
            raise Conflict(
                f"Video '{ref}' is {task.status.value}; only a completed video can be modified or extended.",
                param="sid" if sid else "video_id",
                code="video_not_ready",
            )
        return task

    async def extension_source(self, tenant: str, video_id: str) -> Task:
        """The completed video of this tenant an extension continues, by video id (or task id, or sid): 404
        for one that is not there (or not yours, alike), named by the body's `video`; 409 while it renders."""
        kind = "sid" if video_id.startswith("s_") else "task_id" if video_id.startswith("task_") else "video_id"
        try:
            return await self.resolve_source(tenant, **{kind: video_id})
        except NotFound as e:
            raise NotFound(str(e), param="video", code="video_not_found") from None

    async def submit(
        self,
        tenant: str,
        req: VideoRequest,
        *,
        origin: str = "chat",
        source: Task | None = None,
        key: ApiKey | None = None,
        idem: Idempotency | None = None,
    ) -> Task:
        """Store and queue a video; with `idem`, the video an earlier request with that key made, if any."""
        if idem is not None and (earlier := await self.replay(tenant, idem)) is not None:
            return earlier
        task = await self.prepare(tenant, req, origin=origin, source=source, key=key)
        return await self.enqueue(task, idem)

    async def replay(self, tenant: str, idem: Idempotency) -> Task | None:
        """The task an earlier request with this idempotency key made; `Conflict` for another request."""
        return await idempotency.replay(self.store, self.settings.idempotency_ttl_s, tenant, idem)

    async def enqueue(self, task: Task, idem: Idempotency | None = None) -> Task:
        """Store and queue `task`; returns it, or the task a twin request (same idempotency key) made."""
        if idem is not None:
            twin = await idempotency.record(self.store, self.settings.idempotency_ttl_s, task, idem)
            if twin is not None:
                return twin
        try:
            if task.image_name is not None and task.image_data is not None:
                # saved only now: a request that never reaches its insert leaves no image behind
                await self.storage.save(task.image_name, task.image_data)
                task.image_data = None
            await self.store.insert_task(task)  # durable before any work starts
        except Exception:
            if idem is not None:  # the key is free again for a retry
                await self.store.idempotency.forget(task.tenant, idem.key, task.id)
            raise
        self.executor.submit(task.id)
        self.bus.announce(task.id)  # other replicas' idle workers may take it first
        return task

    async def prepare(
        self,
        tenant: str,
        req: VideoRequest,
        *,
        origin: str = "chat",
        source: Task | None = None,
        key: ApiKey | None = None,
        uploaded_source: bool = False,
        upload: CheckedVideo | None = None,
    ) -> Task:
        """Validate a request and build its task (nothing is stored or queued yet; an input image is
        fetched and checked, and saved by `enqueue`). A prompt that names one of the tenant's
        characters takes its reference frame as the input image, where the model takes one. Over one
        of `key`'s limits: `Busy`."""
        spec = self.spec(req.model)
        await check_capacity(
            tenant, self.executor.pending(), self.unfinished, self.settings.max_queued, self.settings.max_queued_per_key
        )
        if req.image is None and req.image_url is None and spec.capabilities.image_input:
            character = await self.characters.named_in(tenant, req.prompt)
            if character is not None:
                frame = await self.characters.reference_frame(character)
                req = dataclasses.replace(req, image=InputImage(frame, "image/png"), character=character.id)
        task = plan_task(
            spec,
            tenant,
            req,
            source=source,
            origin=origin,
            uploaded_source=uploaded_source or upload is not None,
            max_seconds=self.settings.max_video_seconds,
            upload=upload,
        )
        if key is not None:
            await check_limits(self.store, key, task.seconds)
            task.key_id = key.id
        if task.has_image:
            image = await self.images.load(req)
            task.image_name, task.image_data = image.name, image.data
        return task

    async def create_character(
        self, tenant: str, name: str, *, video_id: str | None, upload: bytes | None
    ) -> Character:
        return await self.characters.create(tenant, name, upload=upload, video_id=video_id, load_video=self._mp4_of)

    async def character(self, tenant: str, character_id: str) -> Character:
        return await self.characters.get(tenant, character_id)

    async def _mp4_of(self, tenant: str, video_id: str) -> bytes:
        task = await self.resolve_source(tenant, video_id=video_id)
        if task.video_name is None:
            raise NotFound(f"No video found with id '{video_id}'.", param="video_id", code="video_not_found")
        return await self.storage.load(task.video_name)

    # ---- keys and health -----------------------------------------------------------------------

    async def authenticate(self, secret: str) -> ApiKey | None:
        return await keys.authenticate(self.store, secret)

    async def active_key_count(self) -> int:
        return await self.store.keys.active_count()

    async def health(self) -> dict[str, str]:
        """What `/healthz` reports: the store answers a query (at most a second ago, see `DatabaseProbe`),
        and the workers run (or are loading)."""
        database = await self.database.check()
        opener_failed = self._opener is not None and self._opener.done() and self._sweeper is None
        workers = "failed" if opener_failed else self.executor.health() if self._sweeper else "loading"
        return {"database": database, "workers": workers}

    # ---- queries -----------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task | None:
        """Public by link: pages show any task to whoever holds its unguessable id."""
        return await self.store.get_task(task_id)

    async def get_public_by_video_id(self, video_id: str) -> Task | None:
        """The same record by its video id: pages take either (both are unguessable)."""
        return await self.store.get_by_video_id(video_id)

    async def get_video(self, tenant: str, video_id: str) -> Task:
        task = await self.store.get_by_video_id(video_id)
        if task is None or task.tenant != tenant or task.deleted:
            raise NotFound(f"No video found with id '{video_id}'.", param="video_id", code="video_not_found")
        return task

    async def list_videos(self, tenant: str, *, after: str | None, limit: int, order: str) -> tuple[list[Task], bool]:
        return await self.store.list_tasks(tenant, after=after, limit=limit, order=order)

    async def webhook_deliveries(self, task_id: str) -> list[DeliveryRecord]:
        """The task's webhook deliveries (its delivery log), oldest first."""
        return await self.store.webhooks.for_task(task_id)

    async def delete(self, tenant: str, video_id: str) -> Task:
        task = await self.get_video(tenant, video_id)
        self.executor.cancel(task.id)  # a running engine stops at its next step
        task = await self.store.mark_deleted(task.id) or task
        uploaded = task.params.get("source_video")
        names = (
            task.video_name,
            task.thumbnail_name,
            task.spritesheet_name,
            task.image_name,
            uploaded if isinstance(uploaded, str) else None,
            *task.media_pending,
        )
        for name in dict.fromkeys(names):
            if name:
                await self.storage.delete(name)
        self.bus.publish(TaskEvent(task.id, TaskStatus.CANCELLED, task.progress, "deleted", DELETED_MESSAGE))
        return task

    # ---- events ------------------------------------------------------------------------------

    def queued(self, task_id: str) -> None:
        """Another replica queued `task_id`: our executor tries it too (only one claim wins)."""
        self.executor.submit(task_id)

    def may_have_missed(self) -> None:
        """The bus had a gap: notices of queued work may be lost, so look at the store's queue now."""
        self._look_again.set()

    async def _task_events(self, task_ids: Sequence[str]) -> list[TaskEvent]:
        """What the bus's notifier catches followers up with: the store's state of their tasks."""
        events = await self.store.task_events(task_ids)
        return [_with_deleted_message(e) for e in events]

    def follow(self, task_id: str, idle_s: float) -> AsyncIterator[TaskEvent | None]:
        """The task's state as it changes until it finishes (`following.follow`)."""
        return following.follow(self.bus, self.store, task_id, idle_s)

    async def lineage(self, task: Task) -> list[Task]:
        """The chain of videos this one was remixed from, root first (`lineage.lineage`)."""
        return await lineage.lineage(self.store, task)

    @asynccontextmanager
    async def watch(self, task_id: str) -> AsyncIterator[Mailbox[TaskEvent]]:
        async with self.bus.subscribe(task_id) as queue:
            yield queue


def _with_deleted_message(event: TaskEvent) -> TaskEvent:
    return dataclasses.replace(event, error_message=DELETED_MESSAGE) if event.error_code == "deleted" else event
