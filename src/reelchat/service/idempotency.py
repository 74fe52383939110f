"""Idempotency: a retried request finds the video its first try made instead of paying for another.

Two sources of keys, one table (`store.idempotency`), scoped per tenant:
- an `Idempotency-Key` header (`/v1/videos`, remix, chat): the same key and request give the same
  video for `REELCHAT_IDEMPOTENCY_TTL_S`; the same key with another request is a `Conflict` (409);
- a chat conversation re-sent as it was (same model, same messages) while its video is still
  being made: the reply follows that video. Once it has finished, the same conversation makes a
  new one (asking again for a finished video is how a user asks for another take).

The record is written right before the task (`record`), so concurrent retries agree on one task,
and a record whose task never got stored (the process died between the two writes) is replaced.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from ..domain import Task
from ..store.idempotency import IdempotencyRecord
from ..store.tasks import Store
from .errors import Conflict, InvalidRequest

__all__ = ["MAX_KEY_CHARS", "Idempotency", "conversation", "from_header", "record", "replay", "request_hash"]

MAX_KEY_CHARS = 255
STORE_WAIT_S = 10.0  # how long a retry waits for the task its twin is storing right now


@dataclass(frozen=True)
class Idempotency:
    key: str
    request_hash: str
    only_unfinished: bool = False  # a re-sent conversation: attach only while its video is being made


def request_hash(what: str, body: Any) -> str:
    """A request's fingerprint: the endpoint and its parsed body, independent of JSON key order."""
    text = json.dumps([what, body], sort_keys=True, separators=(",", ":"), default=str)  # ASCII: lone surrogates too
    return hashlib.sha256(text.encode()).hexdigest()


def from_header(value: str | None, fingerprint: str) -> Idempotency | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_KEY_CHARS:
        raise InvalidRequest(
            f"The Idempotency-Key header must be 1 to {MAX_KEY_CHARS} characters.",
            param="Idempotency-Key",
            code="invalid_idempotency_key",
        )
    return Idempotency("key:" + value, fingerprint)


def conversation(fingerprint: str) -> Idempotency:
    return Idempotency("conversation:" + fingerprint, fingerprint, only_unfinished=True)


async def replay(store: Store, ttl_s: float, tenant: str, idem: Idempotency) -> Task | None:
    """The task an earlier request with this key made (None: there is none to return)."""
    found = await store.idempotency.get(tenant, idem.key, newer_than=time.time() - ttl_s)
    return await _holder(store, tenant, idem, found) if found is not None else None


async def record(store: Store, ttl_s: float, task: Task, idem: Idempotency) -> Task | None:
    """Make `task` the key's (None), or return the task that already holds it."""
    replace: str | None = None
    for _ in range(3):
        found = await store.idempotency.claim(
            task.tenant, idem.key, idem.request_hash, task.id, newer_than=time.time() - ttl_s, replace=replace
        )
        if found is None:
            return None
        holder = await _holder(store, task.tenant, idem, found)
        if holder is not None:
            return holder
        replace = found.task_id  # finished (a conversation), deleted, or never stored: take its place
    return None  # the key keeps changing hands: go ahead without it rather than fail the request


async def _holder(store: Store, tenant: str, idem: Idempotency, found: IdempotencyRecord) -> Task | None:
    if found.request_hash != idem.request_hash:
        raise Conflict(
            "This Idempotency-Key was already used with a different request; use a new key for a new request.",
            param="Idempotency-Key",
            code="idempotency_key_reused",
        )
    task = await _stored(store, found.task_id, found.created_at)
    if task is None or task.tenant != tenant or task.deleted:
        return None
    if idem.only_unfinished and task.status.finished:
        return None
    return task


async def _stored(store: Store, task_id: str, recorded_at: float) -> Task | None:
    """The task, waiting a little if its request is storing it right now."""
    while True:
        task = await store.get_task(task_id)
        if task is not None or time.time() - recorded_at > STORE_WAIT_S:
            return task
        await asyncio.sleep(0.05)
