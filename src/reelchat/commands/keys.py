"""`reelchat keys`: create, update, list and revoke API keys, with their limits and webhook."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ..domain import OPEN_TENANT, ApiKey, KeyLimits
from ..service import keys as keys_service
from ..settings import Settings
from ..standard_webhooks import check_endpoint
from ..store.keys import NameTaken
from ..store.tasks import Store


async def with_store(settings: Settings, fn: Callable[[Store], Awaitable[int]]) -> int:
    """Run `fn` on the migrated store of `settings`, then close it."""
    store = Store(settings.resolved_database_url)
    try:
        await store.migrate()
        return await fn(store)
    finally:
        await store.close()


async def count_keys(store: Store) -> int:
    return await store.keys.active_count()


def _limits_text(limits: KeyLimits) -> str:
    def show(value: int | None, unit: str) -> str:
        return f"{value}{unit}" if value is not None else "unlimited"

    return (
        f"rpm={show(limits.rpm, '')} max-concurrent={show(limits.max_concurrent, '')} "
        f"daily-seconds={show(limits.daily_seconds, ' s')} priority={limits.priority:g}"
    )


def _limits_from_args(args: argparse.Namespace, base: KeyLimits) -> KeyLimits:
    """The limits `args` set over `base` (0 removes a limit)."""
    changes: dict[str, Any] = {}
    for field in ("rpm", "max_concurrent", "daily_seconds"):
        value = getattr(args, field)
        if value is not None:
            changes[field] = value or None
    if args.priority is not None:
        changes["priority"] = args.priority
    return dataclasses.replace(base, **changes)


async def _adopt_or_explain(store: Store, key: ApiKey, adopt: bool, first: bool) -> None:
    open_videos = await store.counts.count_videos(OPEN_TENANT)
    if adopt:
        if key.tenant == OPEN_TENANT:
            print(f"Key {key.name} already owns the videos made in open mode (its tenant is {OPEN_TENANT!r}).")
            return
        await store.move_tenant(OPEN_TENANT, key.tenant)
        print(
            f"Moved {open_videos} video(s) made in open mode (tenant {OPEN_TENANT!r}) "
            f"to this key's tenant {key.tenant!r}."
        )
    elif first and open_videos and key.tenant != OPEN_TENANT:
        print(
            f"The {open_videos} video(s) made in open mode stay under tenant {OPEN_TENANT!r}, which no key can see. "
            f"To give them to this key: reelchat keys update {key.name} --adopt-open-videos"
        )


def create_key(name: str, tenant: str | None, args: argparse.Namespace) -> Callable[[Store], Awaitable[int]]:
    webhook_url: str | None = args.webhook_url

    async def create(store: Store) -> int:
        if webhook_url:
            check_endpoint(webhook_url)  # before the key exists: a bad URL makes no key
        first = await store.keys.active_count() == 0
        try:
            key, secret = await keys_service.create_key(
                store, name, tenant or None, _limits_from_args(args, KeyLimits())
            )
        except NameTaken:
            print(f"reelchat: an active key is already named {name!r}; pick another name.", file=sys.stderr)
            return 1
        print(f"Created key {key.id} (name {key.name}, tenant {key.tenant}; {_limits_text(key.limits)}).")
        if first:
            print(
                "This is the first API key: from now on every request needs a key ('Authorization: Bearer <key>'), "
                "open mode ends."
            )
        if webhook_url:
            _, webhook_secret = await keys_service.set_webhook(store, key.id, webhook_url)
            print(f"Its videos' video.completed / video.failed events go to {webhook_url}, signed with")
            print(f"  {webhook_secret}")
            print("(the receiver's Standard Webhooks secret; it is not shown again).")
        await _adopt_or_explain(store, key, args.adopt_open_videos, first)
        print("Copy it now; it is stored hashed and will not be shown again:")
        print(secret)
        return 0

    return create


def update_key(id_or_name: str, args: argparse.Namespace) -> Callable[[Store], Awaitable[int]]:
    webhook_url: str | None = args.webhook_url

    async def update(store: Store) -> int:
        if webhook_url:
            check_endpoint(webhook_url)  # before anything changes: a bad URL changes nothing
        key = await store.keys.by_name(id_or_name)
        if key is None:
            print(f"reelchat: no active key with id or name {id_or_name!r}.", file=sys.stderr)
            return 1
        limits = _limits_from_args(args, key.limits)
        if limits != key.limits:
            await store.keys.set_limits(key.id, limits)
        print(f"Key {key.name} (tenant {key.tenant}): {_limits_text(limits)}.")
        if webhook_url is not None:
            _, secret = await keys_service.set_webhook(store, key.id, webhook_url or None)
            if not webhook_url:
                print(f"Key {key.name}: no webhook any more.")
            else:
                print(f"Key {key.name}: its videos' events go to {webhook_url}.")
                if secret:
                    print("Signed with this secret (the receiver's Standard Webhooks secret; it is not shown again):")
                    print(secret)
                else:
                    print("Signed with the secret it already had.")
        await _adopt_or_explain(store, key, args.adopt_open_videos, first=False)
        return 0

    return update


async def list_keys(store: Store) -> int:
    rows = await store.keys.list_all()
    if not rows:
        print("No API keys: the server runs open on loopback addresses only.")
    for k in rows:
        state = "revoked" if k.revoked_at else "active"
        print(
            f"{k.id}\t{k.name}\ttenant={k.tenant}\t{k.prefix}…\t{k.created_at:%Y-%m-%d %H:%M}\t{state}"
            f"\t{_limits_text(k.limits)}\twebhook={'set' if k.webhook_url else 'none'}"
        )
    return 0


def revoke_key(id_or_name: str) -> Callable[[Store], Awaitable[int]]:
    async def revoke(store: Store) -> int:
        n = await store.keys.revoke(id_or_name)
        print(f"Revoked {n} key(s)." if n else f"No active key with id or name {id_or_name!r}.")
        return 0 if n else 1

    return revoke


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value}")
    return number


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or more, not {value}")
    return number


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpm", type=_count, help="videos this key may request per minute (0: no limit)")
    parser.add_argument(
        "--max-concurrent", type=_count, help="videos queued or in progress at once for this key (0: no limit)"
    )
    parser.add_argument(
        "--daily-seconds",
        type=_count,
        help="seconds of video per rolling 24 hours; only completed videos are charged (0: no limit)",
    )
    parser.add_argument(
        "--priority",
        type=_positive,
        help="weight in the fair queue when several keys wait (default 1; 2 = twice the share)",
    )
    parser.add_argument(
        "--adopt-open-videos",
        action="store_true",
        help="move the videos made in open mode (tenant 'default') to this key's tenant",
    )
