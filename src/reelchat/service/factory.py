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
from ..media.storage import LocalStorage, Storage, StorageConfigError
from ..media.storage_url import parse_storage_url
from ..settings import Settings
from ..store.tasks import Store
from .events import EventHub, LocalEventBus
from .executor import Executor, InProcessExecutor
from .videos import VideoService
from .worker_pool import WorkerPool

__all__ = ["build_bus", "build_executor", "build_service", "build_storage"]


def build_storage(settings: Settings, *, check: bool = False) -> Storage:
    """The local media directory, or S3 when `REELCHAT_STORAGE_URL` is an s3:// URL.

    Raises StorageConfigError (the message names the variable and the fix) for a bad URL or a missing
    boto3, and with `check` (the server's start, not every worker's) for a bucket that can't be used.
    """
    if not settings.storage_url:
        return LocalStorage(settings.resolved_media_dir)
    location = parse_storage_url(settings.storage_url)
    try:
        from ..media.s3_storage import S3Storage
    except ImportError as e:
        raise StorageConfigError(
            f"REELCHAT_STORAGE_URL={location} needs boto3, which is not installed ({e}). "
            "Install it with `pip install 'reelchat[s3]'`, or unset REELCHAT_STORAGE_URL to keep media "
            "in the local directory."
        ) from None
    presigned = settings.s3_presign_expires_s if settings.s3_links == "presigned" else None
    storage = S3Storage(location, presign_expires_s=presigned)
    if check:
        storage.check()
    return storage


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
        engines=EngineRegistry(
            settings.models_dir,
            device=settings.device,
            dtype=settings.dtype,
            device_memory_gb=settings.device_memory_gb,
        ),
        executor=build_executor(settings),
        bus=build_bus(settings),
        on_event=on_event,
    )
