"""Per-key limits (`reelchat keys create|update --rpm --max-concurrent --daily-seconds`), checked
before a task is stored; over one, `Busy` (429) names it and says when to come back.

- rpm: videos requested in the last 60 s (every task the key made, whatever became of it).
- max_concurrent: videos queued or in progress at once.
- daily_seconds: seconds of video in a rolling 24 hours. Only completed videos are charged; videos
  still queued or in progress hold their seconds, so a key can't queue past its budget, and a
  failed or deleted-before-done video gives them back.

Counted from the task rows (`store.usage`): every replica counts alike. Two requests that arrive
in the same instant can both pass (check, then insert): a limit is exact to within the requests in
flight at once, which is what a per-minute budget needs.
"""

from __future__ import annotations

import math
import time

from ..domain import ApiKey
from ..store.tasks import Store
from .errors import Busy

__all__ = ["CONCURRENCY_RETRY_S", "DAY_S", "check_limits"]

MINUTE_S = 60.0
DAY_S = 86400.0
CONCURRENCY_RETRY_S = 2  # nothing says when a running video ends: come back soon


def _after(t: float, now: float) -> int:
    return max(1, math.ceil(t - now))


async def check_limits(store: Store, key: ApiKey, seconds: int) -> None:
    """Raise `Busy` when a video of `seconds` would take `key` over one of its limits."""
    limits = key.limits
    if limits.rpm is None and limits.max_concurrent is None and limits.daily_seconds is None:
        return
    now = time.time()
    usage = await store.usage.of_key(key.id, requests_since=now - MINUTE_S, charged_since=now - DAY_S)
    if limits.rpm is not None and len(usage.requested_at) >= limits.rpm:
        oldest = usage.requested_at[len(usage.requested_at) - limits.rpm]
        raise Busy(
            f"This API key may request {limits.rpm} videos per minute and has requested "
            f"{len(usage.requested_at)} in the last minute (its rpm limit); try again later.",
            code="rate_limit_exceeded",
            retry_after=_after(oldest + MINUTE_S, now),
        )
    if limits.max_concurrent is not None and usage.unfinished >= limits.max_concurrent:
        raise Busy(
            f"This API key may have {limits.max_concurrent} videos queued or in progress at once and has "
            f"{usage.unfinished} (its max-concurrent limit); try again when one has finished.",
            code="concurrency_limit_exceeded",
            retry_after=CONCURRENCY_RETRY_S,
        )
    if limits.daily_seconds is not None:
        _check_daily(
            limits.daily_seconds, usage.charged_seconds, usage.unfinished_seconds, usage.completed, seconds, now
        )


def _check_daily(
    budget: int, charged: int, held: int, completed: list[tuple[float, int]], seconds: int, now: float
) -> None:
    if charged + held + seconds <= budget:
        return
    # when enough of the charged seconds are older than a day for this video to fit
    retry_at = now + DAY_S
    over = charged + held + seconds - budget
    for completed_at, done in completed:
        over -= done
        if over <= 0:
            retry_at = completed_at + DAY_S
            break
    else:
        if held + seconds <= budget:  # waiting on the videos in progress: they may fail and give seconds back
            retry_at = now + 60
    raise Busy(
        f"This API key may make {budget} seconds of video per 24 hours (its daily-seconds limit): "
        f"{charged} s were made in the last 24 hours and {held} s are queued or in progress, so a "
        f"{seconds} s video does not fit; try again later.",
        code="daily_seconds_exceeded",
        retry_after=_after(retry_at, now),
    )
