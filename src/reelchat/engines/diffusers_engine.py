"""A local engine over diffusers pipelines: text-, video- (remix) and image-to-video.

Its catalog entries, capabilities and job type are `diffusers_spec`. One engine owns one device (one
GPU, or the CPU) and runs one generation at a time on it. Which pipelines it builds, and how it calls
them, is the checkpoint's family (`families/`: Wan, LTX-Video), picked from its model_index.json. The
same code loads a real checkpoint directory and the demo ones (`demo_model.ensure_demo_pipeline`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import memory, previews, windows
from .base import EngineCancelled, EngineError, EngineResult, JobRequest, QuietReporter, Reporter
from .diffusers_spec import DiffusersJob, DiffusersSpec
from .families import Family, FamilyError, family_for
from .families.base import diffusers
from .job_frames import (
    check_geometry,
    check_job,
    decode_image,
    extension_prefix,
    frames_of,
    pil_frames,
    remix_schedule,
    resampled,
    source_video,
)
from .speed import SpeedPlan
from .speed_spec import SpeedConfig, Workload
from .step_callback import PreviewTap, StepStop, progress_callback

log = logging.getLogger(__name__)

_DTYPES = ("float32", "bfloat16", "float16")


class DiffusersEngine:
    """One device's pipelines of one model family; shared by every catalog entry that names them."""

    supports_image: bool  # an image-to-video pipeline is configured

    def __init__(
        self,
        pipeline_dir: Path,
        *,
        i2v_pipeline_dir: Path | None = None,
        device: str | None = None,
        dtype: str | None = None,
        speed: SpeedConfig | None = None,
        memory_gb: float | None = None,
    ) -> None:
        import torch

        self.pipeline_dir = Path(pipeline_dir)
        self.i2v_pipeline_dir = Path(i2v_pipeline_dir) if i2v_pipeline_dir is not None else None
        self.supports_image = self.i2v_pipeline_dir is not None
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        on_cuda = self.device.startswith("cuda")
        dtype = dtype or ("bfloat16" if on_cuda else "float32")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, not {dtype!r}")
        self.dtype = dtype
        if not on_cuda and "OMP_NUM_THREADS" not in os.environ:
            # an explicit OMP_NUM_THREADS wins
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
            # leave one core to the event loop: with every core busy in torch, streams and /healthz
            # wait for a CPU (measured on 2 cores: the loop spent 3x longer waiting than running)
            torch.set_num_threads(max(1, cores - 1))
        self._lock = asyncio.Lock()  # one generation at a time on this device
        self._load_lock = threading.Lock()  # pipelines load in worker threads
        self._t2v: Any = None
        self._v2v: Any = None
        self._i2v: Any = None
        self.speed = SpeedPlan(speed or SpeedConfig(), self.device)
        self.memory_gb = memory_gb  # REELCHAT_DEVICE_MEMORY_GB: the budget, instead of what the device reports
        self.workloads: set[Workload] = set()  # every shape the entries on this engine serve
        self._resident = 0  # bytes of weights this engine has loaded
        self._family: Family | None = None
        self._projection: previews.Projection | None = None  # latents to preview pictures (fitted on load)

    # -- loading -----------------------------------------------------------------------------------

    def family(self) -> Family:
        """The checkpoint's model family, from its model_index.json (read once)."""
        if self._family is None:
            try:
                family = family_for(self.pipeline_dir)
                if self.i2v_pipeline_dir is not None and family_for(self.i2v_pipeline_dir) is not family:
                    raise FamilyError(
                        f"the image-to-video pipeline {self.i2v_pipeline_dir} is not a {family.name} checkpoint "
                        f"like {self.pipeline_dir}"
                    )
            except FamilyError as e:
                raise EngineError(str(e), "engine_unavailable") from e
            self._family = family
        return self._family

    def _load_kwargs(self) -> dict[str, Any]:
        import diffusers.pipelines.pipeline_utils as pu
        import torch

        dtypes = self.family().dtypes(torch, getattr(torch, self.dtype))
        # diffusers >= 0.36 renamed `torch_dtype` to `dtype` (the old name warns)
        return {"dtype" if hasattr(pu, "_resolve_dtype") else "torch_dtype": dtypes}

    def load_pipeline(self, cls_name: str, path: Path) -> Any:
        """The one place a checkpoint is read: `cls_name` from `path`, on this engine's device."""
        if not (path / "model_index.json").is_file():
            raise EngineError(f"no diffusers pipeline at {path} (model_index.json missing)", "engine_unavailable")
        need = memory.estimate(path, dtype=self.dtype, speed=self.speed.config, workloads=self.workloads)
        available = memory.budget(self.device, self.memory_gb) - (self._resident if self.memory_gb else 0)
        memory.check_fits(need, available, device=self.device, offload=self.speed.config.offload, what=str(path))
        pipe = getattr(diffusers(), cls_name).from_pretrained(str(path), **self._load_kwargs())
        self.speed.place(pipe)  # every speed switch, then the device (or CPU offload)
        self._resident += sum(need.weights.values())
        pipe.set_progress_bar_config(disable=True)
        # torch, diffusers and transformers leave millions of long-lived objects on the heap; a full
        # collection walking them stalled the event loop ~200 ms (measured). Freeze them out of the GC.
        gc.collect()
        gc.freeze()
        return pipe

    def _text_pipes(self) -> tuple[Any, Any]:
        family = self.family()
        with self._load_lock:
            if self._t2v is None:
                t2v = self.load_pipeline(family.text_class, self.pipeline_dir)
                self._v2v = family.video_pipe(t2v)
                self._v2v.set_progress_bar_config(disable=True)
                self._projection = self._fit_projection(t2v)
                self._t2v = t2v
            return self._t2v, self._v2v

    def _fit_projection(self, pipe: Any) -> previews.Projection | None:
        """The checkpoint's latent-to-RGB projection for previews (a small VAE decode, once per load);
        None, and no previews, when the VAE can't be decoded that way."""
        family = self.family()
        channels = int(getattr(pipe.vae.config, "z_dim", 0) or getattr(pipe.vae.config, "latent_channels", 0))
        try:
            return previews.fit(lambda latents: family.decode_normalized(pipe, latents), channels)
        except Exception:  # previews are a nicety: a VAE that refuses costs them, never the model
            log.warning("no live previews for %s: fitting the projection failed", self.pipeline_dir, exc_info=True)
            return None

    def _image_pipe(self) -> Any:
        assert self.i2v_pipeline_dir is not None  # noqa: S101  (narrows a type; never input validation)
        family = self.family()
        if self.i2v_pipeline_dir.resolve() == self.pipeline_dir.resolve():
            # one checkpoint for both (Wan 2.2 TI2V-5B, LTX-Video): share the loaded modules, no second copy
            t2v, _ = self._text_pipes()
            with self._load_lock:
                if self._i2v is None:
                    self._i2v = family.shared_image_pipe(t2v)
                    self._i2v.set_progress_bar_config(disable=True)
                return self._i2v
        with self._load_lock:
            if self._i2v is None:
                self._i2v = self.load_pipeline(family.image_class, self.i2v_pipeline_dir)
            return self._i2v

    async def load(self) -> None:
        """Load every pipeline this engine serves (seconds for a real checkpoint), off the event loop."""
        await asyncio.to_thread(self._text_pipes)
        if self.i2v_pipeline_dir is not None:
            await asyncio.to_thread(self._image_pipe)
        for job in self.speed.warmup_jobs(self.workloads):  # compile now, not in the first user's job
            await asyncio.to_thread(self._run, job, QuietReporter(), threading.Event())

    # -- generation --------------------------------------------------------------------------------

    async def prepare(self, spec: DiffusersSpec, request: JobRequest) -> DiffusersJob:
        """The job for `request`: a remix re-noises every frame of its source, decoded here."""
        source_frames = await request.source.frames() if request.source is not None else None
        if request.extend:  # the source is the prefix, kept whole; the model adds whole latent frames
            frames = spec.model_continuation_frames(request.frames)
        else:
            if source_frames is not None and len(source_frames) != request.frames:  # to the new video's length
                idx = np.linspace(0, len(source_frames) - 1, request.frames).round().astype(int)
                source_frames = source_frames[idx]
            frames = spec.model_frames(request.frames)
        return DiffusersJob(
            prompt=request.prompt,
            width=request.width,
            height=request.height,
            frames=frames,
            fps=request.fps,
            steps=request.steps,
            seed=request.seed,
            guidance_scale=spec.guidance_scale,
            negative_prompt=spec.negative_prompt,
            image=request.image,
            source_frames=source_frames,
            strength=spec.remix_strength if request.strength is None else request.strength,
            extend=request.extend,
            window_frames=spec.window_frames,
        )

    async def generate(self, job: DiffusersJob, reporter: Reporter) -> EngineResult:
        if job.image is not None and job.source_frames is None and not self.supports_image:
            raise EngineError("this model does not take an input image", "unsupported")
        stop = threading.Event()
        async with self._lock:
            if reporter.cancelled():
                raise EngineCancelled()
            work = asyncio.ensure_future(asyncio.to_thread(self._generate, job, reporter, stop))
            try:
                frames, kept = await asyncio.shield(work)
            except asyncio.CancelledError:
                # Our caller went away: stop the worker at its next step and keep the device (the lock)
                # until it really has stopped, so the next job never overlaps it.
                stop.set()
                while not work.done():
                    try:
                        await asyncio.wait({work})
                    except asyncio.CancelledError:
                        continue
                if not work.cancelled():
                    work.exception()  # retrieved: asyncio must not log "exception was never retrieved"
                raise
        if kept and job.source_frames is not None:  # the source's own frames, not their render-size copies
            return EngineResult(frames=frames[kept:], fps=job.fps, prefix=job.source_frames[:kept])
        return EngineResult(frames=frames, fps=job.fps)

    def _generate(
        self, job: DiffusersJob, reporter: Reporter, stop: threading.Event
    ) -> tuple[npt.NDArray[np.uint8], int]:
        """The blocking part, in a worker thread."""
        try:
            return self._run(job, reporter, stop)
        except (EngineError, EngineCancelled):
            raise
        except StepStop:
            raise EngineCancelled() from None
        except Exception as e:  # diffusers/torch: show the reason, not a traceback
            log.exception("generation failed")
            reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise EngineError(f"generation failed: {reason}") from e

    def _run(self, job: DiffusersJob, reporter: Reporter, stop: threading.Event) -> tuple[npt.NDArray[np.uint8], int]:
        """The clip in one pass, or window by window when it is longer than `job.window_frames` (and
        always for an extension: its source's frames, then windows that continue them); and how many of
        its first frames are the source's, untouched (an extension: all but the overlap it blends)."""
        check_job(job)
        family = self.family()
        temporal = family.geometry(self._text_pipes()[0])[1]
        prefix = extension_prefix(job) if job.extend else None
        given = 0 if prefix is None else len(prefix)
        total = given + job.frames
        window = job.window_frames or (total if prefix is None else job.frames + windows.overlap_for(temporal))
        try:
            plan = windows.plan(total, window, temporal, prefix=given)
        except ValueError as e:
            raise EngineError(str(e), "invalid_request") from None
        # a windowed remix re-noises its source window by window: the source, resampled to the clip
        source = resampled(job.source_frames, total) if job.source_frames is not None and not job.extend else None
        work = sum(w.length for w in plan)
        clip, done = prefix, 0
        for i, w in enumerate(plan):
            span = (done / work, (done + w.length) / work)
            part = dataclasses.replace(
                job,
                frames=w.length,
                seed=job.seed + i,
                extend=False,
                window_frames=None,
                source_frames=None if source is None else source[w.start : w.start + w.length],
                image=job.image if w.start == 0 else None,
            )
            if clip is None or part.source_frames is not None:
                frames = self._pass(part, reporter, stop, span)
            else:
                frames = self._continue(part, clip[w.start : w.start + w.overlap], reporter, stop, span)
            clip = windows.join(clip, frames, w, blend=job.blend_seams)
            done += w.length
        assert clip is not None  # noqa: S101  (a plan has at least one window)
        return clip[:total], plan[0].start if prefix is not None else 0

    def _pass(
        self, job: DiffusersJob, reporter: Reporter, stop: threading.Event, span: tuple[float, float]
    ) -> npt.NDArray[np.uint8]:
        """One pass of the pipelines: text-, image- or video-to-video."""
        common = self._common(job, reporter, stop, span, None)
        family = self.family()
        if job.source_frames is not None:
            pipe = self._text_pipes()[1]
            common["num_inference_steps"] = remix_schedule(job)
            check_geometry(job, family, pipe)
            common.update(family.video_args(pipe, job, source_video(job), common["num_inference_steps"]))
        elif job.image is not None:
            pipe = self._image_pipe()
            check_geometry(job, family, pipe)
            common.update(family.image_args(pipe, job, decode_image(job)))
        else:
            pipe = self._text_pipes()[0]
            check_geometry(job, family, pipe)
            common.update(family.text_args(pipe, job))
        return frames_of(self.speed.run(pipe, common), job)

    def _continue(
        self,
        job: DiffusersJob,
        tail: npt.NDArray[np.uint8],
        reporter: Reporter,
        stop: threading.Event,
        span: tuple[float, float],
    ) -> npt.NDArray[np.uint8]:
        """A window whose first `len(tail)` frames re-draw `tail`: its latents pinned while a text-to-video
        pass denoises (Wan), or a condition pipeline's video condition (LTX-Video)."""
        family = self.family()
        t2v, v2v = self._text_pipes()
        check_geometry(job, family, t2v)
        frames = pil_frames(tail, job.width, job.height)
        known = family.overlap_latents(t2v, job, frames)
        if known is not None:
            common = self._common(job, reporter, stop, span, windows.Pin(known, job.seed))
            common.update(family.text_args(t2v, job))
            return frames_of(self.speed.run(t2v, common), job)
        args = family.continue_args(v2v, job, frames)
        if args is None:
            raise EngineError(f"{family.name} models can't continue a clip", "unsupported")
        common = self._common(job, reporter, stop, span, None)
        common.update(args)
        return frames_of(self.speed.run(v2v, common), job)

    def _common(
        self,
        job: DiffusersJob,
        reporter: Reporter,
        stop: threading.Event,
        span: tuple[float, float],
        pin: windows.Pin | None,
    ) -> dict[str, Any]:
        import torch

        return dict(
            width=job.width,
            height=job.height,
            num_inference_steps=job.steps,
            guidance_scale=job.guidance_scale,
            generator=torch.Generator(self.device).manual_seed(job.seed),
            output_type="np",
            callback_on_step_end=progress_callback(reporter, stop, span, pin, self._preview_tap(job, reporter)),
        )

    def _preview_tap(self, job: DiffusersJob, reporter: Reporter) -> PreviewTap | None:
        projection = self._projection
        if projection is None or not reporter.wants_previews():
            return None
        return PreviewTap(projection, self.family(), job, reporter)

    async def close(self) -> None:
        async with self._lock:
            with self._load_lock:
                self._t2v = self._v2v = self._i2v = None
            gc.unfreeze()
            gc.collect()
            if self.device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()
