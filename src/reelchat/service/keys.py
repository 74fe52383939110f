"""API keys: shown once at creation, stored only as a SHA-256 hash (keys are 256 random bits)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from ..domain import ApiKey, KeyLimits
from ..ids import new_key_id
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
