"""POST /v1/chat/completions: the sora-2 chat format, streamed (SSE) or whole (one chat.completion)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from ...domain import Task, TaskEvent, TaskStatus, VideoRequest
from ...protocol.chat_parse import ParsedChat
from ...protocol.chat_render import (
    SSE_DONE,
    ReplyRenderer,
    chunk,
    completion,
    echo_pieces,
    new_completion_id,
    pick_locale,
    sse,
)
from ...protocol.chat_turn import Turn
from ...service.videos import VideoService
from ..deps import AppState, StateDep, TenantDep
from ..links import Links
from ..stream_slots import hold_slot

log = logging.getLogger("reelchat.api.chat")
router = APIRouter()

KEEPALIVE = None  # a tick with nothing new to say


async def _build_task(service: VideoService, tenant: str, req: ParsedChat, turn: Turn) -> Task:
    spec = service.spec(req.model)
    source: Task | None = None
    image_url = turn.image_urls[0] if turn.image_urls else None
    # An image in the latest turn starts a fresh image-to-video generation: the video found in the
    # history is dropped. A video the user named explicitly can't be combined with an image (400).
    use_history_source = image_url is None or turn.pasted_reference
    if turn.source_sid is not None and use_history_source:
        source = await service.resolve_source(tenant, sid=turn.source_sid)
    elif turn.source_task_id is not None and use_history_source:
        source = await service.resolve_source(tenant, task_id=turn.source_task_id)
    request = VideoRequest(
        model=spec.name,
        prompt=turn.prompt,
        orientation=turn.orientation,
        seconds=turn.seconds,
        size=turn.size,
        seed=turn.seed,
        image_url=image_url,
    )
    return await service.prepare(tenant, request, origin="chat", source=source)


def _echo_fields(task: Task, turn: Turn, source: Task | None) -> dict[str, object]:
    fields: dict[str, object] = {"prompt": task.prompt, "orientation": task.orientation.value}
    if turn.seconds is not None:
        fields["seconds"] = task.seconds
    if turn.size is not None:
        fields["size"] = task.size
    if turn.seed is not None:
        fields["seed"] = task.seed
    if task.has_image:
        fields["image"] = True
    if source is not None:
        fields["sid"] = source.sid
    return fields


async def _reply(
    service: VideoService,
    task: Task,
    renderer: ReplyRenderer,
    links: Links,
    keepalive_s: float,
    give_up_s: float,
) -> AsyncIterator[str | None]:
    """The reply after its echo, as the task moves; None marks a keep-alive with nothing to add."""
    give_up_at = time.monotonic() + give_up_s
    try:
        # subscribed before the task is queued, so no event can slip past: no need to re-read it
        async with service.watch(task.id) as events:
            try:
                # shielded: a client that leaves mid-insert must not strand a stored task outside the queue
                await asyncio.shield(service.enqueue(task))  # durable before the client sees the ID
            except Exception as e:  # a store outage: say so in the reply, never a torn stream
                log.exception("could not store task %s", task.id)
                yield renderer.failed(f"the task could not be stored ({type(e).__name__})")
                return
            yield renderer.header(task.id, links.web(task.id), links.source(task.id))
            current = task
            while True:
                text = _render_state(renderer, current, links)
                if text:
                    yield text
                if current.status.finished:
                    return
                if time.monotonic() > give_up_at:
                    yield renderer.failed(f"no result after {give_up_s:.0f} s; the task's page has its state")
                    return
                try:
                    event: TaskEvent | None = await asyncio.wait_for(events.get(), timeout=keepalive_s)
                except TimeoutError:
                    event = None
                if event is None:
                    # a dot, as the seed does while queued, generating and between progress numbers
                    yield renderer.keepalive() or KEEPALIVE
                    # events are an optimisation; the store is the truth (another worker, a lost event)
                    stored = await service.get(task.id)
                    if stored is not None:
                        stored.progress = max(stored.progress, current.progress)
                        current = stored
                    continue
                if event.status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED):
                    current = await service.get(task.id) or current
                    if event.status is TaskStatus.CANCELLED:
                        current.status = TaskStatus.CANCELLED
                        current.error_message = event.error_message
                else:
                    current.status = event.status
                    current.progress = max(current.progress, event.progress)
    except Exception as e:  # e.g. the store went away mid-stream: end the reply properly, never torn
        log.exception("lost track of task %s", task.id)
        yield renderer.failed(f"the server lost track of this task ({type(e).__name__}); its page has its state")


def _render_state(renderer: ReplyRenderer, task: Task, links: Links) -> str:
    text = ""
    if task.status is TaskStatus.IN_PROGRESS:
        text += renderer.generating()
        if task.progress > 0:
            text += renderer.progress(task.progress)
    elif task.status is TaskStatus.COMPLETED:
        text += renderer.generating()
        assert task.video_name is not None and task.thumbnail_name is not None
        text += renderer.done(task.sid, links.media(task.thumbnail_name), links.media(task.video_name))
    elif task.status is TaskStatus.FAILED:
        text += renderer.failed(task.error_message or "unknown error")
    elif task.status is TaskStatus.CANCELLED:
        text += renderer.failed(task.error_message or "The video was deleted.")
    return text


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, state: StateDep, tenant: TenantDep) -> StreamingResponse:
    # a slot before any task exists, so a refused reply leaves nothing queued behind it
    release = state.streams.acquire(tenant)
    try:
        response = await _chat_completions(request, state, tenant)
    except BaseException:
        release()
        raise
    return hold_slot(response, release)


async def _chat_completions(request: Request, state: AppState, tenant: str) -> StreamingResponse:
    service = state.service
    # parsed off the event loop when large: a hostile body must not freeze every other request
    req = await state.bodies.chat(await request.body(), service.seconds_by_model())
    service.spec(req.model)  # an unknown model gets its error here
    turn = req.turn
    assert turn is not None  # set for every model the service knows
    task = await _build_task(service, tenant, req, turn)
    source = await service.get(task.remixed_from) if task.remixed_from else None
    echo = _echo_fields(task, turn, source)
    renderer = ReplyRenderer(pick_locale(request.headers.get("accept-language"), state.settings.locale))
    links = state.links.for_request(request)
    keepalive_s = state.settings.keepalive_s
    completion_id = new_completion_id()
    created = int(time.time())
    give_up_s = state.settings.job_deadline_s * 2 + 600  # well past any job's own deadline, queue included
    pieces = _reply(service, task, renderer, links, keepalive_s, give_up_s)

    if req.stream:

        async def stream() -> AsyncIterator[bytes]:
            # the role chunk and the echo's many small chunks leave in one write
            yield sse(chunk(completion_id, created, req.model, role="assistant", content="")) + b"".join(
                sse(chunk(completion_id, created, req.model, content=piece)) for piece in echo_pieces(echo)
            )
            async for piece in pieces:
                if piece is None:
                    yield b": keep-alive\n\n"
                elif piece:
                    yield sse(chunk(completion_id, created, req.model, content=piece))
            yield sse(chunk(completion_id, created, req.model, finish_reason="stop"))
            yield SSE_DONE

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    async def whole() -> AsyncIterator[bytes]:
        # JSON allows leading whitespace: a space per keep-alive holds the connection open on long waits
        parts: list[str] = echo_pieces(echo)
        last_sent = time.monotonic()
        async for piece in pieces:
            if piece:
                parts.append(piece)
            if time.monotonic() - last_sent >= keepalive_s:
                last_sent = time.monotonic()
                yield b" "
        body: dict[str, Any] = completion(completion_id, created, req.model, "".join(parts))
        yield _json_bytes(body)

    return StreamingResponse(whole(), media_type="application/json")


def _json_bytes(obj: Any) -> bytes:
    import json

    return json.dumps(obj, ensure_ascii=False).encode()
