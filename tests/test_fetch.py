"""SSRF-hardened image fetcher: every refusal is exercised, with no internet access.

Only servers started here on 127.0.0.1 are ever contacted. Since 127.0.0.1 is itself forbidden, the
success / redirect / size / time paths either use ``FetchPolicy(allow_private=True)`` (when the thing
under test is not the address check) or an injected ``is_forbidden`` predicate that treats 127.0.0.1
as "public" while keeping the real rules for everything else (so a redirect to e.g. the metadata
address is refused at the redirect). Injected resolvers simulate DNS answers.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import random
import shutil
import socket
import ssl
import struct
import subprocess
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, quote_from_bytes

import pytest
import pytest_asyncio
from PIL import Image

import reelchat.net.fetch as fetch_mod
from reelchat.net.addresses import is_forbidden_address
from reelchat.net.data_urls import decode_data_url
from reelchat.net.errors import ImageFetchError
from reelchat.net.fetch import Resolver, fetch_image, system_resolver
from reelchat.net.images import FetchedImage, check_image
from reelchat.net.policy import FetchPolicy

# ------------------------------------------------------------------------------------------- images


def make_image(fmt: str, size: tuple[int, int] = (8, 6), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (200, 30, 60)).save(buf, format=fmt)
    return buf.getvalue()


PNG = make_image("PNG")
JPEG = make_image("JPEG")
GIF = make_image("GIF", mode="P")
WEBP = make_image("WEBP")
BMP = make_image("BMP")


def png_header_only(width: int, height: int) -> bytes:
    """A syntactically valid PNG that *claims* ``width x height`` (a decompression-bomb shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


BOMB_OUR_CAP = png_header_only(7000, 7000)  # 49 MP: above our 40 MP cap, below Pillow's threshold
BOMB_PILLOW = png_header_only(20000, 20000)  # 400 MP: Pillow's DecompressionBombError on open


def b64_data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


# ------------------------------------------------------------------------------------ local server


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


Handler = Callable[["LocalServer", asyncio.StreamWriter, dict[str, list[str]]], Awaitable[None]]


def _response(status: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _send(writer: asyncio.StreamWriter, content_type: str, body: bytes, **extra: str) -> None:
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    writer.write(_response("200 OK", headers, body))
    await writer.drain()


async def r_png(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    await _send(w, "image/png", PNG)


async def r_jpeg(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    await _send(w, "image/jpeg", JPEG)


async def r_lying_type(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    await _send(w, "text/html", PNG)  # a real PNG served with a wrong Content-Type


async def r_fake_png(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    await _send(w, "image/png", b"<html><body>definitely not a png</body></html>")


async def r_text(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    await _send(w, "text/plain", b"hello, world\n")


async def r_truncated(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    await _send(w, "image/png", make_image("PNG", (64, 64))[:-40])


async def r_bomb(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    await _send(w, "image/png", BOMB_OUR_CAP)


async def r_gzip(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    await _send(w, "image/png", gzip.compress(PNG), Content_Encoding="gzip")


async def r_status(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    code = q.get("code", ["404"])[0]
    body = b"nope"
    w.write(_response(f"{code} Whatever", {"Content-Length": str(len(body))}, body))
    await w.drain()


async def r_redirect(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    code = q.get("code", ["302"])[0]
    headers = {"Content-Length": "0"}
    if "to" in q:
        headers["Location"] = q["to"][0]
    w.write(_response(f"{code} Redirect", headers))
    await w.drain()


async def r_loop(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    w.write(_response("302 Found", {"Location": "/loop", "Content-Length": "0"}))
    await w.drain()


async def r_chain(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    """/chain?n=K: K redirects, then the PNG. ``delay`` seconds before each response."""
    n = int(q["n"][0])
    await asyncio.sleep(float(q.get("delay", ["0"])[0]))
    if n <= 0:
        await _send(w, "image/png", PNG)
        return
    rest = f"&delay={q['delay'][0]}" if "delay" in q else ""
    w.write(_response("302 Found", {"Location": f"/chain?n={n - 1}{rest}", "Content-Length": "0"}))
    await w.drain()


async def r_big_declared(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    w.write(_response("200 OK", {"Content-Type": "image/png", "Content-Length": str(1 << 30)}, PNG))
    await w.drain()
    await asyncio.sleep(30)  # never sends the rest: the client must give up on the header alone


async def r_big_chunked(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    w.write(_response("200 OK", {"Content-Type": "image/png", "Transfer-Encoding": "chunked"}))
    piece = b"\x00" * 65536
    for _ in range(200):  # up to 12.8 MB if nobody stops reading
        w.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        await w.drain()
        s.big_bytes_sent += len(piece)
    w.write(b"0\r\n\r\n")
    await w.drain()


async def r_big_close(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    w.write(_response("200 OK", {"Content-Type": "image/png"}))  # close-delimited body
    piece = b"\x00" * 65536
    for _ in range(200):
        w.write(piece)
        await w.drain()


async def r_slow_headers(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    await asyncio.sleep(30)


async def r_drip(s: LocalServer, w: asyncio.StreamWriter, q: dict[str, list[str]]) -> None:
    """One byte every 50 ms: no single read is slow, only the total is."""
    w.write(_response("200 OK", {"Content-Type": "image/png", "Transfer-Encoding": "chunked"}))
    await w.drain()
    for _ in range(2000):
        w.write(b"1\r\n\x00\r\n")
        await w.drain()
        await asyncio.sleep(0.05)


ROUTES: dict[str, Handler] = {
    "/img.png": r_png,
    "/img.jpg": r_jpeg,
    "/lying-type": r_lying_type,
    "/fake.png": r_fake_png,
    "/text": r_text,
    "/truncated.png": r_truncated,
    "/bomb.png": r_bomb,
    "/gzip.png": r_gzip,
    "/status": r_status,
    "/redirect": r_redirect,
    "/loop": r_loop,
    "/chain": r_chain,
    "/big-declared": r_big_declared,
    "/big-chunked": r_big_chunked,
    "/big-close": r_big_close,
    "/slow-headers": r_slow_headers,
    "/drip": r_drip,
}


@dataclass
class LocalServer:
    port: int = 0
    tls_port: int = 0
    seen: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    big_bytes_sent: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _method, target, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            self.seen.append(Seen(target, headers))
            path, _, query = target.partition("?")
            handler = ROUTES.get(path)
            if handler is None:
                writer.write(_response("404 Not Found", {"Content-Length": "0"}))
                await writer.drain()
            else:
                await handler(self, writer, parse_qs(query))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError):
            pass
        finally:
            self.tasks.discard(task)
            writer.close()


def _make_cert(tmp: Path, name: str) -> tuple[Path, Path] | None:
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    cmd = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", f"subjectAltName=DNS:{name}",
    ]  # fmt: skip
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)  # noqa: S603  (fixed openssl argv)
    except (OSError, subprocess.SubprocessError):
        return None
    return cert, key


CERT_NAME = "public.example"


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path] | None:
    return _make_cert(tmp_path_factory.mktemp("tls"), CERT_NAME)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(cert_files: tuple[Path, Path] | None) -> AsyncIterator[LocalServer]:
    state = LocalServer()
    plain = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = plain.sockets[0].getsockname()[1]
    servers = [plain]
    if cert_files is not None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert_files[0]), str(cert_files[1]))

        def on_sni(sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            state.sni.append(name)

        ctx.sni_callback = on_sni
        tls = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=ctx)
        state.tls_port = tls.sockets[0].getsockname()[1]
        servers.append(tls)
    yield state
    for srv in servers:
        srv.close()
    for task in list(state.tasks):
        task.cancel()
    await asyncio.gather(*state.tasks, return_exceptions=True)
    for srv in servers:
        await srv.wait_closed()


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> None:
    if "server" in request.fixturenames:
        srv: LocalServer = request.getfixturevalue("server")
        srv.seen.clear()
        srv.sni.clear()
        srv.big_bytes_sent = 0


# --------------------------------------------------------------------------------------- helpers

LOCAL_OK = FetchPolicy(allow_private=True)  # ONLY for tests of things other than the address check


def only_loopback_is_public(ip: str) -> bool:
    """Predicate: 127.0.0.1 counts as public (it is our 'internet'); every other address: real rules."""
    return ip != "127.0.0.1" and is_forbidden_address(ip)


class FakeDNS:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return list(self.answers[host])


async def tripwire(host: str, port: int) -> list[str]:
    raise AssertionError(f"resolver must not be consulted for {host!r}")


async def fails(
    url: str,
    code: str,
    policy: FetchPolicy = FetchPolicy(),  # noqa: B008
    resolver: Resolver | None = None,
    is_forbidden: Callable[[str], bool] | None = None,
) -> ImageFetchError:
    with pytest.raises(ImageFetchError) as info:
        await fetch_image(url, policy, resolver=resolver, is_forbidden=is_forbidden)
    assert info.value.code == code, f"{url}: expected {code}, got {info.value.code}: {info.value}"
    assert str(info.value)
    return info.value


# ============================================================================ is_forbidden_address


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1", "127.255.255.254", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
        "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.100.100.200", "100.127.255.255",
        "0.0.0.0", "0.1.2.3",  # noqa: S104  (an address to refuse, not a bind) "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
        "192.0.0.1", "192.0.2.1", "198.18.0.1", "198.51.100.1", "203.0.113.1",
        "::", "::1", "fe80::1", "fe80::1%eth0", "fc00::1", "fd00:ec2::254", "fec0::1", "ff02::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:8.8.8.8", "::127.0.0.1",
        "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "64:ff9b:1::1",
        "2002:7f00:1::", "2002:a9fe:a9fe::1", "2002:a00:1::", "2001::1", "2001:0:4136:e378::1",
        "2001:db8::1", "3fff::1", "100::1",
        "", "localhost", "not-an-ip", "127.0.0.1.", "0127.0.0.1", "2130706433", "1.2.3.4/32",
    ],
)  # fmt: skip
def test_forbidden_addresses(ip: str) -> None:
    assert is_forbidden_address(ip)


@pytest.mark.parametrize(
    "ip",
    ["8.8.8.8", "1.1.1.1", "93.184.216.34", "172.15.255.255", "172.32.0.1", "100.128.0.1",
     "2606:4700:4700::1111", "2001:4860:4860::8888", "2002:808:808::", "64:ff9b::808:808"],
)  # fmt: skip
def test_public_addresses_allowed(ip: str) -> None:
    assert not is_forbidden_address(ip)


# ===================================================================== refused: address / URL checks


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/img.png",
        "http://127.9.9.9:{port}/img.png",
        "http://[::1]:{port}/img.png",
        "http://0.0.0.0:{port}/img.png",
        "http://[::]:{port}/img.png",
        "http://[::ffff:127.0.0.1]:{port}/img.png",
        "http://[::ffff:7f00:1]:{port}/img.png",
        "http://2130706433:{port}/img.png",  # decimal 127.0.0.1
        "http://0x7f000001:{port}/img.png",  # hex 127.0.0.1
        "http://0x7f.0.0.1:{port}/img.png",  # mixed
        "http://127.1:{port}/img.png",  # short form
        "http://127.0.0.1.:{port}/img.png",  # trailing dot
        "http://0:{port}/img.png",  # 0 == 0.0.0.0
        "HTTP://127.0.0.1:{port}/img.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://2852039166/latest/meta-data/",  # decimal 169.254.169.254
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of the metadata address
        "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "http://[fe80::1]/",
        "http://10.0.0.5/",
        "http://172.16.3.4/",
        "http://192.168.0.1/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "https://10.0.0.5/",
    ],
)
async def test_literal_private_addresses_refused(server: LocalServer, url: str) -> None:
    # The resolver must not even be asked: the address is known from the URL.
    await fails(url.format(port=server.port), "image_url_forbidden", resolver=tripwire)
    assert server.seen == []  # nothing reached the loopback server


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST", "localhost.", "foo.localhost", "metadata.google.internal",
     "metadata.google.internal.", "anything.internal"],
)  # fmt: skip
async def test_forbidden_names_refused_before_dns(server: LocalServer, host: str) -> None:
    # Even a resolver claiming a public address is never asked.
    await fails(f"http://{host}:{server.port}/img.png", "image_url_forbidden", resolver=tripwire)
    assert server.seen == []


async def test_localhost_refused_with_real_resolver(server: LocalServer) -> None:
    await fails(server.url("/img.png", host="localhost"), "image_url_forbidden")
    assert server.seen == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "//example.com/a.png",
        "example.com/a.png",
        "",
        "   ",
        "http:///a.png",
        "http://user:pw@example.com/a.png",
        "http://user@example.com/a.png",
        "http://:pw@example.com/a.png",
        "http://example.com\\@127.0.0.1/a.png",  # parsed with userinfo 'example.com\' -> refused
        "http://0177.0.0.1/",  # octal 127.0.0.1: refused as invalid
        "http://1.2.3.4.5/",
        "http://exa mple.com/",
        "http://127.0.0.%31/",
        "http://%31%32%37.0.0.1/",
        "http://[fe80::1%25eth0]/",  # zone id
        "http://[::1/",
        "http://example.com/" + "a" * 9000,
    ],
)
async def test_invalid_urls_refused(url: str) -> None:
    await fails(url, "invalid_image_url", resolver=tripwire)


async def test_invalid_urls_refused_even_when_private_allowed() -> None:
    await fails("file:///etc/passwd", "invalid_image_url", LOCAL_OK, resolver=tripwire)
    await fails("http://u:p@127.0.0.1/", "invalid_image_url", LOCAL_OK, resolver=tripwire)


# ======================================================================= refused: DNS says private


@pytest.mark.parametrize(
    "answers",
    [
        ["10.1.2.3"],
        ["127.0.0.1"],
        ["169.254.169.254"],
        ["::1"],
        ["::ffff:127.0.0.1"],
        ["fe80::1%eth0"],
        ["93.184.216.34", "10.0.0.1"],  # any private answer poisons the lot
        ["93.184.216.34", "::1"],
        ["2606:4700:4700::1111", "8.8.8.8", "169.254.169.254"],
        ["garbage"],
    ],
)
async def test_dns_answer_pointing_inside_is_refused(server: LocalServer, answers: list[str]) -> None:
    dns = FakeDNS({"evil.example": answers})
    await fails(f"http://evil.example:{server.port}/img.png", "image_url_forbidden", resolver=dns)
    assert dns.calls == [("evil.example", server.port)]
    assert server.seen == []


async def test_resolver_gets_default_ports_and_idna_name() -> None:
    dns = FakeDNS({"evil.example": ["10.0.0.1"], "xn--bcher-kva.example": ["10.0.0.1"]})
    await fails("https://evil.example/a.png", "image_url_forbidden", resolver=dns)
    await fails("http://evil.example/a.png", "image_url_forbidden", resolver=dns)
    await fails("http://Bücher.example:8080/a.png", "image_url_forbidden", resolver=dns)
    assert dns.calls == [("evil.example", 443), ("evil.example", 80), ("xn--bcher-kva.example", 8080)]


async def test_unresolvable_host_fails() -> None:
    await fails("http://nowhere.example/a.png", "image_fetch_failed", resolver=FakeDNS({}))
    await fails("http://empty.example/a.png", "image_fetch_failed", resolver=FakeDNS({"empty.example": []}))


async def test_system_resolver_returns_ip_strings() -> None:
    ips = await system_resolver("localhost", 80)
    assert ips
    assert all(is_forbidden_address(ip) for ip in ips)  # loopback, whatever the family


# ============================================================================ success (happy) paths


async def test_fetch_png_ok(server: LocalServer) -> None:
    img = await fetch_image(server.url("/img.png"), LOCAL_OK)
    assert img == FetchedImage(data=PNG, content_type="image/png", width=8, height=6)


async def test_fetch_jpeg_ok(server: LocalServer) -> None:
    img = await fetch_image(server.url("/img.jpg"), LOCAL_OK)
    assert (img.content_type, img.width, img.height) == ("image/jpeg", 8, 6)


async def test_content_type_comes_from_the_bytes_not_the_header(server: LocalServer) -> None:
    img = await fetch_image(server.url("/lying-type"), LOCAL_OK)
    assert img.content_type == "image/png"


async def test_connects_to_the_checked_ip_with_original_host_header(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name is resolved once, checked, and the connection goes to THAT address.

    The resolver answers 127.0.0.1 (treated as public here) the first time and the metadata address
    on any later call; any system DNS lookup during the fetch blows up. The fetch still succeeds, the
    resolver was asked once, and the server saw the original name in Host.
    """
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"] if len(calls) == 1 else ["169.254.169.254"]

    def no_system_dns(*args: object, **kwargs: object) -> object:
        raise AssertionError(f"system DNS used: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", no_system_dns)
    url = f"http://rebind.example:{server.port}/img.png"
    img = await fetch_image(url, resolver=rebinding, is_forbidden=only_loopback_is_public)
    assert img.data == PNG
    assert calls == ["rebind.example"]
    assert server.seen[0].headers["host"] == f"rebind.example:{server.port}"
    assert server.seen[0].headers["accept-encoding"] == "identity"


async def test_falls_back_to_next_checked_address_on_connect_failure(server: LocalServer) -> None:
    # Nothing listens on 127.0.0.2 (the server is bound to 127.0.0.1 only): refused, then next address.
    dns = FakeDNS({"multi.example": ["127.0.0.2", "127.0.0.1"]})
    img = await fetch_image(f"http://multi.example:{server.port}/img.png", LOCAL_OK, resolver=dns)
    assert img.data == PNG
    assert len(server.seen) == 1


async def test_connection_refused_fails(server: LocalServer) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    await fails(f"http://127.0.0.1:{closed_port}/img.png", "image_fetch_failed", LOCAL_OK)


async def test_allow_private_still_refuses_unspecified_and_multicast() -> None:
    await fails("http://0.0.0.0/", "image_url_forbidden", LOCAL_OK, resolver=tripwire)
    await fails("http://[::]/", "image_url_forbidden", LOCAL_OK, resolver=tripwire)
    await fails("http://224.0.0.1/", "image_url_forbidden", LOCAL_OK, resolver=tripwire)


# ======================================================================================= redirects


def redirect_to(server: LocalServer, target: str, code: int = 302) -> str:
    return server.url(f"/redirect?code={code}&to={quote(target, safe='')}")


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_redirect_to_allowed_target_is_followed(server: LocalServer, code: int) -> None:
    url = redirect_to(server, server.url("/img.png"), code)
    img = await fetch_image(url, is_forbidden=only_loopback_is_public, resolver=tripwire)
    assert img.data == PNG
    assert server.paths()[1] == "/img.png"


async def test_relative_redirect_is_followed(server: LocalServer) -> None:
    img = await fetch_image(redirect_to(server, "/img.png"), is_forbidden=only_loopback_is_public)
    assert img.data == PNG


async def test_redirect_through_a_name_keeps_its_host_header(server: LocalServer) -> None:
    dns = FakeDNS({"public.example": ["127.0.0.1"]})
    url = redirect_to(server, f"http://public.example:{server.port}/img.png")
    img = await fetch_image(url, resolver=dns, is_forbidden=only_loopback_is_public)
    assert img.data == PNG
    assert dns.calls == [("public.example", server.port)]
    assert server.seen[1].headers["host"] == f"public.example:{server.port}"


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("http://169.254.169.254/latest/meta-data/", "image_url_forbidden"),
        ("http://[::ffff:169.254.169.254]/latest/meta-data/", "image_url_forbidden"),
        ("http://2852039166/latest/meta-data/", "image_url_forbidden"),
        ("http://metadata.google.internal/computeMetadata/v1/", "image_url_forbidden"),
        ("http://10.0.0.5/", "image_url_forbidden"),
        ("http://[::1]:{port}/img.png", "image_url_forbidden"),
        ("http://0x7f000002:{port}/img.png", "image_url_forbidden"),  # 127.0.0.2: not whitelisted
        # 'localhost' resolves to 127.0.0.1, which this test's predicate allows: refused by name.
        ("http://localhost:{port}/img.png", "image_url_forbidden"),
        # a name whose DNS answer is private
        ("http://evil.example:{port}/img.png", "image_url_forbidden"),
        ("file:///etc/passwd", "invalid_image_url"),
        ("ftp://127.0.0.1/img.png", "invalid_image_url"),
        ("gopher://127.0.0.1:{port}/", "invalid_image_url"),
        ("data:image/png;base64," + base64.b64encode(PNG).decode(), "invalid_image_url"),
        ("http://u:p@127.0.0.1:{port}/img.png", "invalid_image_url"),
    ],
)
async def test_redirect_target_is_rechecked(server: LocalServer, target: str, code: str) -> None:
    dns = FakeDNS({"evil.example": ["10.1.2.3"]})
    url = redirect_to(server, target.format(port=server.port))
    err = await fails(url, code, resolver=dns, is_forbidden=only_loopback_is_public)
    assert "redirect" in str(err)
    assert len(server.seen) == 1  # the first hop happened; the second never did


async def test_redirect_to_private_refused_with_default_predicate(server: LocalServer) -> None:
    # Both hops are names; only the first one's DNS answer (127.0.0.1) is acceptable.
    dns = FakeDNS({"public.example": ["127.0.0.1"], "inner.example": ["192.168.1.10"]})
    url = f"http://public.example:{server.port}/redirect?to=" + quote("http://inner.example/x", safe="")
    await fails(url, "image_url_forbidden", resolver=dns, is_forbidden=only_loopback_is_public)
    assert [c[0] for c in dns.calls] == ["public.example", "inner.example"]


async def test_redirect_loop_and_limit(server: LocalServer) -> None:
    await fails(server.url("/loop"), "image_fetch_failed", LOCAL_OK)
    assert len(server.seen) == 4  # first request + max_redirects (3)
    server.seen.clear()
    img = await fetch_image(server.url("/chain?n=3"), LOCAL_OK)
    assert img.data == PNG
    await fails(server.url("/chain?n=4"), "image_fetch_failed", LOCAL_OK)
    await fails(server.url("/chain?n=1"), "image_fetch_failed", FetchPolicy(max_redirects=0, allow_private=True))


async def test_redirect_without_location_fails(server: LocalServer) -> None:
    await fails(server.url("/redirect"), "image_fetch_failed", LOCAL_OK)


# ======================================================================================= size caps


async def test_content_length_too_big_is_refused_without_reading(server: LocalServer) -> None:
    start = time.monotonic()
    await fails(server.url("/big-declared"), "image_too_large", FetchPolicy(allow_private=True, timeout_s=5))
    assert time.monotonic() - start < 2  # did not wait for the (never sent) body


async def test_chunked_body_too_big_is_cut_off(server: LocalServer) -> None:
    policy = FetchPolicy(max_bytes=200_000, allow_private=True)
    await fails(server.url("/big-chunked"), "image_too_large", policy)
    await asyncio.sleep(0.1)
    assert server.big_bytes_sent < 200 * 65536  # the client stopped reading before the end


async def test_close_delimited_body_too_big_is_cut_off(server: LocalServer) -> None:
    await fails(server.url("/big-close"), "image_too_large", FetchPolicy(max_bytes=200_000, allow_private=True))


async def test_body_exactly_at_cap_is_fine(server: LocalServer) -> None:
    img = await fetch_image(server.url("/img.png"), FetchPolicy(max_bytes=len(PNG), allow_private=True))
    assert img.data == PNG
    await fails(server.url("/img.png"), "image_too_large", FetchPolicy(max_bytes=len(PNG) - 1, allow_private=True))


async def test_compressed_response_is_refused(server: LocalServer) -> None:
    await fails(server.url("/gzip.png"), "image_fetch_failed", LOCAL_OK)


# ========================================================================================= timeouts


async def test_server_that_never_answers_times_out(server: LocalServer) -> None:
    start = time.monotonic()
    await fails(server.url("/slow-headers"), "image_fetch_timeout", FetchPolicy(timeout_s=0.5, allow_private=True))
    assert time.monotonic() - start < 3


async def test_total_time_is_capped_for_a_dripping_body(server: LocalServer) -> None:
    # Every read completes quickly (50 ms), so only a cap on the *total* catches this.
    start = time.monotonic()
    await fails(server.url("/drip"), "image_fetch_timeout", FetchPolicy(timeout_s=0.8, allow_private=True))
    assert time.monotonic() - start < 3


async def test_total_time_is_capped_across_redirects(server: LocalServer) -> None:
    # 3 redirects + final, 0.3 s each: every hop is well under the timeout, the chain is not.
    policy = FetchPolicy(timeout_s=0.8, allow_private=True)
    await fails(server.url("/chain?n=3&delay=0.3"), "image_fetch_timeout", policy)


# ============================================================================= non-2xx / non-image


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500, 503])
async def test_non_2xx_fails_with_status(server: LocalServer, status: int) -> None:
    err = await fails(server.url(f"/status?code={status}"), "image_fetch_failed", LOCAL_OK)
    assert str(status) in str(err)


@pytest.mark.parametrize("path", ["/text", "/fake.png", "/truncated.png", "/bomb.png"])
async def test_non_image_bodies_are_refused(server: LocalServer, path: str) -> None:
    await fails(server.url(path), "invalid_image", LOCAL_OK)


# ============================================================================================ https


async def test_https_sends_sni_and_verifies_certificate_against_the_name(
    server: LocalServer, cert_files: tuple[Path, Path] | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if cert_files is None:
        pytest.skip("openssl not available to make a test certificate")
    dns = FakeDNS({CERT_NAME: ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    url = f"https://{CERT_NAME}:{server.tls_port}/img.png"

    # 1. Verification is on: our self-signed cert is not trusted by default.
    await fails(url, "image_fetch_failed", resolver=dns, is_forbidden=only_loopback_is_public)
    assert server.sni == [CERT_NAME]  # SNI carried the name although we connected to 127.0.0.1

    # 2. Trusting it, the fetch works: the cert (DNS:public.example only, no IP SAN) was checked
    #    against the name, the TCP connection went to the checked IP.
    monkeypatch.setattr(fetch_mod, "_make_ssl_context", lambda: ssl.create_default_context(cafile=cert_files[0]))
    server.sni.clear()
    img = await fetch_image(url, resolver=dns, is_forbidden=only_loopback_is_public)
    assert img.data == PNG
    assert server.sni == [CERT_NAME]
    assert server.seen[-1].headers["host"] == f"{CERT_NAME}:{server.tls_port}"

    # 3. A name the cert does not cover fails, even though it is the same IP.
    other = f"https://other.example:{server.tls_port}/img.png"
    await fails(other, "image_fetch_failed", resolver=dns, is_forbidden=only_loopback_is_public)


# ======================================================================================== data URLs


@pytest.mark.parametrize(
    ("data", "ctype"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp"), (BMP, "image/bmp")],
)
async def test_data_url_formats(data: bytes, ctype: str) -> None:
    img = decode_data_url(b64_data_url(data, ctype), FetchPolicy())
    assert (img.content_type, img.width, img.height, img.data) == (ctype, 8, 6, data)
    assert await fetch_image(b64_data_url(data, ctype), resolver=tripwire) == img


def test_data_url_variants() -> None:
    policy = FetchPolicy()
    # no media type, upper-case scheme, media type lying about the format, unpadded, wrapped base64
    b64 = base64.b64encode(PNG).decode()
    for url in [
        f"data:;base64,{b64}",
        f"DATA:image/png;BASE64,{b64}",
        f"data:image/gif;base64,{b64}",
        f"data:image/png;base64,{b64.rstrip('=')}",
        f"data:image/png;base64,{b64[:20]}\n{b64[20:]}",
        f"data:image/png;base64,{quote(b64, safe='')}",
        f"data:image/png,{quote_from_bytes(PNG)}",  # percent-encoded, not base64
    ]:
        img = decode_data_url(url, policy)
        assert (img.content_type, img.data) == ("image/png", PNG), url


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("data:image/png;base64,@@@not base64!!!", "invalid_image_url"),
        ("data:image/png;base64,A", "invalid_image_url"),
        ("data:image/png;base64," + "é" * 8, "invalid_image_url"),
        ("data:image/png;base64" + base64.b64encode(PNG).decode(), "invalid_image_url"),  # no comma
        ("data:image/png;base64,", "invalid_image"),
        ("data:image/png;base64," + base64.b64encode(b"hello world, not an image").decode(), "invalid_image"),
        ("data:text/plain,hello%20world", "invalid_image"),
        ("data:text/plain;base64," + base64.b64encode(b"just text").decode(), "invalid_image"),
        ("data:text/html;base64," + base64.b64encode(PNG).decode(), "invalid_image"),
        ("data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'/%3E", "invalid_image"),
        (b64_data_url(make_image("PNG", (64, 64))[:-40]), "invalid_image"),  # truncated: full decode
        (b64_data_url(BOMB_OUR_CAP), "invalid_image"),
        (b64_data_url(BOMB_PILLOW), "invalid_image"),
        (b64_data_url(make_image("TIFF"), "image/tiff"), "invalid_image"),  # real image, format not allowed
    ],
)
async def test_bad_data_urls(url: str, code: str) -> None:
    with pytest.raises(ImageFetchError) as info:
        decode_data_url(url, FetchPolicy())
    assert info.value.code == code
    await fails(url, code, resolver=tripwire)


def test_data_url_size_cap_applies_to_decoded_bytes() -> None:
    noisy = Image.frombytes("RGB", (64, 64), random.Random(7).randbytes(64 * 64 * 3))  # noqa: S311  (test noise)
    buf = io.BytesIO()
    noisy.save(buf, format="PNG")
    data = buf.getvalue()
    assert len(data) > 1000
    small = FetchPolicy(max_bytes=len(data) - 1)
    for url in [b64_data_url(data), f"data:image/png,{quote_from_bytes(data)}"]:
        with pytest.raises(ImageFetchError) as info:
            decode_data_url(url, small)
        assert info.value.code == "image_too_large"
        assert decode_data_url(url, FetchPolicy(max_bytes=len(data))).data == data


def test_huge_data_url_refused_before_decoding() -> None:
    url = "data:image/png;base64," + "A" * (4 * 1024 * 1024)
    with pytest.raises(ImageFetchError) as info:
        decode_data_url(url, FetchPolicy(max_bytes=1024))
    assert info.value.code == "image_too_large"


# =============================================================================== check_image direct


def test_check_image_decodes_fully() -> None:
    assert check_image(PNG).content_type == "image/png"
    with pytest.raises(ImageFetchError, match="too large"):
        check_image(BOMB_OUR_CAP)
    for bad in [b"", b"GIF89a", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, make_image("JPEG", (64, 64))[:200]]:
        with pytest.raises(ImageFetchError) as info:
            check_image(bad)
        assert info.value.code == "invalid_image"


def test_error_type() -> None:
    import pickle

    err = ImageFetchError("image_url_forbidden", "nope")
    assert isinstance(err, ValueError)
    assert (err.code, err.message, str(err)) == ("image_url_forbidden", "nope", "nope")
    again = pickle.loads(pickle.dumps(err))  # noqa: S301  (our own bytes, just made)
    assert (again.code, again.message) == (err.code, err.message)


def test_policy_validation() -> None:
    assert FetchPolicy() == FetchPolicy(10 * 1024 * 1024, 10.0, 3, False)
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        FetchPolicy(max_bytes=0)
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        FetchPolicy(timeout_s=0)
    with pytest.raises(ValueError, match="max_redirects must be >= 0"):
        FetchPolicy(max_redirects=-1)
