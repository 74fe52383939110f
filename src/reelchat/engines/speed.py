"""Applies a catalog entry's `speed` block (`speed_spec.SpeedConfig`) to a loaded diffusers pipeline.

Everything here is diffusers' and torch's own machinery, switched on per entry; nothing is a kernel of
ours. `SpeedPlan.place` replaces the plain `pipe.to(device)` after loading: a LoRA first (so compile
sees its layers), then the attention backend, the step cache, batched guidance, the VAE switches, the
device placement (or CPU offload), and `torch.compile` last. `SpeedPlan.run` calls the pipeline with
the per-run state armed (the negative prompt for batched guidance, MagCache's step count) and leaves
no cache state behind, even when a run is cancelled half-way.

Pipelines built later over the same modules (video-to-video, a shared image-to-video) inherit every
switch: the switches live on the modules (transformer, VAE), and the scheduler is copied from this one.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Any

from . import batched_cfg
from .base import EngineError
from .diffusers_spec import DiffusersJob
from .families import FAMILIES
from .speed_spec import (
    ATTENTION_BACKENDS,
    FirstBlockCache,
    LoraConfig,
    MagCache,
    SpeedConfig,
    TaylorSeerCache,
    Workload,
)

log = logging.getLogger(__name__)

LORA_ADAPTER = "reelchat"
# Pipelines whose denoising loop runs guidance as two transformer calls (batched_cfg can merge them): the
# families that say so (Wan). The others batch it themselves (LTX-Video) and run as diffusers wrote them.
TWO_PASS_GUIDANCE = frozenset(n for f in FAMILIES if f.two_pass_guidance for n in f.class_names)
_CUDA_ONLY_BACKENDS = {"flash", "flash3", "sage", "cudnn", "xformers"}
WARMUP_STEPS = 3  # enough for the step caches to take their skip paths once


def _diffusers() -> Any:
    return importlib.import_module("diffusers")


def _transformers(pipe: Any) -> list[Any]:
    """The denoisers (Wan 2.2 A14B has two: high- and low-noise experts)."""
    return [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m is not None]


class SpeedPlan:
    """One engine's switches: applied once per loaded pipeline, armed once per run."""

    def __init__(self, config: SpeedConfig, device: str) -> None:
        self.config = config
        self.device = device
        self.guidance: list[batched_cfg.BatchedGuidance] = []
        self._mag_steps: dict[int, int] = {}  # id(transformer) -> the step count MagCache is armed for
        self._cached: list[Any] = []  # transformers with a step cache

    # -- once per loaded pipeline -------------------------------------------------------------------

    def place(self, pipe: Any) -> None:
        """Apply every switch and put `pipe` on the device (or behind CPU offload)."""
        c = self.config
        on_cuda = self.device.startswith("cuda")
        if c.offload == "sequential" and not on_cuda:
            # accelerate parks every weight on the meta device between uses: meaningless (and, with
            # transformers 5, broken) when the execution device is the CPU itself
            raise EngineError(
                f'speed.offload="sequential" needs a CUDA device; this engine runs on {self.device}. '
                'Remove it (or use "model") in the entry\'s speed block.',
                "engine_unavailable",
            )
        if c.offload == "model" and not on_cuda:
            log.warning("speed.offload=model on %s: nothing to offload to; hooks installed anyway", self.device)
        if c.lora is not None:
            load_lora(pipe, c.lora)
        for transformer in _transformers(pipe):
            if c.attention is not None:
                self._set_attention(transformer, c.attention, on_cuda)
            if c.cache is not None and not isinstance(c.cache, MagCache):  # MagCache: armed per step count
                try:
                    transformer.enable_cache(_cache_config(c.cache, steps=0))
                except (ValueError, IndexError) as e:  # FirstBlockCache on a one-block model: IndexError
                    raise EngineError(
                        f"speed.cache={c.cache.kind!r} does not apply to this model's transformer "
                        f"({type(transformer).__name__}, {type(e).__name__}: {e}). Pick another kind.",
                        "engine_unavailable",
                    ) from e
                self._cached.append(transformer)
            if c.cfg_batch and type(pipe).__name__ in TWO_PASS_GUIDANCE:
                self.guidance.append(batched_cfg.install(transformer))
        if c.cache is not None and isinstance(c.cache, MagCache):
            self._cached.extend(_transformers(pipe))
        if c.vae_tiling:
            pipe.vae.enable_tiling()
        if c.vae_slicing:
            pipe.vae.enable_slicing()
        if c.offload == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        elif c.offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        if c.compile is not None:
            for transformer in _transformers(pipe):
                try:
                    transformer.compile_repeated_blocks(
                        mode=c.compile.mode,
                        fullgraph=c.compile.fullgraph,
                        dynamic=c.compile.dynamic,
                        backend=c.compile.backend,
                    )
                except ValueError as e:  # the model declares no repeated blocks
                    raise EngineError(f"speed.compile: {e}", "engine_unavailable") from e

    def _set_attention(self, transformer: Any, backend: str, on_cuda: bool) -> None:
        if backend in _CUDA_ONLY_BACKENDS and not on_cuda:
            raise EngineError(
                f"speed.attention={backend!r} needs a CUDA device; this engine runs on {self.device}. "
                'Set "attention": "native" (or remove it) in the entry\'s speed block.',
                "engine_unavailable",
            )
        try:
            transformer.set_attention_backend(ATTENTION_BACKENDS[backend])
        except (RuntimeError, ValueError, ImportError) as e:
            raise EngineError(
                f"speed.attention={backend!r} is not available here: {e} "
                'Install it, or set "attention": "native" in the entry\'s speed block.',
                "engine_unavailable",
            ) from e

    # -- once per run -------------------------------------------------------------------------------

    def run(self, pipe: Any, kwargs: dict[str, Any]) -> Any:
        """`pipe(**kwargs)`, with batched guidance and the step cache armed for this run."""
        timesteps = kwargs.get("timesteps")  # an explicit schedule (an LTX remix) sets the step count
        steps = len(timesteps) if timesteps is not None else int(kwargs.get("num_inference_steps", 1))
        # a remix runs only the last `strength` of its schedule (Wan: strength, LTX: denoise_strength)
        strength = kwargs.get("strength", kwargs.get("denoise_strength"))
        if strength is not None:
            steps = max(1, min(int(steps * float(strength)), steps))
        self._arm_mag_cache(steps)
        guided = float(kwargs.get("guidance_scale", 1.0)) > 1.0
        negative = kwargs.get("negative_prompt_embeds") if guided else None
        for g in self.guidance:
            g.clear()
            g.negative = negative
        try:
            return pipe(**kwargs)
        finally:
            for g in self.guidance:
                g.clear()
            for transformer in self._cached:  # a cancelled run leaves its cache state: drop it
                transformer._reset_stateful_cache()

    def _arm_mag_cache(self, steps: int) -> None:
        cache = self.config.cache
        if not isinstance(cache, MagCache):
            return
        for transformer in self._cached:
            if self._mag_steps.get(id(transformer)) == steps:
                continue
            if id(transformer) in self._mag_steps:
                transformer.disable_cache()
            transformer.enable_cache(_cache_config(cache, steps=steps))
            self._mag_steps[id(transformer)] = steps

    def warmup_jobs(self, workloads: set[Workload]) -> list[DiffusersJob]:
        """The generations to run at startup so that `torch.compile` has compiled every shape the
        entry serves before a user asks for one (empty when compile is off or told not to warm up)."""
        if self.config.compile is None or not self.config.compile.warmup:
            return []
        return [
            DiffusersJob(
                prompt="warm-up",
                width=w.width,
                height=w.height,
                frames=w.frames,
                fps=8,
                steps=WARMUP_STEPS,
                seed=0,
                guidance_scale=5.0 if w.guidance else 1.0,
            )
            for w in sorted(workloads)
        ]


