"""What an upstream cannot do to this server: fill its memory, or receive this process's environment.

Same fake upstream as test_upstream_engine (a real HTTP server on 127.0.0.1), driven through the
real openai SDK; plus a reelchat app in-process whose model is that upstream, for the decode cap.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from helpers import assert_openai_error
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from test_upstream_engine import (
    API_KEY,
    KEY_ENV,
    FakeReporter,
    FakeUpstream,
    expect_error,
    make_job,
    make_spec,
    run_engine,
    webp_bytes,
)

from reelchat.api.app import create_app
from reelchat.media.encode import VideoTooLarge, decode_mp4, encode_mp4
from reelchat.settings import Settings

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")


class EndlessUpstream(FakeUpstream):
    """An upstream whose finished video is a body that never ends, sent without a Content-Length."""

    async def _content(self, request: Request) -> Response:
        if request.query_params.get("variant", "video") != "video":
            return await super()._content(request)
        await self._record(request, "video")

        async def forever() -> AsyncIterator[bytes]:
            chunk = b"\0" * 65536
            while not self.stopping:
                yield chunk
                await asyncio.sleep(0)

        return StreamingResponse(forever(), media_type="video/mp4")


class CountingProxy:
    """A listening socket standing in for an HTTP proxy: it counts who connects, and answers no one."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def mp4() -> bytes:
    rng = np.random.default_rng(99)
    return encode_mp4(rng.integers(0, 256, size=(9, 160, 96, 3), dtype=np.uint8), 4)


@pytest.fixture(autouse=True)
def _key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, API_KEY)


@pytest.fixture
def upstream(mp4: bytes) -> Iterator[Callable[..., FakeUpstream]]:
    started: list[FakeUpstream] = []

    def start(kind: type[FakeUpstream] = FakeUpstream, **kwargs: Any) -> FakeUpstream:
        fake = kind(mp4, **kwargs)
        fake.start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


# ------------------------------------------------------------------------------------ byte caps


async def test_a_video_over_the_byte_cap_fails_with_a_clear_code(
    upstream: Callable[..., FakeUpstream], mp4: bytes
) -> None:
    fake = upstream()
    spec = make_spec(fake.base_url, max_video_bytes=len(mp4) - 1)
    err = await expect_error(spec, make_job(), FakeReporter(fake), "upstream_too_large")
    assert f"larger than {len(mp4) - 1} bytes" in str(err)


async def test_a_body_without_a_length_is_cut_off_at_the_cap(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream(EndlessUpstream)
    spec = make_spec(fake.base_url, max_video_bytes=2 * 1024 * 1024)
    started = time.monotonic()
    await expect_error(spec, make_job(), FakeReporter(fake), "upstream_too_large")
    assert time.monotonic() - started < 10  # stopped at the cap, long before the deadline


async def test_an_oversized_thumbnail_is_dropped_and_the_video_kept(
    upstream: Callable[..., FakeUpstream], mp4: bytes
) -> None:
    thumb = webp_bytes()
    fake = upstream(thumbnail=thumb)
    result = await run_engine(make_spec(fake.base_url, max_thumbnail_bytes=len(thumb) - 1), make_job(), FakeReporter())
    assert result.video == mp4
    assert result.thumbnail is None  # the service draws its own


# ----------------------------------------------------------------------------------- environment


async def test_the_processes_environment_does_not_reach_the_upstream(
    upstream: Callable[..., FakeUpstream], mp4: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = CountingProxy()
    try:
        monkeypatch.setenv("OPENAI_ORG_ID", "org-of-whoever-runs-the-server")
        monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_of_whoever_runs_the_server")
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        fake = upstream()
        result = await run_engine(make_spec(fake.base_url), make_job(), FakeReporter(fake))
    finally:
        proxy.close()
    assert result.video == mp4
    assert fake.seen, "the upstream was never reached"
    for seen in fake.seen:
        assert "openai-organization" not in seen.headers, seen.headers
        assert "openai-project" not in seen.headers, seen.headers
    assert proxy.connections == 0


async def test_organization_and_project_are_sent_when_configured(
    upstream: Callable[..., FakeUpstream], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-from-the-environment")
    fake = upstream()
    await run_engine(
        make_spec(fake.base_url, organization="org-upstream", project="proj-upstream"), make_job(), FakeReporter()
    )
    (create,) = fake.requests("POST", "/v1/videos")
    assert create.headers["openai-organization"] == "org-upstream"
    assert create.headers["openai-project"] == "proj-upstream"


# ------------------------------------------------------------------------------------ decode cap


def test_decode_refuses_a_video_over_its_pixel_cap(mp4: bytes) -> None:
    pixels = 96 * 160 * 9
    assert decode_mp4(mp4, max_pixels=pixels).shape == (9, 160, 96, 3)
    with pytest.raises(VideoTooLarge, match="96x160 with 9 frames"):
        decode_mp4(mp4, max_pixels=pixels - 1)
    with pytest.raises(VideoTooLarge, match="96x160;"):
        decode_mp4(mp4, max_pixels=96 * 160 - 1)


@pytest.fixture
async def capped_app(
    make_home: Callable[[str], Path], upstream: Callable[..., FakeUpstream]
) -> AsyncIterator[httpx.AsyncClient]:
    fake = upstream()
    catalog = {
        "sora-2": {
            "engine": "upstream",
            "upstream": {"base_url": fake.base_url, "model": "sora-2", "poll_interval_s": 0.05, "deadline_s": 60},
            "seconds": [4],
            "default_seconds": 4,
            "portrait_sizes": ["96x160"],
            "landscape_sizes": ["160x96"],
            "fps": 4,
            "steps": 1,
        }
    }
    settings = Settings(home=make_home("decode-cap"), models_json=json.dumps(catalog), max_video_pixels=100_000)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as client:
            yield client


async def test_an_upstream_video_too_large_to_decode_fails_the_task(capped_app: httpx.AsyncClient) -> None:
    created = await capped_app.post("/v1/videos", json={"prompt": "a video bigger than the cap", "model": "sora-2"})
    assert created.status_code == 200, created.text
    video_id = created.json()["id"]
    deadline = time.monotonic() + 60
    while (video := (await capped_app.get(f"/v1/videos/{video_id}")).json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, video
        await asyncio.sleep(0.1)
    assert video["status"] == "failed", video
    assert video["error"]["code"] == "video_too_large"
    assert "96x160 with 9 frames" in video["error"]["message"]
    # the content endpoint says there is no video (409: not ready, as for a queued one), it doesn't crash
    assert_openai_error(await capped_app.get(f"/v1/videos/{video_id}/content"), 409)
