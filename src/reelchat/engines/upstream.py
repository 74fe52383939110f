"""An engine that has another OpenAI-Videos-API server make the video (reelchat, SGLang, vLLM-Omni, LiteLLM, ...).

reelchat keeps its own tenants, tasks, chat, pages and media; the upstream only renders. One job:

1. create the upstream video (or remix it there), then durably remember its id *before* polling,
   so a restarted attempt resumes that job instead of paying for a second one;
2. poll it, honouring `openai-poll-after-ms`, relaying progress and watching for cancellation;
3. download the mp4 (and the thumbnail, when the upstream has one), streamed under a byte cap.

The SDK's own retries are off (`max_retries=0`): every request goes through `_Run.call`, whose policy
is spelled out there. Every failure ends in an EngineError with a stable `code`; the whole job is
bounded by `UpstreamSpec.deadline_s`, so nothing here can hang. The API key never reaches a log
line or an error message (upstream error text is scrubbed of it too, in case a server echoes it).
"""

from __future__ import annotations

import asyncio
import email.utils
import io
import logging
import math
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import av
import av.error
import openai
from openai.types import Video, VideoSeconds, VideoSize
from PIL import Image, ImageOps

from ..catalog import UpstreamSpec
from ..media import encode
from ..net.images import MAX_IMAGE_PIXELS
from .base import EngineCancelled, EngineError, EngineJob, EngineResult, Reporter
from .upstream_download import download_capped

log = logging.getLogger("reelchat.engines.upstream")

T = TypeVar("T")

POLL_AFTER_HEADER = "openai-poll-after-ms"
MIN_POLL_S = 0.1  # a poll-after of 0 must not turn into a busy loop
MAX_POLL_S = 60.0  # nor a huge one into a job that never looks again
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 120.0  # larger hints are clamped; the job deadline still bounds the total
CANCEL_CHECK_S = 0.25  # sleeps are sliced so a deleted task stops within about this long
DISCARD_TIMEOUT_S = 5.0  # best-effort DELETE of an abandoned upstream job
MESSAGE_CHARS = 400  # upstream text quoted in an error, at most

_WAITING = frozenset({"queued", "in_progress", "pending", "processing", "running"})
_ENDED_BADLY = frozenset({"failed", "cancelled", "canceled", "expired", "error"})


class UpstreamRejected(EngineError):
    """The upstream answered 4xx (not 429): retrying the same request would not help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, code="upstream_rejected")
        self.status = status


class UpstreamEngine:
    """Engine over an OpenAI Videos API server; one instance per catalog entry, shared by its jobs."""

    def __init__(self, spec: UpstreamSpec) -> None:
        self.spec = spec
        # the service hands every remix its source mp4, so a reference frame can stand in for /remix
        self.supports_remix = spec.supports_remix or spec.supports_reference
        self.supports_image = spec.supports_reference
        self.where = _display_url(spec.base_url)
        self._client: openai.AsyncOpenAI | None = None
        self._secret = ""

    # ---- Engine protocol ----------------------------------------------------------------------

    async def generate(self, job: EngineJob, reporter: Reporter) -> EngineResult:
        if reporter.cancelled():
            raise EngineCancelled()
        client = self._get_client()
        run = _Run(self, client, reporter)
        try:
            # The hard wall: whatever an upstream does (or doesn't), the job ends by the deadline.
            async with asyncio.timeout(self.spec.deadline_s):
                return await run.execute(job)
        except TimeoutError:
            await run.discard()  # stop the upstream burning GPU time on a job nobody will collect
            raise EngineError(
                f"The upstream at {self.where} did not finish the video within {self.spec.deadline_s:g} s.",
                code="upstream_timeout",
            ) from None
        except EngineCancelled:
            await run.discard()
            raise

    async def load(self) -> None:
        """Nothing to load: the upstream server holds the model."""

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    # ---- plumbing ----------------------------------------------------------------------------

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            try:
                secret = self.spec.api_key()
            except OSError as e:
                raise EngineError(
                    f"Cannot read the upstream API key file {self.spec.api_key_file}: {e.strerror or e}.",
                    code="upstream_misconfigured",
                ) from None
            if not secret and self.spec.api_key_env:
                log.warning("upstream %s: environment variable %s is empty", self.where, self.spec.api_key_env)
            self._secret = secret
            client = openai.AsyncOpenAI(
                base_url=self.spec.base_url,
                # the SDK refuses an empty key; keyless upstreams accept any bearer token
                api_key=secret or "none",
                organization=self.spec.organization,
                project=self.spec.project,
                max_retries=0,  # retries are ours (see _Run.call), so the policy is explicit and bounded
                timeout=self.spec.request_timeout_s,
                # not this process's environment: no HTTP(S)_PROXY detour, no ~/.netrc credentials
                http_client=openai.DefaultAsyncHttpxClient(trust_env=False),
            )
            # The SDK fills a None organization/project from OPENAI_ORG_ID/OPENAI_PROJECT_ID, which
            # belong to whoever runs this server, not to this upstream: only the catalog's count.
            client.organization, client.project = self.spec.organization, self.spec.project
            self._client = client
        return self._client

    def scrub(self, text: str) -> str:
        """Upstream text made safe to show: the API key cut out, the length bounded."""
        if self._secret and len(self._secret) >= 4 and self._secret != "none":  # noqa: S105  ("none" = no key)
            text = text.replace(self._secret, "[redacted]")
        text = " ".join(text.split())
        return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with equal jitter: half fixed, half random, so retries spread out."""
        base = min(MAX_BACKOFF_S, self.spec.retry_backoff_s * 2.0**attempt)
        return base / 2 + random.uniform(0, base / 2)  # noqa: S311  (retry jitter, not a secret)


