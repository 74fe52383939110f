"""Full garbage collections when the server is quiet, not in the middle of a burst.

A held stream is a few hundred live objects (its coroutine frames, its task, its mailbox). A full
collection walks every one of them and frees next to nothing (one after a wave of 5,000 streams
freed 4 objects: reference counting frees what a stream leaves behind), and CPython starts one
whenever a quarter more objects have survived since the last: in the middle of a burst of new
streams, a pause of 0.2 s and more that every stream and `/healthz` waited for.

`reelchat serve` turns those automatic full collections off (`THRESHOLDS`: the young and middle
generations are collected as usual, a few milliseconds each) and `CollectorPacing` runs them itself:
once `full_every_s` has passed and no request has been admitted for `quiet_s`, or at
`2 * full_every_s` in any case (then even in a burst), so cycles among long-lived objects are freed
within that time. On CPython 3.14 and later, whose collector is incremental (no separate full
collections, and the third threshold means something else), `PACED` is false and `reelchat serve`
leaves the collector as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
from collections.abc import Callable

__all__ = ["PACED", "THRESHOLDS", "CollectorPacing"]

log = logging.getLogger("reelchat.collector")

# young collections every 5,000 allocations (a few ms each at 5,000 streams; 20,000 made 38 ms pauses),
# the middle generation every 10 of them, and no automatic full collection (`CollectorPacing`)
THRESHOLDS = (5_000, 10, 1_000_000_000)
PACED = sys.version_info < (3, 14)


class CollectorPacing:
    def __init__(
        self,
        quiet_for: Callable[[], float],
        *,
        full_every_s: float = 60.0,
        quiet_s: float = 2.0,
        check_every_s: float = 1.0,
    ) -> None:
        self.quiet_for = quiet_for  # seconds since the server last admitted a request
        self.full_every_s = full_every_s
        self.quiet_s = quiet_s
        self.check_every_s = check_every_s
        self.full_collections = 0
        self._last_full = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="reelchat-collector")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.check_every_s)
            self.tick()

    def tick(self) -> bool:
        """A full collection if one is due now; whether it ran."""
        since = time.monotonic() - self._last_full
        due = since >= 2 * self.full_every_s or (since >= self.full_every_s and self.quiet_for() >= self.quiet_s)
        if due:
            started = time.perf_counter()
            freed = gc.collect()
            self._last_full = time.monotonic()
            self.full_collections += 1
            log.debug("full collection: %d objects freed in %.0f ms", freed, (time.perf_counter() - started) * 1000)
        return due
