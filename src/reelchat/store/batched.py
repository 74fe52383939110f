"""Batched single-row reads: one query in flight at a time, and the reads that arrive while it runs
share the next one.

Some rows are read by every request (the caller's key, the conversation's idempotency record). One
query each means a burst of 100 requests queues 100 queries on a pool of a few connections, each a
round trip through a database thread; batched, the burst makes a few. A lone read is not delayed: with
nothing in flight its query starts at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["BatchedReads"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BatchedReads(Generic[K, V]):
    def __init__(self, read_many: Callable[[list[K]], Awaitable[dict[K, V]]], *, batch: int = 200) -> None:
        self._read_many = read_many  # the rows found, by key (keys not found are left out)
        self._batch = batch
        self._waiting: list[tuple[K, asyncio.Future[V | None]]] = []
        self._reader: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[V | None] = loop.create_future()
        self._waiting.append((key, waiter))
        if self._reader is None or self._reader.done():
            self._reader = loop.create_task(self._read_waiting(), name="reelchat-batched-reads")
        return await waiter  # a caller that is cancelled cancels its waiter: the reader skips it

    async def _read_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self._batch], self._waiting[self._batch :]
            try:
                found = await self._read_many(sorted({key for key, waiter in batch if not waiter.done()}, key=repr))
            except BaseException as e:  # each waiter gets the store's error (or hears the reader was stopped)
                stopped = not isinstance(e, Exception)
                if stopped:  # nobody would read for the ones still waiting either
                    batch, self._waiting = batch + self._waiting, []
                for _, waiter in batch:
                    if not waiter.done():
                        waiter.set_exception(RuntimeError("read stopped") if stopped else e)
                if stopped:
                    raise
                continue
            for key, waiter in batch:
                if not waiter.done():
                    waiter.set_result(found.get(key))
