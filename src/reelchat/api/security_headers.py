"""A pure ASGI middleware that gives every response the browser-facing security headers.

Pages and media are public by link, so a hostile site may frame them, sniff them or read the
Referer they leak. Every response says: no MIME sniffing, no framing, no Referer. Responses that
set no Content-Security-Policy of their own (JSON, errors) get one that allows nothing at all;
media files allow only themselves, and the task page allows only its own script, style and media.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOTHING_ALLOWED = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# A media file opened on its own (a chat reply's mp4 link) becomes the browser's own media document,
# which must be allowed to load the file itself: 'none' would leave a broken player.
MEDIA_ONLY = "default-src 'none'; img-src 'self'; media-src 'self'; frame-ancestors 'none'; base-uri 'none'"
# FastAPI's Swagger UI (/docs) loads its script and style from a CDN and runs inline script
_OWN_POLICY_PATHS = ("/docs",)


_ALWAYS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]
_STRICT = [*_ALWAYS, (b"content-security-policy", NOTHING_ALLOWED.encode())]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        ours = _ALWAYS if path.startswith(_OWN_POLICY_PATHS) else _STRICT

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # each header unless the response set its own (raw pairs: this runs for every response)
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [pair for pair in ours if pair[0] not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
