"""A pure ASGI middleware that counts every HTTP answer by route template and status (`/metrics`).

The route label is the matched route's template (`/v1/videos/{video_id}`), never the raw path, so a
client requesting random paths can't grow the series without bound: unmatched paths count as
`unmatched`. Error answers (status >= 400) also count by their OpenAI error `code`, read from the
small JSON body every error has (our own fixed codes; anything else counts as `other`).
"""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..service.metrics import Metrics

_CODE = re.compile(r"[a-z0-9_]{1,64}")
_MAX_ERROR_BODY = 16 * 1024


_CONVERTOR = re.compile(r":[A-Za-z_]{1,40}+\}")  # linear: bounded, possessive


class RequestMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers when the app raises before starting a response
        is_json = False
        body = bytearray()

        async def watching_send(message: Message) -> None:
            nonlocal status, is_json
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        is_json = value.startswith(b"application/json")
            elif message["type"] == "http.response.body" and status >= 400 and is_json and len(body) < _MAX_ERROR_BODY:
                body.extend(message.get("body", b"")[: _MAX_ERROR_BODY - len(body)])
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            route = scope.get("route")
            # `{video_id:video_id}` (a path convertor) is labelled as the plain `{video_id}` clients see
            template = _CONVERTOR.sub("}", getattr(route, "path", None) or "unmatched")
            method = scope.get("method", "GET")
            self.metrics.http_requests.labels(method, template, str(status)).inc()
            if status >= 400:
                self.metrics.http_errors.labels(template, str(status), _error_code(bytes(body))).inc()


def _error_code(body: bytes) -> str:
    try:
        error = json.loads(body)["error"]
        code = error.get("code") or error.get("type") or "none"
    except (ValueError, KeyError, TypeError, AttributeError):
        return "other"
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "other"
