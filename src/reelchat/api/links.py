"""Absolute links: the configured public base URL, else a trusted proxy's X-Forwarded-*, else Host.

Media links are `<base>/media/<name>` (served by reelchat), unless the storage hands out direct
links (`REELCHAT_S3_LINKS=presigned`: presigned S3 URLs).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

_HOST_RE = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


@dataclass(frozen=True)
class Links:
    """The absolute links of one request: pages and media."""

    base: str
    direct_url: Callable[[str], str | None] | None = None

    def web(self, task_id: str) -> str:
        return f"{self.base}/web/{task_id}"

    def source(self, task_id: str) -> str:
        return f"{self.base}/source/{task_id}"

    def media(self, name: str) -> str:
        direct = self.direct_url(name) if self.direct_url else None
        return direct or f"{self.base}/media/{name}"


class LinkBuilder:
    def __init__(
        self,
        public_base_url: str | None,
        trusted_proxies: Sequence[str],
        direct_url: Callable[[str], str | None] | None = None,
    ) -> None:
        self.public_base_url = public_base_url
        self.trusted = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        # parsing the peer's address was a tenth of a chat reply's first bytes: one answer per address
        self._trusted_host = functools.lru_cache(maxsize=4096)(self._is_trusted_host)
        self.direct_url = direct_url
        # where direct media links point (one origin: a bucket's endpoint), for the pages' CSP
        probe = direct_url("0" * 32 + ".mp4") if direct_url else None
        parts = urlsplit(probe or "")
        self.media_origin = f"{parts.scheme}://{parts.netloc}" if probe and parts.scheme in ("http", "https") else ""

    def _trusted_peer(self, request: Request) -> bool:
        client = request.scope.get("client")
        return bool(self.trusted) and client is not None and self._trusted_host(str(client[0]))

    def _is_trusted_host(self, host: str) -> bool:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in net for net in self.trusted)

    def for_request(self, request: Request) -> Links:
        return Links(self.base(request), self.direct_url)

    def base(self, request: Request) -> str:
        if self.public_base_url:
            return self.public_base_url
        headers = request.headers
        scheme = str(request.scope.get("scheme", "http"))  # what request.url says, without building it
        host = headers.get("host") or _server_host(request)
        if self._trusted_peer(request):
            fwd_host = headers.get("x-forwarded-host")
            fwd_proto = headers.get("x-forwarded-proto")
            if fwd_host:
                host = fwd_host.split(",")[0].strip()
            if fwd_proto:
                scheme = fwd_proto.split(",")[0].strip().lower()
        if not _HOST_RE.match(host):  # a Host that would break or inject into our links
            host = _server_host(request)  # (request.url is built from that same Host: don't parse it)
        if scheme not in ("http", "https"):
            scheme = "http"
        return f"{scheme}://{host}"


def _server_host(request: Request) -> str:
    """host:port of the socket the request came in on, from the ASGI scope (never from headers)."""
    server = request.scope.get("server")
    if not server:
        return "localhost"
    name, port = str(server[0]), server[1]
    if ":" in name:
        name = f"[{name}]"
    return f"{name}:{port}" if port else name
