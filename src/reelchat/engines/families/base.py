"""What a model family (Wan, LTX-Video, ...) tells the diffusers engine: which diffusers pipelines serve
its three modes, how they share one checkpoint's modules, and the arguments each mode is called with.

The engine owns everything else (the device, loading, locks, progress, cancellation, frame checks), so a
new family is one module that subclasses `Family` and registers itself in `families/__init__.py`.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..diffusers_spec import DiffusersJob


def diffusers() -> Any:
    """diffusers is untyped: keep it `Any` at the boundary (and imported only when first needed)."""
    return importlib.import_module("diffusers")


class Family(ABC):
    """One model family's pipelines. Stateless: the engine keeps the loaded pipelines."""

    name: ClassVar[str]
    # the `_class_name` values in a checkpoint's model_index.json that this family serves
    class_names: ClassVar[frozenset[str]]
    text_class: ClassVar[str]  # loaded from the checkpoint for text-to-video
    image_class: ClassVar[str]  # loaded from a separate image-to-video checkpoint
    # the pipelines run classifier-free guidance as two transformer calls per step, which the speed
    # block's `cfg_batch` can merge; False: they batch it themselves (LTX-Video)
    two_pass_guidance: ClassVar[bool] = False
    vae_float32: ClassVar[bool] = False  # the VAE stays in float32 whatever the engine's dtype
    vae_tile: ClassVar[int] = 512  # the VAE's tile side (pixels) with the speed block's `vae_tiling`

    def dtypes(self, torch: Any, main: Any) -> Any:
        """The `dtype` argument of `from_pretrained` (one dtype, or a dict by component)."""
        if self.vae_float32 and main is not torch.float32:
            return {"vae": torch.float32, "default": main}
        return main

    @abstractmethod
    def video_pipe(self, text_pipe: Any) -> Any:
        """The video-to-video (remix) pipeline over the text pipeline's modules."""

    @abstractmethod
    def shared_image_pipe(self, text_pipe: Any) -> Any:
        """The image-to-video pipeline over the text pipeline's modules (one checkpoint for both)."""

    @abstractmethod
    def text_args(self, pipe: Any, job: DiffusersJob) -> dict[str, Any]:
        """Arguments of a text-to-video call, besides the engine's common ones."""

    @abstractmethod
    def image_args(self, pipe: Any, job: DiffusersJob, image: Any) -> dict[str, Any]:
        """Arguments of an image-to-video call; `image` is a PIL image fitted to the job's size."""

    @abstractmethod
    def video_args(self, pipe: Any, job: DiffusersJob, video: list[Any], schedule: int) -> dict[str, Any]:
        """Arguments of a remix call; `video` is the source as PIL frames at the job's size and length.
        The engine has set `num_inference_steps` to `schedule`, the stretched schedule whose last
        `job.steps` steps the remix runs (see `_remix_schedule`)."""

    def overlap_latents(self, pipe: Any, job: DiffusersJob, tail: list[Any]) -> Any | None:
        """The frames a window continues from (`tail`, PIL at the job's size) as the normalized latents
        a text-to-video pass denoises, (B, C, T, h, w), for the engine to pin while it denoises (the
        strongest conditioning: the new window's first frames are those frames, re-drawn). None: this
        family continues through `continue_args` instead."""
        return None

    def continue_args(self, pipe: Any, job: DiffusersJob, tail: list[Any]) -> dict[str, Any] | None:
        """Arguments of a video-pipeline call whose first frames are conditioned on `tail` (LTX-Video's
        condition pipeline); None: the family has no such pipeline."""
        return None

    @abstractmethod
    def geometry(self, pipe: Any) -> tuple[int, int]:
        """(pixel multiple for width and height, frame multiple: frames must be k * it + 1)."""

    @abstractmethod
    def decode_normalized(self, pipe: Any, latents: Any) -> Any:
        """Normalized latents (B, C, T, h, w), as the pipelines denoise them, decoded by the VAE into
        pixels (B, 3, F, H, W) in [-1, 1]: how the preview projection is fitted (`engines.previews`)."""

    def preview_latents(self, pipe: Any, latents: Any, job: DiffusersJob) -> Any | None:
        """The latents a step callback sees, as one clip's (C, T, h, w); None: not of this job's shape."""
        return latents[0] if latents.dim() == 5 else None


def shared_parts(pipe: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The modules of a loaded pipeline, to build another pipeline over the same weights.

    The scheduler is a fresh copy: schedulers keep per-run state (timesteps, step index) and a remix
    starts its schedule part-way through.
    """
    parts = {k: getattr(pipe, k) for k in names}
    parts["scheduler"] = type(pipe.scheduler).from_config(pipe.scheduler.config)
    return parts
