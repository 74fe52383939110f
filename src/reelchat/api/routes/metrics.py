"""GET /metrics: Prometheus text format (see `service.metrics` for the series).

Who may read it: with REELCHAT_METRICS_TOKEN set, whoever sends `Authorization: Bearer <token>`;
without it, callers on this machine only (a loopback peer whose request came through no proxy:
behind nginx on the same host every remote client would look local).
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from ...net.loopback import is_loopback
from ..deps import PROXY_HEADERS, StateDep
from ..errors import ApiError

router = APIRouter()


def _allow(request: Request, token: str | None) -> None:
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(
                401,
                "/metrics needs 'Authorization: Bearer <REELCHAT_METRICS_TOKEN>'.",
                code="invalid_metrics_token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return
    local = request.client is not None and is_loopback(request.client.host)
    if not local or any(name in request.headers for name in PROXY_HEADERS):
        raise ApiError(
            403,
            "/metrics answers callers on this machine only; set REELCHAT_METRICS_TOKEN on the server to "
            "let a scraper elsewhere read it with that bearer token.",
            code="metrics_forbidden",
        )


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, state: StateDep) -> Response:
    _allow(request, state.settings.metrics_token)
    return Response(await state.ops.scrape(), media_type=CONTENT_TYPE_LATEST)
