"""A subscriber's mailbox: the events of one followed task, for one reader.

Thousands of open replies each hold one, so it is small: a list and, while its reader waits, one
future. (`asyncio.Queue` carries a lock-free `Event`, two deques of waiters and a task counter: about
3 KB a stream, for features a single reader never uses; even a deque starts with a 600-byte block.)
Unbounded, like the queue it replaces: a task's events are few, and a reader drains them as they come,
so taking the first of a short list is as cheap as a deque's.
"""

from __future__ import annotations

import asyncio
from typing import Generic, Protocol, TypeVar

__all__ = ["Inbox", "Mailbox"]

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


class Inbox(Protocol[T_contra]):
    """What a sender needs of a mailbox (an `asyncio.Queue` is one too)."""

    def put_nowait(self, item: T_contra) -> None: ...


class Mailbox(Generic[T]):
    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[T] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: T) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> T:
        if not self._items:
            raise asyncio.QueueEmpty
        return self._items.pop(0)

    async def get(self) -> T:
        """The next item, waiting for one; a cancelled wait takes nothing (`wait_for` is safe)."""
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)
