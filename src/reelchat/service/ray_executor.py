"""`REELCHAT_EXECUTOR=ray`: engines in Ray actors, one per GPU (or per CPU on a cluster without
GPUs), each keeping its model resident, on every machine of the cluster.

The API process keeps the queue of task ids (`TaskQueue`, as the other executors do: the store's
fair order picks the next one, `store.fair_queue`) and hands each id to an idle actor holding the
task's model (`ray_pool.ActorPool`, which starts actors
lazily and keeps them warm). The actor (`ray_actor.EngineActor`) claims the task in the shared
store, runs the engine, writes the media straight to the shared storage and records the outcome;
its events come back as a Ray streaming generator of `worker_messages` (`Progress`, then `Done`)
and are published on this process's bus. Cancel and stop are actor calls that reach the running
job at its next step.

Durability stays the store's: an actor's tasks carry the lease owner `<node id>/ray-<n>`. When the
actor or its node dies, its tasks go back to the queue at once, under the same crash rules as a
worker process (`crashes`), and run on another actor; a stale attempt's writes are fenced out, and
a finished video is never claimed again. When this API process dies, its actors die with it (they
are owned by it) and the lease sweep of any other replica re-runs their tasks.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from ray.exceptions import RayError

from ..catalog import ModelSpec, UpstreamSpec
from ..domain import TaskEvent, TaskStatus
from ..settings import Settings
from .executor import Health, Pick, TaskQueue, store_pick
from .phases import PhaseClock
from .ray_actor import EngineActor
from .ray_connect import connect
from .ray_pool import ActorPool, ActorSlot, ActorStartFailed, Demand, Unhostable
from .runner import TaskRunner
from .webhooks import outcome_event
from .worker_messages import Progress

log = logging.getLogger("reelchat.executor")

STOP_GRACE_S = 8.0  # actors still running a job by then are killed (the next start requeues their tasks)
UNHOSTABLE = "model_unhostable"


class RayExecutor:
    def __init__(self, settings: Settings, actor_class: type[Any] = EngineActor) -> None:
        self.settings = settings
        self._actor_class = ray.remote(actor_class) if not hasattr(actor_class, "remote") else actor_class
        self._queue = TaskQueue(1)  # one dispatcher, in the store's fair order; concurrency is the actors'
        # handed to an actor, not yet finished: the dispatcher returns at once, so these stay "picked"
        # (skipped, and counted as served) until the actor's job ends, not only until dispatch returns
        self._handed: set[str] = set()
        self._runner: TaskRunner | None = None
        self._pool: ActorPool | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._owns_ray = False
        self._has_gpus = False
        self._stopping = False

    # ---- Executor ------------------------------------------------------------------------------

    async def start(self, runner: TaskRunner) -> None:
        """Join the cluster (the CLI already has, with its checks); actors start with the first jobs."""
        self._owns_ray = connect(self.settings)  # on the loop's thread on purpose: see ray_connect
        resources: dict[str, float] = await asyncio.to_thread(ray.cluster_resources)
        self._has_gpus = resources.get("GPU", 0.0) > 0
        self._runner = runner
        self._pool = ActorPool(self._make_actor, self.settings.resolved_node_id)
        sizes = ", ".join(f"{v:g} {k}" for k, v in sorted(resources.items()) if k in ("CPU", "GPU"))
        log.info("joined the Ray cluster (%s); actors start with the first jobs", sizes)
        self._queue.start(self._dispatch, self._pick(store_pick(runner)))

    def submit(self, task_id: str, not_before: float | None = None) -> None:
        self._queue.submit(task_id, not_before)

    def cancel(self, task_id: str) -> None:
        for slot in self._pool.slots() if self._pool else ():
            if slot.current == task_id:
                slot.handle.cancel.remote(task_id)

    def pending(self) -> int:
        return self._queue.pending()

    def health(self) -> Health:
        return "running" if self._pool is not None else "loading"

    async def stop(self) -> None:
        self._stopping = True
        await self._queue.stop()  # no more dispatching (a dispatch waiting for an actor ends here)
        pool = self._pool
        if pool is not None:
            for slot in pool.slots():
                if slot.current is not None:
                    slot.handle.stop.remote()  # the engine stops at its next step; the task is released
            if self._jobs:
                _, late = await asyncio.wait(self._jobs, timeout=STOP_GRACE_S)
                for job in late:
                    job.cancel()
                await asyncio.gather(*self._jobs, return_exceptions=True)
            await pool.close()
        if self._owns_ray:
            ray.shutdown()

    def _pick(self, fair: Pick) -> Pick:
        """The store's fair pick, also skipping the tasks handed to actors that have not claimed them yet."""

        async def pick(picked: frozenset[str]) -> str | None:
            return await fair(picked | self._handed)

        return pick

    def _started(self) -> tuple[TaskRunner, ActorPool]:
        if self._runner is None or self._pool is None:
            raise RuntimeError("the Ray executor is used before start()")
        return self._runner, self._pool

    # ---- placement -----------------------------------------------------------------------------

    def placement(self, spec: ModelSpec) -> tuple[str, Demand]:
        """The actor key of `spec` (entries naming the same pipelines share actors) and what one needs."""
        if isinstance(spec, UpstreamSpec):
            return f"upstream:{spec.name}", {"CPU": 1.0}
        gpus = spec.gpus if spec.gpus is not None else (1 if self._has_gpus else 0)
        demand: Demand = {"GPU": float(gpus)} if gpus else {"CPU": 1.0}
        return f"{spec.pipeline}|{spec.i2v_pipeline or ''}|{gpus}gpu", demand

    def _make_actor(self, key: str, owner: str, demand: Demand) -> Any:
        runner, _ = self._started()
        models = [name for name, spec in runner.catalog.items() if self.placement(spec)[0] == key]
        gpus = demand.get("GPU", 0.0)
        settings = self.settings.model_copy(
            # Ray hands the actor its GPUs as CUDA_VISIBLE_DEVICES: "cuda" is the first of them
            update={"node_id": owner, "device": "cuda" if gpus else "cpu"}
        )
        options: dict[str, Any] = {
            "num_gpus": gpus,
            "num_cpus": demand.get("CPU", 0.0),
            "resources": {k: v for k, v in demand.items() if k not in ("CPU", "GPU")},
            "max_restarts": 0,  # reelchat re-runs the task elsewhere; Ray must not replay it
            "max_task_retries": 0,
        }
        return self._actor_class.options(**options).remote(settings, models)

    # ---- dispatch ------------------------------------------------------------------------------

    async def _dispatch(self, task_id: str) -> None:
        """Hand `task_id` to an idle actor of its model (waiting for one); the job then runs apart."""
        runner, pool = self._started()
        task = await runner.store.get_task(task_id)
        if task is None or task.deleted or task.status is not TaskStatus.QUEUED:
            return  # finished, deleted, or running elsewhere: nothing to hand out
        spec = runner.catalog.get(task.model)
        if spec is None:
            await self._fail(task_id, "model_not_found", f"The model '{task.model}' is no longer in the catalog.")
            return
        key, demand = self.placement(spec)
        try:
            slot = await pool.acquire(key, demand)
        except Unhostable as e:
            await self._fail(
                task_id,
                UNHOSTABLE,
                f"The model '{spec.name}' cannot run on this Ray cluster: {e}. "
                "Lower its `gpus` in the catalog, or add a machine that has that many.",
            )
            return
        except ActorStartFailed as e:
            await self._fail(task_id, "executor_error", f"No Ray actor could start for the model '{spec.name}': {e}")
            return
        slot.current = task_id
        self._handed.add(task_id)
        job = asyncio.create_task(self._job(slot, task_id), name=f"reelchat-ray-job-{task_id}")
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        job.add_done_callback(lambda _: self._handed.discard(task_id))

    async def _job(self, slot: ActorSlot, task_id: str) -> None:
        runner, pool = self._started()
        try:
            if not slot.loaded:  # the first job of a new actor waits for its model to load
                await slot.handle.load.remote()
                slot.loaded = True
            stream = slot.handle.run.options(num_returns="streaming").remote(task_id)
            async for ref in stream:
                message = await ref
                if isinstance(message, Progress):
                    runner.bus.publish(message.event)
        except RayError as e:  # the actor or its node died (or the actor broke): its tasks run elsewhere
            log.warning("actor %s (task %s) failed: %s", slot.owner, task_id, str(e).strip().splitlines()[0])
            pool.discard(slot)
            if not self._stopping:
                await self._requeue(slot.owner)
            return
        except asyncio.CancelledError:  # stopping, past the grace period: the actor goes
            pool.discard(slot)
            raise
        pool.release(slot)

    async def _requeue(self, owner: str) -> None:
        """A dead actor's tasks go back to the queue now (no lease to wait out), and to us."""
        runner, _ = self._started()
        try:
            await runner.store.requeue_interrupted(owner=owner, backoff=runner.crashes.backoff)
            for task_id, not_before in await runner.store.queued():
                self.submit(task_id, not_before)
        except Exception:  # the lease sweep requeues them later all the same
            log.warning("could not requeue the tasks of actor %s", owner, exc_info=True)

    async def _fail(self, task_id: str, code: str, message: str) -> None:
        """Fail a task no actor can run (it is claimed first, so only one replica fails it)."""
        runner, _ = self._started()
        task = await runner.store.claim(task_id, owner=f"{self.settings.resolved_node_id}/ray")
        if task is None:
            return
        log.warning("task %s failed (%s): %s", task_id, code, message)
        failed = await runner.store.fail(
            task_id,
            task.attempt,
            code=code,
            message=message,
            phases=PhaseClock.claimed(task).done(),  # its time in the queue: it never reached an engine
            outbox=outcome_event(task, TaskStatus.FAILED, server=self.settings.webhook_url is not None),
        )
        if failed:
            runner.bus.publish(TaskEvent(task_id, TaskStatus.FAILED, task.progress, code, message))


__all__ = ["RayExecutor"]
