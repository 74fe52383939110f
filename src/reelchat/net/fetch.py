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
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote_to_bytes

import httpx
from PIL import Image

__all__ = [
    "DEFAULT_POLICY",
    "AddressPredicate",
    "FetchPolicy",
    "FetchedImage",
    "ImageFetchError",
    "ImageFetchErrorCode",
    "Resolver",
    "check_image",
    "check_image_async",
    "decode_data_url",
    "fetch_image",
    "is_forbidden_address",
    "system_resolver",
]

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> IP address strings``. Injectable so tests can simulate any DNS answer."""

AddressPredicate = Callable[[str], bool]
"""``ip -> True if the fetcher must refuse to connect to it``."""

ImageFetchErrorCode = Literal[
    "invalid_image_url",
    "image_url_forbidden",
    "image_too_large",
    "image_fetch_timeout",
    "invalid_image",
    "image_fetch_failed",
]

MAX_IMAGE_PIXELS: Final = 16_000_000
"""Images larger than this many pixels are refused before decoding (decompression-bomb guard): a
16M-pixel RGBA image already decodes to 64 MB, and no video model here takes more than a few megapixels."""

IMAGE_CHECKS_AT_ONCE: Final = 2
"""Pillow decodes at most this many images at once per server (see :func:`check_image_async`)."""

_MAX_HTTP_URL_LENGTH: Final = 8192
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_USER_AGENT: Final = "reelchat-image-fetcher/1"

# Pillow format name -> MIME type. Only these decoders are ever tried.
_FORMATS: Final[dict[str, str]] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # multi-picture JPEG; Pillow's JPEG opener may report it as MPO
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}
_OPEN_FORMATS: Final = ("PNG", "JPEG", "WEBP", "GIF", "BMP")

# Names refused before any DNS lookup (the resolved-address check would catch most of them anyway).
_FORBIDDEN_NAMES: Final = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
        "metadata",
        "metadata.google.internal",
        "instance-data",
        "instance-data.ec2.internal",
    }
)

_HOSTNAME_RE: Final = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)
# A label that makes a host "end in a number" (WHATWG URL): such hosts are IPv4 in some legacy form.
_NUMERIC_LABEL_RE: Final = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")

_V4_DENY: Final = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches localhost on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT (also Alibaba's metadata 100.100.100.200)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata 169.254.169.254
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. 255.255.255.255
    )
)
_V6_DENY: Final = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # unspecified, loopback, deprecated IPv4-compatible ::a.b.c.d
        "::ffff:0:0/96",  # IPv4-mapped: always refused, whatever it embeds
        "::ffff:0:0:0/96",  # SIIT IPv4-translated
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, incl. Teredo 2001::/32
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local, incl. AWS metadata fd00:ec2::254
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64_WKP: Final = ipaddress.IPv6Network("64:ff9b::/96")


# --------------------------------------------------------------------------------------------- types


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    content_type: str
    width: int
    height: int


class ImageFetchError(ValueError):
    """A user-supplied image could not be used. ``code`` is machine-readable, ``message`` user-facing."""

    def __init__(self, code: ImageFetchErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ImageFetchErrorCode = code
        self.message = message

    def __reduce__(self) -> tuple[type[ImageFetchError], tuple[ImageFetchErrorCode, str]]:
        return (type(self), (self.code, self.message))

    def __repr__(self) -> str:
        return f"ImageFetchError({self.code!r}, {self.message!r})"


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 10 * 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 3
    allow_private: bool = False
    """Operator opt-in only: when True, loopback/private/link-local targets and the forbidden host names
    are allowed (unspecified and multicast addresses are still refused). Never set this from user input."""

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")


DEFAULT_POLICY: Final = FetchPolicy()


# ------------------------------------------------------------------------------------ address policy


def _parse_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if "%" in ip:  # scoped IPv6 (fe80::1%eth0): only meaningful for non-global addresses
        return None
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


def _v4_forbidden(addr: ipaddress.IPv4Address) -> bool:
    if any(addr in net for net in _V4_DENY):
        return True
    return (
        not addr.is_global
        or addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )


def _v6_forbidden(addr: ipaddress.IPv6Address) -> bool:
    if addr.ipv4_mapped is not None:
        return True
    if addr in _NAT64_WKP:
        # Well-known NAT64 prefix (DNS64 synthesizes these on IPv6-only hosts): the verdict is the
        # embedded IPv4 address's. (Python files 64:ff9b::/96 under the reserved ::/8, hence the early return.)
        return _v4_forbidden(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    if addr.sixtofour is not None and _v4_forbidden(addr.sixtofour):
        return True
    if addr.teredo is not None:
        return True
    if any(addr in net for net in _V6_DENY):
        return True
    return (
        not addr.is_global
        or addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_site_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )


def is_forbidden_address(ip: str) -> bool:
    """True unless ``ip`` is a plain, globally routable unicast address. Unparseable input is forbidden."""
    addr = _parse_ip(ip)
    if addr is None:
        return True
    if isinstance(addr, ipaddress.IPv4Address):
        return _v4_forbidden(addr)
    return _v6_forbidden(addr)


def _forbidden_even_if_private_allowed(ip: str) -> bool:
    """The predicate used under ``allow_private``: still refuses what can never be a real server."""
    if "%" in ip:
        ip = ip.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return True
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_unspecified or addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255")


async def system_resolver(host: str, port: int) -> list[str]:
    """The default :data:`Resolver`: the event loop's ``getaddrinfo``; returns unique IPs in order."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


