"""Fetching user-supplied images (data: URLs and http(s) URLs) without opening an SSRF door.

A user can ask the server to condition a video on an image given by URL. The server then makes an
outbound request on the user's behalf, from inside its own network. Everything here exists to make
sure that request can only ever reach the public internet:

* only ``http``/``https`` (and ``data:`` which never touches the network), no userinfo;
* the host is resolved *here*, every answer is checked against :func:`is_forbidden_address`
  (loopback, RFC 1918, link-local/cloud metadata, CGNAT, multicast, reserved, IPv4-mapped/6to4/NAT64
  embeddings of those, ...), and a request is refused if *any* answer is forbidden;
* the connection is then made to the checked IP itself, never to the name again (so a DNS answer
  that changes between check and connect - DNS rebinding - cannot redirect it); ``Host`` and TLS
  SNI/certificate verification still use the original name;
* redirects are never followed by httpx: each ``Location`` goes through the exact same checks;
* the body is streamed and capped, the whole exchange (all hops) is capped in time, proxies from the
  environment are ignored, and the bytes must decode as a real image under a pixel cap.

This module is the fetcher itself (resolve, connect to the checked IP, redirects, caps). What it
checks against lives beside it: ``addresses`` (forbidden addresses and names), ``data_urls``,
``images`` (decoding under a pixel cap), ``policy`` (the limits) and ``errors``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import httpx

from .addresses import (
    AddressPredicate,
    forbidden_even_if_private_allowed,
    is_forbidden_address,
    is_forbidden_host_name,
    parse_ip,
)
from .data_urls import data_url_bytes
from .errors import ImageFetchError
from .images import FetchedImage, check_image_async
from .policy import DEFAULT_POLICY, FetchPolicy, too_large

__all__ = ["Resolver", "fetch_image", "system_resolver"]

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> IP address strings``. Injectable so tests can simulate any DNS answer."""

_MAX_HTTP_URL_LENGTH: Final = 8192
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_USER_AGENT: Final = "reelchat-image-fetcher/1"

_HOSTNAME_RE: Final = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)
# A label that makes a host "end in a number" (WHATWG URL): such hosts are IPv4 in some legacy form.
_NUMERIC_LABEL_RE: Final = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")


