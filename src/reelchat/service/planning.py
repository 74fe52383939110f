"""Planning a task: a request, its model and its source video in, a validated `Task` out. Pure.

Every rule about what a request may ask of a model lives here, once, whichever API it came from:
the prompt's length, the durations and sizes the model allows, what a remix keeps of its source,
and what the model's engine can do (an input image, a remix).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..catalog import ModelSpec, orientation_of, parse_size
from ..domain import DEFAULT_EXTEND_SECONDS, EXTEND_SECONDS, MAX_PROMPT_CHARS, Orientation, Task, VideoRequest
from ..ids import new_sid, new_task_id, new_video_id
from .errors import InvalidRequest

if TYPE_CHECKING:
    from ..media.uploads import CheckedVideo

__all__ = ["OPENAI_DEFAULT_SIZES", "plan_task"]

OPENAI_DEFAULT_SIZES = {Orientation.PORTRAIT: "720x1280", Orientation.LANDSCAPE: "1280x720"}


def plan_task(
    spec: ModelSpec,
    tenant: str,
    req: VideoRequest,
    *,
    source: Task | None,
    origin: str,
    uploaded_source: bool = False,
    rng: random.Random | None = None,
    max_seconds: int = 60,
    upload: CheckedVideo | None = None,
) -> Task:
    """The task for `req` on `spec` (a remix of `source` when given, or of an uploaded video when
    `uploaded_source`: the service attaches it); raises `InvalidRequest`.

    The input image itself is not loaded here: the task says it has one, and the service attaches
    it (`image_name`, `image_data`) once it is fetched and checked.
    """
    prompt = _prompt(req.prompt)
    if req.extend:
        if source is not None:
            clip = _clip_of(source)
        elif upload is not None:
            clip = _clip_of_upload(spec, upload)
        else:
            raise InvalidRequest("An extension needs a completed video to extend.", param="video", code="missing_video")
        return _extension(spec, tenant, req, prompt, clip, origin, max_seconds)
    seconds = _seconds(spec, req, source)
    orientation, size = _size(spec, req, source, openai_defaults=origin == "videos")
    width, height = parse_size(spec.render_size(size))  # what the model renders; the mp4 is `size`
    has_image = req.image is not None or req.image_url is not None
    remix = source is not None or uploaded_source
    _check_capabilities(spec, remix, has_image and req.character is None)
    if req.seed is not None:
        seed = req.seed
    elif source is not None:
        seed = source.seed
    else:
        seed = (rng or random).randrange(2**31)
    return Task(
        id=new_task_id(),
        video_id=new_video_id(),
        sid=new_sid(),
        tenant=tenant,
        model=spec.name,
        prompt=prompt,
        engine_prompt=spec.remix_prompt(source.engine_prompt, prompt) if source is not None else prompt,
        orientation=orientation,
        seconds=seconds,
        size=size,
        width=width,
        height=height,
        fps=spec.fps,
        frames=spec.frames_for(seconds),
        steps=spec.steps,
        seed=seed,
        origin=origin,
        remixed_from=source.id if source is not None else None,
        has_image=has_image,
        created_at=datetime.now(UTC),
        params=_windows(
            {**(spec.remix_params() if remix else {}), **({"character": req.character} if req.character else {})},
            spec.windows_for(spec.frames_for(seconds)),
        ),
    )


def _windows(params: dict[str, Any], windows: int) -> dict[str, Any]:
    """`params` with the passes the clip takes, when more than one (shown on /source)."""
    return {**params, "windows": windows} if windows > 1 else params


@dataclass(frozen=True)
class _Clip:
    """What an extension continues: a finished video here, or an uploaded one (probed)."""

    seconds: int
    fps: int
    frames: int
    size: str
    orientation: Orientation
    seed: int | None
    task_id: str | None  # the finished video's task (lineage); None for an upload


def _clip_of(task: Task) -> _Clip:
    return _Clip(task.seconds, task.fps, task.frames, task.size, task.orientation, task.seed, task.id)


def _clip_of_upload(spec: ModelSpec, info: CheckedVideo) -> _Clip:
    """An upload keeps its frames and frame rate, and its size when a request could name it (OpenAI's or
    the model's own), else OpenAI's size of its orientation, as an edit of an upload; the model renders
    the continuation at its render size for that (the upload's frames are scaled to it)."""
    orientation = Orientation.LANDSCAPE if info.width > info.height else Orientation.PORTRAIT
    own = f"{info.width}x{info.height}"
    size = own if own in spec.public_sizes else OPENAI_DEFAULT_SIZES[orientation]
    fps = max(1, round(info.fps))
    return _Clip(max(1, round(info.duration)), fps, info.frames, size, orientation, None, None)


def _extension(
    spec: ModelSpec, tenant: str, req: VideoRequest, prompt: str, clip: _Clip, origin: str, max_seconds: int
) -> Task:
    """A continuation of `clip`: its size and fps, `req.seconds` more (4 to 20), at most the model's
    `max_seconds` (else REELCHAT_MAX_VIDEO_SECONDS) in all; the task's `seconds` is the total."""
    if not spec.capabilities.extend:
        raise InvalidRequest(f"{spec.name} can't extend a video.", param="model", code="unsupported_value")
    added = req.seconds if req.seconds is not None else DEFAULT_EXTEND_SECONDS
    if added not in EXTEND_SECONDS:
        raise InvalidRequest(
            f"seconds={added} can't be added to a video; an extension adds {EXTEND_SECONDS[0]} to "
            f"{EXTEND_SECONDS[-1]} seconds.",
            param="seconds",
            code="unsupported_value",
        )
    limit = spec.max_seconds or max_seconds
    if clip.seconds + added > limit:
        raise InvalidRequest(
            f"The video is {clip.seconds} s; {added} s more would make {clip.seconds + added} s, past the "
            f"{limit} s {spec.name} allows.",
            param="seconds",
            code="video_too_long",
        )
    new_frames = spec.continuation_frames(added, clip.fps)
    try:
        windows = spec.windows_for(new_frames, prefix=clip.frames)
    except ValueError as e:  # a window the model can't render (the catalog checks this at startup)
        raise InvalidRequest(
            f"The video can't be extended ({clip.frames} frames): {e}.", param="video", code="unsupported_value"
        ) from None
    width, height = parse_size(spec.render_size(clip.size))  # what the model renders; the mp4 is `size`
    seed = req.seed if req.seed is not None else clip.seed if clip.seed is not None else random.randrange(2**31)  # noqa: S311  (a sampling seed, not a secret)
    return Task(
        id=new_task_id(),
        video_id=new_video_id(),
        sid=new_sid(),
        tenant=tenant,
        model=spec.name,
        prompt=prompt,
        engine_prompt=prompt,
        orientation=clip.orientation,
        seconds=clip.seconds + added,
        size=clip.size,
        width=width,
        height=height,
        fps=clip.fps,
        frames=clip.frames + new_frames,
        steps=spec.steps,
        seed=seed,
        origin=origin,
        remixed_from=clip.task_id,
        created_at=datetime.now(UTC),
        params=_windows(
            {"extend": True, "added_seconds": added, "new_frames": new_frames},
            windows,
        ),
    )


def _prompt(text: str) -> str:
    prompt = text.strip()
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:  # JSON's "\ud800" escapes decode to lone surrogates, which no UTF-8 can carry
        raise InvalidRequest(
            "The prompt contains an invalid character (a lone UTF-16 surrogate such as \\ud800).",
            param="prompt",
            code="invalid_value",
        ) from None
    if not prompt:
        raise InvalidRequest("A prompt is required.", param="prompt", code="missing_prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidRequest(
            f"The prompt is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}.",
            param="prompt",
            code="prompt_too_long",
        )
    return prompt


def _seconds(spec: ModelSpec, req: VideoRequest, source: Task | None) -> int:
    """The request's, else the source's (a remix keeps it), else the model's default."""
    if req.seconds is not None:
        if req.seconds not in spec.allowed_seconds:
            raise InvalidRequest(
                f"seconds={req.seconds} is not supported by {spec.name}; allowed: "
                + ", ".join(str(s) for s in spec.allowed_seconds)
                + ".",
                param="seconds",
                code="unsupported_value",
            )
        return req.seconds
    if source is not None and source.seconds in spec.allowed_seconds:
        return source.seconds
    return spec.default_seconds


def _size(spec: ModelSpec, req: VideoRequest, source: Task | None, *, openai_defaults: bool) -> tuple[Orientation, str]:
    """Explicit, else the source's (unless the turn turned it), else the orientation's default: OpenAI's
    in the Videos API (720x1280, as OpenAI documents; 1280x720 for landscape), the model's own in chat."""
    if req.size is not None:
        size = req.size.lower()
        if size not in spec.public_sizes:
            raise InvalidRequest(
                f"size '{req.size}' is not supported by {spec.name}; allowed: {', '.join(spec.public_sizes)}.",
                param="size",
                code="unsupported_value",
            )
        return orientation_of(size), size
    if source is not None and (req.orientation is source.orientation or req.orientation is None):
        size = source.size if source.size in spec.public_sizes else spec.default_size(source.orientation)
        return source.orientation, size
    orientation = req.orientation or Orientation.PORTRAIT
    if openai_defaults:
        return orientation, OPENAI_DEFAULT_SIZES[orientation]
    return orientation, spec.default_size(orientation)


def _check_capabilities(spec: ModelSpec, remix: bool, has_image: bool) -> None:
    """What the model's engine kind declares it can do (`spec.capabilities`), checked before queuing.

    A character's reference frame is not counted as an input image: the service adds it only where
    the model takes one, and an edit may carry it (it sets the opening of the edited video)."""
    if has_image:
        if remix:
            raise InvalidRequest(
                "An input image can't be combined with a video to modify; send one or the other.",
                param="input_reference",
                code="unsupported_combination",
            )
        if not spec.capabilities.image_input:
            raise InvalidRequest(
                f"{spec.name} does not accept an input image.", param="input_reference", code="unsupported_value"
            )
    elif remix and not spec.capabilities.remix:
        raise InvalidRequest(f"{spec.name} can't modify an existing video.", param="model", code="unsupported_value")
    elif not remix and not spec.capabilities.text_to_video:
        raise InvalidRequest(
            f"{spec.name} needs an input image or a video to modify.", param="model", code="unsupported_value"
        )
