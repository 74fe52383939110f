"""A catalog entry served by the local diffusers engine: its pipelines and sampling settings, what it
can do, and `DiffusersJob`, one generation as that engine runs it.

Light on purpose (no torch, no diffusers): the catalog imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from .spec import Capabilities, SpecBase

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

DEMO_PIPELINE = "demo"
DEMO_I2V_PIPELINE = "demo-i2v"


class DiffusersSpec(SpecBase):
    engine: Literal["diffusers"] = "diffusers"
    pipeline: str = DEMO_PIPELINE  # a pipeline directory, or "demo"
    i2v_pipeline: str | None = DEMO_I2V_PIPELINE  # image-to-video pipeline directory, "demo-i2v", or None
    guidance_scale: float = 5.0
    negative_prompt: str | None = None
    remix_strength: float = Field(default=0.6, gt=0, le=1)
    # GPUs one copy of the model needs (REELCHAT_EXECUTOR=ray: the actor's num_gpus). None: one on a
    # cluster with GPUs, none (a CPU instead) on one without. More than one is the seam for a model
    # too big for one GPU (sequence-parallel inference).
    gpus: int | None = Field(default=None, ge=0)

    @property
    def capabilities(self) -> Capabilities:
        # a remix re-noises the source's decoded frames with the text pipeline: every entry has one
        return Capabilities(text_to_video=True, image_input=self.i2v_pipeline is not None, remix=True)

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