class _Run:
    """One generate() call: the upstream job it created or resumed, and the requests it makes."""

    def __init__(self, engine: UpstreamEngine, client: openai.AsyncOpenAI, reporter: Reporter) -> None:
        self.engine = engine
        self.spec = engine.spec
        self.where = engine.where
        self.client = client
        self.reporter = reporter
        self.video_id: str | None = None
        self._loop = asyncio.get_running_loop()

    async def execute(self, job: EngineJob) -> EngineResult:
        resumed = self.reporter.upstream_job_id
        if resumed:
            # An earlier attempt already paid for this job: poll it, never create another.
            log.info("upstream %s: resuming job %s", self.where, resumed)
            self.video_id = resumed
        else:
            created = self._checked(await self._start(job), "create")
            self.video_id = created.id
            try:
                await self.reporter.remember_upstream_job(created.id)
            except Exception:
                if self.reporter.cancelled():
                    raise EngineCancelled() from None  # generate() deletes the upstream job
                # Not recorded, so no later attempt will ever collect it: don't leave it running.
                await self.discard()
                raise
        await self._wait(self.video_id)
        return await self._collect(self.video_id)

    # ---- 1. start ----------------------------------------------------------------------------

    async def _start(self, job: EngineJob) -> Video:
        remixing = job.source_upstream_id is not None or job.source_video is not None
        if job.image is not None and not remixing and not self.spec.supports_reference:
            raise EngineError("This upstream model does not accept an input image.", code="image_unsupported")
        if job.source_upstream_id and self.spec.supports_remix and await self._same_shape(job):
            try:
                # the upstream combines its own source prompt with the modification: send only the turn's words
                return await self._remix(
                    job.source_upstream_id, job.remix_instruction or job.prompt, _idempotency_key(job)
                )
            except UpstreamRejected as e:
                # The upstream forgot the source (expired or deleted): a reference frame still works.
                if e.status != 404 or not (self.spec.supports_reference and job.source_video):
                    raise
                log.info(
                    "upstream %s: source %s is gone upstream; remixing from a reference frame",
                    self.where,
                    job.source_upstream_id,
                )
        reference: bytes | None = None
        if remixing:
            if not self.spec.supports_reference or job.source_video is None:
                raise EngineError(self._cannot_remix(job), code="remix_unsupported")
            reference = await asyncio.to_thread(_first_frame_png, job.source_video, job.width, job.height)
        elif job.image is not None:
            reference = await asyncio.to_thread(_image_png, job.image, job.width, job.height)
        return await self._create(job, reference)

    def _cannot_remix(self, job: EngineJob) -> str:
        why: list[str] = []
        if job.source_upstream_id is None:
            why.append("the source video was not made by this upstream")
        elif not self.spec.supports_remix:
            why.append("the upstream has no remix endpoint (supports_remix is off)")
        if not self.spec.supports_reference:
            why.append("reference images are off for it (supports_reference is off)")
        elif job.source_video is None:
            why.append("the source video's file is not available")
        return f"This model can't remix this video: {'; '.join(why)}."

    async def _same_shape(self, job: EngineJob) -> bool:
        """Whether upstream /remix (which keeps the source's size) gives the size this job asks for."""
        if job.source_video is None:
            return True  # nothing to compare; the upstream knows its own source
        try:
            info = await asyncio.to_thread(encode.probe_mp4, job.source_video)
        except encode.MediaError:
            return True
        if (info.width, info.height) == (job.width, job.height) or not self.spec.supports_reference:
            return True
        log.info("upstream %s: size changes on remix; using a reference frame instead of /remix", self.where)
        return False

    async def _create(self, job: EngineJob, reference: bytes | None) -> Video:
        # One key for every retry of this create: an upstream that honours it won't start (and
        # bill) a second job when the first attempt reached it but the answer got lost.
        headers = {"Idempotency-Key": _idempotency_key(job)}
        videos = self.client.videos
        size = cast(VideoSize, f"{job.width}x{job.height}")  # the SDK's Literal lists only OpenAI's sizes
        seconds: VideoSeconds | openai.Omit = cast(VideoSeconds, str(job.seconds)) if job.seconds else openai.omit
        model = self.spec.model
        # With a file the SDK sends multipart/form-data; without one it still forces multipart
        # (videos.create sets the Content-Type), so upstreams must parse forms either way.
        if reference is not None:
            ref = ("reference.png", reference, "image/png")
            return await self.call(
                "create",
                lambda t: videos.create(
                    model=model,
                    prompt=job.prompt,
                    seconds=seconds,
                    size=size,
                    input_reference=ref,
                    extra_headers=headers,
                    timeout=t,
                ),
            )
        return await self.call(
            "create",
            lambda t: videos.create(
                model=model, prompt=job.prompt, seconds=seconds, size=size, extra_headers=headers, timeout=t
            ),
        )

    async def _remix(self, source_id: str, prompt: str, key: str) -> Video:
        videos = self.client.videos
        headers = {"Idempotency-Key": key}
        return await self.call(
            "remix", lambda t: videos.remix(source_id, prompt=prompt, extra_headers=headers, timeout=t)
        )

    # ---- 2. wait -----------------------------------------------------------------------------

    async def _wait(self, video_id: str) -> None:
        retrieve = self.client.videos.with_raw_response.retrieve
        reported = -1
        warned: set[str] = set()
        while True:
            if self.reporter.cancelled():
                raise EngineCancelled()
            raw = await self.call("poll", lambda t: retrieve(video_id, timeout=t))
            video = self._checked(raw.parse(), "poll")
            status = str(getattr(video, "status", "") or "")
            if status == "completed":
                return
            if status in _ENDED_BADLY:
                raise EngineError(self._failure(video, status), code="upstream_failed")
            if status not in _WAITING and status not in warned:
                warned.add(status)  # an unknown state: keep waiting, the deadline bounds it
                log.warning("upstream %s: job %s has unknown status %r", self.where, video_id, status)
            percent = _percent(getattr(video, "progress", None))
            if percent > reported:
                reported = percent
                self.reporter.progress(percent)
            await self.sleep(self._poll_delay(raw.headers))

    def _checked(self, answer: object, op: str) -> Video:
        """The answer as a Video, or a clear error: the SDK hands back a bare string when a server
        answers 200 with something other than JSON (a proxy's HTML page, say)."""
        if not isinstance(answer, Video) or not isinstance(getattr(answer, "id", None), str) or not answer.id:
            raise EngineError(
                f"The upstream at {self.where} answered {op} with something that is not a video object.",
                code="upstream_bad_response",
            )
        return answer

    def _failure(self, video: Video, status: str) -> str:
        err = getattr(video, "error", None)
        message = getattr(err, "message", None) if err is not None else None
        code = getattr(err, "code", None) if err is not None else None
        reason = self.engine.scrub(str(message)) if message else f"the job ended as {status!r} with no reason given"
        suffix = f" ({self.engine.scrub(str(code))})" if code else ""
        return f"The upstream could not make the video: {reason}{suffix}"

    def _poll_delay(self, headers: Mapping[str, str]) -> float:
        hint = headers.get(POLL_AFTER_HEADER)
        if hint is None:
            return self.spec.poll_interval_s
        try:
            ms = float(hint)
        except ValueError:
            return self.spec.poll_interval_s
        if not math.isfinite(ms):
            return self.spec.poll_interval_s
        return min(MAX_POLL_S, max(MIN_POLL_S, ms / 1000))

    # ---- 3. collect --------------------------------------------------------------------------

    async def _collect(self, video_id: str) -> EngineResult:
        videos, where, limit = self.client.videos, self.where, self.spec.max_video_bytes
        data = await self.call(
            "download",
            lambda t: download_capped(videos, video_id, "video", limit=limit, timeout=t, where=where),
        )
        try:
            await asyncio.to_thread(encode.probe_mp4, data)
        except encode.MediaError as e:
            raise EngineError(
                f"The upstream returned a video that can't be read: {e}", code="upstream_bad_output"
            ) from None
        return EngineResult(video=data, thumbnail=await self._thumbnail(video_id), fps=0)

    async def _thumbnail(self, video_id: str) -> bytes | None:
        """The upstream's thumbnail as webp, or None (the service then makes its own)."""
        videos, where, limit = self.client.videos, self.where, self.spec.max_thumbnail_bytes
        try:
            # One try: a thumbnail is a nicety, not worth retries or failing a finished video over.
            content = await self.call(
                "thumbnail",
                lambda t: download_capped(videos, video_id, "thumbnail", limit=limit, timeout=t, where=where),
                retries=0,
            )
        except EngineError as e:
            log.info("upstream %s: no thumbnail for %s (%s)", self.where, video_id, e)
            return None
        return await asyncio.to_thread(_as_webp, content)

    # ---- requests ----------------------------------------------------------------------------

    async def call(self, op: str, request: Callable[[float], Awaitable[T]], *, retries: int | None = None) -> T:
        """Make one upstream request under the retry policy; `request` gets the timeout to use.

        Retried: 429 and 5xx (after Retry-After / Retry-After-Ms when sent, else exponential backoff
        with jitter), timeouts and connection failures, up to spec.max_retries times. Any other 4xx
        fails at once (the same request would be refused again). The deadline bounds all of it.
        """
        limit = self.spec.max_retries if retries is None else retries
        attempt = 0
        while True:
            hint: float | None = None
            # Errors are built inside the except blocks but raised after them, so the SDK's
            # exception (whose body may echo the key) isn't even kept as __context__.
            final: EngineError | None = None
            try:
                return await request(self.spec.request_timeout_s)
            except openai.APIStatusError as e:
                status = e.status_code
                detail = self.engine.scrub(_status_message(e))
                reason = f"HTTP {status}: {detail}"
                if status != 429 and status < 500:
                    final = UpstreamRejected(f"The upstream at {self.where} refused {op} ({reason})", status)
                hint = _retry_after(e.response.headers)
                headline = "upstream busy" if status == 429 else "upstream unavailable"
            except openai.APITimeoutError:
                reason = f"no answer within {self.spec.request_timeout_s:g} s"
                headline = "upstream unreachable"
            except openai.APIConnectionError as e:
                reason = f"connection failed: {self.engine.scrub(_root_cause(e))}"
                headline = "upstream unreachable"
            except openai.APIError as e:  # e.g. a 200 whose body isn't JSON
                reason = self.engine.scrub(e.message)
                final = EngineError(
                    f"The upstream at {self.where} sent a malformed answer to {op}: {reason}",
                    code="upstream_bad_response",
                )
            if final is None and attempt >= limit:
                final = EngineError(
                    f"{headline}: {op} at {self.where} failed {attempt + 1} time{'s' if attempt else ''}; "
                    f"last: {reason}",
                    code="upstream_unavailable",
                )
            if final is not None:
                raise final
            delay = hint if hint is not None else self.engine.backoff(attempt)
            attempt += 1
            log.warning(
                "upstream %s: %s failed (%s); retry %d/%d in %.2f s", self.where, op, reason, attempt, limit, delay
            )
            await self.sleep(delay)

    async def sleep(self, seconds: float) -> None:
        """Sleep in slices, raising EngineCancelled as soon as the task is deleted."""
        end = self._loop.time() + seconds
        while True:
            if self.reporter.cancelled():
                raise EngineCancelled()
            left = end - self._loop.time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, CANCEL_CHECK_S))

    async def discard(self) -> None:
        """Best-effort DELETE of this run's upstream job (cancelled, timed out, or not recorded)."""
        if self.video_id is None:
            return
        video_id = self.video_id
        try:
            await self.client.videos.delete(video_id, timeout=DISCARD_TIMEOUT_S)
        except (openai.APIError, TimeoutError) as e:
            # OpenAI itself only deletes finished jobs; some upstreams can't cancel at all.
            log.info("upstream %s: could not delete job %s: %s", self.where, video_id, self.engine.scrub(str(e)))
        else:
            log.info("upstream %s: deleted job %s", self.where, video_id)


