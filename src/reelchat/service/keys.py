"""API keys: shown once at creation, stored only as a SHA-256 hash (keys are 256 random bits)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from ..domain import ApiKey, KeyLimits
from ..ids import new_key_id
from ..standard_webhooks import check_endpoint
from ..standard_webhooks import new_secret as new_webhook_secret
from ..store.tasks import Store

KEY_PREFIX = "rc-"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_key(
    store: Store, name: str, tenant: str | None = None, limits: KeyLimits | None = None
) -> tuple[ApiKey, str]:
    """Returns the stored record and the secret, which is never stored or shown again; raises
    `store.keys.NameTaken` when an active key has that name."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        id=new_key_id(),
        name=name,
        tenant=tenant or name,
        prefix=secret[:10],
        created_at=datetime.now(UTC),
        limits=limits or KeyLimits(),
    )
    await store.keys.add(key, hash_key(secret))
    return key, secret


async def authenticate(store: Store, secret: str) -> ApiKey | None:
    return await store.keys.by_hash(hash_key(secret))


async def set_webhook(store: Store, id_or_name: str, url: str | None) -> tuple[int, str | None]:
    """Point a key's webhook at `url` (None or "": remove it). Returns the keys changed and the new
    signing secret when one was made (a key that had a secret keeps it). The secret is stored (signing
    needs it) and shown only now."""
    return await store.keys.set_webhook(id_or_name, check_endpoint(url) if url else None, new_webhook_secret())
