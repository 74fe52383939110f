"""A catalog entry's `speed` block: which of diffusers' speed-ups the local engine switches on.

Every switch is off by default (stock diffusers). Light on purpose (no torch, no diffusers): the catalog
imports it. `speed.py` applies a `SpeedConfig` to a loaded pipeline; `memory.py` reads `offload`,
`cfg_batch` and the VAE switches when it estimates what a model needs.

```json
"speed": {
  "attention": "flash",
  "compile": true,
  "cache": {"kind": "first_block", "threshold": 0.05},
  "cfg_batch": true,
  "lora": {"path": "/models/lightx2v-4step.safetensors", "steps": 4, "guidance_scale": 1.0,
           "scheduler": "FlowMatchEulerDiscreteScheduler", "scheduler_config": {"shift": 5.0}},
  "vae_tiling": true, "vae_slicing": true,
  "offload": "model"
}
```
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from .diffusers_spec import DiffusersSpec

# Our names for diffusers' attention backends (`diffusers.models.attention_dispatch.AttentionBackendName`).
# Only backends that run from a local install: the `*_hub` ones download kernels at startup.
ATTENTION_BACKENDS: dict[str, str] = {
    "native": "native",  # torch's scaled_dot_product_attention: always there
    "flash": "flash",  # flash-attn 2 (CUDA)
    "flash3": "_flash_3",  # flash-attn 3 (Hopper)
    "sage": "sage",  # sageattention (CUDA)
    "flex": "flex",  # torch flex_attention
    "cudnn": "_native_cudnn",  # torch SDPA pinned to cuDNN (CUDA)
    "xformers": "xformers",
}
AttentionBackend = Literal["native", "flash", "flash3", "sage", "flex", "cudnn", "xformers"]
Offload = Literal["none", "model", "sequential"]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CompileConfig(_Block):
    """`torch.compile` of the transformer's repeated blocks (diffusers' `compile_repeated_blocks`)."""

    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"
    fullgraph: bool = False
    dynamic: bool | None = None
    backend: str = "inductor"  # torch.compile's backend ("aot_eager" compiles without generating code)
    # compile at startup, on every size and length the entry serves, so the first user does not wait for it
    warmup: bool = True


class FirstBlockCache(_Block):
    """Skip the other blocks while the first block's output barely changes (diffusers' FirstBlockCache)."""

    kind: Literal["first_block"]
    threshold: float = Field(default=0.05, gt=0)


class MagCache(_Block):
    """Skip steps whose residual magnitude is predictable (diffusers' MagCache); ratios are per checkpoint."""

    kind: Literal["mag"]
    mag_ratios: list[float] = Field(min_length=2)  # from a calibration run of this checkpoint
    threshold: float = Field(default=0.06, gt=0)
    max_skip_steps: int = Field(default=3, ge=1)
    retention_ratio: float = Field(default=0.2, ge=0, le=1)


class TaylorSeerCache(_Block):
    """Predict block outputs from a Taylor series between full steps (diffusers' TaylorSeer)."""

    kind: Literal["taylorseer"]
    cache_interval: int = Field(default=5, ge=1)
    disable_cache_before_step: int = Field(default=3, ge=0)
    disable_cache_after_step: int | None = Field(default=None, ge=0)
    max_order: int = Field(default=1, ge=0)
    # which modules' outputs are predicted (regexes over the transformer's module names). diffusers' own
    # default, "^blocks.*attn", matches no module of Wan (its attentions are attn1/attn2) or LTX.
    cache_identifiers: list[str] = Field(
        default_factory=lambda: [r"(transformer_)?blocks\.\d+\.(attn\d*|ffn?)"], min_length=1
    )


StepCache = Annotated[FirstBlockCache | MagCache | TaylorSeerCache, Field(discriminator="kind")]


class LoraConfig(_Block):
    """A (distilled) LoRA and the sampling it was trained for: its steps, guidance and scheduler win over
    the entry's own `steps` and `guidance_scale`."""

    path: str  # a local .safetensors file, or a directory holding one
    weight: float = 1.0
    fuse: bool = True  # fold it into the weights: no extra matmuls per step
    steps: int | None = Field(default=None, gt=0)
    guidance_scale: float | None = Field(default=None, ge=0)
    scheduler: str | None = None  # a diffusers scheduler class, e.g. "UniPCMultistepScheduler"
    scheduler_config: dict[str, float | int | bool | str] = Field(default_factory=dict)


class SpeedConfig(_Block):
    attention: AttentionBackend | None = None  # None: diffusers' default (native)
    compile: CompileConfig | None = None
    cache: StepCache | None = None
    cfg_batch: bool = False  # the conditional and unconditional passes of guidance as one batch
    lora: LoraConfig | None = None
    vae_tiling: bool = False
    vae_slicing: bool = False
    offload: Offload = "none"

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_shorthand(cls, v: Any) -> Any:
        """`"compile": true` means the defaults; `false` means off."""
        if v is True:
            return {}
        if v is False:
            return None
        return v

    def key(self) -> str:
        """Entries with the same pipelines and the same switches share one engine."""
        return self.model_dump_json()

    def describe(self) -> str:
        """Every switch, for the startup log line."""
        parts = [f"attention={self.attention or 'native(default)'}"]
        if self.compile is None:
            parts.append("compile=off")
        else:
            warm = "+warmup" if self.compile.warmup else ""
            parts.append(f"compile={self.compile.backend}:{self.compile.mode}{warm}")
        cache = self.cache
        if cache is None:
            parts.append("cache=off")
        elif isinstance(cache, TaylorSeerCache):
            parts.append(f"cache=taylorseer(interval {cache.cache_interval})")
        else:
            parts.append(f"cache={cache.kind}({cache.threshold})")
        parts.append(f"cfg_batch={'on' if self.cfg_batch else 'off'}")
        lora = self.lora
        if lora is None:
            parts.append("lora=off")
        else:
            extra = [f"weight {lora.weight}", "fused" if lora.fuse else "unfused"]
            if lora.steps is not None:
                extra.append(f"{lora.steps} steps")
            if lora.guidance_scale is not None:
                extra.append(f"guidance {lora.guidance_scale}")
            if lora.scheduler is not None:
                extra.append(lora.scheduler)
            parts.append(f"lora={lora.path}({', '.join(extra)})")
        parts.append(f"vae_tiling={'on' if self.vae_tiling else 'off'}")
        parts.append(f"vae_slicing={'on' if self.vae_slicing else 'off'}")
        parts.append(f"offload={self.offload}")
        return " ".join(parts)


@dataclass(frozen=True, order=True)
class Workload:
    """One shape an entry can ask its engine for: what memory is checked for and compile is warmed on."""

    width: int
    height: int
    frames: int
    guidance: bool  # classifier-free guidance on (a second, unconditional pass)

    @property
    def pixels(self) -> int:
        return self.width * self.height * self.frames


def workloads(spec: DiffusersSpec, guidance_scale: float) -> set[Workload]:
    """Every shape the entry serves (remixes and image-to-video use the same shapes): each size a request
    may name (OpenAI's and the model's own) at the size the model renders it, for each duration a request
    may name (OpenAI's and the model's own) at the frames the model makes for it. A clip longer than the
    entry's `window_frames` runs as passes of at most that many frames: those are the shapes the device sees."""
    window = spec.window_frames
    out: set[Workload] = set()
    for size in spec.public_sizes:
        w, h = (int(x) for x in spec.render_size(size).split("x"))
        for seconds in spec.allowed_seconds:
            frames = spec.model_frames(spec.frames_for(seconds))
            out.add(Workload(w, h, min(frames, window) if window else frames, guidance_scale > 1.0))
    return out
