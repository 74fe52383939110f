"""`BatchedReads`: a burst of reads shares a few queries, each caller gets its own row, errors reach
every caller of the failed query, and a caller that gives up takes nobody else down."""

from __future__ import annotations

import asyncio

import pytest

from reelchat.store.batched import BatchedReads


class Table:
    def __init__(self, rows: dict[str, int], delay: float = 0.01) -> None:
        self.rows = rows
        self.delay = delay
        self.queries: list[list[str]] = []
        self.fail = False

    async def read(self, keys: list[str]) -> dict[str, int]:
        self.queries.append(keys)
        await asyncio.sleep(self.delay)
        if self.fail:
            raise OSError("the database went away")
        return {k: self.rows[k] for k in keys if k in self.rows}


async def test_a_burst_shares_queries_and_each_gets_its_own_row() -> None:
    table = Table({f"k{i}": i for i in range(0, 300, 3)})
    reads = BatchedReads(table.read, batch=200)
    found = await asyncio.gather(*(reads.get(f"k{i}") for i in range(300)))
    assert found == [i if i % 3 == 0 else None for i in range(300)]
    # reads that arrive before the reader runs share its queries, 200 keys at most each
    assert [len(q) for q in table.queries] == [200, 100]


async def test_a_lone_read_is_not_held_back() -> None:
    table = Table({"a": 1}, delay=0.0)
    reads = BatchedReads(table.read)
    assert await asyncio.wait_for(reads.get("a"), 1.0) == 1
    assert await reads.get("b") is None
    assert table.queries == [["a"], ["b"]]


async def test_an_error_reaches_every_caller_of_that_query_and_the_next_query_works() -> None:
    table = Table({"a": 1})
    reads = BatchedReads(table.read)
    table.fail = True
    results = await asyncio.gather(*(reads.get(k) for k in ("a", "b", "c")), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    table.fail = False
    assert await reads.get("a") == 1


async def test_a_caller_that_gives_up_takes_nobody_else_down() -> None:
    table = Table({"a": 1, "b": 2}, delay=0.05)
    reads = BatchedReads(table.read)
    first = asyncio.create_task(reads.get("a"))
    await asyncio.sleep(0)  # its query is in flight
    quitter = asyncio.create_task(reads.get("a"))
    stayer = asyncio.create_task(reads.get("b"))
    await asyncio.sleep(0)
    quitter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await quitter
    assert await first == 1
    assert await stayer == 2
