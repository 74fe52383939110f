"""Characters in the store: a tenant's named reference frames (the frames themselves are media)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ..domain import Character
from .schema import characters
from .timestamps import to_datetime

__all__ = ["CharacterStore"]


class CharacterStore:
    """The `characters` table, over the task store's engine (`Store.characters`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, character: Character) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                characters.insert().values(
                    id=character.id,
                    tenant=character.tenant,
                    name=character.name,
                    frame_name=character.frame_name,
                    source_video_id=character.source_video_id,
                    created_at=character.created_at.timestamp(),
                )
            )

    async def get(self, tenant: str, character_id: str) -> Character | None:
        """The tenant's character with this id; None for another tenant's, as for none at all."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(characters).where(characters.c.id == character_id, characters.c.tenant == tenant)
                )
            ).first()
        return _row_to_character(row) if row is not None else None

    async def of_tenant(self, tenant: str, limit: int) -> list[Character]:
        """The tenant's most recent characters, newest first."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(characters)
                    .where(characters.c.tenant == tenant)
                    .order_by(characters.c.created_at.desc(), characters.c.id.desc())
                    .limit(limit)
                )
            ).fetchall()
        return [_row_to_character(r) for r in rows]


def _row_to_character(row: sa.Row[Any]) -> Character:
    m = row._mapping
    created = to_datetime(m["created_at"])
    assert created is not None  # noqa: S101  (narrows a type; never input validation)
    return Character(
        id=m["id"],
        tenant=m["tenant"],
        name=m["name"],
        frame_name=m["frame_name"],
        created_at=created,
        source_video_id=m["source_video_id"],
    )
