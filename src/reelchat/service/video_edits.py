"""Videos made from another video: an edit (a remix of a finished video or of an uploaded one) and an
extension (the source followed by a continuation). An uploaded source is checked before anything is
stored, and kept as the task's `source_video`."""

from __future__ import annotations

from ..domain import ApiKey, Orientation, Task, VideoRequest
from ..media.storage import new_media_name
from .errors import InvalidRequest
from .idempotency import Idempotency
from .videos import DEFAULT_MODEL, VideoService


async def edit(
    videos: VideoService,
    tenant: str,
    prompt: str,
    *,
    video_id: str | None,
    upload: bytes | None,
    model: str | None,
    key: ApiKey | None = None,
) -> tuple[Task, Task | None]:
    """A new video editing the tenant's completed video `video_id`, or an uploaded video (checked
    before anything is stored); returns it and its source task (None for an upload). It counts
    against `key`'s limits like any other video (`Busy`)."""
    if upload is None:
        if video_id is None:
            raise InvalidRequest('A video is required: give {"id": ...} or upload a file.', param="video")
        source = await videos.resolve_source(tenant, video_id=video_id)
        edited = await videos.submit(tenant, VideoRequest(model=source.model, prompt=prompt), source=source, key=key)
        return edited, source
    spec = videos.spec(model or DEFAULT_MODEL)
    checked = await videos.uploads.check(upload)
    landscape = checked.width > checked.height
    req = VideoRequest(
        model=spec.name,
        prompt=prompt,
        orientation=Orientation.LANDSCAPE if landscape else Orientation.PORTRAIT,
        # the allowed duration nearest the upload's (the shorter on a tie)
        seconds=min(spec.allowed_seconds, key=lambda s: (abs(s - checked.duration), s)),
    )
    task = await videos.prepare(tenant, req, origin="videos", uploaded_source=True, key=key)
    return await _enqueue_with_upload(videos, task, checked.mp4), None


async def extend(
    videos: VideoService,
    tenant: str,
    prompt: str,
    *,
    seconds: int,
    video_id: str | None,
    upload: bytes | None,
    model: str | None,
    key: ApiKey | None = None,
    idem: Idempotency | None = None,
) -> tuple[Task, Task | None]:
    """A new video continuing the tenant's completed video `video_id` by `seconds`, or an uploaded video
    (checked before anything is stored, kept like an edit's); returns it and its source task (None for
    an upload). It counts against `key`'s limits like any other video (`Busy`); with `idem`, the video
    an earlier request with that key made."""
    if upload is None:
        if video_id is None:
            raise InvalidRequest('A video is required: give {"id": ...} or upload a file.', param="video")
        source = await videos.extension_source(tenant, video_id)
        req = VideoRequest(model=source.model, prompt=prompt, seconds=seconds, extend=True)
        task = await videos.submit(tenant, req, origin="videos", source=source, key=key, idem=idem)
        return task, source
    if idem is not None and (earlier := await videos.replay(tenant, idem)) is not None:
        return earlier, None
    checked = await videos.uploads.check(upload)
    # an uploaded video is extended by the default model; a finished one by the model that made it
    req = VideoRequest(model=model or DEFAULT_MODEL, prompt=prompt, seconds=seconds, extend=True)
    task = await videos.prepare(tenant, req, origin="videos", key=key, upload=checked)
    return await _enqueue_with_upload(videos, task, checked.mp4, idem), None


async def _enqueue_with_upload(videos: VideoService, task: Task, mp4: bytes, idem: Idempotency | None = None) -> Task:
    """Store the uploaded source video, then queue `task` made from it; the file goes again if no task
    of ours ends up owning it (the insert failed, or a twin request with the same idempotency key won)."""
    name = new_media_name("mp4")
    task.params["source_video"] = name
    await videos.storage.save(name, mp4)
    try:
        queued = await videos.enqueue(task, idem)
    except BaseException:  # no task, so no one's file
        await videos.storage.delete(name)
        raise
    if queued.id != task.id:  # a twin request with the same idempotency key won: its video stands
        await videos.storage.delete(name)
    return queued