async def system_resolver(host: str, port: int) -> list[str]:
    """The default :data:`Resolver`: the event loop's ``getaddrinfo``; returns unique IPs in order."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


# ------------------------------------------------------------------------------------- http(s) fetch


@dataclass(frozen=True)
class _Target:
    url: httpx.URL  # the URL as the user (or a Location header) gave it
    host: str  # canonical host: lowercased name without trailing dot, or a canonical IP string
    is_ip_literal: bool
    port: int
    host_header: str


def _parse_http_url(raw: str, what: str) -> _Target:
    """Validate scheme/userinfo/host syntax. Does no DNS. ``what`` names the URL in messages."""
    if len(raw) > _MAX_HTTP_URL_LENGTH:
        raise ImageFetchError("invalid_image_url", f"{what} is too long")
    try:
        url = httpx.URL(raw)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise ImageFetchError("invalid_image_url", f"{what} is not a valid URL") from None
    if url.scheme not in ("http", "https"):
        allowed = "data:, http: or https:" if what == "image_url" else "http: or https:"
        raise ImageFetchError("invalid_image_url", f"{what} must be a {allowed} URL")
    if url.userinfo:
        raise ImageFetchError("invalid_image_url", f"{what} must not contain a username or password")
    try:
        host = url.raw_host.decode("ascii").lower()  # IDNA-encoded (xn--...) form
    except UnicodeDecodeError:
        raise ImageFetchError("invalid_image_url", f"{what} has an invalid host") from None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]
    if not host:
        raise ImageFetchError("invalid_image_url", f"{what} has no host")
    port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
    host_header = url.netloc.decode("ascii")

    ip = parse_ip(host)
    if ip is not None:
        return _Target(url, ip.compressed, True, port, host_header)
    if ":" in host or "%" in host:
        raise ImageFetchError("invalid_image_url", f"{what} has an invalid host")
    labels = host.split(".")
    if _NUMERIC_LABEL_RE.match(labels[-1]):
        # Legacy IPv4 spellings: 2130706433, 0x7f000001, 0177.0.0.1, 127.1 ... canonicalize and check
        # them as the address they are, rather than letting a resolver interpret them.
        if not all(_NUMERIC_LABEL_RE.match(label) for label in labels):
            raise ImageFetchError("invalid_image_url", f"{what} has an invalid host")
        try:
            packed = socket.inet_aton(host)
        except OSError:
            raise ImageFetchError("invalid_image_url", f"{what} has an invalid host") from None
        return _Target(url, str(ipaddress.IPv4Address(packed)), True, port, host_header)
    if not _HOSTNAME_RE.match(host):
        raise ImageFetchError("invalid_image_url", f"{what} has an invalid host")
    return _Target(url, host, False, port, host_header)


async def _checked_addresses(
    target: _Target,
    policy: FetchPolicy,
    resolver: Resolver,
    forbidden: AddressPredicate,
    what: str,
) -> list[str]:
    refused = ImageFetchError("image_url_forbidden", f"{what} points to a private or reserved network address")
    if target.is_ip_literal:
        if forbidden(target.host):
            raise refused
        return [target.host]
    if not policy.allow_private and is_forbidden_host_name(target.host):
        raise refused
    try:
        answers = await resolver(target.host, target.port)
    except (OSError, UnicodeError):
        raise ImageFetchError("image_fetch_failed", f"could not resolve the host of {what}") from None
    addresses = list(dict.fromkeys(answers))
    if not addresses:
        raise ImageFetchError("image_fetch_failed", f"could not resolve the host of {what}")
    # ALL answers must be acceptable: we must not let the choice of address be anyone else's.
    # (Deliberately no IP in the message: it would leak internal DNS to the caller.)
    if any(forbidden(ip) for ip in addresses):
        raise refused
    return addresses


def _make_ssl_context() -> ssl.SSLContext:
    """TLS context for https fetches (certificate + hostname verification on). Patchable in tests."""
    return httpx.create_ssl_context()


async def _get_once(target: _Target, ip: str, policy: FetchPolicy) -> bytes | str:
    """GET ``target`` over a connection to ``ip``. Returns the body, or the raw ``Location`` of a redirect.

    This talks to an ``httpx.AsyncHTTPTransport`` directly rather than through ``httpx.AsyncClient``: no
    client-level behaviour (redirect handling - which parses a hostile Location before we can -, cookies,
    auth, event hooks, environment proxies) is involved at all. The request URL carries the checked IP,
    so the transport never resolves anything; ``Host`` and, for https, SNI + certificate verification
    use the original name.
    """
    request_url = target.url.copy_with(host=ip, fragment=None)
    timeout = httpx.Timeout(policy.timeout_s)
    extensions: dict[str, object] = {"timeout": timeout.as_dict()}
    if target.url.scheme == "https" and not target.is_ip_literal:
        extensions["sni_hostname"] = target.host
    headers = {
        "Host": target.host_header,
        "User-Agent": _USER_AGENT,
        "Accept": "image/png, image/jpeg, image/webp, image/gif, image/bmp;q=0.9, */*;q=0.1",
        "Accept-Encoding": "identity",  # we read raw bytes: no transparent (bomb-able) decompression
        "Connection": "close",
    }
    request = httpx.Request("GET", request_url, headers=headers, extensions=extensions)
    # A fresh transport (connection pool) per hop: no connection reuse across differently-named hosts that
    # share an IP, and trust_env=False so no environment proxy (which would re-resolve the name) is used.
    async with httpx.AsyncHTTPTransport(verify=_make_ssl_context(), trust_env=False, retries=0) as transport:
        response = await transport.handle_async_request(request)
        try:
            status = response.status_code
            if status in _REDIRECT_STATUSES:
                location = response.headers.get("location")
                if not location:
                    raise ImageFetchError("image_fetch_failed", f"image_url redirected ({status}) without a Location")
                return str(location)
            if not 200 <= status < 300:
                raise ImageFetchError("image_fetch_failed", f"image_url returned HTTP {status}")
            declared = response.headers.get("content-length")
            if declared is not None:
                try:
                    declared_len = int(declared.strip())
                except ValueError:
                    raise ImageFetchError("image_fetch_failed", "invalid Content-Length in response") from None
                if declared_len > policy.max_bytes:
                    raise too_large(policy)
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise ImageFetchError("image_fetch_failed", "compressed (Content-Encoding) responses are not supported")
            stream = response.stream
            if not isinstance(stream, httpx.AsyncByteStream):  # pragma: no cover - the async transport's type
                raise ImageFetchError("image_fetch_failed", "could not read the response")
            body = bytearray()
            async for chunk in stream:
                body += chunk
                if len(body) > policy.max_bytes:
                    raise too_large(policy)
            return bytes(body)
        finally:
            await response.aclose()


async def _download(raw_url: str, policy: FetchPolicy, resolver: Resolver, forbidden: AddressPredicate) -> bytes:
    what = "image_url"
    target = _parse_http_url(raw_url, what)
    for hop in range(policy.max_redirects + 1):
        addresses = await _checked_addresses(target, policy, resolver, forbidden, what)
        result: bytes | str | None = None
        for ip in addresses:  # every address is checked; fall back only on connection failure
            try:
                result = await _get_once(target, ip, policy)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout):
                continue
        if result is None:
            raise ImageFetchError("image_fetch_failed", f"could not connect to the host of {what}")
        if isinstance(result, bytes):
            return result
        if hop == policy.max_redirects:
            break
        what = "image_url redirect location"
        try:
            next_url = str(target.url.join(result))
        except (httpx.InvalidURL, ValueError, TypeError):
            raise ImageFetchError("invalid_image_url", f"{what} is not a valid URL") from None
        target = _parse_http_url(next_url, what)
    raise ImageFetchError("image_fetch_failed", f"image_url redirected more than {policy.max_redirects} times")


async def fetch_image(
    url: str,
    policy: FetchPolicy = DEFAULT_POLICY,
    *,
    resolver: Resolver | None = None,
    is_forbidden: AddressPredicate | None = None,
    gate: asyncio.Semaphore | None = None,
) -> FetchedImage:
    """Fetch and validate a user-supplied image (``data:``, ``http:`` or ``https:`` URL).

    ``gate`` bounds how many images are decoded at once (see :func:`check_image_async`).

    ``resolver`` defaults to :func:`system_resolver`. ``is_forbidden`` (mainly for tests) replaces the
    address predicate; by default it is :func:`is_forbidden_address`, or a permissive one when
    ``policy.allow_private`` is set. Raises :class:`ImageFetchError` for every refusal/failure.
    """
    if not isinstance(url, str):
        raise ImageFetchError("invalid_image_url", "image_url must be a string")
    url = url.strip(" \t\r\n\f\v\x00")
    if url[:5].lower() == "data:":
        return await check_image_async(await asyncio.to_thread(data_url_bytes, url, policy), gate)
    if is_forbidden is None:
        is_forbidden = forbidden_even_if_private_allowed if policy.allow_private else is_forbidden_address
    try:
        async with asyncio.timeout(policy.timeout_s):
            data = await _download(url, policy, resolver or system_resolver, is_forbidden)
    except TimeoutError:
        raise ImageFetchError(
            "image_fetch_timeout", f"fetching image_url took longer than {policy.timeout_s:g}s"
        ) from None
    except httpx.TimeoutException:
        raise ImageFetchError(
            "image_fetch_timeout", f"fetching image_url took longer than {policy.timeout_s:g}s"
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ssl.SSLError) as exc:
        # Generic for the user (no internal detail), chained for the server's logs.
        raise ImageFetchError("image_fetch_failed", "could not fetch image_url") from exc
    return await check_image_async(data, gate)
