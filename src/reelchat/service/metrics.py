"""The server's Prometheus series (`/metrics`), and what feeds the ones that come from jobs.

Two kinds of series:
- This process's own: HTTP requests and errors, open streams, webhook delivery attempts, and the
  jobs this server (its worker processes, its Ray actors) finished: their phase durations and
  busy time. Sum them across replicas.
- The shared database's, read at each scrape: unfinished tasks by model and state, the webhook
  outbox. Every replica reports the same figures: take `max` across replicas, not `sum`.

Jobs run in worker processes (or Ray actors), whose memory this process can't read. The runner
there writes each run's phase durations into the task row with its outcome (one UPDATE it makes
anyway), and its terminal event comes back to this process's bus; `JobObserver` then reads the row
and observes it. That works for every executor and any number of replicas (each observes the jobs
its own executor ran: the events it publishes, not those it hears from other replicas), and needs
no shared files (Prometheus' multiprocess mode would, and would not reach a Ray actor on another machine).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, suppress

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..domain import TaskEvent, TaskStatus
from ..store.tasks import Store
from .events import EventBus
from .mailbox import Mailbox

log = logging.getLogger("reelchat.metrics")

# seconds: a demo clip takes well under one, a real model's minutes to an hour
PHASE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)


class Metrics:
    """One registry per app (not the global one: several apps in one test process stay apart)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "reelchat_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "code"],
            registry=r,
        )
        self.http_errors = Counter(
            "reelchat_http_errors",
            "HTTP error answers (status >= 400), by route template, status and OpenAI error code",
            ["route", "code", "error"],
            registry=r,
        )
        self.tasks = Gauge(
            "reelchat_tasks",
            "Unfinished tasks by model and state (the shared database: same on every replica)",
            ["model", "state"],
            registry=r,
        )
        self.executor_pending = Gauge(
            "reelchat_executor_pending", "Task ids waiting in this server's executor for a free worker", registry=r
        )
        self.phase_seconds = Histogram(
            "reelchat_job_phase_seconds",
            "Seconds a job spent per phase (queued, denoise, encode, upload), jobs this server ran",
            ["model", "phase"],
            buckets=PHASE_BUCKETS,
            registry=r,
        )
        self.jobs = Counter(
            "reelchat_jobs_finished", "Jobs this server finished, by outcome", ["model", "status"], registry=r
        )
        self.busy_seconds = Counter(
            "reelchat_device_busy_seconds",
            "Seconds this server's workers spent running jobs (engine, encode, upload); "
            "rate() / reelchat_workers is the busy ratio over any window",
            registry=r,
        )
        self.workers = Gauge(
            "reelchat_workers", "Job slots (worker processes or in-process workers) of this server", registry=r
        )
        self.busy_ratio = Gauge(
            "reelchat_device_busy_ratio", "Share of this server's job slots running a job at scrape time", registry=r
        )
        self.open_streams = Gauge(
            "reelchat_open_streams",
            "Responses held open: chat replies, and /source/{id}/events streams",
            ["kind"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "reelchat_webhook_deliveries",
            "Webhook delivery attempts by this server: delivered, retry (failed, will retry) or failed (given up)",
            ["event", "outcome"],
            registry=r,
        )
        self.webhook_outbox = Gauge(
            "reelchat_webhook_outbox", "Webhook deliveries by status (the shared database)", ["status"], registry=r
        )

    def on_webhook(self, event_type: str, outcome: str) -> None:
        self.webhook_deliveries.labels(event_type, outcome).inc()

    async def refresh(self, store: Store, node: str, slots: int, pending: int) -> None:
        """The series read from the database, just before a scrape renders them."""
        depth = await store.counts.depth()
        self.tasks.clear()
        for state in (TaskStatus.QUEUED, TaskStatus.IN_PROGRESS):  # zeros too, for every model seen
            for model in {m for m, _ in depth}:
                self.tasks.labels(model, state.value).set(depth.get((model, state.value), 0))
        self.executor_pending.set(pending)
        self.workers.set(slots)
        self.busy_ratio.set(min(1.0, await store.counts.running_on(node) / slots) if slots else 0.0)
        outbox = await store.webhooks.counts()
        for status in ("pending", "delivered", "failed"):
            self.webhook_outbox.labels(status).set(outbox.get(status, 0))


class PublishTap:
    """The runner's bus, seen by a hook: every event this process publishes (its runner's, and those its
    workers and actors send back) passes through `on_event` on its way."""

    def __init__(self, bus: EventBus, on_event: Callable[[TaskEvent], None]) -> None:
        self._bus = bus
        self._on_event = on_event

    def publish(self, event: TaskEvent) -> None:
        self._bus.publish(event)
        self._on_event(event)

    def subscribe(self, task_id: str) -> AbstractAsyncContextManager[Mailbox[TaskEvent]]:
        return self._bus.subscribe(task_id)


class JobObserver:
    """Observes each job this process's executor finished, from its row (phases written by the runner)."""

    def __init__(self, metrics: Metrics, *, also: Callable[[], None] | None = None) -> None:
        self.metrics = metrics
        self.store: Store | None = None
        self._also = also  # e.g. wake the webhook sender: the outcome just wrote its deliveries
        self._finished: asyncio.Queue[str] = asyncio.Queue()
        self._loop: asyncio.Task[None] | None = None

    def on_event(self, event: TaskEvent) -> None:
        if event.status in (TaskStatus.COMPLETED, TaskStatus.FAILED):
            self._finished.put_nowait(event.task_id)
            if self._also is not None:
                self._also()

    def start(self, store: Store) -> None:
        self.store = store
        self._loop = asyncio.create_task(self._run(), name="reelchat-job-observer")

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with suppress(asyncio.CancelledError):
                await self._loop

    async def _run(self) -> None:
        while True:
            task_id = await self._finished.get()
            try:
                await self.observe(task_id)
            except Exception:  # metrics are advisory: a failed read never stops the loop
                log.warning("could not observe the timings of %s", task_id, exc_info=True)

    async def observe(self, task_id: str) -> None:
        if self.store is None:
            return
        task = await self.store.get_task(task_id)
        if task is None or not task.status.finished:
            return
        self.metrics.jobs.labels(task.model, task.status.value).inc()
        for phase, seconds in task.phases.items():
            self.metrics.phase_seconds.labels(task.model, phase).observe(seconds)
        self.metrics.busy_seconds.inc(sum(s for p, s in task.phases.items() if p != "queued"))
