"""Live previews: a small picture of the clip while it denoises, from the current clean-latent estimate.

Never the VAE on the hot path: a fixed linear map per channel (a latent-to-RGB projection, `C x 3`
plus a bias) turns a latent frame into a picture at the latent grid's size (1/8 or 1/32 of the video's
side), which costs a few microseconds against a transformer step's tens of milliseconds or more.

The projection is fitted once per loaded checkpoint by least squares: decode a small grid of random
(normalized) latents with the checkpoint's own VAE, average-pool the pixels back onto the latent grid,
and solve `[latent, 1] @ W = rgb`. That works for any family and any channel count (the tiny demo
models' random or hand-wired VAEs as well as a real Wan 2.1 or LTX-Video VAE), and it is exact for the
Wan demo's linear codec. (Published factor tables exist for real checkpoints, e.g. ComfyUI's
`latent_formats.py`, but that code is GPL-3.0; fitting our own keeps the licence clean.)

Which latents: UniPC (real Wan checkpoints) keeps its clean-sample prediction (`model_outputs[-1]`,
`predict_x0`); a flow-matching Euler scheduler (the demo models, LTX-Video) keeps none, so the estimate
comes from the step just taken: `x_next = x + (s_next - s) * v` gives `v`, and `x0 = x_next - s_next * v`
(exact for Euler; for LTX's conditioned tokens, whose timesteps differ per token, approximate).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# previews come every `steps // PREVIEWS_PER_PASS` steps (at least every step); the reporter may
# still drop some (at most about one a second is written)
PREVIEWS_PER_PASS = 5


@dataclass(frozen=True)
class Projection:
    """Normalized latent channels to RGB in [-1, 1]: `rgb = latent @ factors + bias`."""

    factors: npt.NDArray[np.float32]  # (C, 3)
    bias: npt.NDArray[np.float32]  # (3,)

    @property
    def channels(self) -> int:
        return int(self.factors.shape[0])

    def picture(self, latents: Any) -> npt.NDArray[np.uint8] | None:
        """The middle latent frame of `latents` (a torch tensor, (C, T, h, w)) as (h, w, 3) uint8 RGB;
        None when its channels are not this projection's (a pipeline the fit did not see)."""
        import torch

        if latents.dim() != 4 or latents.shape[0] != self.channels:
            return None
        frame = latents[:, latents.shape[1] // 2].float()  # (C, h, w)
        factors = torch.from_numpy(self.factors).to(frame.device)
        bias = torch.from_numpy(self.bias).to(frame.device)
        rgb = torch.einsum("chw,cr->hwr", frame, factors) + bias
        pixels = ((rgb.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
        return np.ascontiguousarray(pixels.cpu().numpy())


def fit(decode: Callable[[Any], Any], channels: int, *, side: int | None = None, seed: int = 0) -> Projection:
    """The least-squares projection of a VAE, from `decode` ((1, C, 1, s, s) normalized latents to
    (1, 3, 1, S, S) pixels in [-1, 1], any S that is a multiple of s)."""
    import torch

    # enough samples for C + 1 unknowns per colour, and never fewer than a 16 x 16 grid
    side = side or max(16, math.ceil(math.sqrt(6 * (channels + 1))))
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, channels, 1, side, side, generator=generator)
    with torch.no_grad():
        pixels = decode(latents).float().cpu()
    frame = pixels[0, :, 0]  # (3, S, S)
    scale = frame.shape[-1] // side
    pooled = torch.nn.functional.avg_pool2d(frame[None], scale)[0]  # (3, s, s)
    x = latents[0, :, 0].reshape(channels, -1).T.double()  # (s*s, C)
    y = pooled.reshape(3, -1).T.double()  # (s*s, 3)
    a = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    w = torch.linalg.lstsq(a, y).solution  # (C + 1, 3)
    return Projection(factors=w[:-1].float().numpy(), bias=w[-1].float().numpy())


def clean_latents(pipe: Any, latents: Any, before: Any | None) -> Any | None:
    """The scheduler's current estimate of the clean latents, in the shape of `latents` (the
    pipeline's own: packed for LTX); None when it cannot tell (no step taken yet)."""
    scheduler = pipe.scheduler
    outputs = getattr(scheduler, "model_outputs", None)
    if getattr(scheduler.config, "predict_x0", False) and outputs:
        last = outputs[-1]
        if last is not None and tuple(last.shape) == tuple(latents.shape):
            return last
    sigmas = getattr(scheduler, "sigmas", None)
    index = getattr(scheduler, "step_index", None)  # already advanced past the step just taken
    if before is None or sigmas is None or index is None or not 1 <= index < len(sigmas):
        return None
    if tuple(before.shape) != tuple(latents.shape):
        return None
    s_then, s_now = float(sigmas[index - 1]), float(sigmas[index])
    if s_then == s_now:
        return None
    velocity = (latents.float() - before.float()) / (s_now - s_then)
    return latents.float() - s_now * velocity


def every(steps: int) -> int:
    """Steps between two previews in a pass of `steps` steps."""
    return max(1, steps // PREVIEWS_PER_PASS)
