"""A diffusers job's inputs as the pipelines take them (images, source frames, a remix's schedule), the
checks they must pass first, and the frames that come back."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .base import EngineError
from .diffusers_spec import DiffusersJob
from .families import Family


def frames_of(out: Any, job: DiffusersJob) -> npt.NDArray[np.uint8]:
    """A pipeline's output as uint8 frames, checked against what the job asked for."""
    frames: npt.NDArray[np.uint8] = (np.clip(out.frames[0], 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if frames.shape != (job.frames, job.height, job.width, 3):
        raise EngineError(
            f"the pipeline returned frames of shape {frames.shape}, expected {(job.frames, job.height, job.width, 3)}"
        )
    return frames


def remix_schedule(job: DiffusersJob) -> int:
    """The schedule length for a remix that runs `job.steps` denoising steps.

    diffusers runs only the last int(n * strength) steps of an n-step schedule. Taken literally, a
    4-step remix at strength 0.6 would run 2 steps, and one below 0.5 a single step at the very end of
    the schedule (sigma ~ 0: the source comes back unchanged). Stretching the schedule instead keeps
    the step count, and so the quality, of a fresh generation, and makes strength finer-grained.
    """
    n = max(job.steps, math.ceil(job.steps / job.strength))
    while int(n * job.strength) < job.steps:  # float rounding
        n += 1
    return n


def check_job(job: DiffusersJob) -> None:
    if job.extend:
        if job.source_frames is None:
            raise EngineError("an extension needs the video it extends", "invalid_request")
        if job.frames < 4 or job.frames % 4:
            raise EngineError(f"an extension adds 4k frames (4, 8, ...); got {job.frames}", "invalid_request")
    elif job.frames < 1 or (job.frames - 1) % 4:
        raise EngineError(f"video models need 4k+1 frames (5, 9, 13, ...); got {job.frames}", "invalid_request")
    if job.width < 16 or job.height < 16 or job.width % 16 or job.height % 16:
        raise EngineError(f"width and height must be multiples of 16; got {job.width}x{job.height}", "invalid_request")
    if job.steps < 1:
        raise EngineError(f"steps must be at least 1; got {job.steps}", "invalid_request")
    if job.source_frames is not None and not 0.0 < job.strength <= 1.0:
        raise EngineError(f"remix strength must be in (0, 1]; got {job.strength}", "invalid_request")


def check_geometry(job: DiffusersJob, family: Family, pipe: Any) -> None:
    """A real checkpoint may be stricter than 16 px / 4k+1 (Wan 2.2 TI2V: 32 px, LTX-Video: 32 px and
    8k+1 frames): ask the pipeline."""
    multiple, temporal = family.geometry(pipe)
    if job.width % multiple or job.height % multiple:
        raise EngineError(
            f"this model needs width and height in multiples of {multiple}; got {job.width}x{job.height}",
            "invalid_request",
        )
    if (job.frames - 1) % temporal:
        raise EngineError(f"this model needs {temporal}k+1 frames; got {job.frames}", "invalid_request")


def resampled(src: npt.NDArray[np.uint8], frames: int) -> npt.NDArray[np.uint8]:
    """`src` at `frames` frames: its last frame held for the few the model makes past the video's own
    (k * m + 1), else resampled evenly in time."""
    if src.ndim != 4 or src.shape[-1] != 3 or len(src) == 0:
        raise EngineError(f"remix source frames must be (F, H, W, 3); got {src.shape}", "invalid_request")
    if 0 < frames - len(src) <= 8:
        return np.concatenate([src, np.repeat(src[-1:], frames - len(src), axis=0)])
    return src if len(src) == frames else src[np.linspace(0, len(src) - 1, frames).round().astype(int)]


def pil_frames(frames: npt.NDArray[np.uint8], width: int, height: int) -> list[Any]:
    from PIL import Image

    pil = [Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8)) for f in frames]
    return [f if f.size == (width, height) else f.resize((width, height), Image.Resampling.BICUBIC) for f in pil]


def extension_prefix(job: DiffusersJob) -> npt.NDArray[np.uint8]:
    """The video being extended, every frame, at the job's size (it comes through unchanged)."""
    src = job.source_frames
    assert src is not None  # noqa: S101  (checked by check_job)
    if src.ndim != 4 or src.shape[-1] != 3 or len(src) == 0:
        raise EngineError(f"the video to extend must be (F, H, W, 3) frames; got {src.shape}", "invalid_request")
    if src.shape[1:3] == (job.height, job.width):
        return src
    return np.stack([np.asarray(f) for f in pil_frames(src, job.width, job.height)])


def source_video(job: DiffusersJob) -> list[Any]:
    """The remix source as PIL frames at the job's size and frame count (v2v keeps the source's length),
    opening on the job's image when it has one (a character the edit's prompt names)."""
    from PIL import Image

    src = job.source_frames
    assert src is not None  # noqa: S101  (narrows a type; never input validation)
    if src.ndim != 4 or src.shape[-1] != 3 or len(src) == 0:
        raise EngineError(f"remix source frames must be (F, H, W, 3); got {src.shape}", "invalid_request")
    if 0 < job.frames - len(src) <= 8:  # the model's k*m+1 past the video's own frames: hold its last frame
        src = np.concatenate([src, np.repeat(src[-1:], job.frames - len(src), axis=0)])
    elif len(src) != job.frames:  # resample evenly in time
        src = src[np.linspace(0, len(src) - 1, job.frames).round().astype(int)]
    size = (job.width, job.height)
    frames = [Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8)) for f in src]
    frames = [f if f.size == size else f.resize(size, Image.Resampling.BICUBIC) for f in frames]
    if job.image is not None:  # a character's reference frame opens the edited video
        frames[0] = decode_image(job)
    return frames


def decode_image(job: DiffusersJob) -> Any:
    from . import images

    assert job.image is not None  # noqa: S101  (narrows a type; never input validation)
    try:
        return images.fit_image(job.image, job.width, job.height)
    except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
        raise EngineError(f"cannot decode the input image: {e}", "invalid_request") from e
