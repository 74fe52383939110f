"""`ChatServing`: one chat turn, from a read conversation to the snapshots its reply renders.

The route parses the body (`protocol.chat_parse`), calls `start`, and renders what `follow`
yields; every decision about the turn is made here:

- which video the turn modifies: a video the user pasted or named in the JSON block, else the
  latest `sid` in the history; an image in the turn starts a fresh image-to-video generation and
  drops the history's video (a pasted one can't be combined with an image: 400);
- validation and planning (through `VideoService.prepare`, the same rules as `/v1/videos`);
- following the task: live events merged with re-reads of the store, which is the truth (every
  `RESYNC_S`, never per keep-alive); keep-alives come from the process's one `KeepaliveWheel`.

`start` does not store the task: `follow` stores it first thing, after subscribing to its events,
so that no event can slip past and the reply's first bytes (the echo) never wait on the insert.
The task is durable before `follow` yields its first snapshot, which carries the `> ID` line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from ..domain import ApiKey, Orientation, Task, TaskEvent, TaskStatus, VideoRequest
from .admission import AdmissionGate
from .errors import ServiceError
from .idempotency import Idempotency
from .keepalive import TICK, KeepaliveWheel
from .mailbox import Mailbox
from .videos import VideoService

log = logging.getLogger("reelchat.service.chat")

# A followed task is re-read from the store this often (its events come from the bus meanwhile): a
# missed event costs at most this long, and 5,000 followers cost the store ~170 small reads a second.
RESYNC_S = 30.0

__all__ = ["ChatServing", "ChatTurn", "FollowFailed", "Snapshot", "Turn"]


class Turn(Protocol):
    """What a read chat turn asks for (`protocol`'s `Turn` is one; the service imports no protocol)."""

    @property
    def prompt(self) -> str: ...
    @property
    def orientation(self) -> Orientation | None: ...
    @property
    def seconds(self) -> int | None: ...
    @property
    def size(self) -> str | None: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def source_sid(self) -> str | None: ...
    @property
    def source_task_id(self) -> str | None: ...
    @property
    def pasted_reference(self) -> bool: ...
    @property
    def image_urls(self) -> tuple[str, ...]: ...
    @property
    def extend(self) -> bool: ...


@dataclass(frozen=True)
class ChatTurn:
    """A planned turn: its task (not yet stored, unless `attached`) and the video it modifies, if any.
    `attached`: the task an earlier request made (same idempotency key, or the same conversation
    re-sent while its video is being made), which the reply follows instead of making another."""

    task: Task
    source: Task | None
    idempotency: Idempotency | None = None
    attached: bool = False


@dataclass(frozen=True)
class Snapshot:
    """The task as it stands; `tick` marks a keep-alive interval that brought nothing new."""

    task: Task
    tick: bool = False


class FollowFailed(Exception):
    """The reply can't follow its task any further (not stored, lost, no result in time): the
    message says why, in words for the user."""


class ChatServing:
    def __init__(
        self, videos: VideoService, *, keepalive_s: float, give_up_s: float, resync_s: float = RESYNC_S
    ) -> None:
        self.videos = videos
        self.keepalive_s = keepalive_s
        self.give_up_s = give_up_s
        self.keepalives = KeepaliveWheel(keepalive_s)  # one timer for every reply this process follows
        self.admission = AdmissionGate()  # replies being admitted go before storing answered ones' tasks
        self._resync_ticks = max(1, round(resync_s / keepalive_s))

    async def close(self) -> None:
        await self.keepalives.close()

    def seconds_by_model(self) -> Mapping[str, tuple[int, ...]]:
        """What reading a turn needs to know of the catalog."""
        return self.videos.seconds_by_model()

    def check_model(self, model: str) -> None:
        """An unknown model gets its OpenAI-shaped error (`UnknownModel`)."""
        self.videos.spec(model)

    async def start(
        self, tenant: str, model: str, turn: Turn, *, key: ApiKey | None = None, idem: Idempotency | None = None
    ) -> ChatTurn:
        """Resolve the source, validate and plan the turn's task; raises the service's errors. With
        `idem`, a turn an earlier request already made is followed again (no limits counted)."""
        spec = self.videos.spec(model)
        # An Idempotency-Key is looked up now: the same key with another request is a 409, before any
        # reply starts. A re-sent conversation is not: `follow` stores the task through the same key,
        # and finds there the video the conversation is still making, so the reply's first bytes (the
        # echo, the same either way) wait on no query. Only a turn that would be refused (a limit, a
        # source deleted since) looks first: a re-sent conversation follows its video regardless.
        if idem is not None and not idem.only_unfinished and (earlier := await self.videos.replay(tenant, idem)):
            return await self._attached(earlier, idem)
        source: Task | None = None
        image_url = turn.image_urls[0] if turn.image_urls else None
        use_history_source = image_url is None or turn.pasted_reference
        if turn.source_sid is not None and use_history_source:
            source = await self.videos.resolve_source(tenant, sid=turn.source_sid)
        elif turn.source_task_id is not None and use_history_source:
            source = await self.videos.resolve_source(tenant, task_id=turn.source_task_id)
        request = VideoRequest(
            model=spec.name,
            prompt=turn.prompt,
            orientation=turn.orientation,
            seconds=turn.seconds,
            size=turn.size,
            seed=turn.seed,
            image_url=image_url,
            extend=turn.extend and source is not None and image_url is None,
        )
        try:
            task = await self.videos.prepare(tenant, request, origin="chat", source=source, key=key)
        except ServiceError:  # e.g. a limit, or a source deleted since: the running video still answers
            if idem is not None and idem.only_unfinished and (earlier := await self.videos.replay(tenant, idem)):
                return await self._attached(earlier, idem)
            raise
        return ChatTurn(task, source, idem)

    async def _attached(self, earlier: Task, idem: Idempotency) -> ChatTurn:
        made_from = await self.videos.get(earlier.remixed_from) if earlier.remixed_from else None
        return ChatTurn(earlier, made_from, idem, attached=True)

    async def follow(self, turn: ChatTurn) -> AsyncIterator[Snapshot]:
        """Store the task, then yield its snapshots until it finishes; raises `FollowFailed`.

        A client that goes away does not cancel the task: the insert is shielded, and the task
        runs whether anyone follows it or not.
        """
        task = turn.task
        give_up_at = time.monotonic() + self.give_up_s
        if not turn.attached:
            await self.admission.wait_quiet()
            async with self.videos.watch(task.id) as events:
                try:  # durable before the client sees the ID
                    async with self.admission.storing:
                        stored = await asyncio.shield(self.videos.enqueue(task, turn.idempotency))
                except Exception as e:
                    log.exception("could not store task %s", task.id)
                    raise FollowFailed(f"the task could not be stored ({type(e).__name__})") from e
                if stored is task:
                    async for snapshot in self._guarded(task, events, give_up_at):
                        yield snapshot
                    return
            task = stored  # a twin request stored its task first: follow that one
        async with self.videos.watch(task.id) as events:
            task = await self.videos.get(task.id) or task  # read after subscribing: no event slips between
            async for snapshot in self._guarded(task, events, give_up_at):
                yield snapshot

    async def _guarded(self, task: Task, events: Mailbox[TaskEvent], give_up_at: float) -> AsyncIterator[Snapshot]:
        try:
            async for snapshot in self._snapshots(task, events, give_up_at):
                yield snapshot
        except FollowFailed:
            raise
        except Exception as e:  # e.g. the store went away mid-stream
            log.exception("lost track of task %s", task.id)
            raise FollowFailed(
                f"the server lost track of this task ({type(e).__name__}); its page has its state"
            ) from e

    async def _snapshots(self, task: Task, events: Mailbox[TaskEvent], give_up_at: float) -> AsyncIterator[Snapshot]:
        current = task
        yield Snapshot(current)
        ticks_to_resync = self._resync_ticks
        said_something = False  # since the last tick: then the next keep-alive is not needed
        with self.keepalives.register(events):
            while not current.status.finished:
                event = await events.get()
                if event is TICK:
                    if time.monotonic() > give_up_at:
                        raise FollowFailed(f"no result after {self.give_up_s:.0f} s; the task's page has its state")
                    ticks_to_resync -= 1
                    if ticks_to_resync <= 0:
                        # events are an optimisation; the store is the truth (a lost event, another
                        # server's worker): read it now and then, never on every tick
                        ticks_to_resync = self._resync_ticks
                        stored = await self.videos.get(task.id)
                        if stored is not None and (
                            stored.status is not current.status or stored.progress > current.progress
                        ):
                            stored.progress = max(stored.progress, current.progress)
                            current = stored
                            said_something = True
                            yield Snapshot(current)
                            continue
                    if said_something:
                        said_something = False
                    else:
                        yield Snapshot(current, tick=True)
                    continue
                if event.status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED):
                    current = await self.videos.get(task.id) or current
                    if event.status is TaskStatus.CANCELLED:
                        current.status = TaskStatus.CANCELLED
                        current.error_message = event.error_message
                else:
                    current.status = event.status
                    current.progress = max(current.progress, event.progress)
                said_something = True
                yield Snapshot(current)
