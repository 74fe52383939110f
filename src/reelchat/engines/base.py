"""The engine contract: turn an EngineJob into frames (local models) or a file (upstream servers).

Engines know nothing of tasks, tenants, HTTP or storage. The executor hands them a job and a
reporter; they report progress (0-100) as they go and return an EngineResult.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


class EngineError(Exception):
    """A generation failed for a reason worth showing to the user (`code` is machine-readable)."""

    def __init__(self, message: str, code: str = "generation_failed") -> None:
        super().__init__(message)
        self.code = code


class EngineCancelled(Exception):
    """The reporter asked the engine to stop (the task was deleted)."""


@dataclass(frozen=True)
class EngineJob:
    prompt: str
    width: int
    height: int
    frames: int  # Wan needs 4k+1
    fps: int
    steps: int
    seed: int
    guidance_scale: float = 5.0
    negative_prompt: str | None = None
    # remix: the source video's frames, (F, H, W, 3) uint8 RGB, and how far to re-noise them (0..1]
    source_frames: npt.NDArray[np.uint8] | None = None
    strength: float = 0.6
    # image-to-video: the encoded image bytes (png/jpeg/webp), already checked to decode
    image: bytes | None = None
    # upstream engines: the source video's upstream id (for upstream remix) and its mp4 bytes
    source_upstream_id: str | None = None
    source_video: bytes | None = None
    # a remix's own words (job.prompt already combines them with the source's prompt)
    remix_instruction: str | None = None
    seconds: int = 0
    model: str = ""
    task_id: str = ""  # stable across attempts: upstream idempotency keys


@dataclass
class EngineResult:
    """Either frames (local engines) or an encoded mp4 (upstream engines), plus an optional thumbnail."""

    frames: npt.NDArray[np.uint8] | None = None  # (F, H, W, 3) uint8 RGB
    fps: int = 16
    video: bytes | None = None  # encoded mp4, when the engine produced a file
    thumbnail: bytes | None = None  # webp, when the engine had one


class Reporter(Protocol):
    """What an engine may tell the executor while it works. All methods are thread-safe."""

    def progress(self, percent: int) -> None: ...

    def cancelled(self) -> bool: ...

    @property
    def upstream_job_id(self) -> str | None:
        """An upstream job started by an earlier attempt of this task, to resume instead of resubmitting."""
        ...

    async def remember_upstream_job(self, job_id: str) -> None:
        """Durably record an upstream job id before polling it (no double charges after a restart)."""
        ...


class Engine(Protocol):
    supports_remix: bool
    supports_image: bool

    async def load(self) -> None:
        """Get ready to generate (load weights onto the device); the server calls it before taking work."""
        ...

    async def generate(self, job: EngineJob, reporter: Reporter) -> EngineResult: ...

    async def close(self) -> None: ...
