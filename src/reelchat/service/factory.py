"""One place where configuration picks the implementations behind the service's contracts.

Today each contract has its embedded default (SQLite or PostgreSQL by URL, a local media directory,
worker processes, in-process events, or events over PostgreSQL when the store is PostgreSQL); the
scale-out adds its choices here (`REELCHAT_EXECUTOR`, `REELCHAT_STORAGE_URL`) without touching
`VideoService`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..catalog import load_catalog
from ..domain import TaskEvent
from ..engines.registry import EngineRegistry
from ..media.storage import LocalStorage, Storage
from ..settings import Settings
from ..store.tasks import Store
from .events import EventHub, LocalEventBus
from .executor import Executor, InProcessExecutor
from .videos import VideoService
from .worker_pool import WorkerPool

__all__ = ["build_bus", "build_executor", "build_service", "build_storage"]


def build_storage(settings: Settings) -> Storage:
    return LocalStorage(settings.resolved_media_dir)


def build_executor(settings: Settings) -> Executor:
    """`local` (the default): engines in worker processes; `inprocess`: in the API process's threads."""
    if settings.executor == "inprocess":
        return InProcessExecutor(settings.workers)
    return WorkerPool(settings, settings.workers)


def build_bus(settings: Settings) -> EventHub:
    """PostgreSQL store: events and queued-work notices across replicas (LISTEN/NOTIFY); else in-process."""
    if settings.resolved_database_url.startswith("postgresql"):
        from .pg_events import PgEventBus

        return PgEventBus(settings.resolved_database_url, settings.events_catch_up_s)
    return LocalEventBus(settings.events_catch_up_s)


def build_service(
    settings: Settings, storage: Storage | None = None, on_event: Callable[[TaskEvent], None] | None = None
) -> VideoService:
    """The service on the configured implementations; `storage` when the caller also serves its media;
    `on_event` sees the events of the jobs this process runs (metrics)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    return VideoService(
        settings=settings,
        store=Store(settings.resolved_database_url),
        storage=storage or build_storage(settings),
        catalog=load_catalog(settings.models_file, settings.models_json),
        engines=EngineRegistry(settings.models_dir, device=settings.device, dtype=settings.dtype),
        executor=build_executor(settings),
        bus=build_bus(settings),
        on_event=on_event,
    )
