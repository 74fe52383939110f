"""A catalog entry served by the local diffusers engine: its pipelines and sampling settings, what it
can do, and `DiffusersJob`, one generation as that engine runs it.

Light on purpose (no torch, no diffusers): the catalog imports it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from .spec import Capabilities, SpecBase
from .speed_spec import SpeedConfig

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DEMO_PIPELINE = "demo"
DEMO_I2V_PIPELINE = "demo-i2v"
DEMO_LTX_PIPELINE = "demo-ltx"  # one tiny LTX-Video checkpoint for all three modes
DEMO_PIPELINES = (DEMO_PIPELINE, DEMO_I2V_PIPELINE, DEMO_LTX_PIPELINE)


def model_frames(frames: int, multiple: int) -> int:
    """Frames the model makes for a video of `frames`: the fewest k * multiple + 1 that hold them (Wan: 4k+1,
    LTX-Video: 8k+1); the runner keeps `frames` of them."""
    return multiple * max(1, math.ceil((frames - 1) / multiple)) + 1


class DiffusersSpec(SpecBase):
    engine: Literal["diffusers"] = "diffusers"
    preset: str | None = None  # the `presets` entry this one started from (informative)
    # a pipeline directory, a Hugging Face repo id (read from the local HF cache: `reelchat pull`), or a demo
    pipeline: str = DEMO_PIPELINE
    # the same for image-to-video, or None; unset: the demo's own (demo-i2v for demo, demo-ltx for demo-ltx)
    i2v_pipeline: str | None = DEMO_I2V_PIPELINE
    guidance_scale: float = 5.0
    negative_prompt: str | None = None
    remix_strength: float = Field(default=0.6, gt=0, le=1)
    # GPUs one copy of the model needs (REELCHAT_EXECUTOR=ray: the actor's num_gpus). None: one on a
    # cluster with GPUs, none (a CPU instead) on one without. More than one is the seam for a model
    # too big for one GPU (sequence-parallel inference).
    gpus: int | None = Field(default=None, ge=0)
    # the model makes the fewest k * frame_multiple + 1 frames that hold seconds x fps (Wan: 4, LTX-Video: 8)
    frame_multiple: int = Field(default=4, ge=1)
    # the most frames one pass renders (Wan 2.1: 81); a longer clip is made window by window
    # (engines/windows.py). Unset: the clip's own frame count, one pass whatever its length.
    window_frames: int | None = Field(default=None, ge=2)
    speed: SpeedConfig = Field(default_factory=SpeedConfig)  # diffusers' speed-ups, each off unless set

    @model_validator(mode="after")
    def _demo_i2v(self) -> DiffusersSpec:
        if "i2v_pipeline" not in self.model_fields_set and self.pipeline == DEMO_LTX_PIPELINE:
            self.i2v_pipeline = DEMO_LTX_PIPELINE
        if self.window_frames is not None:
            m = self.frame_multiple
            if (self.window_frames - 1) % m or self.window_frames <= m + 1:
                raise ValueError(
                    f"{self.name}: window_frames must be k * {m} + 1 (frame_multiple) and more than {m + 1}; "
                    f"got {self.window_frames}"
                )
        return self

    @model_validator(mode="after")
    def _lora_sampling(self) -> DiffusersSpec:
        """A distilled LoRA samples with its own steps and guidance (the service plans with `steps`)."""
        lora = self.speed.lora
        if lora is not None and lora.steps is not None:
            self.steps = lora.steps
        if lora is not None and lora.guidance_scale is not None:
            self.guidance_scale = lora.guidance_scale
        return self

    def model_frames(self, frames: int) -> int:
        """Frames this entry's model makes for a video of `frames` (see `model_frames`)."""
        return model_frames(frames, self.frame_multiple)

    def model_continuation_frames(self, frames: int) -> int:
        """Frames this entry's model makes to add `frames` to a video (an extension): whole latent frames,
        the fewest k * frame_multiple that hold them; the runner keeps `frames` of them."""
        m = self.frame_multiple
        return m * max(1, math.ceil(frames / m))

    def windows_for(self, frames: int, *, prefix: int = 0) -> int:
        """How many passes make `frames` new frames (after `prefix` given ones: an extension), counted on
        the frames the model makes for them."""
        made = self.model_frames(frames) if prefix == 0 else self.model_continuation_frames(frames)
        window = self.window_frames or made
        if not self.window_frames and prefix:
            from .windows import overlap_for

            window += overlap_for(self.frame_multiple)
        return _passes(prefix + made, window, self.frame_multiple, prefix)

    @property
    def capabilities(self) -> Capabilities:
        # a remix re-noises the source's decoded frames with the text pipeline: every entry has one
        return Capabilities(text_to_video=True, image_input=self.i2v_pipeline is not None, remix=True, extend=True)

    def remix_params(self) -> dict[str, Any]:
        return {"strength": self.remix_strength}


@dataclass(frozen=True)
class DiffusersJob:
    """One generation for the diffusers engine: text-, image- (`image`) or video-to-video (`source_frames`)."""

    prompt: str
    width: int
    height: int
    frames: int  # Wan needs 4k+1
    fps: int
    steps: int
    seed: int
    guidance_scale: float = 5.0
    negative_prompt: str | None = None
    # image-to-video: the encoded image bytes (png/jpeg/webp), already checked to decode
    image: bytes | None = None
    # remix: the source video's frames, (F, H, W, 3) uint8 RGB, and how far to re-noise them (0..1]
    source_frames: npt.NDArray[np.uint8] | None = None
    strength: float = 0.6
    # extension: `source_frames` are kept (bar the blend at the seam) and `frames` new ones follow them
    extend: bool = False
    window_frames: int | None = None  # the most frames one pass renders (None: the whole clip)
    blend_seams: bool = True  # False only to measure what the cross-fade does (bench/seams.py)


@functools.lru_cache(maxsize=4096)
def _passes(total: int, window: int, multiple: int, prefix: int) -> int:
    """How many windows `plan` makes (asked for every chat turn, with few distinct answers)."""
    from .windows import plan  # numpy: not imported by the API process until a turn asks

    return len(plan(total, window, multiple, prefix=prefix))
