"""Clips longer than one pass: how a clip is cut into windows, how windows are joined, and how
visible the joins (seams) are. Numpy only, except `Pin`, which holds a window's first latents while it
denoises (torch, imported when a pin is made); no diffusers.

A model renders at most `window` frames in one pass (Wan 2.1: 81). A longer clip is made window by
window: each window after the first starts `overlap` frames before the end of what is made so far,
and is conditioned on those frames (the engine pins their latents while it denoises), so its first
`overlap` frames re-draw them. `join` cross-fades the old frames into the new ones across the
overlap, so that no single frame step carries the whole difference between the two passes.

An extension is the same walk started from a finished video: its frames are the `prefix`, and only
the overlap at its end is touched (blended).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Window", "join", "overlap_for", "plan", "seam_ratio", "seams_of"]


@dataclass(frozen=True)
class Window:
    start: int  # the clip's frame index of this window's first frame
    length: int  # frames this pass renders (k * multiple + 1)
    overlap: int  # of them, the leading frames that re-draw frames made before (0 for the first)


def overlap_for(multiple: int) -> int:
    """Frames two windows share: two latent frames' worth (multiple + 1), enough to carry motion."""
    return multiple + 1


def plan(total: int, window: int, multiple: int, *, prefix: int = 0) -> list[Window]:
    """The passes that make frames [prefix, total) of a clip, `prefix` frames being given.

    Every length is k * multiple + 1, as video models need. With no prefix the first window starts
    at 0; each next one (and the first of an extension) starts `overlap` frames before the end, or
    one frame before it when fewer than `overlap` frames are given.
    """
    if window < 1 or (window - 1) % multiple:
        raise ValueError(f"window_frames must be k * {multiple} + 1; got {window}")
    if prefix == 0 and total <= window:  # one pass: the clip fits its window
        return [Window(0, total, 0)]
    overlap = overlap_for(multiple)
    if window <= overlap:
        raise ValueError(f"window_frames must be more than the overlap of {overlap} frames; got {window}")
    if total <= prefix:
        raise ValueError(f"nothing to make: {total} frames wanted, {prefix} given")
    windows: list[Window] = []
    made = prefix
    if prefix == 0:
        first = min(window, total)
        windows.append(Window(0, first, 0))
        made = first
    while made < total:
        # a source shorter than the overlap (an upload of a few frames) goes on from its last frame
        # alone: one latent frame, as image-to-video would; the windows after it share the full overlap
        o = overlap if made >= overlap else 1
        new = min(window - o, total - made)
        new = multiple * -(-new // multiple)  # whole latent frames; the caller trims any excess
        windows.append(Window(made - o, o + new, o))
        made += new
    return windows


def join(
    clip: npt.NDArray[np.uint8] | None, frames: npt.NDArray[np.uint8], window: Window, *, blend: bool = True
) -> npt.NDArray[np.uint8]:
    """`clip` with a window's frames added: across the overlap a linear cross-fade from the old frames
    to the new (`blend`), or a hard cut after the old ones (`blend=False`, to measure what blending does)."""
    if clip is None or window.overlap == 0:
        return frames
    o = window.overlap
    old = clip[window.start : window.start + o].astype(np.float32)
    new = frames[:o].astype(np.float32)
    if blend:
        # weights 1/(o+1) .. o/(o+1): the first shared frame is mostly old, the last mostly new
        w = (np.arange(1, o + 1, dtype=np.float32) / (o + 1)).reshape(o, 1, 1, 1)
        mixed = np.clip((1.0 - w) * old + w * new, 0, 255).round().astype(np.uint8)
    else:
        mixed = clip[window.start : window.start + o]
    return np.concatenate([clip[: window.start], mixed, frames[o:]])


def seams_of(windows: list[Window]) -> list[tuple[int, int]]:
    """Each join's frame range [first shared frame, first frame after the overlap], in clip indices."""
    return [(w.start, w.start + w.overlap) for w in windows if w.overlap]


def seam_ratio(frames: npt.NDArray[np.uint8], seams: list[tuple[int, int]]) -> float:
    """The largest frame-to-frame change at a seam over the 95th percentile of the changes elsewhere.

    A change is the mean absolute pixel difference between consecutive frames; the steps "at a seam"
    are those from the frame before the overlap to the first frame after it. Under ~1 a seam is as
    smooth as the motion inside a window; a hard cut between unrelated pictures is 10 or more.
    """
    f = frames.astype(np.float32)
    steps = np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))  # steps[i]: frame i -> i + 1
    at_seam = np.zeros(len(steps), dtype=bool)
    for start, end in seams:
        at_seam[max(0, start - 1) : min(len(steps), end)] = True
    inside = steps[~at_seam]
    if not at_seam.any() or len(inside) == 0:
        return 0.0
    return float(steps[at_seam].max() / max(float(np.percentile(inside, 95)), 1e-6))


class Pin:
    """Holds a window's first latent frames to known ones while it denoises: after each step they are
    set to where the forward process puts the known latents at the current noise level,
    (1 - sigma) * known + sigma * noise, so the model draws the rest of the window around them and
    they come out exactly known at sigma 0 (flow-matching schedulers: Wan's UniPC and Euler)."""

    def __init__(self, known: Any, seed: int) -> None:
        import torch

        self.known = known
        generator = torch.Generator("cpu").manual_seed(seed + 7919)
        self.noise = torch.randn(known.shape, generator=generator).to(known.device, known.dtype)

    def __call__(self, pipe: Any, latents: Any) -> Any:
        scheduler = pipe.scheduler
        index = scheduler.step_index
        sigmas = scheduler.sigmas
        sigma = float(sigmas[index]) if index is not None and index < len(sigmas) else 0.0
        k = self.known.shape[2]
        latents = latents.clone()
        latents[:, :, :k] = ((1.0 - sigma) * self.known + sigma * self.noise).to(latents.dtype)
        return latents
