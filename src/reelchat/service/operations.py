"""What an API process runs to be operated: its metrics (fed by the jobs its executor finishes) and
the webhook delivery loop. Built before the service (the service's runner reports to `on_event`),
started once the service has opened (migrated) its store, closed after it."""

from __future__ import annotations

from prometheus_client import generate_latest

from ..domain import TaskEvent
from ..settings import Settings
from .metrics import JobObserver, Metrics
from .videos import VideoService
from .webhooks import WebhookSender


class Operations:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.sender = WebhookSender(settings, on_outcome=self.metrics.on_webhook)
        # an outcome this process's executor recorded has just written its webhook rows: send them now
        self.observer = JobObserver(self.metrics, also=self.sender.poke)
        self._service: VideoService | None = None

    def on_event(self, event: TaskEvent) -> None:
        """Every event this process's runner (or its workers, its actors) publishes."""
        self.observer.on_event(event)

    async def start(self, service: VideoService) -> None:
        self._service = service
        self.observer.start(service.store)
        await self.sender.start(service.store)

    async def close(self) -> None:
        await self.sender.close()
        await self.observer.close()

    async def scrape(self) -> bytes:
        """The Prometheus text of this process, the database's series refreshed first."""
        if self._service is not None:
            service = self._service
            await self.metrics.refresh(
                service.store, self.settings.resolved_node_id, self.settings.workers, service.executor.pending()
            )
        return generate_latest(self.metrics.registry)
