"""UpstreamEngine against a fault-injecting fake OpenAI Videos API server.

The fake is a real HTTP server (Starlette under uvicorn, in a background thread, on 127.0.0.1 with an
ephemeral port) speaking the /v1/videos wire shape, so the engine goes through the real openai SDK,
its multipart encoding, httpx, sockets and timeouts. Faults are scripted per operation: an HTTP error
(with headers such as Retry-After), or a delay longer than the engine's request timeout; the server
can also be stopped mid-job.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from reelchat.engines.base import EngineCancelled, EngineError, EngineResult
from reelchat.engines.upstream_engine import UpstreamEngine
from reelchat.engines.upstream_spec import UpstreamJob, UpstreamRemix, UpstreamServer
from reelchat.media.encode import decode_mp4, encode_mp4

API_KEY = "sk-reelchat-TEST-9f3c1b7e-do-not-leak"
KEY_ENV = "REELCHAT_TEST_UPSTREAM_KEY"

# The SDK marks videos.* deprecated (OpenAI's hosted Sora is being retired); self-hosted upstreams aren't.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API is scheduled:DeprecationWarning")


# ---------------------------------------------------------------------------------------------- fake


@dataclass
class Fault:
    """What the fake does to one request instead of (or before) answering it normally."""

    status: int | None = None  # answer with this HTTP error
    message: str = "injected failure"
    headers: dict[str, str] = field(default_factory=dict)
    sleep: float = 0.0  # wait this long first (then answer normally unless status/html is set)
    html: bool = False  # answer 200 with an HTML page, like a misconfigured proxy


@dataclass
class Seen:
    method: str
    path: str
    at: float
    headers: dict[str, str]
    form: dict[str, Any] = field(default_factory=dict)


@dataclass
class Job:
    id: str
    prompt: str
    size: str
    seconds: str
    model: str
    remixed_from: str | None = None
    polls: int = 0
    status: str = "queued"
    progress: int = 0
    created_at: int = field(default_factory=lambda: int(time.time()))
    completed_at: int | None = None


class FakeUpstream:
    """A /v1/videos server whose jobs finish after `polls_to_finish` polls (unless told otherwise)."""

    def __init__(
        self,
        video: bytes,
        *,
        polls_to_finish: int = 2,
        poll_after_ms: int | None = None,
        never_finish: bool = False,
        fail_with: tuple[str, str] | None = None,  # (code, message) for a `failed` status
        thumbnail: bytes | None = None,
        faults: dict[str, list[Fault]] | None = None,
    ) -> None:
        self.video = video
        self.polls_to_finish = polls_to_finish
        self.poll_after_ms = poll_after_ms
        self.never_finish = never_finish
        self.fail_with = fail_with
        self.thumbnail = thumbnail
        self.faults = faults or {}
        self.jobs: dict[str, Job] = {}
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._next = 0
        self.app = Starlette(
            routes=[
                Route("/v1/videos", self._create, methods=["POST"]),
                Route("/v1/videos/{vid}", self._retrieve, methods=["GET"]),
                Route("/v1/videos/{vid}", self._delete, methods=["DELETE"]),
                Route("/v1/videos/{vid}/content", self._content, methods=["GET"]),
                Route("/v1/videos/{vid}/remix", self._remix, methods=["POST"]),
            ]
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.stopping = False

    # ---- server lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake upstream did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.stopping = True
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # ---- what it saw -------------------------------------------------------------------------

    def requests(self, method: str, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.method == method and (path is None or s.path == path)]

    def polls(self) -> list[Seen]:
        with self._lock:
            return [
                s for s in self.seen if s.method == "GET" and s.path.count("/") == 3 and not s.path.endswith("/content")
            ]

    def seed(self, vid: str, *, status: str = "in_progress", polls: int = 0, size: str = "96x160") -> None:
        self.jobs[vid] = Job(id=vid, prompt="seeded", size=size, seconds="4", model="sora-2", polls=polls)
        self.jobs[vid].status = status

    # ---- wire shape --------------------------------------------------------------------------

    def _video(self, job: Job) -> dict[str, Any]:
        error = None
        if job.status == "failed" and self.fail_with is not None:
            error = {"code": self.fail_with[0], "message": self.fail_with[1]}
        return {
            "id": job.id,
            "object": "video",
            "status": job.status,
            "progress": job.progress,
            "model": job.model,
            "prompt": job.prompt,
            "seconds": job.seconds,
            "size": job.size,
            "created_at": job.created_at,
            "completed_at": job.completed_at,
            "expires_at": None,
            "remixed_from_video_id": job.remixed_from,
            "error": error,
        }

    def _answer(self, job: Job) -> JSONResponse:
        headers = {}
        if self.poll_after_ms is not None and job.status in ("queued", "in_progress"):
            headers["openai-poll-after-ms"] = str(self.poll_after_ms)
        return JSONResponse(self._video(job), headers=headers)

    @staticmethod
    def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
        return JSONResponse(body, status_code=status, headers=headers)

    async def _record(self, request: Request, op: str, form: dict[str, Any] | None = None) -> Response | None:
        """Log the request, then apply the next scripted fault for `op`, if any."""
        with self._lock:
            self.seen.append(
                Seen(request.method, request.url.path, time.monotonic(), dict(request.headers), form or {})
            )
            queue = self.faults.get(op)
            fault = queue.pop(0) if queue else None
        if fault is None:
            return None
        if fault.sleep:
            # in slices, so stopping the server doesn't wait out (or noisily cancel) the sleep
            end = time.monotonic() + fault.sleep
            while time.monotonic() < end and not self.stopping:  # noqa: ASYNC110  (set from the test's thread)
                await asyncio.sleep(0.02)
        if fault.html:
            return Response(b"<html><body>502 Bad Gateway</body></html>", media_type="text/html")
        if fault.status is not None:
            return self._error(fault.status, fault.message, fault.headers)
        return None

    def _new_job(self, prompt: str, size: str, seconds: str, model: str, remixed_from: str | None) -> Job:
        with self._lock:
            self._next += 1
            job = Job(f"video_fake{self._next:04d}", prompt, size, seconds, model, remixed_from)
            self.jobs[job.id] = job
        return job

    # ---- routes ------------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        form: dict[str, Any] = {}
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            async with request.form() as parsed:
                for key, value in parsed.multi_items():
                    if isinstance(value, UploadFile):
                        form[key] = {"filename": value.filename, "type": value.content_type, "data": await value.read()}
                    else:
                        form[key] = value
        else:
            form = await request.json()
        failure = await self._record(request, "create", form)
        if failure is not None:
            return failure
        job = self._new_job(
            str(form.get("prompt", "")),
            str(form.get("size", "720x1280")),
            str(form.get("seconds", "4")),
            str(form.get("model", "sora-2")),
            None,
        )
        return self._answer(job)

    async def _remix(self, request: Request) -> Response:
        body = await request.json()
        failure = await self._record(request, "remix", body)
        if failure is not None:
            return failure
        source = self.jobs.get(request.path_params["vid"])
        if source is None:
            return self._error(404, f"No video found with id '{request.path_params['vid']}'.")
        job = self._new_job(str(body.get("prompt", "")), source.size, source.seconds, source.model, source.id)
        return self._answer(job)

    async def _retrieve(self, request: Request) -> Response:
        failure = await self._record(request, "poll")
        if failure is not None:
            return failure
        job = self.jobs.get(request.path_params["vid"])
        if job is None:
            return self._error(404, "No such video.")
        if job.status in ("queued", "in_progress"):
            job.polls += 1
            if self.never_finish:
                job.status, job.progress = "in_progress", 50
            elif job.polls > self.polls_to_finish:
                if self.fail_with is not None:
                    job.status = "failed"
                else:
                    job.status, job.progress = "completed", 100
                job.completed_at = int(time.time())
            else:
                job.status = "in_progress"
                job.progress = job.polls * 100 // (self.polls_to_finish + 1)
        return self._answer(job)

    async def _content(self, request: Request) -> Response:
        variant = request.query_params.get("variant", "video")
        failure = await self._record(request, variant)
        if failure is not None:
            return failure
        job = self.jobs.get(request.path_params["vid"])
        if job is None or job.status != "completed":
            return self._error(404 if job is None else 400, "Video is not ready.")
        if variant == "thumbnail":
            if self.thumbnail is None:
                return self._error(404, "This server makes no thumbnails.")
            return Response(self.thumbnail, media_type="image/webp")
        return Response(self.video, media_type="video/mp4")

    async def _delete(self, request: Request) -> Response:
        failure = await self._record(request, "delete")
        if failure is not None:
            return failure
        vid = request.path_params["vid"]
        if self.jobs.pop(vid, None) is None:
            return self._error(404, "No such video.")
        return JSONResponse({"id": vid, "object": "video.deleted", "deleted": True})


# ------------------------------------------------------------------------------------------ helpers


class FakeReporter:
    def __init__(
        self,
        fake: FakeUpstream | None = None,
        *,
        upstream_job_id: str | None = None,
        cancel_when: Callable[[], bool] = lambda: False,
        on_remember: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.fake = fake
        self._upstream_job_id = upstream_job_id
        self._cancel_when = cancel_when
        self._on_remember = on_remember
        self.progress_values: list[int] = []
        self.remembered: list[str] = []
        self.polls_before_remember: int | None = None

    def progress(self, percent: int) -> None:
        self.progress_values.append(percent)

    def cancelled(self) -> bool:
        return self._cancel_when()

    def wants_previews(self) -> bool:
        return False

    def preview(self, picture: object) -> None:
        pass

    @property
    def upstream_job_id(self) -> str | None:
        return self._upstream_job_id

    async def remember_upstream_job(self, job_id: str) -> None:
        if self.fake is not None:
            self.polls_before_remember = len(self.fake.polls())
        self.remembered.append(job_id)
        self._upstream_job_id = job_id
        if self._on_remember is not None:
            await self._on_remember()


def make_spec(base_url: str, **overrides: Any) -> UpstreamServer:
    fields: dict[str, Any] = {
        "base_url": base_url,
        "model": "sora-2",
        "api_key_env": KEY_ENV,
        "poll_interval_s": 0.02,
        "retry_backoff_s": 0.02,
        "request_timeout_s": 3.0,
        "max_retries": 2,
        "deadline_s": 20.0,
    }
    fields.update(overrides)
    return UpstreamServer(**fields)


def make_job(
    *, source_video: bytes | None = None, source_upstream_id: str | None = None, **overrides: Any
) -> UpstreamJob:
    fields: dict[str, Any] = {"prompt": "a red fox runs through snow", "width": 96, "height": 160, "seconds": 4}
    fields.update(overrides)
    if source_video is not None:  # a remix: the turn's words are the prompt
        fields["remix"] = UpstreamRemix(
            video=source_video, upstream_id=source_upstream_id, instruction=fields["prompt"]
        )
    return UpstreamJob(**fields)


async def run_engine(spec: UpstreamServer, job: UpstreamJob, reporter: FakeReporter) -> EngineResult:
    engine = UpstreamEngine(spec)
    try:
        return await engine.generate(job, reporter)
    finally:
        await engine.close()


async def expect_error(spec: UpstreamServer, job: UpstreamJob, reporter: FakeReporter, code: str) -> EngineError:
    with pytest.raises(EngineError) as info:
        await run_engine(spec, job, reporter)
    err = info.value
    assert err.code == code, f"{err.code}: {err}"
    assert API_KEY not in str(err)
    assert API_KEY not in repr(err.__cause__)
    assert API_KEY not in repr(err.__context__)
    return err


def webp_bytes(color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 160), color).save(out, format="WEBP")
    return out.getvalue()


def png_bytes(size: tuple[int, int], color: tuple[int, int, int] = (200, 20, 20)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mp4() -> bytes:
    rng = np.random.default_rng(1234)
    frames = rng.integers(0, 256, size=(9, 160, 96, 3), dtype=np.uint8)
    return encode_mp4(frames, 4)


@pytest.fixture(autouse=True)
def _key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, API_KEY)


@pytest.fixture(autouse=True)
def _key_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Whatever a test does, no log record (ours, the SDK's or httpx's, at DEBUG) carries the key."""
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        assert API_KEY not in record.getMessage(), record.getMessage()


