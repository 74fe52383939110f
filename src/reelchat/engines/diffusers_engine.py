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
import math
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import memory, windows
from .base import EngineCancelled, EngineError, EngineResult, JobRequest, Reporter
from .diffusers_spec import DiffusersJob, DiffusersSpec
from .families import Family, FamilyError, family_for
from .families.base import diffusers
from .speed import SpeedPlan
from .speed_spec import SpeedConfig, Workload

log = logging.getLogger(__name__)

_DTYPES = ("float32", "bfloat16", "float16")


class _Stop(Exception):
    """Raised inside the denoising loop when the caller's task was cancelled (asyncio), not the job."""


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
                self._t2v = t2v
            return self._t2v, self._v2v

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
            await asyncio.to_thread(self._run, job, _Quiet(), threading.Event())

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
        except _Stop:
            raise EngineCancelled() from None
        except Exception as e:  # diffusers/torch: show the reason, not a traceback
            log.exception("generation failed")
            reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise EngineError(f"generation failed: {reason}") from e

    def _run(self, job: DiffusersJob, reporter: Reporter, stop: threading.Event) -> tuple[npt.NDArray[np.uint8], int]:
        """The clip in one pass, or window by window when it is longer than `job.window_frames` (and
        always for an extension: its source's frames, then windows that continue them); and how many of
        its first frames are the source's, untouched (an extension: all but the overlap it blends)."""
        _check_job(job)
        family = self.family()
        temporal = family.geometry(self._text_pipes()[0])[1]
        prefix = _extension_prefix(job) if job.extend else None
        given = 0 if prefix is None else len(prefix)
        total = given + job.frames
        window = job.window_frames or (total if prefix is None else job.frames + windows.overlap_for(temporal))
        try:
            plan = windows.plan(total, window, temporal, prefix=given)
        except ValueError as e:
            raise EngineError(str(e), "invalid_request") from None
        # a windowed remix re-noises its source window by window: the source, resampled to the clip
        source = _resampled(job.source_frames, total) if job.source_frames is not None and not job.extend else None
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
            common["num_inference_steps"] = _remix_schedule(job)
            _check_geometry(job, family, pipe)
            common.update(family.video_args(pipe, job, _source_video(job), common["num_inference_steps"]))
        elif job.image is not None:
            pipe = self._image_pipe()
            _check_geometry(job, family, pipe)
            common.update(family.image_args(pipe, job, _decode_image(job)))
        else:
            pipe = self._text_pipes()[0]
            _check_geometry(job, family, pipe)
            common.update(family.text_args(pipe, job))
        return _frames_of(self.speed.run(pipe, common), job)

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
        _check_geometry(job, family, t2v)
        frames = _pil_frames(tail, job.width, job.height)
        known = family.overlap_latents(t2v, job, frames)
        if known is not None:
            common = self._common(job, reporter, stop, span, _Pin(known, job.seed))
            common.update(family.text_args(t2v, job))
            return _frames_of(self.speed.run(t2v, common), job)
        args = family.continue_args(v2v, job, frames)
        if args is None:
            raise EngineError(f"{family.name} models can't continue a clip", "unsupported")
        common = self._common(job, reporter, stop, span, None)
        common.update(args)
        return _frames_of(self.speed.run(v2v, common), job)

    def _common(
        self, job: DiffusersJob, reporter: Reporter, stop: threading.Event, span: tuple[float, float], pin: _Pin | None
    ) -> dict[str, Any]:
        import torch

        return dict(
            width=job.width,
            height=job.height,
            num_inference_steps=job.steps,
            guidance_scale=job.guidance_scale,
            generator=torch.Generator(self.device).manual_seed(job.seed),
            output_type="np",
            callback_on_step_end=_progress_callback(reporter, stop, span, pin),
        )

    async def close(self) -> None:
        async with self._lock:
            with self._load_lock:
                self._t2v = self._v2v = self._i2v = None
            gc.unfreeze()
            gc.collect()
            if self.device.startswith("cuda"):
                import torch

                torch.cuda.empty_cache()


class _Pin:
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


class _Quiet:
    """The reporter of a warm-up run: nobody listens, nobody cancels."""

    upstream_job_id = None

    def progress(self, percent: int) -> None:
        pass

    def cancelled(self) -> bool:
        return False

    async def remember_upstream_job(self, job_id: str) -> None:
        pass


