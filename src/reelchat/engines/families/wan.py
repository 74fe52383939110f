"""Wan 2.1 / 2.2 (diffusers' WanPipeline, WanImageToVideoPipeline, WanVideoToVideoPipeline)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Family, diffusers, shared_parts

if TYPE_CHECKING:
    from ..diffusers_spec import DiffusersJob

_MAX_TEXT_TOKENS = 512  # what Wan pipelines pad/truncate the prompt to by default
_SHARED = ("tokenizer", "text_encoder", "transformer", "vae", "scheduler")


class WanFamily(Family):
    name = "wan"
    class_names = frozenset({"WanPipeline", "WanImageToVideoPipeline", "WanVideoToVideoPipeline"})
    text_class = "WanPipeline"
    image_class = "WanImageToVideoPipeline"
    two_pass_guidance = True  # prompt, then negative prompt: two transformer calls per step
    # Wan's VAE is fragile in half precision (its reference code keeps it in float32); it is small.
    vae_float32 = True
    vae_tile = 256  # AutoencoderKLWan's tile_sample_min_height/width

    def video_pipe(self, text_pipe: Any) -> Any:
        return diffusers().WanVideoToVideoPipeline(**shared_parts(text_pipe, _SHARED))

    def shared_image_pipe(self, text_pipe: Any) -> Any:
        # Wan 2.2 TI2V-5B: one checkpoint for text- and image-to-video
        return diffusers().WanImageToVideoPipeline(
            **shared_parts(text_pipe, _SHARED),
            transformer_2=getattr(text_pipe, "transformer_2", None),
            boundary_ratio=text_pipe.config.get("boundary_ratio"),
            expand_timesteps=bool(text_pipe.config.get("expand_timesteps", False)),
        )

    def text_args(self, pipe: Any, job: DiffusersJob) -> dict[str, Any]:
        return {"num_frames": job.frames, **_prompt_embeds(pipe, job)}

    def image_args(self, pipe: Any, job: DiffusersJob, image: Any) -> dict[str, Any]:
        return {"image": image, "num_frames": job.frames, **_prompt_embeds(pipe, job)}

    def video_args(self, pipe: Any, job: DiffusersJob, video: list[Any], schedule: int) -> dict[str, Any]:
        return {"video": video, "strength": job.strength, **_prompt_embeds(pipe, job)}

    def overlap_latents(self, pipe: Any, job: DiffusersJob, tail: list[Any]) -> Any:
        import torch

        pixels = pipe.video_processor.preprocess_video(tail, job.height, job.width)
        pixels = pixels.to(pipe._execution_device, dtype=pipe.vae.dtype)
        with torch.no_grad():
            raw = pipe.vae.encode(pixels).latent_dist.mode()
        # the inverse of the pipelines' decode: latents * std + mean
        shape = (1, pipe.vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(pipe.vae.config.latents_mean).view(shape).to(raw.device, raw.dtype)
        std = torch.tensor(pipe.vae.config.latents_std).view(shape).to(raw.device, raw.dtype)
        return ((raw - mean) / std).float()

    def geometry(self, pipe: Any) -> tuple[int, int]:
        # a real checkpoint may be stricter than 16 px / 4k+1 (Wan 2.2 TI2V: 32 px): ask the pipeline
        transformer = pipe.transformer if pipe.transformer is not None else pipe.transformer_2
        spatial = int(pipe.vae_scale_factor_spatial) * int(transformer.config.patch_size[1])
        return spatial, int(pipe.vae_scale_factor_temporal)

    def decode_normalized(self, pipe: Any, latents: Any) -> Any:
        import torch

        vae = pipe.vae
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape)
        std = torch.tensor(vae.config.latents_std).view(shape)
        raw = (latents * std + mean).to(vae.device, vae.dtype)
        return vae.decode(raw, return_dict=False)[0]


def _prompt_embeds(pipe: Any, job: DiffusersJob) -> dict[str, Any]:
    """Encode the prompts with WanPipeline's text path, for every Wan pipeline.

    diffusers' Wan video-to-video and image-to-video pipelines call `ftfy.fix_text` unconditionally
    (only WanPipeline checks that ftfy is installed), so passing them a text prompt without ftfy raises
    NameError. WanPipeline's helper works on any pipeline with a tokenizer and text encoder, cleans the
    text the same way (with ftfy when it is there), and gives all three modes one prompt encoding.
    """
    encode = diffusers().WanPipeline._get_t5_prompt_embeds
    out = {"prompt_embeds": encode(pipe, prompt=job.prompt, max_sequence_length=_MAX_TEXT_TOKENS)}
    if job.guidance_scale > 1.0:  # classifier-free guidance also runs the negative prompt
        negative = job.negative_prompt or ""
        out["negative_prompt_embeds"] = encode(pipe, prompt=negative, max_sequence_length=_MAX_TEXT_TOKENS)
    return out