# ---- helpers -------------------------------------------------------------------------------------


def _display_url(url: str) -> str:
    """The base URL for messages: without userinfo or query, which may carry credentials."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "the upstream"
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _percent(value: Any) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    if not math.isfinite(number):
        return 0
    return max(0, min(99, int(number)))  # 100 is the service's to say, once the media is stored


def _status_message(e: openai.APIStatusError) -> str:
    """The upstream's own words: body.error.message (OpenAI shape), else the body's text."""
    body = e.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str) and inner["message"]:
            return str(inner["message"])
        if isinstance(inner, str) and inner:
            return inner
        detail = body.get("detail")
        if isinstance(detail, str) and detail:
            return detail
    if isinstance(body, str) and body.strip():
        return body
    return e.response.reason_phrase or "no details"


def _root_cause(e: BaseException) -> str:
    """The innermost reason of a connection failure ("[Errno 111] Connection refused"), not the SDK's wrapper."""
    cause: BaseException = e
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    return str(cause) or type(cause).__name__


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the upstream asked us to wait: retry-after-ms, or Retry-After (seconds or HTTP date)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue
        if math.isfinite(seconds):
            return min(MAX_RETRY_AFTER_S, max(0.0, seconds))
    value = headers.get("retry-after")
    if value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return min(MAX_RETRY_AFTER_S, max(0.0, (when - datetime.now(UTC)).total_seconds()))
    return None


