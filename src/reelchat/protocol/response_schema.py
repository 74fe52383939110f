"""What each JSON answer holds, as pydantic models: the OpenAPI document's response schemas.

The views (`views.py`, `chat_render.py`, the routes) build plain dicts; these models describe them
for the document, and the schemathesis test (`tests/test_openapi_contract.py`) checks every answer
against them, so a field added to a view and not here fails that test.

Pure: no I/O, no web framework.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "CharacterObject",
    "ChatCompletion",
    "ChatCompletionChunk",
    "Health",
    "ModelList",
    "ModelObject",
    "Ready",
    "TaskSource",
    "VideoDeleted",
    "VideoList",
    "VideoObject",
]


class VideoFailure(BaseModel):
    code: str
    message: str


class VideoObject(BaseModel):
    """OpenAI's `Video`, plus `task_id` and `sid` (the same video in the chat API and the pages)."""

    id: str
    object: Literal["video"]
    created_at: int
    completed_at: int | None
    expires_at: int | None
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(ge=0, le=100)
    model: str
    prompt: str
    seconds: str
    size: str
    remixed_from_video_id: str | None
    error: VideoFailure | None
    task_id: str
    sid: str | None = Field(description="set once completed: the handle a chat turn remixes")
    extended_from_video_id: str | None = Field(
        default=None, description="an extension's: the video it continues (then remixed_from_video_id is null)"
    )


class VideoList(BaseModel):
    object: Literal["list"]
    data: list[VideoObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"]
    deleted: bool


class CharacterObject(BaseModel):
    """OpenAI's `VideoCreateCharacterResponse` / `VideoGetCharacterResponse`."""

    id: str
    created_at: int
    name: str


class ModelObject(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    description: str
    engine: str
    seconds: list[str]
    sizes: list[str]
    fps: int


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelObject]


class ChatMessageOut(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatMessageOut
    finish_reason: Literal["stop"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """A whole reply (`stream: false`). Streamed, the same text comes as `chat.completion.chunk` SSE frames."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: ChunkDelta
    finish_reason: Literal["stop"] | None


class ChatCompletionChunk(BaseModel):
    """One frame of a streamed reply (`stream: true`): `data: <chunk>`, and `data: [DONE]` last."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str | None = None
    workers: str | None = None


class Ready(BaseModel):
    status: Literal["ready"]


class LineageEntry(BaseModel):
    id: str
    sid: str | None
    video_id: str
    prompt: str
    status: str
    web_url: str
    thumbnail_url: str | None


class SourceRef(BaseModel):
    id: str
    sid: str | None
    video_id: str


class ExtendedRef(SourceRef):
    seconds: int = Field(description="the length of the video this one continues")


class TaskSource(BaseModel):
    """`/source/<task id>`: a task, its media links and its history, as the task page reads it."""

    id: str
    object: Literal["task"]
    video_id: str
    status: Literal["queued", "in_progress", "completed", "failed", "cancelled"]
    progress: int
    model: str
    prompt: str
    engine_prompt: str
    orientation: Literal["portrait", "landscape"]
    seconds: int
    size: str
    fps: int
    frames: int
    steps: int
    seed: int
    windows: int = Field(description="passes of the model that made the clip (more than one: longer than its window)")
    kind: Literal["generation", "remix", "extension"]
    has_image: bool
    origin: str
    attempt: int
    sid: str | None
    url: str | None
    thumbnail_url: str | None
    spritesheet_url: str | None
    preview_url: str | None = Field(
        description="while the task runs: a small WebP of the video so far, replaced every few steps "
        "(a local model's; none from an upstream server, and none once it finishes)"
    )
    web_url: str
    created_at: str | None
    started_at: str | None
    completed_at: str | None
    error: VideoFailure | None
    deleted: bool
    remixed_from: SourceRef | None
    extended_from: ExtendedRef | None
    lineage: list[LineageEntry]
