"""How the upstream engine makes one request: the retry policy, Retry-After, backoff with jitter, and
sleeps a deleted task cuts short.

Retried: 429 and 5xx (after Retry-After / Retry-After-Ms when sent, else exponential backoff with
jitter), timeouts and connection failures, up to `UpstreamServer.max_retries` times. Any other 4xx
fails at once as `UpstreamRejected` (the same request would be refused again). The job's deadline
bounds all of it. Every message passes through `scrub`, so the API key never reaches one.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

import openai

from .base import EngineCancelled, EngineError, Reporter
from .upstream_spec import UpstreamServer

log = logging.getLogger("reelchat.engines.upstream")

T = TypeVar("T")

MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 120.0  # larger hints are clamped; the job deadline still bounds the total
CANCEL_CHECK_S = 0.25  # sleeps are sliced so a deleted task stops within about this long


class UpstreamRejected(EngineError):
    """The upstream answered 4xx (not 429): retrying the same request would not help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, code="upstream_rejected")
        self.status = status


class Requests:
    """One job's requests to one upstream, under the retry policy, stopping when its task is deleted."""

    def __init__(self, server: UpstreamServer, where: str, scrub: Callable[[str], str], reporter: Reporter) -> None:
        self.server = server
        self.where = where
        self.scrub = scrub
        self.reporter = reporter
        self._loop = asyncio.get_running_loop()

    async def call(self, op: str, request: Callable[[float], Awaitable[T]], *, retries: int | None = None) -> T:
        """Make one upstream request under the retry policy; `request` gets the timeout to use."""
        limit = self.server.max_retries if retries is None else retries
        attempt = 0
        while True:
            hint: float | None = None
            # Errors are built inside the except blocks but raised after them, so the SDK's
            # exception (whose body may echo the key) isn't even kept as __context__.
            final: EngineError | None = None
            try:
                return await request(self.server.request_timeout_s)
            except openai.APIStatusError as e:
                status = e.status_code
                detail = self.scrub(status_message(e))
                reason = f"HTTP {status}: {detail}"
                if status != 429 and status < 500:
                    final = UpstreamRejected(f"The upstream at {self.where} refused {op} ({reason})", status)
                hint = retry_after(e.response.headers)
                headline = "upstream busy" if status == 429 else "upstream unavailable"
            except openai.APITimeoutError:
                reason = f"no answer within {self.server.request_timeout_s:g} s"
                headline = "upstream unreachable"
            except openai.APIConnectionError as e:
                reason = f"connection failed: {self.scrub(root_cause(e))}"
                headline = "upstream unreachable"
            except openai.APIError as e:  # e.g. a 200 whose body isn't JSON
                reason = self.scrub(e.message)
                final = EngineError(
                    f"The upstream at {self.where} sent a malformed answer to {op}: {reason}",
                    code="upstream_bad_response",
                )
            if final is None and attempt >= limit:
                final = EngineError(
                    f"{headline}: {op} at {self.where} failed {attempt + 1} time{'s' if attempt else ''}; "
                    f"last: {reason}",
                    code="upstream_unavailable",
                )
            if final is not None:
                raise final
            delay = hint if hint is not None else backoff(self.server.retry_backoff_s, attempt)
            attempt += 1
            log.warning(
                "upstream %s: %s failed (%s); retry %d/%d in %.2f s", self.where, op, reason, attempt, limit, delay
            )
            await self.sleep(delay)

    async def sleep(self, seconds: float) -> None:
        """Sleep in slices, raising EngineCancelled as soon as the task is deleted."""
        end = self._loop.time() + seconds
        while True:
            if self.reporter.cancelled():
                raise EngineCancelled()
            left = end - self._loop.time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, CANCEL_CHECK_S))


def backoff(first_s: float, attempt: int) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, so retries spread out."""
    base = min(MAX_BACKOFF_S, first_s * 2.0**attempt)
    return base / 2 + random.uniform(0, base / 2)  # noqa: S311  (retry jitter, not a secret)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the upstream asked us to wait: retry-after-ms, or Retry-After (seconds or HTTP date)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue
        if math.isfinite(seconds):
            return min(MAX_RETRY_AFTER_S, max(0.0, seconds))
    value = headers.get("retry-after")
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return min(MAX_RETRY_AFTER_S, max(0.0, (when - datetime.now(UTC)).total_seconds()))
    return None


def status_message(e: openai.APIStatusError) -> str:
    """The upstream's own words: body.error.message (OpenAI shape), else the body's text."""
    body = e.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str) and inner["message"]:
            return str(inner["message"])
        if isinstance(inner, str) and inner:
            return inner
        detail = body.get("detail")
        if isinstance(detail, str) and detail:
            return detail
    if isinstance(body, str) and body.strip():
        return body
    return e.response.reason_phrase or "no details"


def root_cause(e: BaseException) -> str:
    """The innermost reason of a connection failure ("[Errno 111] Connection refused"), not the SDK's wrapper."""
    cause: BaseException = e
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    return str(cause) or type(cause).__name__
