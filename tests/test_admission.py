"""Chat replies are admitted a few at a time from the outermost layer (`AdmissionLimit`), and storing
answered replies' tasks waits for the ones still being admitted (`AdmissionGate`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.types import Message, Receive, Scope, Send

from reelchat.api.admission_limit import ADMITTED_KEY, AdmissionLimit
from reelchat.service.admission import AdmissionGate


class SlowApp:
    """Takes 20 ms before its first bytes, then streams until told to stop; records how many are inside."""

    def __init__(self) -> None:
        self.inside = 0
        self.most_inside = 0
        self.stop = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            await asyncio.sleep(0.02)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
        finally:
            self.inside -= 1
        await self.stop.wait()  # an open stream no longer counts against admission
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


def request(path: str, method: str = "POST") -> Scope:
    return {"type": "http", "method": method, "path": path, "headers": []}


async def run(app: AdmissionLimit, scope: Scope, firsts: list[float]) -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            firsts.append(time.monotonic())

    await app(scope, receive, send)


async def test_replies_are_admitted_a_few_at_a_time_and_open_streams_do_not_count() -> None:
    inner, gate = SlowApp(), AdmissionGate()
    app = AdmissionLimit(inner, gate, at_once=3)
    firsts: list[float] = []
    replies = [asyncio.create_task(run(app, request("/v1/chat/completions"), firsts)) for _ in range(12)]
    await until(lambda: len(firsts) == 12)
    assert inner.most_inside == 3  # never more than 3 being admitted, though all 12 streams are open now
    assert len(gate) == 0  # every reply has been admitted
    inner.stop.set()
    await asyncio.gather(*replies)


async def test_other_requests_pass_straight_through() -> None:
    inner, gate = SlowApp(), AdmissionGate()
    app = AdmissionLimit(inner, gate, at_once=1)
    firsts: list[float] = []
    held = asyncio.create_task(run(app, request("/v1/chat/completions"), firsts))
    await asyncio.sleep(0)
    other = asyncio.create_task(run(app, request("/healthz", "GET"), firsts))
    await until(lambda: len(firsts) == 2)
    assert inner.most_inside == 2  # /healthz did not wait for the chat reply's slot
    inner.stop.set()
    await asyncio.gather(held, other)


async def test_a_route_can_say_it_is_admitted_before_sending_anything() -> None:
    gate = AdmissionGate()
    seen: list[int] = []

    async def whole_reply(scope: Scope, receive: Receive, send: Send) -> None:
        scope[ADMITTED_KEY]()  # a non-streamed reply: nothing is sent until it is whole
        seen.append(len(gate))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})

    await run(AdmissionLimit(whole_reply, gate), request("/v1/chat/completions"), [])
    assert seen == [0]


async def test_storing_waits_while_replies_are_admitted_but_never_long() -> None:
    gate = AdmissionGate(max_wait_s=0.2)
    leave = gate.enter()
    started = time.monotonic()
    waiting = asyncio.create_task(gate.wait_quiet())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    leave()
    await waiting
    assert time.monotonic() - started < 0.2
    gate.enter()  # never left: the wait ends at max_wait_s
    started = time.monotonic()
    await gate.wait_quiet()
    assert 0.15 < time.monotonic() - started < 1.0
