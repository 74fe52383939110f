"""`DatabaseProbe`: whether the store answers, as `/healthz` reports it, without a query per call.

A load balancer or a monitor probes `/healthz` many times a second, and under load every query
waits its turn for a pooled connection: a probe that queried each time would report the queue,
not the health. So the probe's answer is the last query's, at most `fresh_s` old; an older one
starts one query in the background (never two at once) and the caller gets the last answer
meanwhile, as long as it is at most `stale_s` old. A query that hangs is noticed all the same: once
it has waited `stale_s`, the probe reports that the database has not answered for that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("reelchat.service")

__all__ = ["DatabaseProbe"]


class DatabaseProbe:
    def __init__(self, ping: Callable[[], Awaitable[None]], *, fresh_s: float = 1.0, stale_s: float = 10.0) -> None:
        self._ping = ping
        self.fresh_s = fresh_s
        self.stale_s = stale_s
        self._answer: str | None = None
        self._answered_at = 0.0
        self._query: asyncio.Task[None] | None = None
        self._query_started_at = 0.0
        self.queries = 0  # pings sent: what the cache saves

    async def check(self) -> str:
        """ "ok", or "error: …" saying what went wrong."""
        now = time.monotonic()
        if now - self._answered_at <= self.fresh_s and self._answer is not None:
            return self._answer
        if self._query is None or self._query.done():
            self._query_started_at = now
            self._query = asyncio.get_running_loop().create_task(self._run(), name="reelchat-database-probe")
        if self._answer is not None and now - self._answered_at <= self.stale_s:
            return self._answer  # recent enough while the next answer comes
        waited = now - self._query_started_at
        if waited > self.stale_s:
            return f"error: no answer for {waited:.0f} s"
        # the first call, or the first after a long quiet spell: wait for the answer, up to stale_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._query), self.stale_s - waited)
        if self._query.done() and self._answer is not None:
            return self._answer
        return f"error: no answer for {time.monotonic() - self._query_started_at:.0f} s"

    async def _run(self) -> None:
        self.queries += 1
        try:
            await self._ping()
            answer = "ok"
        except Exception as e:  # reported, not raised: the caller answers 503
            log.warning("health check: the store did not answer: %s", e)
            answer = f"error: {type(e).__name__}"
        self._answer, self._answered_at = answer, time.monotonic()

    async def close(self) -> None:
        query, self._query = self._query, None
        if query is not None and not query.done():
            query.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await query
