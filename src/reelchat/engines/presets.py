"""Known open-weight models (`reelchat models presets`): their Hugging Face repo, family, and the catalog
fields that serve them well. A catalog entry with `"preset": "<name>"` starts from a preset's fields and
overrides any of them; `reelchat pull <name>` downloads its checkpoint.

VRAM figures are estimates (bf16 weights of the transformer, text encoder and VAE, plus activations at
the preset's default size, no offload), not measurements.

Light on purpose (no torch, no huggingface_hub): the catalog imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    name: str
    repo_id: str
    family: str  # a `families` name
    description: str
    params: str  # transformer size, e.g. "1.3B"
    vram_gb: int  # estimated GPU memory to serve it without offload
    window_frames: int  # frames one denoising pass makes at most
    text_to_video: bool
    image_to_video: bool
    video_to_video: bool
    extension: bool  # what the model can do; reelchat does not serve extension yet
    fields: dict[str, Any] = field(default_factory=dict)  # catalog fields, `pipeline` included

    @property
    def supports(self) -> list[str]:
        flags = {
            "text": self.text_to_video,
            "image": self.image_to_video,
            "video": self.video_to_video,
            "extension": self.extension,
        }
        return [k for k, v in flags.items() if v]


_WAN_NEGATIVE = "blurry, low quality, static, distorted, watermark, text, subtitles, worst quality"
_LTX_NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="wan2.1-t2v-1.3b",
            repo_id="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
            family="wan",
            description="Wan 2.1 text-to-video 1.3B, 480p: the smallest Wan, fits a 24 GB GPU",
            params="1.3B",
            vram_gb=20,
            window_frames=81,
            text_to_video=True,
            image_to_video=False,
            video_to_video=True,
            extension=False,
            fields={
                "pipeline": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
                "i2v_pipeline": None,
                "portrait_sizes": ["480x832"],
                "landscape_sizes": ["832x480"],
                "seconds": [5],
                "default_seconds": 5,
                "fps": 16,
                "steps": 50,
                "guidance_scale": 5.0,
                "negative_prompt": _WAN_NEGATIVE,
                "remix_strength": 0.6,
            },
        ),
        Preset(
            name="wan2.1-t2v-14b",
            repo_id="Wan-AI/Wan2.1-T2V-14B-Diffusers",
            family="wan",
            description="Wan 2.1 text-to-video 14B, 720p and 480p: best Wan 2.1 quality, needs an 80 GB GPU",
            params="14B",
            vram_gb=64,
            window_frames=81,
            text_to_video=True,
            image_to_video=False,
            video_to_video=True,
            extension=False,
            fields={
                "pipeline": "Wan-AI/Wan2.1-T2V-14B-Diffusers",
                "i2v_pipeline": None,
                "portrait_sizes": ["720x1280", "480x832"],
                "landscape_sizes": ["1280x720", "832x480"],
                "seconds": [5],
                "default_seconds": 5,
                "fps": 16,
                "steps": 50,
                "guidance_scale": 5.0,
                "negative_prompt": _WAN_NEGATIVE,
                "remix_strength": 0.6,
            },
        ),
        Preset(
            name="wan2.2-ti2v-5b",
            repo_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
            family="wan",
            description="Wan 2.2 text- and image-to-video 5B, 720p at 24 fps: one checkpoint for both",
            params="5B",
            vram_gb=32,
            window_frames=121,
            text_to_video=True,
            image_to_video=True,
            video_to_video=True,
            extension=False,
            fields={
                "pipeline": "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
                "i2v_pipeline": "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
                "portrait_sizes": ["704x1280"],
                "landscape_sizes": ["1280x704"],
                "seconds": [5],
                "default_seconds": 5,
                "fps": 24,
                "steps": 50,
                "guidance_scale": 5.0,
                "negative_prompt": _WAN_NEGATIVE,
                "remix_strength": 0.6,
            },
        ),
        Preset(
            name="ltx-video-2b",
            repo_id="Lightricks/LTX-Video-0.9.5",
            family="ltx",
            description="LTX-Video 0.9.5 2B, 768x512 at 24 fps: the fastest family here, fits a 24 GB GPU",
            params="2B",
            vram_gb=20,
            window_frames=161,
            text_to_video=True,
            image_to_video=True,
            video_to_video=True,
            extension=True,
            fields={
                "pipeline": "Lightricks/LTX-Video-0.9.5",
                "i2v_pipeline": "Lightricks/LTX-Video-0.9.5",
                "portrait_sizes": ["512x768"],
                "landscape_sizes": ["768x512"],
                "seconds": [5],
                "default_seconds": 5,
                "fps": 24,
                "frame_multiple": 8,
                "steps": 40,
                "guidance_scale": 3.0,
                "negative_prompt": _LTX_NEGATIVE,
                "remix_strength": 0.6,
            },
        ),
        Preset(
            name="ltx-video-13b-distilled",
            repo_id="Lightricks/LTX-Video-0.9.7-distilled",
            family="ltx",
            description="LTX-Video 0.9.7 13B, step- and guidance-distilled: 8 steps, no CFG, 768x512 at 24 fps",
            params="13B",
            vram_gb=48,
            window_frames=161,
            text_to_video=True,
            image_to_video=True,
            video_to_video=True,
            extension=True,
            fields={
                "pipeline": "Lightricks/LTX-Video-0.9.7-distilled",
                "i2v_pipeline": "Lightricks/LTX-Video-0.9.7-distilled",
                "portrait_sizes": ["512x768"],
                "landscape_sizes": ["768x512"],
                "seconds": [5],
                "default_seconds": 5,
                "fps": 24,
                "frame_multiple": 8,
                "steps": 8,
                "guidance_scale": 1.0,
                "negative_prompt": _LTX_NEGATIVE,
                "remix_strength": 0.6,
            },
        ),
    )
}


def preset_for_repo(repo_id: str) -> Preset | None:
    for preset in PRESETS.values():
        if preset.repo_id == repo_id:
            return preset
    return None
