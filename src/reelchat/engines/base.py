"""The engine contract: the runner hands an engine a `JobRequest`; the engine makes its own job of it
(`prepare`: how a remix's source is used is the engine's call) and runs it into frames (local models)
or a file (upstream servers).

Engines know nothing of tasks, tenants, HTTP or storage. They report progress (0-100) to a Reporter as
they go and return an EngineResult. Each engine's job type lives beside its spec (`*_spec.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .spec import SpecBase


class EngineError(Exception):
    """A generation failed for a reason worth showing to the user (`code` is machine-readable)."""

    def __init__(self, message: str, code: str = "generation_failed") -> None:
        super().__init__(message)
        self.code = code


class EngineCancelled(Exception):
    """The reporter asked the engine to stop (the task was deleted)."""


@dataclass(frozen=True)
class SourceVideo:
    """The finished video a remix starts from."""

    mp4: bytes
    made_by: SpecBase | None  # the catalog entry that made it (None: no longer in the catalog)
    upstream_job_id: str | None  # the upstream job that made it, when one did
    # every frame, decoded on demand (refused past REELCHAT_MAX_VIDEO_PIXELS)
    frames: Callable[[], Awaitable[npt.NDArray[np.uint8]]]


@dataclass(frozen=True)
class JobRequest:
    """One task's work, as planned by the service; each engine takes what it uses."""

    task_id: str  # stable across attempts (upstream idempotency keys)
    prompt: str  # what conditions the model (a remix: the source's prompt and the turn's words)
    instruction: str  # the turn's own words
    width: int
    height: int
    seconds: int
    frames: int
    fps: int
    steps: int
    seed: int
    image: bytes | None = None  # image-to-video: the encoded input image, already checked to decode
    source: SourceVideo | None = None  # remix
    strength: float | None = None  # a remix's strength, as recorded with the task
    # `source` is extended, not remixed: its frames are kept and `frames` new ones follow them
    extend: bool = False
    extend_seconds: int | None = None  # an extension: the seconds it adds (`seconds` is the total)


@dataclass
class EngineResult:
    """Either frames (local engines) or an encoded mp4 (upstream engines), plus an optional thumbnail."""

    frames: npt.NDArray[np.uint8] | None = None  # (F, H, W, 3) uint8 RGB
    fps: int = 16
    video: bytes | None = None  # encoded mp4, when the engine produced a file
    thumbnail: bytes | None = None  # webp, when the engine had one
    # an extension's source frames that open the video unchanged, at their own size (all but the overlap
    # the continuation blends into): the video is these, then `frames`, each scaled to the public size
    prefix: npt.NDArray[np.uint8] | None = None


@dataclass(frozen=True)
class PreparedJob:
    """A job its engine has made ready: `run` it with a reporter."""

    run: Callable[[Reporter], Awaitable[EngineResult]]
    # made in this process: a crash while it runs may be its fault (see service.crashes); an upstream
    # job is just polled again after a restart, so a dead process during it is no sign of a poison pill
    local: bool


class Reporter(Protocol):
    """What an engine may tell the executor while it works. All methods are thread-safe."""

    def progress(self, percent: int) -> None: ...

    def cancelled(self) -> bool: ...

    def wants_previews(self) -> bool:
        """Whether to make preview pictures at all (REELCHAT_PREVIEWS); asked once per pass."""
        ...

    def preview(self, picture: npt.NDArray[np.uint8]) -> None:
        """A small picture of the clip so far, (h, w, 3) uint8 RGB; the reporter may drop it."""
        ...

    @property
    def upstream_job_id(self) -> str | None:
        """An upstream job started by an earlier attempt of this task, to resume instead of resubmitting."""
        ...

    async def remember_upstream_job(self, job_id: str) -> None:
        """Durably record an upstream job id before polling it (no double charges after a restart)."""
        ...


class Engine(Protocol):
    """What the registry keeps of every engine; each also has `prepare(spec, request)` for its own
    spec type and `generate(job, reporter)` for its own job type."""

    async def load(self) -> None:
        """Get ready to generate (load weights onto the device); the server calls it before taking work."""
        ...

    async def close(self) -> None: ...


class QuietReporter:
    """A reporter nobody listens to and nobody cancels (a warm-up run, a benchmark, a test); subclass
    it to keep what an engine reports."""

    upstream_job_id: str | None = None

    def progress(self, percent: int) -> None:
        pass

    def cancelled(self) -> bool:
        return False

    def wants_previews(self) -> bool:
        return False

    def preview(self, picture: npt.NDArray[np.uint8]) -> None:
        pass

    async def remember_upstream_job(self, job_id: str) -> None:
        pass
