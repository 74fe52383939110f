"""Webhook deliveries at the store and sender level, on SQLite and PostgreSQL: the outbox is written with
the outcome (and only with it), claims are exclusive across senders, a claim left by a dead sender
expires, and a sender started after a restart delivers what an earlier process left pending.
Signatures are checked by the receiver's own implementation of the spec (tests/webhook_receiver.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from helpers import run_cli
from pg import fresh_database
from test_store import make_task
from webhook_receiver import Receiver, verify

from reelchat.domain import TaskStatus
from reelchat.service.keys import create_key, set_webhook
from reelchat.service.webhooks import WebhookSender, backoff_s, outcome_event
from reelchat.settings import Settings
from reelchat.standard_webhooks import new_secret, secret_key, sign
from reelchat.store.schema import webhook_deliveries
from reelchat.store.tasks import Store


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        s = Store(f"sqlite+aiosqlite:///{tmp_path / 'store.db'}")
        await s.migrate()
        yield s
        await s.close()
        return
    async with fresh_database("reelchat_webhooks") as (url, _admin):
        s = Store(url)
        await s.migrate()
        yield s
        await s.close()


def test_signature_matches_the_specs_published_example() -> None:
    # the example of the Standard Webhooks reference libraries (and Svix's docs)
    got = sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}'
    )
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(secret_key(secret)) == 32
    for bad in ("abc", "whsec_not base64!", "whsec_" + "QUJD"):  # no prefix, not base64, 3 bytes
        with pytest.raises(ValueError, match="webhook secret"):
            secret_key(bad)


def test_backoff_grows_and_is_capped() -> None:
    waits = [backoff_s(n, 5.0) for n in range(1, 11)]
    assert waits[:4] == [5.0, 20.0, 80.0, 320.0]
    assert waits == sorted(waits)
    assert waits[-1] == 10 * 3600


async def _running(store: Store, tenant: str = "alice", key_id: str | None = None) -> tuple[str, int]:
    task = make_task(tenant, key_id=key_id)
    await store.insert_task(task)
    claimed = await store.claim(task.id)
    assert claimed is not None
    return task.id, claimed.attempt


async def test_the_outbox_is_written_with_the_outcome_and_only_then(store: Store) -> None:
    key, _ = await create_key(store, "alice")
    await set_webhook(store, key.id, "http://10.0.0.7/hooks")  # a private address: the operator's to choose
    task_id, attempt = await _running(store, key_id=key.id)
    task = await store.get_task(task_id)
    assert task is not None
    event = outcome_event(task, TaskStatus.COMPLETED, server=True)
    names: dict[str, Any] = {"video_name": "v.mp4", "thumbnail_name": "t.webp", "spritesheet_name": None}
    assert not await store.complete(task_id, attempt + 1, **names, outbox=event)  # a stale attempt: nothing
    assert await store.webhooks.for_task(task_id) == []
    phases = {"queued": 0.5, "denoise": 2.0}
    assert await store.complete(task_id, attempt, **names, phases=phases, outbox=event)
    rows = await store.webhooks.for_task(task_id)
    assert sorted(r.target for r in rows) == ["key", "server"]
    assert {r.event_id for r in rows} == {event.event_id}
    assert all(r.status == "pending" for r in rows)
    done = await store.get_task(task_id)
    assert done is not None
    assert done.phases == phases
    body = json.loads(event.payload)
    assert body == {
        "id": event.event_id,
        "object": "event",
        "created_at": body["created_at"],
        "type": "video.completed",
        "data": {"id": task.video_id},
    }
    # another tenant's key never hears of it
    bob, _ = await create_key(store, "bob")
    await set_webhook(store, bob.id, "http://10.0.0.8/hooks")
    other, other_attempt = await _running(store, key_id=key.id)
    other_task = await store.get_task(other)
    assert other_task is not None
    await store.fail(
        other, other_attempt, code="x", message="y", outbox=outcome_event(other_task, TaskStatus.FAILED, server=False)
    )
    assert [r.target for r in await store.webhooks.for_task(other)] == ["key"]


async def test_a_keys_webhook_hears_only_of_the_videos_made_with_that_key(store: Store) -> None:
    # two keys sharing one tenant, both with webhooks: each hears of its own videos only (`tasks.key_id`)
    alice, _ = await create_key(store, "alice")
    second, _ = await create_key(store, "alice-ci", tenant="alice")
    await set_webhook(store, alice.id, "http://10.0.0.7/hooks")
    await set_webhook(store, second.id, "http://10.0.0.9/hooks")

    async def targets(key_id: str | None, *, server: bool = False) -> list[str]:
        task_id, attempt = await _running(store, key_id=key_id)
        task = await store.get_task(task_id)
        assert task is not None
        assert await store.fail(
            task_id, attempt, code="x", message="y", outbox=outcome_event(task, TaskStatus.FAILED, server=server)
        )
        async with store.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(webhook_deliveries.c.target).where(webhook_deliveries.c.task_id == task_id)
            )
            return sorted(rows.scalars())

    assert await targets(alice.id) == [alice.id]
    assert await targets(second.id, server=True) == sorted([second.id, "server"])
    assert await targets(None, server=True) == ["server"]  # made in open mode (or before keys were recorded)
    assert await targets(None) == []
    await store.keys.revoke(second.id)
    assert await targets(second.id) == []  # a revoked key's endpoint hears nothing more


async def test_claims_are_exclusive_and_a_dead_senders_claim_expires(store: Store) -> None:
    ids = []
    for _ in range(6):
        task_id, attempt = await _running(store)
        task = await store.get_task(task_id)
        assert task is not None
        event = outcome_event(task, TaskStatus.COMPLETED, server=True)
        await store.complete(task_id, attempt, video_name="v", thumbnail_name="t", spritesheet_name=None, outbox=event)
        ids.append(task_id)
    a, b = await asyncio.gather(
        store.webhooks.claim("node-a/webhooks", limit=6, lease_s=0.5),
        store.webhooks.claim("node-b/webhooks", limit=6, lease_s=0.5),
    )
    assert len(a) + len(b) == 6
    assert not {r.id for r in a} & {r.id for r in b}
    assert await store.webhooks.claim("node-c/webhooks", limit=6, lease_s=30) == []  # all held
    await asyncio.sleep(0.6)  # node-a and node-b died: their claims expire
    again = await store.webhooks.claim("node-c/webhooks", limit=6, lease_s=30)
    assert len(again) == 6
    # the dead sender's late answer changes nothing: only the current claimant records
    assert not await store.webhooks.delivered(a[0].id if a else b[0].id, "node-a/webhooks", 200)


async def test_a_sender_started_after_a_restart_delivers_what_was_left_pending(store: Store, tmp_path: Path) -> None:
    secret = new_secret()
    with Receiver({"/hook": secret}, script={"/hook": [503]}) as receiver:
        settings = Settings(
            home=tmp_path,
            webhook_url=receiver.url("/hook"),
            webhook_secret=secret,
            webhook_retry_base_s=0.2,
            webhook_poll_s=0.05,
        )
        task_id, attempt = await _running(store)
        task = await store.get_task(task_id)
        assert task is not None
        event = outcome_event(task, TaskStatus.FAILED, server=True)
        await store.fail(task_id, attempt, code="boom", message="it broke", outbox=event)  # then the process "dies"
        outcomes: list[tuple[str, str]] = []
        sender = WebhookSender(settings, on_outcome=lambda kind, outcome: outcomes.append((kind, outcome)))
        await sender.start(store)  # the next process
        try:
            got = await asyncio.to_thread(receiver.wait_for, 2, "/hook", 30.0)
            deadline = time.monotonic() + 10
            while (await store.webhooks.for_task(task_id))[0].status != "delivered":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        finally:
            await sender.close()
    assert [r.answered for r in got] == [503, 204]
    assert all(verify(secret, r.headers, r.body) for r in got)
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"] == event.event_id
    assert got[0].event["type"] == "video.failed"
    assert outcomes == [("video.failed", "retry"), ("video.failed", "delivered")]
    (row,) = await store.webhooks.for_task(task_id)
    assert row.attempts == 2
    assert row.last_status == 204
    assert row.delivered_at is not None


async def test_a_delivery_is_given_up_after_the_last_attempt(store: Store, tmp_path: Path) -> None:
    secret = new_secret()
    with Receiver({"/hook": secret}, default=500) as receiver:
        settings = Settings(
            home=tmp_path,
            webhook_url=receiver.url("/hook"),
            webhook_secret=secret,
            webhook_retry_base_s=0.05,
            webhook_max_attempts=3,
        )
        task_id, attempt = await _running(store)
        task = await store.get_task(task_id)
        assert task is not None
        await store.complete(
            task_id,
            attempt,
            video_name="v",
            thumbnail_name="t",
            spritesheet_name=None,
            outbox=outcome_event(task, TaskStatus.COMPLETED, server=True),
        )
        sender = WebhookSender(settings)
        await sender.start(store)
        try:
            deadline = time.monotonic() + 20
            while (await store.webhooks.for_task(task_id))[0].status == "pending":
                assert time.monotonic() < deadline
                sender.poke()
                await asyncio.sleep(0.05)
        finally:
            await sender.close()
        (row,) = await store.webhooks.for_task(task_id)
        assert row.status == "failed"
        assert row.attempts == 3
        assert row.last_status == 500
        assert len([r for r in receiver.received if r.path == "/hook"]) == 3


def test_a_server_webhook_url_needs_its_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="REELCHAT_WEBHOOK_SECRET"):
        Settings(home=tmp_path, webhook_url="http://127.0.0.1:9/hook")
    with pytest.raises(ValueError, match="http:// or https://"):
        Settings(home=tmp_path, webhook_url="ftp://x/hook", webhook_secret=new_secret())


def test_serve_names_the_bad_variable_and_never_prints_a_secret(tmp_path: Path) -> None:
    token = "tok-" + "9" * 20
    env = {"REELCHAT_WEBHOOK_URL": "http://127.0.0.1:9/hook", "REELCHAT_METRICS_TOKEN": token}
    done = run_cli(tmp_path, "serve", env=env)
    assert done.returncode == 2
    assert "REELCHAT_WEBHOOK_SECRET" in done.stderr
    assert "reelchat webhook-secret" in done.stderr
    assert "Traceback" not in done.stderr
    assert token not in done.stderr + done.stdout
    made = run_cli(tmp_path, "webhook-secret")
    assert secret_key(made.stdout.strip())  # what it prints is a valid secret
