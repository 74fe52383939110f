"""POST /v1/chat/completions: the sora-2 chat format, streamed (SSE) or whole (one chat.completion)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ...domain import Caller, Task, TaskStatus
from ...protocol.chat_render import (
    SSE_DONE,
    ContentEvents,
    ReplyRenderer,
    chunk,
    completion,
    echo_pieces,
    new_completion_id,
    pick_locale,
    sse,
)
from ...protocol.chat_schema import ChatCompletionRequest
from ...protocol.chat_turn import Turn
from ...protocol.response_schema import ChatCompletion, ChatCompletionChunk
from ...service import idempotency
from ...service.chat import ChatServing, ChatTurn, FollowFailed
from ..contract import REF, documented
from ..deps import AppState, StateDep, get_caller
from ..links import Links
from ..stream_slots import SlotResponse, reply_headers

router = APIRouter()

KEEPALIVE = None  # a tick with nothing new to say
STREAM_HEADERS = reply_headers("text/event-stream", {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
WHOLE_HEADERS = reply_headers("application/json")


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


async def _reply(chat: ChatServing, turn: ChatTurn, renderer: ReplyRenderer, links: Links) -> AsyncIterator[str | None]:
    """The reply after its echo, as the task moves; None marks a keep-alive with nothing to add."""
    header_sent = False
    try:
        async for snapshot in chat.follow(turn):
            if not header_sent:  # the first snapshot comes once the task is stored
                header_sent = True
                task_id = snapshot.task.id
                yield renderer.header(task_id, links.web(task_id), links.source(task_id))
            if snapshot.tick:
                # a dot, as the seed does while queued, generating and between progress numbers
                yield renderer.keepalive() or KEEPALIVE
                continue
            text = _render_state(renderer, snapshot.task, links)
            if text:
                yield text
    except FollowFailed as e:  # said in the reply: never a torn stream
        yield renderer.failed(str(e))


def _render_state(renderer: ReplyRenderer, task: Task, links: Links) -> str:
    text = ""
    if task.status is TaskStatus.IN_PROGRESS:
        text += renderer.generating()
        if task.progress > 0:
            text += renderer.progress(task.progress)
    elif task.status is TaskStatus.COMPLETED:
        text += renderer.generating()
        assert task.video_name is not None  # noqa: S101  (narrows a type; never input validation)
        assert task.thumbnail_name is not None  # noqa: S101  (narrows a type; never input validation)
        text += renderer.done(task.sid, links.media(task.thumbnail_name), links.media(task.video_name))
    elif task.status is TaskStatus.FAILED:
        text += renderer.failed(task.error_message or "unknown error")
    elif task.status is TaskStatus.CANCELLED:
        text += renderer.failed(task.error_message or "The video was deleted.")
    return text


# each event of a streamed reply: a chunk as JSON, or the closing [DONE]
SSE = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {
                    "anyOf": [
                        {"const": "[DONE]"},
                        {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": {"$ref": REF.format(model="ChatCompletionChunk")},
                        },
                    ]
                }
            },
        }
    }
}


@router.post(
    "/v1/chat/completions",
    **documented(
        json=ChatCompletionRequest,
        ok=ChatCompletion,
        ok_content=SSE,
        models=[ChatCompletionChunk],
        errors=[400, 404, 409, 429],
    ),
)
async def chat_completions(request: Request, state: StateDep) -> Response:
    # Served by `api/direct.py` below FastAPI's routing, which is too heavy for thousands of replies
    # at once; this route documents it (OpenAPI, 405s) and serves it where the app is mounted below
    # another one
    return await chat_response(request, state)


async def chat_response(request: Request, state: AppState) -> Response:
    """The reply to one chat request; raises the errors it answers (`errors.as_api_error`)."""
    caller = await get_caller(request, state)
    # a slot before any task exists, so a refused reply leaves nothing queued behind it
    release = state.streams.acquire(caller.tenant)
    try:
        body = await request.body()
        # from its whole body to its first bytes, the reply counts as being admitted (`AdmissionGate`):
        # a client still sending its body holds nobody else's stores back
        admitted = state.chat.admission.enter()
        try:
            response = await _chat_completions(request, state, caller, body, admitted)
        except BaseException:
            admitted()
            raise
    except BaseException:
        release()
        raise

    def done() -> None:
        admitted()
        release()

    response.release = done
    return response


async def _chat_completions(
    request: Request, state: AppState, caller: Caller, body: bytes, admitted: Callable[[], None]
) -> SlotResponse:
    chat = state.chat
    # parsed off the event loop when large: a hostile body must not freeze every other request
    req = await state.bodies.chat(body, chat.seconds_by_model())
    chat.check_model(req.model)
    assert req.turn is not None  # noqa: S101  (narrows a type: the turn is read for every known model)
    # an Idempotency-Key, else the conversation itself: a re-sent chat follows the video it is making
    header = request.headers.get("idempotency-key")
    idem = (
        idempotency.from_header(header, idempotency.request_hash("POST /v1/chat/completions", req.conversation))
        if header is not None
        else idempotency.conversation(req.conversation)
    )
    turn = await chat.start(caller.tenant, req.model, req.turn, key=caller.key, idem=idem)
    echo = _echo_fields(turn.task, req.turn, turn.source)
    renderer = ReplyRenderer(pick_locale(request.headers.get("accept-language"), state.settings.locale))
    links = state.links.for_request(request)
    keepalive_s = state.settings.keepalive_s
    completion_id = new_completion_id()
    created = int(time.time())
    pieces = _reply(chat, turn, renderer, links)

    if req.stream:

        async def stream() -> AsyncIterator[bytes]:
            content = ContentEvents(completion_id, created, req.model)
            yield content.first()
            # the first bytes are out. The echo (its many small chunks in one write) goes once no other
            # request waits to be admitted, so that a burst's first chunks go first; storing the task
            # may wait for the replies behind too
            admitted()
            await state.turnstile.after_requests()
            yield b"".join(map(content, echo_pieces(echo)))
            async for piece in pieces:
                if piece is None:
                    yield b": keep-alive\n\n"
                elif piece:
                    yield content(piece)
            yield sse(chunk(completion_id, created, req.model, finish_reason="stop"))
            yield SSE_DONE

        return SlotResponse(stream(), STREAM_HEADERS)

    async def whole() -> AsyncIterator[bytes]:
        # JSON allows leading whitespace: a space per keep-alive holds the connection open on long waits
        admitted()  # nothing is sent before the whole reply: don't hold other replies' stores back
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

    return SlotResponse(whole(), WHOLE_HEADERS)


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()
