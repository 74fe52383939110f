"""LTX-Video (diffusers' LTXPipeline, LTXImageToVideoPipeline, LTXConditionPipeline).

One checkpoint serves all three modes. A remix encodes its source with the VAE and denoises from there
(`LTXConditionPipeline`'s `latents` + `denoise_strength`), as a Wan remix does with its own pipeline.
"""

from __future__ import annotations

import importlib
import math
from typing import TYPE_CHECKING, Any

from .base import Family, diffusers, shared_parts

if TYPE_CHECKING:
    from ..diffusers_spec import DiffusersJob

_SHARED = ("tokenizer", "text_encoder", "transformer", "vae", "scheduler")
# LTX-Video's recommended settings for its timestep-aware VAEs (0.9.1 and later): the decoder also does
# a last bit of denoising at this noise level
_DECODE = {"decode_timestep": 0.05, "decode_noise_scale": 0.025}


class LTXFamily(Family):
    name = "ltx"
    class_names = frozenset({"LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline"})
    text_class = "LTXPipeline"
    image_class = "LTXImageToVideoPipeline"

    def video_pipe(self, text_pipe: Any) -> Any:
        return diffusers().LTXConditionPipeline(**shared_parts(text_pipe, _SHARED))

    def shared_image_pipe(self, text_pipe: Any) -> Any:
        return diffusers().LTXImageToVideoPipeline(**shared_parts(text_pipe, _SHARED))

    def text_args(self, pipe: Any, job: DiffusersJob) -> dict[str, Any]:
        return _common(pipe, job)

    def image_args(self, pipe: Any, job: DiffusersJob, image: Any) -> dict[str, Any]:
        return {"image": image, **_common(pipe, job)}

    def video_args(self, pipe: Any, job: DiffusersJob, video: list[Any], schedule: int) -> dict[str, Any]:
        # LTX's own schedule stays near sigma 1 for its first half, so `denoise_strength` alone would start
        # a 0.6 remix from almost pure noise (the source lost). An even schedule starts it at sigma ~0.6.
        timesteps = [1000.0 * (1 - i / schedule) for i in range(schedule)]
        return {
            "latents": _encode(pipe, video, job),
            "denoise_strength": job.strength,
            "timesteps": timesteps,
            **_common(pipe, job),
        }

    def continue_args(self, pipe: Any, job: DiffusersJob, tail: list[Any]) -> dict[str, Any]:
        # LTXConditionPipeline conditions the first frames on a video at frame 0, at full strength
        return {"video": tail, "frame_index": 0, "strength": 1.0, **_common(pipe, job)}

    def geometry(self, pipe: Any) -> tuple[int, int]:
        spatial = int(pipe.vae_spatial_compression_ratio) * int(pipe.transformer_spatial_patch_size)
        # diffusers' LTX pipelines refuse sizes that are not multiples of 32, whatever the VAE
        return math.lcm(32, spatial), int(pipe.vae_temporal_compression_ratio) * int(
            pipe.transformer_temporal_patch_size
        )

    def decode_normalized(self, pipe: Any, latents: Any) -> Any:
        import torch

        vae = pipe.vae
        raw = pipe._denormalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
        raw = raw.to(vae.device, vae.dtype)
        # a timestep-aware decoder (0.9.1 and later) also denoises a little: ask it for almost nothing
        temb = torch.tensor([_DECODE["decode_timestep"]], device=vae.device, dtype=vae.dtype)
        return vae.decode(raw, temb if vae.config.timestep_conditioning else None, return_dict=False)[0]

    def preview_latents(self, pipe: Any, latents: Any, job: DiffusersJob) -> Any | None:
        # the pipelines denoise packed tokens (B, T*h*w, C); a condition pipeline may put extra
        # conditioning tokens first, so the clip's are the last ones
        frames = (job.frames - 1) // int(pipe.vae_temporal_compression_ratio) + 1
        height = job.height // int(pipe.vae_spatial_compression_ratio)
        width = job.width // int(pipe.vae_spatial_compression_ratio)
        p, pt = int(pipe.transformer_spatial_patch_size), int(pipe.transformer_temporal_patch_size)
        tokens = (frames // pt) * (height // p) * (width // p)
        if latents.dim() != 3 or latents.shape[1] < tokens:
            return None
        return pipe._unpack_latents(latents[:, -tokens:], frames, height, width, p, pt)[0]


def _common(pipe: Any, job: DiffusersJob) -> dict[str, Any]:
    args: dict[str, Any] = {
        "prompt": job.prompt,
        "negative_prompt": job.negative_prompt or "",
        "num_frames": job.frames,
        "frame_rate": job.fps,  # LTX conditions its positions on the frame rate
    }
    if getattr(pipe.vae.config, "timestep_conditioning", False):
        args.update(_DECODE)
    return args


def _encode(pipe: Any, video: list[Any], job: DiffusersJob) -> Any:
    """The source frames as normalized (unpacked) latents, the form LTXConditionPipeline re-noises."""
    import torch

    ltx_condition: Any = importlib.import_module("diffusers.pipelines.ltx.pipeline_ltx_condition")
    pixels = pipe.video_processor.preprocess_video(video, job.height, job.width)
    pixels = pixels.to(pipe._execution_device, dtype=pipe.vae.dtype)
    with torch.no_grad():
        latents = ltx_condition.retrieve_latents(pipe.vae.encode(pixels), sample_mode="argmax")
    return pipe._normalize_latents(latents, pipe.vae.latents_mean, pipe.vae.latents_std).float()