def _progress_callback(
    reporter: Reporter, stop: threading.Event, span: tuple[float, float] = (0.0, 1.0), pin: _Pin | None = None
) -> Any:
    lo, hi = span  # this pass's share of the whole job's progress (windows: one pass of several)

    def on_step_end(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        # num_timesteps is the steps actually run (a remix runs only the last `strength` of them)
        total = max(1, int(pipe.num_timesteps))
        # 100 is the executor's, once frames exist
        reporter.progress(min(99, int(100 * (lo + (hi - lo) * (i + 1) / total))))
        if stop.is_set():
            raise _Stop()
        if reporter.cancelled():
            raise EngineCancelled()
        return {"latents": pin(pipe, kwargs["latents"])} if pin is not None else {}

    return on_step_end


def _frames_of(out: Any, job: DiffusersJob) -> npt.NDArray[np.uint8]:
    """A pipeline's output as uint8 frames, checked against what the job asked for."""
    frames: npt.NDArray[np.uint8] = (np.clip(out.frames[0], 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if frames.shape != (job.frames, job.height, job.width, 3):
        raise EngineError(
            f"the pipeline returned frames of shape {frames.shape}, expected {(job.frames, job.height, job.width, 3)}"
        )
    return frames


def _remix_schedule(job: DiffusersJob) -> int:
    """The schedule length for a remix that runs `job.steps` denoising steps.

    diffusers runs only the last int(n * strength) steps of an n-step schedule. Taken literally, a
    4-step remix at strength 0.6 would run 2 steps, and one below 0.5 a single step at the very end of
    the schedule (sigma ~ 0: the source comes back unchanged). Stretching the schedule instead keeps
    the step count, and so the quality, of a fresh generation, and makes strength finer-grained.
    """
    n = max(job.steps, math.ceil(job.steps / job.strength))
    while int(n * job.strength) < job.steps:  # float rounding
        n += 1
    return n


def _check_job(job: DiffusersJob) -> None:
    if job.extend:
        if job.source_frames is None:
            raise EngineError("an extension needs the video it extends", "invalid_request")
        if job.frames < 4 or job.frames % 4:
            raise EngineError(f"an extension adds 4k frames (4, 8, ...); got {job.frames}", "invalid_request")
    elif job.frames < 1 or (job.frames - 1) % 4:
        raise EngineError(f"video models need 4k+1 frames (5, 9, 13, ...); got {job.frames}", "invalid_request")
    if job.width < 16 or job.height < 16 or job.width % 16 or job.height % 16:
        raise EngineError(f"width and height must be multiples of 16; got {job.width}x{job.height}", "invalid_request")
    if job.steps < 1:
        raise EngineError(f"steps must be at least 1; got {job.steps}", "invalid_request")
    if job.source_frames is not None and not 0.0 < job.strength <= 1.0:
        raise EngineError(f"remix strength must be in (0, 1]; got {job.strength}", "invalid_request")


def _check_geometry(job: DiffusersJob, family: Family, pipe: Any) -> None:
    """A real checkpoint may be stricter than 16 px / 4k+1 (Wan 2.2 TI2V: 32 px, LTX-Video: 32 px and
    8k+1 frames): ask the pipeline."""
    multiple, temporal = family.geometry(pipe)
    if job.width % multiple or job.height % multiple:
        raise EngineError(
            f"this model needs width and height in multiples of {multiple}; got {job.width}x{job.height}",
            "invalid_request",
        )
    if (job.frames - 1) % temporal:
        raise EngineError(f"this model needs {temporal}k+1 frames; got {job.frames}", "invalid_request")


def _resampled(src: npt.NDArray[np.uint8], frames: int) -> npt.NDArray[np.uint8]:
    """`src` at `frames` frames: its last frame held for the few the model makes past the video's own
    (k * m + 1), else resampled evenly in time."""
    if src.ndim != 4 or src.shape[-1] != 3 or len(src) == 0:
        raise EngineError(f"remix source frames must be (F, H, W, 3); got {src.shape}", "invalid_request")
    if 0 < frames - len(src) <= 8:
        return np.concatenate([src, np.repeat(src[-1:], frames - len(src), axis=0)])
    return src if len(src) == frames else src[np.linspace(0, len(src) - 1, frames).round().astype(int)]


def _pil_frames(frames: npt.NDArray[np.uint8], width: int, height: int) -> list[Any]:
    from PIL import Image

    pil = [Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8)) for f in frames]
    return [f if f.size == (width, height) else f.resize((width, height), Image.Resampling.BICUBIC) for f in pil]


def _extension_prefix(job: DiffusersJob) -> npt.NDArray[np.uint8]:
    """The video being extended, every frame, at the job's size (it comes through unchanged)."""
    src = job.source_frames
    assert src is not None  # noqa: S101  (checked by _check_job)
    if src.ndim != 4 or src.shape[-1] != 3 or len(src) == 0:
        raise EngineError(f"the video to extend must be (F, H, W, 3) frames; got {src.shape}", "invalid_request")
    if src.shape[1:3] == (job.height, job.width):
        return src
    return np.stack([np.asarray(f) for f in _pil_frames(src, job.width, job.height)])


def _source_video(job: DiffusersJob) -> list[Any]:
    """The remix source as PIL frames at the job's size and frame count (v2v keeps the source's length),
    opening on the job's image when it has one (a character the edit's prompt names)."""
    from PIL import Image

    src = job.source_frames
    assert src is not None  # noqa: S101  (narrows a type; never input validation)
    if src.ndim != 4 or src.shape[-1] != 3 or len(src) == 0:
        raise EngineError(f"remix source frames must be (F, H, W, 3); got {src.shape}", "invalid_request")
    if 0 < job.frames - len(src) <= 8:  # the model's k*m+1 past the video's own frames: hold its last frame
        src = np.concatenate([src, np.repeat(src[-1:], job.frames - len(src), axis=0)])
    elif len(src) != job.frames:  # resample evenly in time
        src = src[np.linspace(0, len(src) - 1, job.frames).round().astype(int)]
    size = (job.width, job.height)
    frames = [Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8)) for f in src]
    frames = [f if f.size == size else f.resize(size, Image.Resampling.BICUBIC) for f in frames]
    if job.image is not None:  # a character's reference frame opens the edited video
        frames[0] = _decode_image(job)
    return frames


def _decode_image(job: DiffusersJob) -> Any:
    from . import images

    assert job.image is not None  # noqa: S101  (narrows a type; never input validation)
    try:
        return images.fit_image(job.image, job.width, job.height)
    except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
        raise EngineError(f"cannot decode the input image: {e}", "invalid_request") from e
