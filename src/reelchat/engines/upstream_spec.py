"""A catalog entry served by another OpenAI-Videos-API server: the server's settings (`UpstreamServer`),
the entry (`UpstreamSpec`), what it can do, and `UpstreamJob`, one generation as the upstream engine
runs it.

Light on purpose (no HTTP client): the catalog imports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .spec import Capabilities, SpecBase


class UpstreamServer(BaseModel):
    """An upstream OpenAI-Videos-API server that makes the video for this entry (the `upstream` section)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    model: str
    api_key_env: str | None = None
    api_key_file: Path | None = None
    supports_remix: bool = True
    supports_reference: bool = True
    # the upstream has POST /videos/extensions (an extension of a video it made goes there; nothing
    # else can extend an upstream's video, so without it extensions are refused)
    supports_extensions: bool = False
    deadline_s: float = 1800.0
    request_timeout_s: float = 30.0
    max_retries: int = 4
    # poll cadence when the upstream sends no `openai-poll-after-ms`, and the first retry's backoff (doubling)
    poll_interval_s: float = Field(default=2.0, gt=0)
    retry_backoff_s: float = Field(default=1.0, gt=0)
    # downloads are streamed and cut off past these: a finished video fails its task, a thumbnail is dropped
    max_video_bytes: int = Field(default=2 * 1024**3, gt=0)
    max_thumbnail_bytes: int = Field(default=20 * 1024**2, gt=0)
    # sent as OpenAI-Organization / OpenAI-Project only when set here (never taken from OPENAI_* variables)
    organization: str | None = None
    project: str | None = None

    def api_key(self) -> str:
        if self.api_key_file is not None:
            return self.api_key_file.read_text().strip()
        if self.api_key_env:
            return os.environ.get(self.api_key_env, "")
        return "none"

    @property
    def capabilities(self) -> Capabilities:
        # Every remix is handed its source mp4, so a reference frame can stand in for /remix. Whether
        # /remix itself applies depends on the source (made by this upstream?): decided at run time.
        return Capabilities(
            text_to_video=True,
            image_input=self.supports_reference,
            remix=self.supports_remix or self.supports_reference,
            extend=self.supports_extensions,
        )


class UpstreamSpec(SpecBase):
    engine: Literal["upstream"]
    upstream: UpstreamServer

    @property
    def capabilities(self) -> Capabilities:
        return self.upstream.capabilities


@dataclass(frozen=True)
class UpstreamRemix:
    """The finished video an upstream job modifies."""

    video: bytes  # its mp4, for a reference frame
    upstream_id: str | None  # its job id at this same upstream (for /remix), when it was made there
    instruction: str  # the turn's own words (the upstream combines them with its own source prompt)


@dataclass(frozen=True)
class UpstreamJob:
    """One generation for the upstream engine."""

    prompt: str  # for a remix: the source's prompt and the turn's words combined
    width: int
    height: int
    seconds: int | None = None  # None: the upstream's default
    image: bytes | None = None  # image-to-video: the encoded input image, already checked to decode
    remix: UpstreamRemix | None = None
    # an extension: the upstream id of the video to continue by `extend_seconds` (`remix` is None)
    extend_id: str | None = None
    extend_seconds: int | None = None
    task_id: str | None = None  # stable across attempts: the idempotency key (None: a fresh one)
