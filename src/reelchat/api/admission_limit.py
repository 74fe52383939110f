"""A pure ASGI middleware that admits chat replies a few dozen at a time, from the outermost layer.

Admitting a reply (the middleware stack, the body, the turn's checks, its first bytes) is all work
on the one event loop. A burst of 5,000 requests admitted at once fills each turn of the loop with
thousands of steps, so everything else that shares it (`/healthz`, the pages, the replies already
streaming) waits for whole turns of the burst. Here at most `at_once` replies are being admitted;
the rest wait, in order of arrival, before any of their work starts. Nothing is lost: the same
work is done in the same order, in shorter turns.

A reply is admitted once its first body bytes are sent (a streamed reply's echo), or when the route
says so (`scope["reelchat.admitted"]()`: a non-streamed reply sends nothing until it is whole). It
also counts in the chat service's `AdmissionGate` meanwhile, so storing answered replies' tasks
waits for the ones still queued here.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..service.admission import AdmissionGate

__all__ = ["ADMITTED_KEY", "AdmissionLimit"]

ADMITTED_KEY = "reelchat.admitted"  # the scope entry holding the request's `admitted()` callable
_PATHS = frozenset({"/v1/chat/completions"})


class AdmissionLimit:
    def __init__(self, app: ASGIApp, gate: AdmissionGate, at_once: int = 32) -> None:
        self.app = app
        self.gate = gate
        self._slots = asyncio.Semaphore(at_once)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in _PATHS:
            await self.app(scope, receive, send)
            return
        leave = self.gate.enter()
        try:
            await self._slots.acquire()
        except BaseException:
            leave()
            raise
        done = False

        def admitted() -> None:
            nonlocal done
            if not done:
                done = True
                self._slots.release()
                leave()

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.body":
                admitted()
            await send(message)

        scope[ADMITTED_KEY] = admitted
        try:
            await self.app(scope, receive, sending)
        finally:
            admitted()