def _fit_png(image: Image.Image, width: int, height: int) -> bytes:
    """The image cropped to the job's aspect ratio and scaled to its size (servers that take a
    reference image usually insist it matches the requested size), as PNG."""
    fitted = ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    fitted.save(out, format="PNG")
    return out.getvalue()


def _image_png(data: bytes, width: int, height: int) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as image:
            upright = ImageOps.exif_transpose(image)
            return _fit_png(upright, width, height)
    except (OSError, ValueError) as e:
        raise EngineError(f"The input image can't be read: {e}", code="invalid_image") from None


def _first_frame_png(mp4: bytes, width: int, height: int) -> bytes:
    """The source video's first frame, as the reference an image-to-video upstream starts from.

    Only that frame is decoded: encode.decode_mp4 would hold the whole clip in memory (about a
    gigabyte for 15 s of 720p) to keep one frame.
    """
    try:
        with av.open(io.BytesIO(mp4), mode="r") as container:
            for frame in container.decode(video=0):
                return _fit_png(Image.fromarray(frame.to_ndarray(format="rgb24")), width, height)
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as e:
        raise EngineError(f"The source video can't be read: {e}", code="source_unreadable") from None
    raise EngineError("The source video has no frames.", code="source_unreadable")


def _as_webp(data: bytes) -> bytes | None:
    """webp bytes as they are; another image format converted; anything unreadable dropped."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return data
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                return None  # a decompression bomb: the service draws its own thumbnail
            out = io.BytesIO()
            image.convert("RGB").save(out, format="WEBP", quality=80)
            return out.getvalue()
    except (OSError, ValueError):
        return None


def _idempotency_key(job: EngineJob) -> str:
    """The same key for every try of one task, across restarts: a process killed between the upstream's
    create and our durable record of its id re-sends the same key, and an upstream honouring it starts
    (and bills) no second job."""
    return f"reelchat-{job.task_id}" if job.task_id else f"reelchat-{uuid.uuid4().hex}"
