"""Warm Ray actors by model: which actor takes the next job, when a new one starts, which one gives way.

An actor holds one model resident (its *key*: the pipelines it loaded, and the GPUs it asked for).
A job goes to an idle actor of its key. When there is none, the pool asks Ray for one more, one at
a time per key: Ray places it where the resources are (or queues it until some free up, which is
how a cluster without room waits). If it stays unplaced while an actor of another model sits idle,
that idle actor is killed to make room (least recently used first): one model's warm actors never
starve another model of the GPUs.

A demand no node of the cluster could ever meet (more GPUs than any node has) is refused up front
(`Unhostable`), instead of queueing forever.

Ray does the placing and the queueing; this module only decides how many actors to ask for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray

log = logging.getLogger("reelchat.executor")

MAX_FAILED_STARTS = 3
PLACEMENT_WAIT_S = 2.0  # an actor still unplaced after this makes an idle actor of another model give way

Demand = dict[str, float]  # Ray resources one actor needs: {"GPU": 1} or {"CPU": 1}


class Unhostable(Exception):
    """No node of the cluster has the resources one actor of this model needs."""


class ActorStartFailed(Exception):
    """Actors of this model died before they started, MAX_FAILED_STARTS times in a row (reelchat
    missing on a node, a broken environment): the reason of the last one."""


@dataclass(eq=False)
class ActorSlot:
    key: str
    owner: str  # the lease owner of the tasks it runs (`<node id>/ray-<n>`)
    handle: Any  # ray.actor.ActorHandle (untyped in Ray)
    placed: asyncio.Future[str]  # the actor's process is up (its resources are held): its node id
    node: str | None = None  # the Ray node it was placed on
    current: str | None = None  # the task it runs
    loaded: bool = False  # its model is loaded (the executor's business)
    last_used: float = field(default_factory=time.monotonic)


MakeActor = Callable[[str, str, Demand], Any]  # (key, owner, demand) -> an actor handle, just created


class ActorPool:
    def __init__(self, make: MakeActor, owner_prefix: str, *, placement_wait_s: float = PLACEMENT_WAIT_S) -> None:
        self._make = make
        self._owner_prefix = owner_prefix
        self._placement_wait_s = placement_wait_s
        self._idle: dict[str, list[ActorSlot]] = defaultdict(list)
        self._placing: dict[str, ActorSlot] = {}
        self._slots: set[ActorSlot] = set()
        self._changed = asyncio.Event()
        self._count = 0
        self._failed_starts: dict[str, tuple[int, str]] = {}

    def slots(self) -> list[ActorSlot]:
        return list(self._slots)

    def idle_count(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    async def acquire(self, key: str, demand: Demand) -> ActorSlot:
        """An idle actor holding `key`, started if need be; it is the caller's until `release`/`discard`."""
        while True:
            idle = self._idle[key]
            if idle:
                slot = idle.pop()
                slot.last_used = time.monotonic()
                return slot
            failed, why = self._failed_starts.get(key, (0, ""))
            if failed >= MAX_FAILED_STARTS:
                self._failed_starts.pop(key)  # the next job tries again
                raise ActorStartFailed(why)
            if key not in self._placing:
                reason = await infeasible(demand)
                if reason is not None:
                    raise Unhostable(reason)
                self._start(key, demand)
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), self._placement_wait_s)
            except TimeoutError:
                await self._make_room(key, demand)

    def release(self, slot: ActorSlot) -> None:
        """The job is done: the actor is idle and warm."""
        slot.current = None
        if slot in self._slots:
            slot.last_used = time.monotonic()
            self._idle[slot.key].append(slot)
            self._signal()

    def discard(self, slot: ActorSlot) -> None:
        """The actor died (or must go): forget it and make sure it is gone."""
        self._forget(slot)
        with contextlib.suppress(Exception):
            ray.kill(slot.handle, no_restart=True)

    async def close(self) -> None:
        for slot in list(self._slots):
            self.discard(slot)

    # ---- internals ------------------------------------------------------------------------------

    def _signal(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _forget(self, slot: ActorSlot) -> None:
        self._slots.discard(slot)
        if self._placing.get(slot.key) is slot:
            del self._placing[slot.key]
        with contextlib.suppress(ValueError):
            self._idle[slot.key].remove(slot)
        if not slot.placed.done():
            slot.placed.cancel()
        self._signal()

    def _start(self, key: str, demand: Demand) -> None:
        self._count += 1
        owner = f"{self._owner_prefix}/ray-{self._count}"
        handle = self._make(key, owner, demand)
        placed: asyncio.Future[str] = asyncio.ensure_future(_ping(handle))
        slot = ActorSlot(key, owner, handle, placed)
        self._slots.add(slot)
        self._placing[key] = slot
        placed.add_done_callback(lambda _: self._on_placed(slot))
        log.info("starting an actor for %s (%s) as %s", key, _describe(demand), owner)

    def _on_placed(self, slot: ActorSlot) -> None:
        if self._placing.get(slot.key) is slot:
            del self._placing[slot.key]
        if slot.placed.cancelled() or slot not in self._slots:
            return
        error = slot.placed.exception()
        if error is not None:
            why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            log.warning("actor %s died before it started: %s", slot.owner, error)
            failed, _ = self._failed_starts.get(slot.key, (0, ""))
            self._failed_starts[slot.key] = (failed + 1, why)
            self.discard(slot)
            return
        self._failed_starts.pop(slot.key, None)
        slot.node = slot.placed.result()
        log.info("actor %s runs on node %s", slot.owner, slot.node)
        self.release(slot)

    async def _make_room(self, key: str, demand: Demand) -> None:
        """Our actor for `key` waits for resources: an idle actor of another model gives way (or,
        when the cluster lost the nodes that could host it, the wait ends as `Unhostable`)."""
        placing = self._placing.get(key)
        if placing is None:
            return
        reason = await infeasible(demand)
        if reason is not None:
            self.discard(placing)
            raise Unhostable(reason)
        others = [s for k, idle in self._idle.items() if k != key for s in idle]
        if others:
            victim = min(others, key=lambda s: s.last_used)
            log.info("actor %s (%s) gives way to a new actor for %s", victim.owner, victim.key, key)
            self.discard(victim)


async def _ping(handle: Any) -> str:
    return str(await handle.ping.remote())


def _describe(demand: Demand) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in demand.items()) or "no resources"


async def infeasible(demand: Demand) -> str | None:
    """Why no alive node could ever host an actor with `demand` (None: some node could)."""
    nodes: list[dict[str, Any]] = await asyncio.to_thread(ray.nodes)
    totals = [node.get("Resources", {}) for node in nodes if node.get("Alive")]
    if any(all(res.get(k, 0.0) >= v for k, v in demand.items()) for res in totals):
        return None
    largest = {k: max((res.get(k, 0.0) for res in totals), default=0.0) for k in demand}
    return (
        f"it needs {_describe(demand)} on one machine, and no node of the Ray cluster has that much "
        f"(the largest has {_describe(largest)})"
    )


__all__ = ["ActorPool", "ActorSlot", "ActorStartFailed", "Demand", "MakeActor", "Unhostable", "infeasible"]
