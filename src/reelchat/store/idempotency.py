"""Idempotency records: (tenant, key) -> the request's hash and the task it made.

A record is written right before its task, so a retry that finds it either finds the task or (the
process died between the two writes, or the task's insert failed) a record to replace. Records older
than the caller's time to live count as absent and are replaced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .batched import BatchedReads
from .schema import idempotency

__all__ = ["IdempotencyRecord", "IdempotencyStore"]

log = logging.getLogger("reelchat.store")


@dataclass(frozen=True)
class IdempotencyRecord:
    request_hash: str
    task_id: str
    created_at: float


SWEEP_EVERY_S = 60.0  # expired records are deleted at most this often (not by every claim: a write each)


# Every chat request claims a key: its statements are built once (building them per call, with
# SQLAlchemy's operators, cost about as much as running them).
_MINE = (idempotency.c.tenant == sa.bindparam("b_tenant")) & (idempotency.c.key == sa.bindparam("b_key"))
_NEW_VALUES: dict[str, sa.BindParameter[Any]] = {
    "request_hash": sa.bindparam("b_hash"),
    "task_id": sa.bindparam("b_task"),
    "created_at": sa.bindparam("b_now"),
}
_STALE = idempotency.c.created_at <= sa.bindparam("b_newer")
_TAKE_STALE = idempotency.update().where(_MINE, _STALE).values(_NEW_VALUES)
_TAKE_STALE_OR = (
    idempotency.update().where(_MINE, _STALE | (idempotency.c.task_id == sa.bindparam("b_replace"))).values(_NEW_VALUES)
)
_NEW_ROW = {"tenant": sa.bindparam("b_tenant"), "key": sa.bindparam("b_key"), **_NEW_VALUES}
_INSERT_NEW = {  # by dialect: a key already held is left as it is (no error that would end the transaction)
    "sqlite": sqlite.insert(idempotency).values(_NEW_ROW).on_conflict_do_nothing(),
    "postgresql": postgresql.insert(idempotency).values(_NEW_ROW).on_conflict_do_nothing(),
}


_GROUP_ROWS = 500  # new records per statement (5 values each: well under SQLite's 32,766 variables)


def _insert_new_rows(dialect: str, rows: list[dict[str, Any]]) -> sa.Executable:
    """Every row whose key nobody holds, returning the task ids of those written."""
    if dialect == "postgresql":
        return postgresql.insert(idempotency).values(rows).on_conflict_do_nothing().returning(idempotency.c.task_id)
    return sqlite.insert(idempotency).values(rows).on_conflict_do_nothing().returning(idempotency.c.task_id)


class IdempotencyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._swept_at = float("-inf")
        self._reads: BatchedReads[tuple[str, str], IdempotencyRecord] = BatchedReads(self._read)
        self._new: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []  # new records waiting for the writer
        self._new_writer: asyncio.Task[None] | None = None

    async def get(self, tenant: str, key: str, *, newer_than: float) -> IdempotencyRecord | None:
        """The live record for the key (None: none newer than `newer_than`). Every chat request asks
        (a re-sent conversation follows its video), so the reads are batched (`BatchedReads`)."""
        record = await self._reads.get((tenant, key))
        return record if record is not None and record.created_at > newer_than else None

    async def _read(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], IdempotencyRecord]:
        if not keys:
            return {}
        columns = (idempotency.c.request_hash, idempotency.c.task_id, idempotency.c.created_at)
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(idempotency.c.tenant, idempotency.c.key, *columns).where(
                    sa.tuple_(idempotency.c.tenant, idempotency.c.key).in_(keys)
                )
            )
            return {(tenant, key): IdempotencyRecord(*rest) for tenant, key, *rest in rows}

    async def claim(
        self, tenant: str, key: str, request_hash: str, task_id: str, *, newer_than: float, replace: str | None = None
    ) -> IdempotencyRecord | None:
        """Record `task_id` for the key; None when recorded, else the live record that holds the key.
        An expired record is replaced, and so is one pointing at task `replace` (a finished one)."""
        if replace is None and await self._claim_new(tenant, key, request_hash, task_id, newer_than):
            return None  # the usual case: a key nobody holds, written with the others of its moment
        for _ in range(3):  # a conflicting record that expires or goes between our two statements: try again
            if await self._claim(tenant, key, request_hash, task_id, time.time(), newer_than, replace):
                return None
            found = await self.get(tenant, key, newer_than=newer_than)
            if found is not None:
                return found
        raise RuntimeError(f"could not record idempotency key {key!r}")

    async def _claim(
        self, tenant: str, key: str, request_hash: str, task_id: str, now: float, newer_than: float, replace: str | None
    ) -> bool:
        """Whether the key is now ours: a new record (the usual case: one statement), or one that took
        the place of an expired record (or of task `replace`'s)."""
        params = {"b_tenant": tenant, "b_key": key, "b_hash": request_hash, "b_task": task_id, "b_now": now}
        async with self.engine.begin() as conn:
            claimed = (await conn.execute(_INSERT_NEW[self.engine.dialect.name], params)).rowcount == 1
            if not claimed:
                if replace is None:
                    taken = await conn.execute(_TAKE_STALE, {**params, "b_newer": newer_than})
                else:
                    taken = await conn.execute(_TAKE_STALE_OR, {**params, "b_newer": newer_than, "b_replace": replace})
                claimed = taken.rowcount == 1
            await self._sweep_if_due(conn, now, newer_than)
        return claimed

    async def _claim_new(self, tenant: str, key: str, request_hash: str, task_id: str, newer_than: float) -> bool:
        """Whether a new record for the key is ours. The records of concurrent claims are written in one
        statement and one transaction (group commit): a chat burst's claims were a transaction each,
        and each a dozen hops between the event loop and the database's thread."""
        row = {"tenant": tenant, "key": key, "request_hash": request_hash, "task_id": task_id, "created_at": 0.0}
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._new.append(({**row, "newer_than": newer_than}, done))
        if self._new_writer is None or self._new_writer.done():
            self._new_writer = asyncio.create_task(self._write_new())
        return await asyncio.shield(done)  # a caller that goes away doesn't abort the others' commit

    async def _write_new(self) -> None:
        while self._new:
            batch, self._new = self._new[:_GROUP_ROWS], self._new[_GROUP_ROWS:]
            now = time.time()
            # in key order: two replicas' batches that share keys never wait on each other's rows
            rows = sorted(
                ({**{k: v for k, v in row.items() if k != "newer_than"}, "created_at": now} for row, _ in batch),
                key=lambda row: (row["tenant"], row["key"]),
            )
            ours: set[str] = set()
            try:
                async with self.engine.begin() as conn:
                    # a key already held (or twice in the batch) is left to its holder; ours come back
                    written = await conn.execute(_insert_new_rows(self.engine.dialect.name, rows))
                    ours = {task_id for (task_id,) in written}
                    await self._sweep_if_due(conn, now, batch[0][0]["newer_than"])
            except Exception as e:  # each claim then goes its own way, and meets the error itself if it stays
                log.warning("claiming %d idempotency keys together failed (%s): claiming one by one", len(batch), e)
                ours = set()
            except BaseException:  # cancelled (shutdown): nobody may wait forever on this batch or the rest
                for _, done in batch + self._new:
                    if not done.done():
                        done.set_result(False)
                self._new = []
                raise
            finally:
                for row, done in batch:
                    if not done.done():
                        done.set_result(row["task_id"] in ours)

    async def _sweep_if_due(self, conn: AsyncConnection, now: float, newer_than: float) -> None:
        """Expired records go as new ones come, once a minute at most: the table holds about one time
        to live of keys."""
        if now - self._swept_at >= SWEEP_EVERY_S:
            self._swept_at = now
            await conn.execute(idempotency.delete().where(idempotency.c.created_at <= newer_than))

    async def forget(self, tenant: str, key: str, task_id: str) -> None:
        """The task this record points at was never stored: the key is free again."""
        async with self.engine.begin() as conn:
            await conn.execute(
                idempotency.delete().where(
                    idempotency.c.tenant == tenant, idempotency.c.key == key, idempotency.c.task_id == task_id
                )
            )
