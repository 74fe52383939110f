"""create_app(settings): the ASGI app. Its lifespan owns the store, the workers and the engines."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..catalog import load_catalog
from ..engines.registry import EngineRegistry
from ..homelock import HomeLock
from ..media.storage import LocalStorage
from ..service.executor import InProcessExecutor
from ..service.videos import VideoService
from ..settings import Settings
from ..store.tasks import Store
from . import errors
from .deps import AppState
from .limits import BodySizeLimit
from .links import LinkBuilder
from .routes import chat, media, pages, system, videos
from .security_headers import SecurityHeaders
from .stream_slots import StreamSlots

log = logging.getLogger("reelchat")


def build_service(settings: Settings) -> VideoService:
    settings.home.mkdir(parents=True, exist_ok=True)
    catalog = load_catalog(settings.models_file, settings.models_json)
    return VideoService(
        settings=settings,
        store=Store(settings.resolved_database_url),
        storage=LocalStorage(settings.resolved_media_dir),
        catalog=catalog,
        engines=EngineRegistry(settings.models_dir, device=settings.device, dtype=settings.dtype),
        executor=InProcessExecutor(settings.workers),
    )


@asynccontextmanager
async def _serving(service: VideoService) -> AsyncIterator[None]:
    await service.store.migrate()
    resumed = await service.start()
    if resumed:
        log.info("resuming %d task(s) left queued or running by an earlier process", resumed)
    try:
        yield
    finally:
        await service.stop()
        await service.store.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    service = build_service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lock = HomeLock(settings.home)
        lock.acquire()
        try:
            async with _serving(service):
                yield
        finally:
            app.state.reelchat.bodies.close()
            lock.release()

    app = FastAPI(title="reelchat", version="0.1.0", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.reelchat = AppState(
        settings=settings,
        service=service,
        links=LinkBuilder(settings.public_base_url, settings.trusted_proxies),
        streams=StreamSlots(settings.max_streams_per_key),
    )
    errors.install(app)
    for module in (chat, media, pages, system, videos):
        app.include_router(module.router)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)  # outermost: the 413s answered by BodySizeLimit get them too
    return app