@pytest.fixture
def upstream(mp4: bytes) -> Iterator[Callable[..., FakeUpstream]]:
    started: list[FakeUpstream] = []

    def start(**kwargs: Any) -> FakeUpstream:
        fake = FakeUpstream(mp4, **kwargs)
        fake.start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


# -------------------------------------------------------------------------------------------- tests


async def test_happy_path(upstream: Callable[..., FakeUpstream], mp4: bytes) -> None:
    thumb = webp_bytes()
    fake = upstream(polls_to_finish=3, thumbnail=thumb)
    reporter = FakeReporter(fake)
    result = await run_engine(make_spec(fake.base_url), make_job(), reporter)

    assert result.video == mp4
    assert result.thumbnail == thumb
    assert result.frames is None
    assert result.fps == 0
    # the upstream id is durable before the first poll
    assert len(reporter.remembered) == 1
    assert reporter.remembered[0] in fake.jobs
    assert reporter.polls_before_remember == 0
    # progress: relayed, rising, never 100 (the service says 100 once the media is stored)
    assert reporter.progress_values == sorted(set(reporter.progress_values))
    assert any(0 < p < 100 for p in reporter.progress_values)
    assert max(reporter.progress_values) < 100
    # the create request: the SDK sends multipart form fields even without a file
    (create,) = fake.requests("POST", "/v1/videos")
    assert create.headers["content-type"].startswith("multipart/form-data")
    assert create.form == {"prompt": "a red fox runs through snow", "model": "sora-2", "seconds": "4", "size": "96x160"}
    assert create.headers["authorization"] == f"Bearer {API_KEY}"
    assert create.headers["idempotency-key"].startswith("reelchat-")
    assert len(fake.polls()) == 4
    assert [s.path for s in fake.requests("GET") if s.path.endswith("/content")] == [
        f"/v1/videos/{reporter.remembered[0]}/content"
    ] * 2


