"""The hottest routes served directly, below FastAPI's routing and dependency solving, with the same
middlewares (metrics, security headers, body limit) and the same errors; and the turnstile every
other request passes.

- `POST /v1/chat/completions`. A burst of a thousand chat requests is a thousand passes through the
  whole request stack, in the one event loop every open stream shares, and a held reply keeps every
  frame of that stack alive for as long as its video takes. FastAPI's part (its own middlewares,
  matching the path against every route, solving dependencies, two exit stacks) was most of the
  API's CPU per request and a large part of the memory per held stream; the chat route uses none of it.
- `GET /healthz` and `/readyz`: probes go ahead of everything, so they answer within a few turns of
  the loop whatever is queued (`Turnstile`).

The FastAPI routes stay for the OpenAPI document and the 405s, and serve the same functions when the
app is mounted below another one. What the direct routes do not get from FastAPI: its native
OpenTelemetry tracing, and `app.dependency_overrides` (nothing here uses either).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from .deps import AppState
from .errors import as_api_error, error_response
from .routes.chat import chat_response
from .routes.system import health_response, ready_response
from .turnstile import Turnstile

__all__ = ["DIRECT", "DirectRoutes", "direct_app"]

Handler = Callable[[Request, AppState], Awaitable[Response]]


async def _health(request: Request, state: AppState) -> Response:
    return await health_response(state)


async def _ready(request: Request, state: AppState) -> Response:
    return ready_response(state)


# (method, path) -> (handler, a probe: ahead of the turnstile)
DIRECT: dict[tuple[str, str], tuple[Handler, bool]] = {
    ("POST", "/v1/chat/completions"): (chat_response, False),
    ("GET", "/healthz"): (_health, True),
    ("GET", "/readyz"): (_ready, True),
}


def direct_app(handler: Handler) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await handler(request, request.app.state.reelchat)
        except ClientDisconnect:
            return  # it left while its request waited or its body came: nobody to answer
        except Exception as exc:  # every error answers as the FastAPI route's handlers would
            response = error_response(as_api_error(request, exc))
        await response(scope, receive, send)

    return app


class DirectRoutes:
    """Sends the `DIRECT` routes to their direct apps (in the app's own middlewares), everything else
    to `app` (the full stack); every request but a probe passes the turnstile first."""

    def __init__(
        self,
        app: ASGIApp,
        direct: dict[tuple[str, str], tuple[ASGIApp, BaseRoute | None, bool]],
        turnstile: Turnstile,
    ) -> None:
        self.app = app
        self.direct = direct  # (method, path) -> (app, the route metrics label it by, a probe)
        self.turnstile = turnstile

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = None if scope.get("root_path") else self.direct.get((scope["method"], scope["path"]))
        if found is None:
            await self.turnstile.enter()
            await self.app(scope, receive, send)
            return
        app, route, probe = found
        if not probe:
            await self.turnstile.enter()
        scope["route"] = route
        await app(scope, receive, send)
