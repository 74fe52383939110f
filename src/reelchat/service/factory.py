"""One place where configuration picks the implementations behind the service's contracts.

Today each contract has its embedded default (SQLite or PostgreSQL by URL, a local media directory,
worker processes, in-process events); the scale-out adds its choices here (`REELCHAT_EXECUTOR=ray`,
`REELCHAT_STORAGE_URL`, events over PostgreSQL) without touching `VideoService`.
"""

from __future__ import annotations

from ..catalog import load_catalog
from ..engines.registry import EngineRegistry
from ..media.storage import LocalStorage, Storage
from ..settings import Settings
from ..store.tasks import Store
from .events import EventBus, InProcessEventBus
from .executor import Executor, InProcessExecutor
from .ray_connect import require_ray
from .videos import VideoService
from .worker_pool import WorkerPool

__all__ = ["build_bus", "build_executor", "build_service", "build_storage"]


def build_storage(settings: Settings) -> Storage:
    return LocalStorage(settings.resolved_media_dir)


def build_executor(settings: Settings) -> Executor:
    """`local` (the default): engines in worker processes; `inprocess`: in the API process's threads;
    `ray`: in actors on a Ray cluster (RayUnavailable when Ray is not installed)."""
    if settings.executor == "inprocess":
        return InProcessExecutor(settings.workers)
    if settings.executor == "ray":
        require_ray()
        from .ray_executor import RayExecutor  # imports Ray: only when asked for

        return RayExecutor(settings)
    return WorkerPool(settings, settings.workers)


def build_bus(settings: Settings) -> EventBus:
    return InProcessEventBus()


def build_service(settings: Settings, storage: Storage | None = None) -> VideoService:
    """The service on the configured implementations; `storage` when the caller also serves its media."""
    settings.home.mkdir(parents=True, exist_ok=True)
    return VideoService(
        settings=settings,
        store=Store(settings.resolved_database_url),
        storage=storage or build_storage(settings),
        catalog=load_catalog(settings.models_file, settings.models_json),
        engines=EngineRegistry(settings.models_dir, device=settings.device, dtype=settings.dtype),
        executor=build_executor(settings),
        bus=build_bus(settings),
    )
