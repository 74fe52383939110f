"""One upstream job, from start to finished mp4 (`UpstreamRun`, one per `UpstreamEngine.generate`):

1. create the upstream video (or remix it there), then durably remember its id *before* polling,
   so a restarted attempt resumes that job instead of paying for a second one;
2. poll it, honouring `openai-poll-after-ms`, relaying progress and watching for cancellation;
3. download the mp4 (and the thumbnail, when the upstream has one), streamed under a byte cap.

Every request goes through `upstream_retry.Requests.call`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable, Mapping
from typing import Any, cast

import openai
from openai.types import Video, VideoSeconds, VideoSize

from ..media import encode
from . import images
from .base import EngineCancelled, EngineError, EngineResult, Reporter
from .upstream_download import download_capped
from .upstream_retry import Requests, UpstreamRejected
from .upstream_spec import UpstreamJob, UpstreamRemix, UpstreamServer

log = logging.getLogger("reelchat.engines.upstream")

POLL_AFTER_HEADER = "openai-poll-after-ms"
MIN_POLL_S = 0.1  # a poll-after of 0 must not turn into a busy loop
MAX_POLL_S = 60.0  # nor a huge one into a job that never looks again
DISCARD_TIMEOUT_S = 5.0  # best-effort DELETE of an abandoned upstream job

_WAITING = frozenset({"queued", "in_progress", "pending", "processing", "running"})
_ENDED_BADLY = frozenset({"failed", "cancelled", "canceled", "expired", "error"})


class UpstreamRun:
    """One generate() call: the upstream job it created or resumed, and the requests it makes."""

    def __init__(
        self,
        server: UpstreamServer,
        where: str,
        client: openai.AsyncOpenAI,
        reporter: Reporter,
        scrub: Callable[[str], str],
    ) -> None:
        self.server = server
        self.where = where
        self.client = client
        self.reporter = reporter
        self.scrub = scrub
        self.requests = Requests(server, where, scrub, reporter)
        self.video_id: str | None = None

    async def execute(self, job: UpstreamJob) -> EngineResult:
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

    async def _start(self, job: UpstreamJob) -> Video:
        if job.extend_id is not None:
            return await self._extend(job.extend_id, job.prompt, job.extend_seconds or 4, _idempotency_key(job))
        remix = job.remix
        if job.image is not None and remix is None and not self.server.supports_reference:
            raise EngineError("This upstream model does not accept an input image.", code="image_unsupported")
        if remix is not None and remix.upstream_id and self.server.supports_remix and await self._same_shape(job):
            try:
                # the upstream combines its own source prompt with the modification: send only the turn's words
                return await self._remix(remix.upstream_id, remix.instruction, _idempotency_key(job))
            except UpstreamRejected as e:
                # The upstream forgot the source (expired or deleted): a reference frame still works.
                if e.status != 404 or not self.server.supports_reference:
                    raise
                log.info(
                    "upstream %s: source %s is gone upstream; remixing from a reference frame",
                    self.where,
                    remix.upstream_id,
                )
        reference: bytes | None = None
        if remix is not None:
            if not self.server.supports_reference:
                raise EngineError(self._cannot_remix(remix), code="remix_unsupported")
            reference = await asyncio.to_thread(_first_frame_png, remix.video, job.width, job.height)
        elif job.image is not None:
            reference = await asyncio.to_thread(_image_png, job.image, job.width, job.height)
        return await self._create(job, reference)

    def _cannot_remix(self, remix: UpstreamRemix) -> str:
        why: list[str] = []
        if remix.upstream_id is None:
            why.append("the source video was not made by this upstream")
        elif not self.server.supports_remix:
            why.append("the upstream has no remix endpoint (supports_remix is off)")
        why.append("reference images are off for it (supports_reference is off)")
        return f"This model can't remix this video: {'; '.join(why)}."

    async def _same_shape(self, job: UpstreamJob) -> bool:
        """Whether upstream /remix (which keeps the source's size) gives the size this job asks for."""
        assert job.remix is not None  # noqa: S101  (narrows a type; never input validation)
        try:
            info = await asyncio.to_thread(encode.probe_mp4, job.remix.video)
        except encode.MediaError:
            return True
        if (info.width, info.height) == (job.width, job.height) or not self.server.supports_reference:
            return True
        log.info("upstream %s: size changes on remix; using a reference frame instead of /remix", self.where)
        return False

    async def _create(self, job: UpstreamJob, reference: bytes | None) -> Video:
        # One key for every retry of this create: an upstream that honours it won't start (and
        # bill) a second job when the first attempt reached it but the answer got lost.
        headers = {"Idempotency-Key": _idempotency_key(job)}
        videos = self.client.videos
        size = cast(VideoSize, f"{job.width}x{job.height}")  # the SDK's Literal lists only OpenAI's sizes
        seconds: VideoSeconds | openai.Omit = cast(VideoSeconds, str(job.seconds)) if job.seconds else openai.omit
        model = self.server.model
        # With a file the SDK sends multipart/form-data; without one it still forces multipart
        # (videos.create sets the Content-Type), so upstreams must parse forms either way.
        if reference is not None:
            ref = ("reference.png", reference, "image/png")
            return await self.requests.call(
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
        return await self.requests.call(
            "create",
            lambda t: videos.create(
                model=model, prompt=job.prompt, seconds=seconds, size=size, extra_headers=headers, timeout=t
            ),
        )

    async def _remix(self, source_id: str, prompt: str, key: str) -> Video:
        videos = self.client.videos
        headers = {"Idempotency-Key": key}
        return await self.requests.call(
            "remix", lambda t: videos.remix(source_id, prompt=prompt, extra_headers=headers, timeout=t)
        )

    async def _extend(self, source_id: str, prompt: str, seconds: int, key: str) -> Video:
        videos = self.client.videos
        headers = {"Idempotency-Key": key}
        # the SDK types seconds as "4" | "8" | "12"; the endpoint documents 4 to 20
        value = cast(VideoSeconds, str(seconds))
        return await self.requests.call(
            "extend",
            lambda t: videos.extend(
                prompt=prompt, seconds=value, video={"id": source_id}, extra_headers=headers, timeout=t
            ),
        )

    # ---- 2. wait -----------------------------------------------------------------------------

    async def _wait(self, video_id: str) -> None:
        retrieve = self.client.videos.with_raw_response.retrieve
        reported = -1
        warned: set[str] = set()
        while True:
            if self.reporter.cancelled():
                raise EngineCancelled()
            raw = await self.requests.call("poll", lambda t: retrieve(video_id, timeout=t))
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
            await self.requests.sleep(self._poll_delay(raw.headers))

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
        reason = self.scrub(str(message)) if message else f"the job ended as {status!r} with no reason given"
        suffix = f" ({self.scrub(str(code))})" if code else ""
        return f"The upstream could not make the video: {reason}{suffix}"

    def _poll_delay(self, headers: Mapping[str, str]) -> float:
        hint = headers.get(POLL_AFTER_HEADER)
        if hint is None:
            return self.server.poll_interval_s
        try:
            ms = float(hint)
        except ValueError:
            return self.server.poll_interval_s
        if not math.isfinite(ms):
            return self.server.poll_interval_s
        return min(MAX_POLL_S, max(MIN_POLL_S, ms / 1000))

    # ---- 3. collect --------------------------------------------------------------------------

    async def _collect(self, video_id: str) -> EngineResult:
        videos, where, limit = self.client.videos, self.where, self.server.max_video_bytes
        data = await self.requests.call(
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
        videos, where, limit = self.client.videos, self.where, self.server.max_thumbnail_bytes
        try:
            # One try: a thumbnail is a nicety, not worth retries or failing a finished video over.
            content = await self.requests.call(
                "thumbnail",
                lambda t: download_capped(videos, video_id, "thumbnail", limit=limit, timeout=t, where=where),
                retries=0,
            )
        except EngineError as e:
            log.info("upstream %s: no thumbnail for %s (%s)", self.where, video_id, e)
            return None
        return await asyncio.to_thread(images.as_webp, content)

    # ---- abandoning --------------------------------------------------------------------------

    async def discard(self) -> None:
        """Best-effort DELETE of this run's upstream job (cancelled, timed out, or not recorded)."""
        if self.video_id is None:
            return
        video_id = self.video_id
        try:
            await self.client.videos.delete(video_id, timeout=DISCARD_TIMEOUT_S)
        except (openai.APIError, TimeoutError) as e:
            # OpenAI itself only deletes finished jobs; some upstreams can't cancel at all.
            log.info("upstream %s: could not delete job %s: %s", self.where, video_id, self.scrub(str(e)))
        else:
            log.info("upstream %s: deleted job %s", self.where, video_id)


def _percent(value: Any) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    if not math.isfinite(number):
        return 0
    return max(0, min(99, int(number)))  # 100 is the service's to say, once the media is stored


def _image_png(data: bytes, width: int, height: int) -> bytes:
    """The input image as the reference an image-to-video upstream starts from: servers that take a
    reference image usually insist it matches the requested size."""
    try:
        return images.png(images.fit_image(data, width, height))
    except (OSError, ValueError) as e:
        raise EngineError(f"The input image can't be read: {e}", code="invalid_image") from None


def _first_frame_png(mp4: bytes, width: int, height: int) -> bytes:
    """The source video's first frame, as the reference an image-to-video upstream starts from."""
    try:
        frame = images.first_frame(mp4, width, height)
    except images.FRAME_ERRORS as e:
        raise EngineError(f"The source video can't be read: {e}", code="source_unreadable") from None
    if frame is None:
        raise EngineError("The source video has no frames.", code="source_unreadable")
    return images.png(frame)


def _idempotency_key(job: UpstreamJob) -> str:
    """The same key for every try of one task, across restarts: a process killed between the upstream's
    create and our durable record of its id re-sends the same key, and an upstream honouring it starts
    (and bills) no second job."""
    return f"reelchat-{job.task_id}" if job.task_id else f"reelchat-{uuid.uuid4().hex}"
