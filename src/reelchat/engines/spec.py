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

# What OpenAI's Videos API documents (openai-python's `VideoSeconds` and `VideoSize`): every model
# accepts these besides its own, so clients written against OpenAI work unchanged.
OPENAI_SECONDS = (4, 8, 12)
OPENAI_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")


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


def _aspect(size: str) -> float:
    w, h = parse_size(size)
    return w / h


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
    portrait_sizes: list[str] = Field(min_length=1)  # "WxH" the model renders at, first is the default
    landscape_sizes: list[str] = Field(min_length=1)
    # a public size (OpenAI's, or the model's own) -> the size the model renders it at; unlisted ones
    # render at the model's own size of the closest aspect ratio, and the encoder scales to the public size
    render_sizes: dict[str, str] = Field(default_factory=dict)
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
        for public, render in self.render_sizes.items():
            if public.lower() not in self.public_sizes:
                raise ValueError(
                    f"{self.name}: render_sizes key {public!r} is neither OpenAI's size nor one of the model's own"
                )
            if orientation_of(public) is not orientation_of(render):
                raise ValueError(f"{self.name}: render_sizes maps {public} to {render}, another orientation")
        if "{prompt}" not in self.remix_prompt_template:
            raise ValueError(f"{self.name}: remix_prompt_template must contain {{prompt}}")
        return self

    @property
    def all_sizes(self) -> list[str]:
        """The model's own sizes (what it renders at)."""
        return list(dict.fromkeys(s.lower() for s in self.portrait_sizes + self.landscape_sizes))

    @property
    def public_sizes(self) -> list[str]:
        """Every size a request may ask for: OpenAI's, then the model's own."""
        return list(dict.fromkeys([*OPENAI_SIZES, *self.all_sizes]))

    @property
    def allowed_seconds(self) -> list[int]:
        """Every duration a request may ask for: OpenAI's and the model's own."""
        return sorted({*OPENAI_SECONDS, *self.seconds})

    def default_size(self, orientation: Orientation) -> str:
        return (self.landscape_sizes if orientation is Orientation.LANDSCAPE else self.portrait_sizes)[0].lower()

    def render_size(self, public: str) -> str:
        """The size the model renders `public` at: the catalog's mapping, the size itself when it is one
        of the model's own, else the model's own size of that orientation whose aspect ratio is closest."""
        for key, render in self.render_sizes.items():
            if key.lower() == public:
                return render.lower()
        if public in self.all_sizes:
            return public
        w, h = parse_size(public)
        own = self.landscape_sizes if orientation_of(public) is Orientation.LANDSCAPE else self.portrait_sizes
        return min(own, key=lambda s: abs(_aspect(s) - w / h)).lower()

    def frames_for(self, seconds: int) -> int:
        """The video's frames: seconds * fps, so the mp4 lasts exactly `seconds` (an engine may make a few
        more, as Wan's 4k+1, and the runner keeps this many)."""
        return max(1, seconds * self.fps)

    def continuation_frames(self, seconds: int, fps: int) -> int:
        """New frames for an extension of `seconds` at `fps`: seconds * fps, so the extension adds exactly
        `seconds` (an engine may make a few more, whole latent frames, and the runner keeps this many)."""
        return max(1, seconds * fps)

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
