"""Webhook deliveries in the store: an outbox written with the task's outcome, then claimed and sent.

`add_in` runs inside the transaction that records a task's outcome (`Store.complete` / `fail`), so
an outcome is never stored without its deliveries, nor a delivery without its outcome. Senders (one
loop per API process, any number of replicas) `claim` due rows with a fenced UPDATE each: a row is
sent by one sender at a time; a sender that dies mid-send leaves its claim to expire, and the row is
sent again (at least once: receivers dedupe on `webhook-id`, as the Standard Webhooks spec says).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..ids import ulid
from .schema import api_keys, webhook_deliveries

__all__ = ["DeliveryRecord", "DueDelivery", "OutboxEvent", "WebhookStore"]

SERVER_TARGET = "server"
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class OutboxEvent:
    """An event to deliver: its id (the `webhook-id`), type, and the exact JSON body to sign."""

    event_id: str
    type: str
    task_id: str
    payload: str
    server: bool  # also to the server-wide endpoint (REELCHAT_WEBHOOK_URL)


@dataclass(frozen=True)
class DueDelivery:
    """A claimed row, with where it goes now (None for a key's endpoint that was removed since)."""

    id: str
    event_id: str
    event_type: str
    task_id: str
    target: str
    payload: str
    attempts: int
    key_url: str | None
    key_secret: str | None


@dataclass(frozen=True)
class DeliveryRecord:
    """What the delivery log of a task shows (no URL, no secret, no error text: /source is public by link)."""

    event_id: str
    event_type: str
    target: str  # "server" or "key"
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_at: float | None
    created_at: float
    delivered_at: float | None


class WebhookStore:
    """The `webhook_deliveries` table, over the task store's engine (`Store.webhooks`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add_in(self, conn: AsyncConnection, event: OutboxEvent, key_id: str | None) -> int:
        """Within the caller's transaction: one pending row per endpoint the event goes to (the
        server's, and the webhook of the key that asked for the video, `tasks.key_id`, when that key is
        still active and has one; a video made in open mode goes to the server's only); returns how many."""
        targets = [SERVER_TARGET] if event.server else []
        if key_id is not None:
            has_webhook = await conn.execute(
                sa.select(api_keys.c.id).where(
                    api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None), api_keys.c.webhook_url.is_not(None)
                )
            )
            targets += list(has_webhook.scalars())
        now = time.time()
        if targets:
            await conn.execute(
                webhook_deliveries.insert(),
                [
                    {
                        "id": "whd_" + ulid(),
                        "event_id": event.event_id,
                        "event_type": event.type,
                        "task_id": event.task_id,
                        "target": target,
                        "payload": event.payload,
                        "status": PENDING,
                        "attempts": 0,
                        "next_at": now,
                        "created_at": now,
                    }
                    for target in targets
                ],
            )
        return len(targets)

    async def claim(self, owner: str, *, limit: int, lease_s: float) -> list[DueDelivery]:
        """Up to `limit` due rows, each taken by one fenced UPDATE (another sender's claim wins)."""
        now = time.time()
        unclaimed = webhook_deliveries.c.claimed_until.is_(None) | (webhook_deliveries.c.claimed_until < now)
        due = sa.and_(webhook_deliveries.c.status == PENDING, webhook_deliveries.c.next_at <= now, unclaimed)
        async with self.engine.begin() as conn:
            ids = (
                await conn.execute(
                    sa.select(webhook_deliveries.c.id).where(due).order_by(webhook_deliveries.c.next_at).limit(limit)
                )
            ).scalars()
            mine: list[str] = []
            for row_id in list(ids):
                result = await conn.execute(
                    webhook_deliveries.update()
                    .where(webhook_deliveries.c.id == row_id, due)
                    .values(claimed_by=owner, claimed_until=now + lease_s)
                )
                if result.rowcount == 1:
                    mine.append(row_id)
            if not mine:
                return []
            rows = await conn.execute(
                sa.select(webhook_deliveries, api_keys.c.webhook_url, api_keys.c.webhook_secret)
                .select_from(
                    webhook_deliveries.outerjoin(
                        api_keys, (api_keys.c.id == webhook_deliveries.c.target) & api_keys.c.revoked_at.is_(None)
                    )
                )
                .where(webhook_deliveries.c.id.in_(mine))
            )
            return [_due(r) for r in rows]

    async def delivered(self, row_id: str, owner: str, status: int) -> bool:
        return await self._finish(
            row_id,
            owner,
            status=DELIVERED,
            attempts=webhook_deliveries.c.attempts + 1,
            last_status=status,
            last_error=None,
            delivered_at=time.time(),
        )

    async def failed_attempt(
        self, row_id: str, owner: str, *, status: int | None, error: str, retry_at: float | None
    ) -> bool:
        """One attempt failed: due again at `retry_at`, or given up (None)."""
        values: dict[str, Any] = {"status": FAILED} if retry_at is None else {"next_at": retry_at}
        return await self._finish(
            row_id, owner, attempts=webhook_deliveries.c.attempts + 1, last_status=status, last_error=error, **values
        )

    async def _finish(self, row_id: str, owner: str, **values: Any) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                webhook_deliveries.update()
                .where(
                    webhook_deliveries.c.id == row_id,
                    webhook_deliveries.c.claimed_by == owner,
                    webhook_deliveries.c.status == PENDING,
                )
                .values(claimed_by=None, claimed_until=None, **values)
            )
        return result.rowcount == 1

    async def for_task(self, task_id: str) -> list[DeliveryRecord]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(webhook_deliveries)
                .where(webhook_deliveries.c.task_id == task_id)
                .order_by(webhook_deliveries.c.created_at, webhook_deliveries.c.id)
            )
            return [
                DeliveryRecord(
                    event_id=r.event_id,
                    event_type=r.event_type,
                    target=SERVER_TARGET if r.target == SERVER_TARGET else "key",
                    status=r.status,
                    attempts=r.attempts,
                    last_status=r.last_status,
                    last_error=r.last_error,
                    next_at=r.next_at if r.status == PENDING else None,
                    created_at=r.created_at,
                    delivered_at=r.delivered_at,
                )
                for r in rows
            ]

    async def counts(self) -> dict[str, int]:
        """Rows by status (what /metrics shows as the outbox's size)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(webhook_deliveries.c.status, sa.func.count()).group_by(webhook_deliveries.c.status)
            )
            return {status: int(n) for status, n in rows}


def _due(row: sa.Row[Any]) -> DueDelivery:
    m = row._mapping
    return DueDelivery(
        id=m["id"],
        event_id=m["event_id"],
        event_type=m["event_type"],
        task_id=m["task_id"],
        target=m["target"],
        payload=m["payload"],
        attempts=m["attempts"],
        key_url=m["webhook_url"],
        key_secret=m["webhook_secret"],
    )
