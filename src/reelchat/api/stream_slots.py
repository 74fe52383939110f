"""Open chat replies per tenant, counted in this API process, so one key can't hold every connection.

A chat reply (streamed or not) holds a connection for as long as its video takes. Each tenant gets
`REELCHAT_MAX_STREAMS_PER_KEY` of them at once; the next one is refused with 429 before any task is
made. A slot is released when its response ends, however it ends: finished, failed, or the client
gone (Starlette cancels the response on disconnect, and `__call__`'s finally still runs).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping

from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from .errors import ApiError

STREAM_RETRY_AFTER_S = 10


class StreamSlots:
    def __init__(self, per_tenant: int) -> None:
        self.per_tenant = per_tenant
        self._open: dict[str, int] = {}

    def open_count(self) -> int:
        """Chat replies open now, all tenants together (/metrics)."""
        return sum(self._open.values())

    def acquire(self, tenant: str) -> Callable[[], None]:
        """Take a slot (or raise 429); returns its release, which is safe to call more than once."""
        held = self._open.get(tenant, 0)
        if held >= self.per_tenant:
            raise ApiError(
                429,
                f"This API key already has {held} chat replies open, the most one key may have at once "
                "(REELCHAT_MAX_STREAMS_PER_KEY); wait for one to finish.",
                code="too_many_streams_for_key",
                headers={"Retry-After": str(STREAM_RETRY_AFTER_S)},
            )
        self._open[tenant] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._open.get(tenant, 1) - 1
            if left > 0:
                self._open[tenant] = left
            else:
                self._open.pop(tenant, None)

        return release


class LightStreamingResponse(StreamingResponse):
    """A StreamingResponse that is lighter than Starlette's own, which matters when thousands of
    replies sit open: that one runs every stream in an anyio task group (a cancel scope and a second
    task per stream) to notice the client leaving. Here the body is sent from the request's own task,
    and one small watcher task cancels it when `http.disconnect` arrives."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _send_until_gone(self, receive, send)

    async def stream_response(self, send: Send) -> None:
        # Starlette's keeps the last chunk sent in its loop variable while the stream waits for the
        # next one: an idle reply would hold its whole echo (~3 KB) for minutes
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            body = chunk if isinstance(chunk, bytes | memoryview) else chunk.encode(self.charset)
            del chunk
            await send({"type": "http.response.body", "body": body, "more_body": True})
            del body
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class SlotResponse(LightStreamingResponse):
    """A streamed reply that gives its stream slot back (`release`, set once the slot is taken) when
    it is done being sent, however that ends (a generator's own finally never runs if it never starts).

    Its headers are one list shared by every reply of a kind (`reply_headers`), never changed (the
    middlewares copy what they add): thousands of held replies need not hold a copy each."""

    release: Callable[[], None] | None = None

    def __init__(self, content: AsyncIterable[bytes], raw_headers: list[tuple[bytes, bytes]]) -> None:
        # not StreamingResponse.__init__, which builds the headers again for every reply
        self.body_iterator = content
        self.status_code = 200
        self.background = None
        self.raw_headers = raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await _send_until_gone(self, receive, send)
        finally:
            if self.release is not None:
                self.release()


def reply_headers(media_type: str, headers: Mapping[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    """The headers Starlette would give a streamed reply of this type, built once."""

    async def nothing() -> AsyncIterator[bytes]:
        return
        yield b""

    return StreamingResponse(nothing(), media_type=media_type, headers=headers).raw_headers


class _ClientGone(Exception):
    """The client left: what the reply's body raises if it sends once more."""


async def _send_until_gone(response: StreamingResponse, receive: Receive, send: Send) -> None:
    """`response`'s body until it ends or the client goes (then the body is cancelled, quietly)."""
    sender = asyncio.current_task()
    assert sender is not None  # noqa: S101  (always inside the request's task)
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await receive())["type"] != "http.disconnect":
            pass
        gone = True
        sender.cancel()

    async def sending(message: Message) -> None:
        # uvicorn drops what is sent to a client that left; should the cancellation have been lost on
        # the way (asyncio.wait_for on Python 3.11 can swallow one), the next keep-alive ends the reply
        if gone:
            raise _ClientGone
        await send(message)

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        await response.stream_response(sending)
    except (asyncio.CancelledError, _ClientGone):
        if not gone:
            raise
        if sender.cancelling():
            sender.uncancel()  # our own cancellation: the client left, which ends the reply normally
    finally:
        watcher.cancel()
        if response.background is not None and not gone:
            await response.background()