def _cache_config(cache: FirstBlockCache | MagCache | TaylorSeerCache, *, steps: int) -> Any:
    hooks = importlib.import_module("diffusers.hooks")
    if isinstance(cache, FirstBlockCache):
        return hooks.FirstBlockCacheConfig(threshold=cache.threshold)
    if isinstance(cache, MagCache):
        return hooks.MagCacheConfig(
            threshold=cache.threshold,
            max_skip_steps=cache.max_skip_steps,
            retention_ratio=cache.retention_ratio,
            num_inference_steps=steps,
            mag_ratios=list(cache.mag_ratios),
        )
    return hooks.TaylorSeerCacheConfig(
        cache_interval=cache.cache_interval,
        disable_cache_before_step=cache.disable_cache_before_step,
        disable_cache_after_step=cache.disable_cache_after_step,
        max_order=cache.max_order,
        cache_identifiers=list(cache.cache_identifiers),
    )


def _lora_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if len(files) == 1:
            return files[0]
        if files:
            raise EngineError(
                f"speed.lora.path {path} holds {len(files)} .safetensors files; name the one to load",
                "engine_unavailable",
            )
    raise EngineError(f"speed.lora.path: no LoRA (.safetensors) at {path}", "engine_unavailable")


def load_lora(pipe: Any, lora: LoraConfig) -> None:
    """Load `lora` into the pipeline's transformer(s), fuse it if asked, and switch to its scheduler."""
    if importlib.util.find_spec("peft") is None:
        raise EngineError(
            "speed.lora needs the peft package: pip install 'reelchat[lora]' (or pip install peft)",
            "engine_unavailable",
        )
    file = _lora_file(Path(lora.path).expanduser())
    try:
        pipe.load_lora_weights(str(file.parent), weight_name=file.name, adapter_name=LORA_ADAPTER)
        pipe.set_adapters([LORA_ADAPTER], [lora.weight])
        if lora.fuse:
            pipe.fuse_lora(adapter_names=[LORA_ADAPTER], lora_scale=1.0)
    except (ValueError, KeyError, RuntimeError, OSError) as e:
        raise EngineError(f"cannot load the LoRA {file}: {e}", "engine_unavailable") from e
    if lora.scheduler is not None:
        cls = getattr(_diffusers(), lora.scheduler, None)
        if cls is None or not hasattr(cls, "from_config") or "Scheduler" not in lora.scheduler:
            raise EngineError(
                f"speed.lora.scheduler {lora.scheduler!r} is not a diffusers scheduler class "
                "(e.g. FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler)",
                "engine_unavailable",
            )
        pipe.scheduler = cls.from_config(pipe.scheduler.config, **lora.scheduler_config)


def unload_lora(pipe: Any) -> None:
    """Take the LoRA back out: unfuse it (restoring the base weights) and remove its layers."""
    if getattr(pipe, "num_fused_loras", 1):
        pipe.unfuse_lora()
    pipe.unload_lora_weights()
