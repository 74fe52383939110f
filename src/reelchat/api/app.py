"""create_app(settings): the ASGI app. Its lifespan owns the store, the workers and the engines."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from ..homelock import HomeLock
from ..media.storage import Storage
from ..service.chat import ChatServing
from ..service.collector import CollectorPacing
from ..service.factory import build_service, build_storage
from ..service.operations import Operations
from ..service.videos import VideoService
from ..settings import Settings
from . import errors
from .contract import openapi_document
from .contract_refine import catalog_refiner
from .deps import AppState
from .direct import DIRECT, DirectRoutes, direct_app
from .limits import BodySizeLimit
from .links import LinkBuilder
from .request_metrics import RequestMetrics
from .routes import chat, live, media, metrics, pages, playground, system, video_edits, videos
from .routes.videos import DEFAULT_MODEL
from .security_headers import SecurityHeaders
from .stream_slots import StreamSlots

log = logging.getLogger("reelchat")


class ReelchatAPI(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        # the direct routes in our own middlewares only, ahead of the full stack (`api/direct.py`)
        direct: dict[tuple[str, str], tuple[ASGIApp, BaseRoute | None, bool]] = {}
        for (method, path), (handler, probe) in DIRECT.items():
            app = direct_app(handler)
            for cls, args, kwargs in reversed(self.user_middleware):
                app = cls(app, *args, **kwargs)
            route = next((r for r in self.router.routes if getattr(r, "path", None) == path), None)
            direct[(method, path)] = (app, route, probe)
        return DirectRoutes(super().build_middleware_stack(), direct, self.state.reelchat.turnstile)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # FastAPI's own __call__ asks its telemetry (OpenTelemetry) whether it traces, for every
        # request; the direct routes skip that too (Starlette's __call__: the middleware stack)
        if scope["type"] == "http" and not self.root_path and (scope["method"], scope["path"]) in DIRECT:
            await Starlette.__call__(self, scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


@asynccontextmanager
async def _serving(service: VideoService, ops: Operations) -> AsyncIterator[None]:
    resumed = await service.open()  # migrates first: metrics and webhooks read its tables
    if resumed:
        log.info("resuming %d task(s) left queued or running by an earlier process", resumed)
    await ops.start(service)
    try:
        yield
    finally:
        await service.close()
        await ops.close()


def create_app(
    settings: Settings | None = None, storage: Storage | None = None, *, pace_collector: bool = False
) -> FastAPI:
    """The app on `settings`; `storage` when the caller built (and checked) it already, as `reelchat serve` does.
    With `pace_collector` (`reelchat serve`, which turns CPython's automatic full collections off), the
    full collections run when the server is quiet (`service/collector.py`)."""
    settings = settings or Settings()
    storage = storage or build_storage(settings)
    ops = Operations(settings)
    service = build_service(settings, storage, on_event=ops.on_event)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lock = HomeLock(settings.home)
        lock.acquire()
        collector = CollectorPacing(app.state.reelchat.chat.admission.quiet_for) if pace_collector else None
        try:
            async with _serving(service, ops):
                if collector is not None:
                    collector.start()
                yield
        finally:
            if collector is not None:
                await collector.close()
            await app.state.reelchat.chat.close()
            app.state.reelchat.bodies.close()
            lock.release()

    app = ReelchatAPI(title="reelchat", version="0.1.0", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.reelchat = AppState(
        settings=settings,
        service=service,
        # a reply gives up well past any job's own deadline, queue included
        chat=ChatServing(service, keepalive_s=settings.keepalive_s, give_up_s=settings.job_deadline_s * 2 + 600),
        storage=storage,
        links=LinkBuilder(settings.public_base_url, settings.trusted_proxies, direct_url=storage.direct_url),
        streams=StreamSlots(settings.max_streams_per_key),
        ops=ops,
    )
    ops.metrics.open_streams.labels("chat").set_function(app.state.reelchat.streams.open_count)
    errors.install(app)
    routers = [module.router for module in (chat, live, media, metrics, pages, playground, system, video_edits, videos)]
    for router in routers:
        app.include_router(router)
    refine = catalog_refiner(service.models(), default_model=DEFAULT_MODEL)
    document: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:  # built once, on the first request for it
        if not document:
            document.update(openapi_document(app, routers, refine))
        return document

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)  # the 413s answered by BodySizeLimit get them too
    app.add_middleware(RequestMetrics, metrics=ops.metrics)  # outermost: counts every answer, 413s included
    return app
