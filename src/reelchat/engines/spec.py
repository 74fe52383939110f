"""What every catalog entry has, whatever engine makes its videos: durations, sizes, fps, how a remix's
prompt is built; and `Capabilities`, what an engine kind can do, which the service checks before queuing.

Each engine kind subclasses `SpecBase` in its own `*_spec` module with its own fields. Nothing here
imports an engine, torch or an HTTP client: the catalog (and `reelchat models`) load without them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..domain import Orientation


class CatalogError(ValueError):
    pass


@dataclass(frozen=True)
class Capabilities:
    """What a model can be asked for; `VideoService.prepare` refuses the rest before queuing."""

    text_to_video: bool  # a prompt alone
    image_input: bool  # a prompt and an input image (image-to-video)
    remix: bool  # a prompt and a finished video to modify (some sources may still fail at run time)
    extend: bool = False  # a prompt and a finished video to continue (`/v1/videos/extensions`)


def parse_size(size: str) -> tuple[int, int]:
    try:
        w, h = size.lower().split("x")
        width, height = int(w), int(h)
    except ValueError:
        raise CatalogError(f"size {size!r} is not WxH") from None
    if width <= 0 or height <= 0:
        raise CatalogError(f"size {size!r} is not WxH")
    return width, height


def orientation_of(size: str) -> Orientation:
    w, h = parse_size(size)
    return Orientation.LANDSCAPE if w > h else Orientation.PORTRAIT


class SpecBase(BaseModel):
    """The fields and rules every engine kind shares."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    seconds: list[int] = Field(min_length=1)
    default_seconds: int
    portrait_sizes: list[str] = Field(min_length=1)  # "WxH", first is the default
    landscape_sizes: list[str] = Field(min_length=1)
    fps: int = Field(gt=0)
    # recorded with every task (the service plans it); only local engines denoise in steps
    steps: int = Field(gt=0)
    # how a remix's prompt is built: {source_prompt} is the source video's full prompt, {prompt} the new turn
    remix_prompt_template: str = "{source_prompt}. {prompt}"
    # the longest video an extension may make, in seconds (unset: REELCHAT_MAX_VIDEO_SECONDS)
    max_seconds: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check_common(self) -> SpecBase:
        if self.default_seconds not in self.seconds:
            raise ValueError(f"{self.name}: default_seconds {self.default_seconds} not in seconds {self.seconds}")
        for s in self.portrait_sizes + self.landscape_sizes:
            parse_size(s)
        if "{prompt}" not in self.remix_prompt_template:
            raise ValueError(f"{self.name}: remix_prompt_template must contain {{prompt}}")
        return self

    @property
    def all_sizes(self) -> list[str]:
        return list(dict.fromkeys(self.portrait_sizes + self.landscape_sizes))

    def default_size(self, orientation: Orientation) -> str:
        return (self.landscape_sizes if orientation is Orientation.LANDSCAPE else self.portrait_sizes)[0]

    def frames_for(self, seconds: int) -> int:
        """Wan wants 4k+1 frames: the nearest such count to seconds*fps."""
        return 4 * max(1, round(seconds * self.fps / 4)) + 1

    def continuation_frames(self, seconds: int, fps: int) -> int:
        """New frames for an extension of `seconds` at `fps`: whole latent frames (4k)."""
        return 4 * max(1, round(seconds * fps / 4))

    def windows_for(self, frames: int, *, prefix: int = 0) -> int:
        """How many passes make `frames` new frames after `prefix` given ones (one: no windows)."""
        return 1

    def remix_params(self) -> dict[str, Any]:
        """What a remix task records of this entry's settings when queued (a later catalog change
        leaves queued remixes as they were asked for)."""
        return {}

    def remix_prompt(self, source_prompt: str, prompt: str) -> str:
        template = self.remix_prompt_template
        source_prompt = source_prompt.rstrip()
        if source_prompt.endswith((".", "!", "?", "。", "！", "？")):
            template = template.replace("{source_prompt}.", "{source_prompt}")  # no "dancing.. now"
        return template.replace("{source_prompt}", source_prompt).replace("{prompt}", prompt)
