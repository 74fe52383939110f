"""Request bodies parsed without holding the event loop: small ones inline, large ones in a worker process.

Parsing untrusted JSON (`json.loads`, pydantic, the turn's regexes) is C or Rust code that holds
the interpreter lock from start to end: a 17 MB body of small messages took 0.7 s, during which
a thread would have frozen every stream and `/healthz` just as the event loop itself would. A
separate process does not share the lock. Bodies up to `inline_max_bytes` parse in well under a
millisecond, so they skip the round trip.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from ..parent_death import die_with_parent
from ..protocol.chat_parse import ParsedChat, parse_chat_body
from ..protocol.json_body import load_json_object
from .errors import ApiError

log = logging.getLogger("reelchat.api.bodies")

T = TypeVar("T")

INLINE_MAX_BYTES = 64 * 1024


class BodyParser:
    """Owned by the app's lifespan (`close`); the worker process starts on the first large body."""

    def __init__(self, inline_max_bytes: int = INLINE_MAX_BYTES, workers: int = 1) -> None:
        self.inline_max_bytes = inline_max_bytes
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    async def chat(self, raw: bytes, seconds_by_model: Mapping[str, Sequence[int]]) -> ParsedChat:
        return await self._run(len(raw), parse_chat_body, raw, dict(seconds_by_model))

    async def json_object(self, raw: bytes) -> dict[str, Any]:
        return await self._run(len(raw), load_json_object, raw)

    async def _run(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        if size <= self.inline_max_bytes:
            return fn(*args)
        for attempt in (1, 2):
            pool = self._get_pool()
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
            except BrokenProcessPool:  # the worker died (killed, out of memory): start a new one once
                log.warning("the body parser's worker process died; starting another (attempt %d)", attempt)
                self._drop_pool(pool)
        raise ApiError(
            503,
            "The server could not parse this request: its parser process stopped twice. Try again.",
            type="server_error",
            code="parser_unavailable",
            headers={"Retry-After": "5"},
        )

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the API process may hold threads and a loaded model
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent,  # no idle parser lingers after a SIGKILLed server
                initargs=(os.getpid(),),
            )
        return self._pool

    def _drop_pool(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
