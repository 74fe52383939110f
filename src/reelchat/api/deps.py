"""What routes depend on: the app's resources and the caller's tenant."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from ..domain import OPEN_TENANT, Caller
from ..media.storage import Storage
from ..net.loopback import is_loopback
from ..service.chat import ChatServing
from ..service.operations import Operations
from ..service.videos import VideoService
from ..settings import Settings
from .body_parser import BodyParser
from .errors import ApiError
from .links import LinkBuilder
from .stream_slots import StreamSlots
from .turnstile import Turnstile

KEYS_STALE_S = 5.0  # a lapsed "are there keys?" answer is served while a refresh runs, this long at most


@dataclass
class AppState:
    settings: Settings
    service: VideoService
    chat: ChatServing
    storage: Storage  # the media the service writes, served by the media routes
    links: LinkBuilder
    streams: StreamSlots
    ops: Operations  # metrics and webhooks
    bodies: BodyParser = field(default_factory=BodyParser)
    turnstile: Turnstile = field(default_factory=Turnstile)  # requests a turn of the loop starts (`api/direct.py`)
    started_at: float = field(default_factory=time.time)
    _keys_checked_at: float = 0.0
    _keys_exist: bool = False
    _keys_query: asyncio.Task[bool] | None = None

    async def keys_exist(self) -> bool:
        # Read at most once a second, one query at a time. Once known, a lapsed answer is refreshed
        # behind the request that finds it lapsed (a key created or revoked is seen within about a
        # second and a query): admitting a request never waits on the database for it.
        fresh = time.monotonic() - self._keys_checked_at <= 1.0
        if fresh:
            return self._keys_exist
        if self._keys_query is None or self._keys_query.done():
            self._keys_query = asyncio.create_task(self._count_keys())
            self._keys_query.add_done_callback(_retrieved)
        if self._keys_checked_at > 0.0 and time.monotonic() - self._keys_checked_at <= KEYS_STALE_S:
            return self._keys_exist
        return await asyncio.shield(self._keys_query)  # never known, or refreshes keep failing: wait

    async def _count_keys(self) -> bool:
        exist = await self.service.active_key_count() > 0
        self._keys_exist, self._keys_checked_at = exist, time.monotonic()
        return exist


def _retrieved(task: asyncio.Task[bool]) -> None:
    if not task.cancelled():
        task.exception()  # a refresh nobody waited for may fail: the next request retries


async def get_state(request: Request) -> AppState:  # async: a plain def would hop to a thread per request
    state: AppState = request.app.state.reelchat
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_caller(request: Request, state: StateDep) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    if token:
        key = await state.service.authenticate(token)
        if key is not None:
            return Caller(key.tenant, key)
    if not await state.keys_exist():
        # open mode serves loopback callers only: `serve` refuses other addresses without keys, and a
        # server whose last key was revoked must not become open to the network
        if _is_loopback_peer(request):
            _refuse_if_proxied(request)
            return Caller(OPEN_TENANT)
        raise ApiError(
            401, "This server has no active API keys; create one with `reelchat keys create`.", code="invalid_api_key"
        )
    if not token:
        raise ApiError(
            401, "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", code="missing_api_key"
        )
    masked = token[:6] + "…" if len(token) > 6 else "…"
    raise ApiError(401, f"Incorrect API key provided: {masked}.", code="invalid_api_key")


CallerDep = Annotated[Caller, Depends(get_caller)]


async def get_tenant(caller: CallerDep) -> str:
    return caller.tenant


TenantDep = Annotated[str, Depends(get_tenant)]


# Headers a reverse proxy adds. Behind nginx on the same host every remote client arrives from
# 127.0.0.1, so in open mode they mark a caller who is not on this machine. (X-Forwarded-Host and
# -Proto alone only shape links, as the seed's own curl sends them, and are allowed.)
PROXY_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


def _refuse_if_proxied(request: Request) -> None:
    for name in PROXY_HEADERS:
        if name in request.headers:
            raise ApiError(
                403,
                "This server has no API keys, so it serves only callers on its own machine, and this request "
                f"came through a proxy (it carries {_header_title(name)}). Create a key with "
                "`reelchat keys create` and send it as 'Authorization: Bearer <key>'.",
                code="open_mode_behind_proxy",
            )


def _header_title(name: str) -> str:
    return "X-Real-IP" if name == "x-real-ip" else "-".join(part.capitalize() for part in name.split("-"))


def _is_loopback_peer(request: Request) -> bool:
    return request.client is not None and is_loopback(request.client.host)