# ---------------------------------------------------------------------------------------- data URLs


def decode_data_url(url: str, policy: FetchPolicy = DEFAULT_POLICY) -> FetchedImage:
    """Decode ``data:[image/...][;base64],...``; the size cap applies to the decoded bytes."""
    return check_image(_data_url_bytes(url, policy))


def _data_url_bytes(url: str, policy: FetchPolicy) -> bytes:
    if url[:5].lower() != "data:":
        raise ImageFetchError("invalid_image_url", "not a data: URL")
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise ImageFetchError("invalid_image_url", "malformed data: URL (missing ',')")
    params = [p.strip() for p in header.split(";")]
    media_type = params[0].lower()
    is_base64 = len(params) > 1 and params[-1].lower() == "base64"
    if media_type and not media_type.startswith("image/"):
        raise ImageFetchError("invalid_image", f"data: URL media type must be image/*, got {media_type[:64]!r}")

    if is_base64:
        text = "".join(payload.split())
        if "%" in text:
            try:
                text = unquote_to_bytes(text).decode("ascii")
            except UnicodeDecodeError:
                raise ImageFetchError("invalid_image_url", "data: URL is not valid base64") from None
            text = "".join(text.split())
        # Cheap bound before allocating the decoded bytes.
        if len(text) // 4 * 3 > policy.max_bytes + 3:
            raise _too_large(policy)
        if len(text) % 4:
            text += "=" * (-len(text) % 4)
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ImageFetchError("invalid_image_url", "data: URL is not valid base64") from None
    else:
        if len(payload) > 3 * policy.max_bytes:  # a percent-escape is at most 3 chars per byte
            raise _too_large(policy)
        data = unquote_to_bytes(payload)

    if len(data) > policy.max_bytes:
        raise _too_large(policy)
    return data


# ------------------------------------------------------------------------------------ image checking


def check_image(data: bytes) -> FetchedImage:
    """Accept only bytes that fully decode as PNG/JPEG/WEBP/GIF(first frame)/BMP within the pixel cap.

    The returned ``content_type`` comes from the decoded format, never from what a server claimed.
    """
    if not data:
        raise ImageFetchError("invalid_image", "image is empty")
    pixel_cap = MAX_IMAGE_PIXELS
    if Image.MAX_IMAGE_PIXELS:  # never exceed Pillow's own bomb threshold, so its warning can't pass
        pixel_cap = min(pixel_cap, int(Image.MAX_IMAGE_PIXELS))
    try:
        with Image.open(io.BytesIO(data), formats=_OPEN_FORMATS) as img:
            fmt = img.format or ""
            width, height = img.size
            if fmt not in _FORMATS:
                raise ImageFetchError("invalid_image", "unsupported image format")
            if width <= 0 or height <= 0:
                raise ImageFetchError("invalid_image", "image has no pixels")
            if width * height > pixel_cap:
                raise ImageFetchError(
                    "invalid_image",
                    f"image is too large ({width}x{height}; at most {pixel_cap} pixels are allowed)",
                )
            img.load()  # full decode of the (first) frame: truncated/corrupt data fails here
    except ImageFetchError:
        raise
    except Image.DecompressionBombError:
        raise ImageFetchError("invalid_image", "image dimensions are too large") from None
    except Exception:  # Pillow raises many types (OSError, SyntaxError, ValueError, struct.error...)
        raise ImageFetchError(
            "invalid_image", "image could not be decoded (supported: PNG, JPEG, WEBP, GIF, BMP)"
        ) from None
    return FetchedImage(data=data, content_type=_FORMATS[fmt], width=width, height=height)


async def check_image_async(data: bytes, gate: asyncio.Semaphore | None = None) -> FetchedImage:
    """:func:`check_image` in a worker thread; with a gate, only as many at once as it allows.

    Each decode takes a core and up to 64 MB for a few hundred milliseconds: a burst of requests with
    images must queue here rather than take every thread and all the memory at once.
    """
    if gate is None:
        return await asyncio.to_thread(check_image, data)
    await gate.acquire()
    decoding = asyncio.ensure_future(asyncio.to_thread(check_image, data))

    def done(f: asyncio.Future[FetchedImage]) -> None:
        # the slot frees when the thread ends, not when a caller gives up waiting (its thread runs on)
        gate.release()
        if not f.cancelled():
            f.exception()  # retrieved, so an abandoned decode's refusal isn't logged as never retrieved

    decoding.add_done_callback(done)
    return await asyncio.shield(decoding)


# ------------------------------------------------------------------------------------- http(s) fetch


@dataclass(frozen=True)
class _Target:
    url: httpx.URL  # the URL as the user (or a Location header) gave it
    host: str  # canonical host: lowercased name without trailing dot, or a canonical IP string
    is_ip_literal: bool
    port: int
    host_header: str


def _too_large(policy: FetchPolicy) -> ImageFetchError:
    return ImageFetchError("image_too_large", f"image is larger than {policy.max_bytes} bytes")


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

    ip = _parse_ip(host)
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
    if not policy.allow_private and (
        target.host in _FORBIDDEN_NAMES or target.host.endswith(".localhost") or target.host.endswith(".internal")
    ):
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
                    raise _too_large(policy)
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
                    raise _too_large(policy)
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
        return await check_image_async(await asyncio.to_thread(_data_url_bytes, url, policy), gate)
    if is_forbidden is None:
        is_forbidden = _forbidden_even_if_private_allowed if policy.allow_private else is_forbidden_address
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
