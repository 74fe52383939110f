"""API keys in the store: only their SHA-256 hashes and metadata, never the secrets."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..domain import ApiKey, KeyLimits
from .batched import BatchedReads
from .schema import api_keys
from .timestamps import to_datetime

__all__ = ["KeyStore", "NameTaken"]


class NameTaken(Exception):
    """An active key already has this name."""


class KeyStore:
    """The `api_keys` table, over the task store's engine (`Store.keys`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._by_hash: BatchedReads[str, ApiKey] = BatchedReads(self._read_by_hash)

    async def add(self, key: ApiKey, key_hash: str, webhook_secret: str | None = None) -> None:
        """Raises `NameTaken` when an active key has the same name (a unique index decides, so two
        operators creating the same name at once can't both win)."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    api_keys.insert().values(
                        id=key.id,
                        name=key.name,
                        tenant=key.tenant,
                        prefix=key.prefix,
                        key_hash=key_hash,
                        created_at=key.created_at.timestamp(),
                        **_limit_values(key.limits),
                        webhook_url=key.webhook_url,
                        webhook_secret=webhook_secret,
                    )
                )
        except sa.exc.IntegrityError as e:
            if await self.by_name(key.name) is not None:
                raise NameTaken(key.name) from e
            raise

    async def by_name(self, id_or_name: str) -> ApiKey | None:
        """The active key with this name (or id)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(api_keys).where(
                        (api_keys.c.id == id_or_name) | (api_keys.c.name == id_or_name),
                        api_keys.c.revoked_at.is_(None),
                    )
                )
            ).first()
        return _row_to_key(row) if row is not None else None

    async def set_limits(self, key_id: str, limits: KeyLimits) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(**_limit_values(limits)))

    async def set_webhook(self, id_or_name: str, url: str | None, new_secret: str) -> tuple[int, str | None]:
        """Point the active key(s) named `id_or_name` at `url` (None: no webhook). A key that had no
        secret gets `new_secret`; one that had keeps it (its receiver needn't change). Returns the
        keys changed and the secret given out now (None when none was)."""
        async with self.engine.begin() as conn:
            active = (api_keys.c.id == id_or_name) | (api_keys.c.name == id_or_name)
            rows = (
                await conn.execute(
                    sa.select(api_keys.c.id, api_keys.c.webhook_secret).where(active, api_keys.c.revoked_at.is_(None))
                )
            ).fetchall()
            given: str | None = None
            for key_id, secret in rows:
                if url is None:
                    values: dict[str, Any] = {"webhook_url": None}
                elif secret is None:
                    values, given = {"webhook_url": url, "webhook_secret": new_secret}, new_secret
                else:
                    values = {"webhook_url": url}
                await conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(**values))
        return len(rows), given

    async def by_hash(self, key_hash: str) -> ApiKey | None:
        """The active key with this hash. Every authenticated request asks: batched (`BatchedReads`)."""
        return await self._by_hash.get(key_hash)

    async def _read_by_hash(self, hashes: list[str]) -> dict[str, ApiKey]:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(api_keys).where(api_keys.c.key_hash.in_(hashes), api_keys.c.revoked_at.is_(None))
                )
            ).fetchall()
        return {row._mapping["key_hash"]: _row_to_key(row) for row in rows}

    async def list_all(self) -> list[ApiKey]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at))).fetchall()
        return [_row_to_key(r) for r in rows]

    async def revoke(self, id_or_name: str) -> int:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                api_keys.update()
                .where(
                    (api_keys.c.id == id_or_name) | (api_keys.c.name == id_or_name),
                    api_keys.c.revoked_at.is_(None),
                )
                .values(revoked_at=time.time())
            )
        return int(result.rowcount)

    async def active_count(self) -> int:
        async with self.engine.connect() as conn:
            value = await conn.execute(
                sa.select(sa.func.count()).select_from(api_keys).where(api_keys.c.revoked_at.is_(None))
            )
            return int(value.scalar() or 0)


def _limit_values(limits: KeyLimits) -> dict[str, Any]:
    return {
        "rpm": limits.rpm,
        "max_concurrent": limits.max_concurrent,
        "daily_seconds": limits.daily_seconds,
        "priority": limits.priority,
    }


def _row_to_key(row: sa.Row[Any]) -> ApiKey:
    m = row._mapping
    created = to_datetime(m["created_at"])
    assert created is not None  # noqa: S101  (narrows a type; never input validation)
    return ApiKey(
        id=m["id"],
        name=m["name"],
        tenant=m["tenant"],
        prefix=m["prefix"],
        created_at=created,
        revoked_at=to_datetime(m["revoked_at"]),
        limits=KeyLimits(
            rpm=m["rpm"], max_concurrent=m["max_concurrent"], daily_seconds=m["daily_seconds"], priority=m["priority"]
        ),
        webhook_url=m["webhook_url"],
    )
