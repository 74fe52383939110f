"""Running one task: claim it, run its engine, store its media, record the outcome.

Each step that matters is one durable, attempt-fenced write: the claim, `in_engine` right before
the engine starts (see `crashes`), the outcome. A graceful stop puts the task back in the queue as
it was; a process that dies leaves the row for the next start to requeue.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..catalog import ModelSpec, parse_size
from ..domain import Task, TaskEvent, TaskStatus
from ..engines.base import EngineCancelled, EngineError, EngineResult, JobRequest, SourceVideo
from ..engines.registry import EngineRegistry
from ..logs import task_context
from ..media import encode
from ..media.storage import Storage, new_media_name
from ..settings import Settings
from ..store.tasks import Store
from .crashes import CRASH_LOOP, CrashPolicy
from .events import EventBus
from .phases import PhaseClock
from .reporter import TaskReporter
from .webhooks import outcome_event

log = logging.getLogger("reelchat.service")


class TaskRunner:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        storage: Storage,
        catalog: dict[str, ModelSpec],
        engines: EngineRegistry,
        bus: EventBus,
        crashes: CrashPolicy,
    ) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.catalog = catalog
        self.engines = engines
        self.bus = bus
        self.crashes = crashes
        self._cancelled: set[str] = set()  # tasks whose engine should stop at its next step
        self._running: dict[str, TaskReporter] = {}
        self._clocks: dict[str, PhaseClock] = {}  # per running task: where its time went

    def cancel(self, task_id: str) -> None:
        """The task was deleted: its engine stops at its next step."""
        if task_id in self._running:
            self._cancelled.add(task_id)

    def stop_all(self) -> None:
        """Shutting down: engines stop at their next step, and their tasks go back to the queue."""
        for running in self._running.values():
            running.stop()

    async def execute(self, task_id: str) -> None:
        with task_context(task_id):
            await self._execute(task_id)

    async def _execute(self, task_id: str) -> None:
        task = await self.store.claim(task_id, owner=self.settings.resolved_node_id)
        if task is None:
            return  # finished, deleted, held back after a crash, or claimed by another worker
        clock = PhaseClock.claimed(task)
        self._clocks[task.id] = clock
        log.info(
            "task %s started (model %s, attempt %d, queued %.2f s)",
            task.id,
            task.model,
            task.attempt,
            clock.phases["queued"],
            extra={"event": "task_started", "model": task.model, "attempt": task.attempt, **clock.fields()},
        )
        try:
            await self._discard(task.media_pending)  # written (or half-written) by a run that died
            if self.crashes.gives_up(task.crashes):
                await self._fail(task, CRASH_LOOP, self.crashes.message(task.crashes))
                return
            self.bus.publish(TaskEvent(task.id, TaskStatus.IN_PROGRESS, 0))
            reporter = TaskReporter(
                self.store,
                self.bus,
                task,
                asyncio.get_running_loop(),
                self._cancelled,
                self.settings.lease_s / 4,
                previews=self.storage if self.settings.previews else None,
            )
            self._running[task.id] = reporter
            try:
                await self._run(task, reporter)
            finally:
                self._running.pop(task.id, None)
                self._cancelled.discard(task.id)
        except asyncio.CancelledError:  # shutdown: hand the task back, crash count unchanged
            await self._release(task)
            raise
        finally:
            self._clocks.pop(task.id, None)
            if self.settings.previews:
                await self._drop_preview(task)

    async def _drop_preview(self, task: Task) -> None:
        """The run is over (its outcome, or its release, no longer links the preview): remove the picture."""
        try:
            await self.storage.delete(task.preview_name)
        except Exception:  # a leftover picture is a few KB; the next run of the task overwrites it
            log.warning("could not remove the preview of %s", task.id, exc_info=True)

    def _finished(self, task: Task, status: str, *, code: str | None = None, error: str | None = None) -> None:
        """The one line per run's end: its outcome and how long each phase took."""
        clock = self._clocks.get(task.id)
        timing = clock.describe() if clock else ""
        why = f" ({code}): {error}" if code else ""
        log.log(
            logging.WARNING if code else logging.INFO,
            "task %s %s%s%s",
            task.id,
            status,
            timing,
            why,
            extra={
                "event": "task_finished",
                "status": status,
                "model": task.model,
                "attempt": task.attempt,
                "code": code,
                **(clock.fields() if clock else {}),
            },
        )

    async def _release(self, task: Task) -> None:
        try:
            if await self.store.release(task.id, task.attempt):
                self._finished(task, "goes back to the queue (server stopping)")
        except Exception:  # the next start requeues it all the same, counting no crash unless in_engine
            log.warning("could not release task %s", task.id, exc_info=True)

    async def _discard(self, names: Sequence[str | None]) -> None:
        for name in names:
            if name:
                await self.storage.delete(name)

    async def _run(self, task: Task, reporter: TaskReporter) -> None:
        try:
            # the lease is renewed (and progress written) from the claim until the media are stored:
            # a long encode must not look like a dead process to another node's lease sweep
            async with asyncio.timeout(self.settings.job_deadline_s), reporter.flushing():
                names = await self._make(task, reporter)
        except EngineCancelled:
            if task.id in self._cancelled:
                self._finished(task, "cancelled")
            else:
                await self._release(task)
            return
        except EngineError as e:
            await self._fail(task, e.code, str(e))
            return
        except TimeoutError:
            reporter.stop()  # the engine's thread may still be running: stop it at its next step
            await self._fail(task, "timeout", f"The generation took longer than {self.settings.job_deadline_s:.0f} s.")
            return
        except Exception as e:
            log.exception("task %s failed", task.id)
            await self._fail(task, "internal_error", f"Generation failed: {type(e).__name__}: {e}")
            return
        finally:
            await reporter.flush()
        video_name, thumbnail_name, spritesheet_name = names
        clock = self._clocks[task.id]
        if await self.store.complete(
            task.id,
            task.attempt,
            video_name=video_name,
            thumbnail_name=thumbnail_name,
            spritesheet_name=spritesheet_name,
            phases=clock.done(),
            outbox=outcome_event(task, TaskStatus.COMPLETED, server=self.settings.webhook_url is not None),
        ):
            self._finished(task, "completed")
            self.bus.publish(TaskEvent(task.id, TaskStatus.COMPLETED, 100))
        else:  # deleted (or superseded) while we worked: don't leave orphans behind
            self._finished(task, "superseded")
            await self._discard(names)

    async def _make(self, task: Task, reporter: TaskReporter) -> tuple[str, str, str]:
        """Run the engine and write the media; returns their names (not yet the task's)."""
        result = await self._generate(task, reporter)
        self._clocks[task.id].enter("encode")
        names = (new_media_name("mp4"), new_media_name("webp"), new_media_name("jpg"))
        if not await self.store.engine_returned(task.id, task.attempt, names):
            raise EngineCancelled()  # deleted or taken over meanwhile
        try:
            await self._store_media(task, result, names, self._clocks[task.id])
        except BaseException:  # whatever was written of them is no one's
            await self._discard(names)
            raise
        return names

    async def _fail(self, task: Task, code: str, message: str) -> None:
        clock = self._clocks.get(task.id)
        failed = await self.store.fail(
            task.id,
            task.attempt,
            code=code,
            message=message,
            phases=clock.done() if clock else None,
            outbox=outcome_event(task, TaskStatus.FAILED, server=self.settings.webhook_url is not None),
        )
        # the details go to the log (public pages show only the failure's kind)
        self._finished(task, "failed" if failed else "failed, superseded", code=code, error=message)
        if failed:
            self.bus.publish(TaskEvent(task.id, TaskStatus.FAILED, task.progress, code, message))

    async def _generate(self, task: Task, reporter: TaskReporter) -> EngineResult:
        spec = self.catalog.get(task.model)
        if spec is None:
            raise EngineError(f"The model '{task.model}' is no longer in the catalog.", code="model_not_found")
        source: SourceVideo | None = None
        if task.remixed_from is not None:
            found = await self.store.get_task(task.remixed_from)
            if found is None or found.video_name is None or found.deleted:
                raise EngineError("The source video no longer exists.", code="source_missing")
            mp4 = await self.storage.load(found.video_name)
            source = SourceVideo(
                mp4=mp4,
                made_by=self.catalog.get(found.model),
                upstream_job_id=found.upstream_job_id,
                frames=functools.partial(self._decode_whole, mp4, "source video"),
            )
        uploaded = task.params.get("source_video")
        if source is None and isinstance(uploaded, str):  # an edit or extension of an uploaded video
            try:
                mp4 = await self.storage.load(uploaded)
            except FileNotFoundError:
                raise EngineError("The source video no longer exists.", code="source_missing") from None
            source = SourceVideo(
                mp4=mp4,
                made_by=None,
                upstream_job_id=None,
                frames=functools.partial(self._decode_whole, mp4, "source video"),
            )
        strength = task.params.get("strength")
        extend = task.params.get("extend") is True
        request = JobRequest(
            task_id=task.id,
            prompt=task.engine_prompt,
            instruction=task.prompt,
            width=task.width,
            height=task.height,
            seconds=task.seconds,
            # an extension's engine makes only the new frames; the source's come with it
            frames=int(task.params["new_frames"]) if extend else task.frames,
            fps=task.fps,
            steps=task.steps,
            seed=task.seed,
            image=await self.storage.load(task.image_name) if task.image_name else None,
            source=source,
            strength=float(strength) if strength is not None else None,
            extend=extend,
            extend_seconds=int(task.params["added_seconds"]) if extend else None,
        )
        job = await self.engines.prepare(spec, request)  # how the source is used is the engine's call
        if job.local and not await self.store.engine_started(task.id, task.attempt):
            raise EngineCancelled()  # deleted or taken over meanwhile
        self._clocks[task.id].enter("denoise")
        return await job.run(reporter)

    async def _decode_whole(self, video: bytes, what: str) -> Any:
        """Every frame of a video this server didn't make itself, unless it is too big to hold decoded."""
        try:
            return await asyncio.to_thread(encode.decode_mp4, video, max_pixels=self.settings.max_video_pixels)
        except encode.VideoTooLarge as e:
            raise EngineError(
                f"The {what} is too large to process: {e} (REELCHAT_MAX_VIDEO_PIXELS).", code="video_too_large"
            ) from None

    async def _store_media(
        self, task: Task, result: EngineResult, names: tuple[str, str, str], clock: PhaseClock
    ) -> None:
        """Encode and save the video, its thumbnail and spritesheet, all at the task's public size.

        A model renders a public size at its own (`ModelSpec.render_size`); the encoder scales to the
        public size, so the mp4 is the size the video object reports. A Wan model makes 4k+1 frames, at
        least the task's seconds * fps: the mp4 keeps that many and so lasts `seconds`.
        """
        size = parse_size(task.size)
        if result.frames is not None and result.prefix is not None:  # an extension: its source kept as it was
            frames = await asyncio.to_thread(_joined, result.prefix, result.frames, task.frames, size)
            video: bytes = await asyncio.to_thread(encode.encode_mp4, frames, result.fps, size=size)
        elif result.frames is not None:
            frames = result.frames[: task.frames]  # Wan makes 4k+1: the video has seconds * fps
            video = await asyncio.to_thread(encode.encode_mp4, frames, result.fps, size=size)
        elif result.video is not None:
            video = bytes(result.video)
            frames = await self._decode_whole(video, "video")
            if (frames.shape[2], frames.shape[1]) != size:  # an upstream that rendered another size
                fps = round((await asyncio.to_thread(encode.probe_mp4, video)).fps) or result.fps
                video = await asyncio.to_thread(encode.encode_mp4, frames, fps, size=size)
        else:
            raise EngineError("The engine returned no video.", code="engine_error")
        thumbnail = result.thumbnail
        if thumbnail is None or (result.video is not None and (frames.shape[2], frames.shape[1]) != size):
            thumbnail = await asyncio.to_thread(encode.encode_webp, encode.pick_thumbnail_frame(frames), size=size)
        spritesheet: bytes = await asyncio.to_thread(encode.encode_spritesheet, frames, tile_size=size)
        clock.enter("upload")
        for name, data in zip(names, (video, thumbnail, spritesheet), strict=True):
            await self.storage.save(name, data)


def _joined(
    prefix: npt.NDArray[np.uint8], frames: npt.NDArray[np.uint8], total: int, size: tuple[int, int]
) -> npt.NDArray[np.uint8]:
    """An extension's video: its source's kept frames, then the engine's, `total` in all, at `size`."""
    new = encode.scale_clip(frames[: max(0, total - len(prefix))], size)
    return np.concatenate([encode.scale_clip(prefix, size), new])
