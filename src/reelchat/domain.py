"""Plain data the whole server shares: tasks, requests, events and their states.

Nothing here imports a web framework, a database driver or torch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MAX_PROMPT_CHARS = 32_000  # the longest prompt either API accepts
# what an extension may add, in seconds: 4 to 20 (the openai SDK's `videos.extend` documents 4..20)
EXTEND_SECONDS: tuple[int, ...] = tuple(range(4, 21))
DEFAULT_EXTEND_SECONDS = 4
OPEN_TENANT = "default"  # who owns what is made with no API key (open mode, loopback only)
MAX_CHARACTER_NAME_CHARS = 80  # the longest character name the Videos API accepts
# a running task's live preview picture, one media name per task, overwritten while it denoises
PREVIEW_SUFFIX = "-preview.webp"


class TaskStatus(enum.StrEnum):
    """A task's life: queued -> in_progress -> completed | failed (| cancelled by DELETE)."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)


class Orientation(enum.StrEnum):
    PORTRAIT = "portrait"
    LANDSCAPE = "landscape"


@dataclass(frozen=True)
class InputImage:
    """An image that conditions a generation, already fetched and checked to decode."""

    data: bytes
    content_type: str  # "image/png", "image/jpeg", "image/webp", ...


@dataclass(frozen=True)
class VideoRequest:
    """What a user asked for, read from a chat turn or a /v1/videos body.

    `seconds`, `size` and `seed` are None when the user left them to the model's defaults. The video
    it modifies (a remix), if any, is resolved by the service and passed beside it.
    """

    model: str
    prompt: str
    orientation: Orientation | None = None  # None: the source's (a remix) or portrait
    seconds: int | None = None
    size: str | None = None  # "WxH"
    seed: int | None = None
    image: InputImage | None = None
    image_url: str | None = None  # an http(s) url still to be fetched (chat image parts)
    # continue the source video for `seconds` more (an extension) instead of remixing it
    extend: bool = False
    character: str | None = None  # the character whose reference frame `image` is (its prompt named it)


@dataclass(slots=True)  # thousands are held at once by open replies: no __dict__ each
class Task:
    """One generation: the single source of truth, stored before any work starts."""

    id: str  # task_<ulid>
    video_id: str  # video_<hex>: the OpenAI Videos API id of the same record
    sid: str  # s_<32 hex>: the finished video's handle for remixing
    tenant: str
    model: str
    prompt: str  # the user's words for this turn
    engine_prompt: str  # what conditions the model (for a remix: source prompt + modification)
    orientation: Orientation
    seconds: int
    size: str  # "WxH": the video's size, as the APIs report it and the mp4 is encoded at
    width: int  # the size the model renders at (the catalog's render size for `size`)
    height: int
    fps: int
    frames: int  # the video's frames, seconds * fps (a Wan model makes the fewest 4k+1 that hold them)
    steps: int
    seed: int
    status: TaskStatus = TaskStatus.QUEUED
    progress: int = 0
    attempt: int = 0  # claims so far: the fencing token of the run that holds the task
    crashes: int = 0  # runs in a row during which the server died while the engine was making this video
    origin: str = "chat"  # "chat" | "videos"
    remixed_from: str | None = None  # source task id
    has_image: bool = False
    image_name: str | None = None  # stored input image (media storage name)
    video_name: str | None = None
    thumbnail_name: str | None = None
    spritesheet_name: str | None = None
    upstream_job_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    deleted: bool = False  # soft-deleted: gone from the APIs, kept so later remixes' lineage resolves
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    params: dict[str, Any] = field(default_factory=dict)
    media_pending: list[str] = field(default_factory=list)  # names a run was about to write
    key_id: str | None = None  # the API key that asked for it (None in open mode)
    phases: dict[str, float] = field(default_factory=dict)  # seconds the last run spent per phase
    # how many preview pictures the running attempt has stored under `preview_name` (None: none yet)
    preview: int | None = None
    # the input image, held between prepare and enqueue (never stored in the row)
    image_data: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def preview_name(self) -> str:
        """Where the running attempt's live preview picture is stored (a media name, overwritten)."""
        return f"{self.id}{PREVIEW_SUFFIX}"


@dataclass(frozen=True)
class TaskEvent:
    """A change to a task, as subscribers (a streaming reply, a page) see it."""

    task_id: str
    status: TaskStatus
    progress: int
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class Character:
    """A person or thing a tenant named, with a reference frame taken from a video of it; a prompt that
    names it (`name` or `@name`) conditions on that frame."""

    id: str  # char_<hex>
    tenant: str
    name: str
    frame_name: str  # the reference frame (png) in media storage
    created_at: datetime
    source_video_id: str | None = None  # the video it was taken from, when that was one of the tenant's


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    tenant: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None
    limits: KeyLimits = field(default_factory=lambda: KeyLimits())
    webhook_url: str | None = None  # where this key's videos' events go (its secret stays in the store)


@dataclass(frozen=True)
class KeyLimits:
    """What one API key may use (None: no limit), and its weight in the fair queue."""

    rpm: int | None = None  # videos requested per minute
    max_concurrent: int | None = None  # videos queued or in progress at once
    daily_seconds: int | None = None  # seconds of video per 24 hours (completed videos are charged)
    priority: float = 1.0  # share of the workers when several keys wait (2.0: twice key 1.0's)


@dataclass(frozen=True)
class Caller:
    """Who makes a request: a tenant, and the API key it came with (None in open mode)."""

    tenant: str
    key: ApiKey | None = None
