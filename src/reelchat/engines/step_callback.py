"""What runs after each denoising step of a diffusers pass: progress for the reporter, a stop or a
cancellation at the next step, a window's pinned latents, and live preview pictures."""

from __future__ import annotations

import logging
import threading
from typing import Any

from . import previews, windows
from .base import EngineCancelled, Reporter
from .diffusers_spec import DiffusersJob
from .families import Family

log = logging.getLogger(__name__)

__all__ = ["PreviewTap", "StepStop", "progress_callback"]


class StepStop(Exception):
    """Raised inside the denoising loop when the caller's task was cancelled (asyncio), not the job."""


class PreviewTap:
    """One pass's previews: every few steps, the clean-latent estimate projected to a picture for the
    reporter (which stores it, at most about once a second). The latents that went into a step are
    kept (a reference: the pipelines never change them in place) for schedulers that predict no x0."""

    def __init__(self, projection: previews.Projection, family: Family, job: DiffusersJob, reporter: Reporter) -> None:
        self._projection = projection
        self._family = family
        self._job = job
        self._reporter = reporter
        self._before: Any = None
        self._broken = False

    def step(self, pipe: Any, i: int, total: int, latents: Any) -> None:
        every = previews.every(total)
        if self._broken or (i + 1) % every or i + 1 >= total:  # the last step's picture is the video itself
            return
        try:
            clean = previews.clean_latents(pipe, latents, self._before)
            clip = self._family.preview_latents(pipe, clean, self._job) if clean is not None else None
            picture = self._projection.picture(clip) if clip is not None else None
        except Exception:  # a nicety: a pipeline whose latents surprise us loses its previews, not its job
            log.warning("no more previews in this pass: projecting the latents failed", exc_info=True)
            self._broken = True
            return
        if picture is not None:
            self._reporter.preview(picture)

    def entering(self, latents: Any) -> None:
        """The latents the next step starts from (after any pin)."""
        self._before = latents


def progress_callback(
    reporter: Reporter,
    stop: threading.Event,
    span: tuple[float, float] = (0.0, 1.0),
    pin: windows.Pin | None = None,
    tap: PreviewTap | None = None,
) -> Any:
    lo, hi = span  # this pass's share of the whole job's progress (windows: one pass of several)

    def on_step_end(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        # num_timesteps is the steps actually run (a remix runs only the last `strength` of them)
        total = max(1, int(pipe.num_timesteps))
        # 100 is the executor's, once frames exist
        reporter.progress(min(99, int(100 * (lo + (hi - lo) * (i + 1) / total))))
        if stop.is_set():
            raise StepStop()
        if reporter.cancelled():
            raise EngineCancelled()
        if tap is not None:
            tap.step(pipe, i, total, kwargs["latents"])
        out = {"latents": pin(pipe, kwargs["latents"])} if pin is not None else {}
        if tap is not None:
            tap.entering(out.get("latents", kwargs["latents"]))
        return out

    return on_step_end
