"""`UnfinishedCounts`: each tenant's queued and running tasks, for its per-key cap, without a
store query per request.

The store's count is the truth (it holds across restarts and across servers sharing a database),
but a burst of 100 chat turns would run 100 identical `COUNT(*)` queries, each waiting its turn
for a pooled connection, before any of them sends a byte. So a count read from the store is kept
for `fresh_s` and raised by one for each task this process admits meanwhile: an upper bound of the
truth as far as this process knows (tasks that finish only lower it). While that bound is under the
cap the request goes ahead; once it is older than `fresh_s` the store is asked again behind the
request (nobody waits for that read: admitting a reply must not wait on the database), and when it
reaches the cap the request waits for a fresh count before it is refused; one query per tenant at a
time, however many requests wait on it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .errors import Busy

__all__ = ["UnfinishedCounts", "check_capacity"]


@dataclass
class _Count:
    value: int
    read_at: float


class UnfinishedCounts:
    def __init__(self, count: Callable[[str], Awaitable[int]], *, fresh_s: float = 1.0) -> None:
        self._count = count
        self.fresh_s = fresh_s
        self._counts: dict[str, _Count] = {}
        self._reads: dict[str, asyncio.Task[int]] = {}
        self.queries = 0  # store reads: what the bound saves

    async def admit(self, tenant: str, cap: int) -> int | None:
        """Count one more task for `tenant` if it has fewer than `cap`; else return its count."""
        known = self._counts.get(tenant)
        if known is not None and known.value < cap:
            if time.monotonic() - known.read_at > self.fresh_s:
                self._start_read(tenant)  # refreshed behind the request: under the cap, nobody waits on it
            known.value += 1
            return None
        await asyncio.shield(self._start_read(tenant))
        known = self._counts[tenant]
        if known.value >= cap:
            return known.value
        known.value += 1
        return None

    def _start_read(self, tenant: str) -> asyncio.Task[int]:
        read = self._reads.get(tenant)
        if read is None:
            before = self._counts.get(tenant)  # as it stands when the count is asked for
            read = asyncio.get_running_loop().create_task(
                self._read(tenant, before, before.value if before is not None else 0), name="reelchat-unfinished-count"
            )
            read.add_done_callback(_retrieved)  # a refresh nobody waited for may fail: the next one retries
            self._reads[tenant] = read
        return read

    async def _read(self, tenant: str, before: _Count | None, start: int) -> int:
        try:
            self.queries += 1
            value = await self._count(tenant)
            # tasks admitted while the store counted are not in its count: keep them
            now = self._counts.get(tenant)
            if now is not None and now is before:
                value += max(0, now.value - start)
            self._counts[tenant] = _Count(value, time.monotonic())
            return value
        finally:
            del self._reads[tenant]


def _retrieved(task: asyncio.Task[int]) -> None:
    if not task.cancelled():
        task.exception()


async def check_capacity(
    tenant: str, pending: int, unfinished: UnfinishedCounts, max_queued: int, per_key: int
) -> None:
    """`Busy` when the shared queue holds `max_queued` videos, or `tenant` has `per_key` unfinished."""
    if pending >= max_queued:
        raise Busy(f"{pending} videos are already waiting; try again later.", code="rate_limit_exceeded")
    # one tenant can't fill the shared queue: the store counts, so the cap holds across restarts and
    # servers (read at most once a second while the tenant is well under its cap: `UnfinishedCounts`)
    mine = await unfinished.admit(tenant, per_key)
    if mine is not None:
        raise Busy(
            f"This API key already has {mine} videos queued or in progress, the most one key may have "
            "(REELCHAT_MAX_QUEUED_PER_KEY); try again when some have finished.",
            code="too_many_queued_for_key",
        )
