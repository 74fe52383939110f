"""Webhooks, per the Standard Webhooks spec (https://www.standardwebhooks.com/).

Events `video.completed` and `video.failed`, shaped like OpenAI's webhook events
(`{"id": "evt_…", "object": "event", "created_at", "type", "data": {"id": <video id>}}`), go to the
server-wide endpoint (REELCHAT_WEBHOOK_URL) and to the endpoint of the key that asked for the video
(`tasks.key_id`), if it has one (`reelchat keys create|update --webhook-url`). Endpoints come from the operator only,
never from a request, so they may be on a private network: the public-URL fetch policy does not apply.

Each request carries `webhook-id` (the event id, the same on every retry), `webhook-timestamp` (unix
seconds of this attempt) and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed
by the base64 part of a `whsec_…` secret. A 2xx answer delivers it; anything else (or no answer within
REELCHAT_WEBHOOK_TIMEOUT_S) is retried with backoff, across restarts (the row is durable), up to
REELCHAT_WEBHOOK_MAX_ATTEMPTS attempts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from contextlib import suppress

import httpx

from ..domain import Task, TaskStatus
from ..ids import ulid
from ..settings import Settings
from ..standard_webhooks import sign
from ..store.tasks import Store
from ..store.webhooks import SERVER_TARGET, DueDelivery, OutboxEvent

log = logging.getLogger("reelchat.webhooks")

CLAIM_BATCH = 16
MAX_BACKOFF_S = 10 * 3600.0

Outcome = Callable[[str, str], None]
"""Told (event type, outcome) after each attempt: `delivered`, `retry` or `failed` (given up)."""


def outcome_event(task: Task, status: TaskStatus, *, server: bool) -> OutboxEvent:
    """The `video.completed` / `video.failed` event of a task's outcome (written with it)."""
    kind = "video.completed" if status is TaskStatus.COMPLETED else "video.failed"
    event_id = "evt_" + ulid()
    body = {
        "id": event_id,
        "object": "event",
        "created_at": int(time.time()),
        "type": kind,
        "data": {"id": task.video_id},
    }
    return OutboxEvent(event_id, kind, task.id, json.dumps(body, separators=(",", ":")), server)


def backoff_s(attempts: int, base_s: float) -> float:
    """Wait after the `attempts`-th failed attempt: base, ×4 each time (5 s, 20 s, 80 s, 5 min, …, 10 h)."""
    return float(min(base_s * 4 ** (attempts - 1), MAX_BACKOFF_S))


class WebhookSender:
    """The API process's delivery loop: claims due rows (safe beside other replicas' loops), sends
    them, records the answer. `poke()` makes it look now instead of at its next period."""

    def __init__(self, settings: Settings, on_outcome: Outcome | None = None) -> None:
        self.settings = settings
        self._store: Store | None = None
        self.owner = f"{settings.resolved_node_id}/webhooks"
        self._on_outcome = on_outcome
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the webhook sender has not started")
        return self._store

    async def start(self, store: Store) -> None:
        self._store = store
        # no proxies, netrc or redirects from this process's environment: the operator's URL, as given
        self._client = httpx.AsyncClient(
            timeout=self.settings.webhook_timeout_s, trust_env=False, follow_redirects=False
        )
        self._loop = asyncio.create_task(self._run(), name="reelchat-webhooks")

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with suppress(asyncio.CancelledError):
                await self._loop
        if self._client is not None:
            await self._client.aclose()

    def poke(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.webhook_poll_s)
            self._wake.clear()
            try:
                while await self.send_due():
                    pass
            except Exception:
                log.warning("webhook delivery loop failed; trying again shortly", exc_info=True)

    async def send_due(self) -> int:
        """Claim and send what is due now; returns how many were tried."""
        lease = self.settings.webhook_timeout_s * 2 + 30
        rows = await self.store.webhooks.claim(self.owner, limit=CLAIM_BATCH, lease_s=lease)
        await asyncio.gather(*(self._send(row) for row in rows))
        return len(rows)

    def _endpoint(self, row: DueDelivery) -> tuple[str, str] | None:
        if row.target == SERVER_TARGET:
            url, secret = self.settings.webhook_url, self.settings.webhook_secret
        else:
            url, secret = row.key_url, row.key_secret
        return (url, secret) if url and secret else None

    async def _send(self, row: DueDelivery) -> None:
        endpoint = self._endpoint(row)
        if endpoint is None:  # the endpoint was removed (or its key revoked) since the event
            await self._failed(row, None, "endpoint_removed", give_up=True)
            return
        url, secret = endpoint
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "reelchat-webhooks",
            "webhook-id": row.event_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, row.event_id, timestamp, row.payload),
        }
        assert self._client is not None  # noqa: S101  (narrows a type; start() ran)
        try:
            response = await self._client.post(url, content=row.payload.encode(), headers=headers)
        except httpx.TimeoutException:
            await self._failed(row, None, "timeout")
            return
        except httpx.HTTPError as e:
            await self._failed(row, None, "connect_error" if isinstance(e, httpx.ConnectError) else "http_error")
            return
        if 200 <= response.status_code < 300:
            if await self.store.webhooks.delivered(row.id, self.owner, response.status_code):
                log.info(
                    "webhook %s for %s delivered (%s, attempt %d)",
                    row.event_type,
                    row.task_id,
                    response.status_code,
                    row.attempts + 1,
                    extra={"task_id": row.task_id, "event_id": row.event_id},
                )
                self._tell(row.event_type, "delivered")
            return
        await self._failed(row, response.status_code, f"http_{response.status_code}")

    async def _failed(self, row: DueDelivery, status: int | None, error: str, *, give_up: bool = False) -> None:
        attempts = row.attempts + 1
        give_up = give_up or attempts >= self.settings.webhook_max_attempts
        retry_at = None if give_up else time.time() + backoff_s(attempts, self.settings.webhook_retry_base_s)
        if not await self.store.webhooks.failed_attempt(
            row.id, self.owner, status=status, error=error, retry_at=retry_at
        ):
            return
        extra = {"task_id": row.task_id, "event_id": row.event_id}
        if retry_at is None:
            log.warning(
                "webhook %s for %s failed (%s); giving up after %d attempt(s)",
                row.event_type,
                row.task_id,
                error,
                attempts,
                extra=extra,
            )
        else:
            wait = retry_at - time.time()
            log.info(
                "webhook %s for %s failed (%s); retrying in %.0f s",
                row.event_type,
                row.task_id,
                error,
                wait,
                extra=extra,
            )
        self._tell(row.event_type, "failed" if retry_at is None else "retry")

    def _tell(self, event_type: str, outcome: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(event_type, outcome)