async def test_thumbnail_missing_upstream_gives_none(upstream: Callable[..., FakeUpstream], mp4: bytes) -> None:
    fake = upstream(thumbnail=None)
    result = await run_engine(make_spec(fake.base_url), make_job(), FakeReporter(fake))
    assert result.video == mp4
    assert result.thumbnail is None


async def test_thumbnail_in_another_format_becomes_webp(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream(thumbnail=png_bytes((96, 160), (0, 0, 255)))
    result = await run_engine(make_spec(fake.base_url), make_job(), FakeReporter(fake))
    assert result.thumbnail is not None
    assert result.thumbnail[:4] == b"RIFF"
    assert result.thumbnail[8:12] == b"WEBP"
    with Image.open(io.BytesIO(result.thumbnail)) as im:
        pixel = im.convert("RGB").getpixel((48, 80))
        assert isinstance(pixel, tuple)
        r, g, b = pixel
        assert b > 200
        assert r < 40
        assert g < 40


async def test_poll_after_header_is_honoured(upstream: Callable[..., FakeUpstream]) -> None:
    # The spec's own interval is 20 ms; the upstream asks for 250 ms between polls.
    fake = upstream(polls_to_finish=3, poll_after_ms=250)
    await run_engine(make_spec(fake.base_url), make_job(), FakeReporter(fake))
    times = [s.at for s in fake.polls()]
    assert len(times) == 4  # no extra polls squeezed in
    gaps = np.diff(times)
    assert min(gaps) >= 0.24, gaps

    # without the header, the spec's interval applies: the same job polls much faster
    fast = upstream(polls_to_finish=3)
    await run_engine(make_spec(fast.base_url), make_job(), FakeReporter(fast))
    fast_gaps = np.diff([s.at for s in fast.polls()])
    assert len(fast_gaps) == 3, fast_gaps
    assert max(fast_gaps) < 0.2, fast_gaps


async def test_resume_polls_the_remembered_job_without_creating(
    upstream: Callable[..., FakeUpstream], mp4: bytes
) -> None:
    fake = upstream(polls_to_finish=3)
    fake.seed("video_earlier", status="in_progress", polls=2)  # an earlier attempt started it
    reporter = FakeReporter(fake, upstream_job_id="video_earlier")
    result = await run_engine(make_spec(fake.base_url), make_job(), reporter)
    assert result.video == mp4
    assert fake.requests("POST") == []  # no second (double-charged) job
    assert reporter.remembered == []
    assert {s.path for s in fake.polls()} == {"/v1/videos/video_earlier"}


async def test_resume_of_a_job_the_upstream_lost_fails_clearly(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream()
    reporter = FakeReporter(fake, upstream_job_id="video_lost")
    err = await expect_error(make_spec(fake.base_url), make_job(), reporter, "upstream_rejected")
    assert "404" in str(err)
    assert "No such video" in str(err)
    assert fake.requests("POST") == []


async def test_remix_through_the_upstream_remix_endpoint(upstream: Callable[..., FakeUpstream], mp4: bytes) -> None:
    fake = upstream()
    fake.seed("video_src", status="completed")
    reporter = FakeReporter(fake)
    job = make_job(prompt="now at night", source_upstream_id="video_src", source_video=mp4)
    result = await run_engine(make_spec(fake.base_url), job, reporter)
    assert result.video == mp4
    (remix,) = fake.requests("POST")
    assert remix.path == "/v1/videos/video_src/remix"
    assert remix.form == {"prompt": "now at night"}
    (new_id,) = reporter.remembered
    assert fake.jobs[new_id].remixed_from == "video_src"


async def test_remix_through_a_reference_frame(upstream: Callable[..., FakeUpstream], mp4: bytes) -> None:
    fake = upstream()
    job = make_job(prompt="now at night", source_video=mp4)  # the source came from elsewhere
    result = await run_engine(make_spec(fake.base_url), job, FakeReporter(fake))
    assert result.video == mp4
    (create,) = fake.requests("POST")
    assert create.path == "/v1/videos"
    ref = create.form["input_reference"]
    assert ref["type"] == "image/png"
    with Image.open(io.BytesIO(ref["data"])) as im:
        assert im.format == "PNG"
        assert im.size == (96, 160)
        sent = np.asarray(im.convert("RGB"), dtype=np.float64)
    first = decode_mp4(mp4)[0].astype(np.float64)
    assert np.abs(sent - first).mean() < 2.0  # it is the source's first frame


async def test_remix_falls_back_to_a_reference_when_the_upstream_lost_the_source(
    upstream: Callable[..., FakeUpstream], mp4: bytes
) -> None:
    fake = upstream()
    job = make_job(prompt="again", source_upstream_id="video_expired", source_video=mp4)
    result = await run_engine(make_spec(fake.base_url), job, FakeReporter(fake))
    assert result.video == mp4
    assert [s.path for s in fake.requests("POST")] == ["/v1/videos/video_expired/remix", "/v1/videos"]
    assert "input_reference" in fake.requests("POST")[1].form


async def test_remix_that_changes_size_uses_a_reference(upstream: Callable[..., FakeUpstream], mp4: bytes) -> None:
    # upstream /remix keeps the source's size; turning a portrait source landscape needs a new create
    fake = upstream()
    fake.seed("video_src", status="completed")
    job = make_job(width=160, height=96, source_upstream_id="video_src", source_video=mp4)
    await run_engine(make_spec(fake.base_url), job, FakeReporter(fake))
    (create,) = fake.requests("POST")
    assert create.path == "/v1/videos"
    assert create.form["size"] == "160x96"
    with Image.open(io.BytesIO(create.form["input_reference"]["data"])) as im:
        assert im.size == (160, 96)


async def test_image_to_video_sends_the_image_fitted_to_the_size(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream()
    job = make_job(image=png_bytes((300, 200)))
    await run_engine(make_spec(fake.base_url), job, FakeReporter(fake))
    (create,) = fake.requests("POST")
    with Image.open(io.BytesIO(create.form["input_reference"]["data"])) as im:
        assert im.size == (96, 160)
        assert im.convert("RGB").getpixel((48, 80)) == (200, 20, 20)


@pytest.mark.parametrize(
    ("supports_remix", "source_upstream_id", "needle"),
    [
        (False, "video_src", "no remix endpoint"),
        (True, None, "not made by this upstream"),
    ],
)
async def test_remix_unsupported(
    upstream: Callable[..., FakeUpstream],
    mp4: bytes,
    supports_remix: bool,
    source_upstream_id: str | None,
    needle: str,
) -> None:
    fake = upstream()
    fake.seed("video_src", status="completed")
    spec = make_spec(fake.base_url, supports_remix=supports_remix, supports_reference=False)
    job = make_job(source_upstream_id=source_upstream_id, source_video=mp4)
    err = await expect_error(spec, job, FakeReporter(fake), "remix_unsupported")
    assert needle in str(err)
    assert "supports_reference is off" in str(err)
    assert fake.seen == []


async def test_429_is_retried_after_retry_after(upstream: Callable[..., FakeUpstream], mp4: bytes) -> None:
    fake = upstream(faults={"create": [Fault(429, "Too many requests, slow down.", {"Retry-After": "1"})]})
    # backoff alone would wait ~20 ms; Retry-After says a full second
    result = await run_engine(make_spec(fake.base_url), make_job(), FakeReporter(fake))
    assert result.video == mp4
    first, second = fake.requests("POST")
    assert second.at - first.at >= 0.95
    # the retry is the same logical create: same idempotency key
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]


async def test_503_with_retry_after_ms_on_poll(upstream: Callable[..., FakeUpstream], mp4: bytes) -> None:
    fake = upstream(faults={"poll": [Fault(503, "warming up", {"retry-after-ms": "300"})]})
    result = await run_engine(make_spec(fake.base_url), make_job(), FakeReporter(fake))
    assert result.video == mp4
    first, second = fake.polls()[:2]
    assert second.at - first.at >= 0.29


async def test_500s_fail_after_max_retries(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream(faults={"create": [Fault(500, "the GPU caught fire")] * 10})
    spec = make_spec(fake.base_url, max_retries=3)
    err = await expect_error(spec, make_job(), FakeReporter(fake), "upstream_unavailable")
    assert len(fake.requests("POST")) == 4  # the first try and three retries
    assert "HTTP 500: the GPU caught fire" in str(err)
    assert "failed 4 times" in str(err)


async def test_request_timeout_is_retried_then_fails(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream(faults={"poll": [Fault(sleep=2.0)] * 10})
    spec = make_spec(fake.base_url, request_timeout_s=0.3, max_retries=2)
    started = time.monotonic()
    err = await expect_error(spec, make_job(), FakeReporter(fake), "upstream_unavailable")
    assert time.monotonic() - started < 1.8  # 3 x 0.3 s plus backoff: never the upstream's 2 s
    assert len(fake.polls()) == 3
    assert "no answer within 0.3 s" in str(err)


async def test_request_timeout_then_success(upstream: Callable[..., FakeUpstream], mp4: bytes) -> None:
    fake = upstream(faults={"poll": [Fault(sleep=2.0)]})
    spec = make_spec(fake.base_url, request_timeout_s=0.3)
    result = await run_engine(spec, make_job(), FakeReporter(fake))
    assert result.video == mp4


async def test_upstream_failed_status_carries_its_reason(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream(fail_with=("moderation_blocked", "The prompt was flagged by the safety system."))
    err = await expect_error(make_spec(fake.base_url), make_job(), FakeReporter(fake), "upstream_failed")
    assert "The prompt was flagged by the safety system." in str(err)
    assert "moderation_blocked" in str(err)
    assert [s for s in fake.seen if s.path.endswith("/content")] == []


async def test_4xx_is_not_retried(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream(faults={"create": [Fault(400, "size 96x160 is not supported; use 720x1280")] * 5})
    err = await expect_error(make_spec(fake.base_url), make_job(), FakeReporter(fake), "upstream_rejected")
    assert len(fake.requests("POST")) == 1
    assert "HTTP 400" in str(err)
    assert "size 96x160 is not supported" in str(err)


async def test_upstream_disappears_mid_job(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream()

    async def vanish() -> None:  # right after create: the server goes away for good
        await asyncio.to_thread(fake.stop)

    spec = make_spec(fake.base_url, max_retries=3, retry_backoff_s=0.05, deadline_s=10)
    started = time.monotonic()
    err = await expect_error(spec, make_job(), FakeReporter(fake, on_remember=vanish), "upstream_unavailable")
    assert time.monotonic() - started < 5
    assert str(err).startswith("upstream unreachable: poll")
    assert "failed 4 times" in str(err)
    assert "connection failed" in str(err)


async def test_deadline_exceeded(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream(never_finish=True)
    spec = make_spec(fake.base_url, deadline_s=0.8)
    started = time.monotonic()
    err = await expect_error(spec, make_job(), FakeReporter(fake), "upstream_timeout")
    assert time.monotonic() - started < 3
    assert "0.8 s" in str(err)
    assert len(fake.polls()) > 5  # it kept polling until the deadline
    assert len(fake.requests("DELETE")) == 1  # and then told the upstream to stop


async def test_deadline_bounds_a_hanging_request(upstream: Callable[..., FakeUpstream]) -> None:
    # a per-request timeout longer than the whole deadline: the deadline still wins
    fake = upstream(faults={"create": [Fault(sleep=3.0)]})
    spec = make_spec(fake.base_url, request_timeout_s=10, deadline_s=0.5)
    started = time.monotonic()
    await expect_error(spec, make_job(), FakeReporter(fake), "upstream_timeout")
    assert time.monotonic() - started < 2


async def test_cancellation_deletes_the_upstream_job(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream(never_finish=True)
    reporter = FakeReporter(fake, cancel_when=lambda: len(fake.polls()) >= 2)
    with pytest.raises(EngineCancelled):
        await run_engine(make_spec(fake.base_url), make_job(), reporter)
    (delete,) = fake.requests("DELETE")
    assert delete.path == f"/v1/videos/{reporter.remembered[0]}"


async def test_cancelled_before_start_sends_nothing(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream()
    with pytest.raises(EngineCancelled):
        await run_engine(make_spec(fake.base_url), make_job(), FakeReporter(fake, cancel_when=lambda: True))
    assert fake.seen == []


async def test_unreadable_video_is_an_engine_error(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream()
    fake.video = b"<html>not a video</html>"
    await expect_error(make_spec(fake.base_url), make_job(), FakeReporter(fake), "upstream_bad_output")


@pytest.mark.parametrize("op", ["create", "poll"])
async def test_a_non_json_answer_is_a_clear_error(upstream: Callable[..., FakeUpstream], op: str) -> None:
    fake = upstream(faults={op: [Fault(html=True)]})
    err = await expect_error(make_spec(fake.base_url), make_job(), FakeReporter(fake), "upstream_bad_response")
    assert f"answered {op} with something that is not a video object" in str(err)


async def test_api_key_never_in_errors_even_when_echoed(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream(faults={"create": [Fault(401, f"Incorrect API key provided: {API_KEY}.")]})
    err = await expect_error(make_spec(fake.base_url), make_job(), FakeReporter(fake), "upstream_rejected")
    assert "Incorrect API key provided: [redacted]" in str(err)
    assert fake.requests("POST")[0].headers["authorization"] == f"Bearer {API_KEY}"  # it was sent, though


async def test_credentials_in_the_base_url_stay_out_of_errors(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream(faults={"create": [Fault(500, "boom")] * 5})
    url = f"http://user:{API_KEY}@127.0.0.1:{fake.port}/v1"
    err = await expect_error(make_spec(url, max_retries=0), make_job(), FakeReporter(fake), "upstream_unavailable")
    assert f"127.0.0.1:{fake.port}/v1" in str(err)


async def test_unreadable_key_file_is_a_clear_error(tmp_path: Path) -> None:
    spec = make_spec("http://127.0.0.1:9/v1", api_key_env=None, api_key_file=tmp_path / "missing.key")
    await expect_error(spec, make_job(), FakeReporter(), "upstream_misconfigured")


async def test_engine_attributes_and_close(upstream: Callable[..., FakeUpstream]) -> None:
    fake = upstream()
    reference_only = make_spec(fake.base_url, supports_remix=False, supports_reference=True)
    assert reference_only.capabilities.remix
    assert reference_only.capabilities.image_input
    neither = make_spec(fake.base_url, supports_remix=False, supports_reference=False)
    assert not neither.capabilities.remix
    assert not neither.capabilities.image_input
    engine, none = UpstreamEngine(reference_only), UpstreamEngine(neither)
    await engine.generate(make_job(), FakeReporter(fake))
    await engine.close()
    await engine.close()  # idempotent
    await none.close()  # never used: nothing to close
