"""Stock diffusers against reelchat's speed switches, on the real architectures, in one run.

Builds each model's transformer and VAE from its published config with random weights (nothing is
downloaded; the timing is the real architecture's), feeds random text embeddings in place of the text
encoder (its cost, one pass per video, is the same for every row), and renders one video per row:

- `diffusers (stock)`: the pipeline called as diffusers' docs call it;
- `reelchat ...`: the same pipeline with `engines.speed.SpeedPlan` applied and called through it, as
  the engine does, switch by switch, then all together, then with a 4-step distilled LoRA (a random
  LoRA with the 4-step sampling a distilled one runs: 4 steps, no guidance).

Per row: seconds per video (denoising, VAE decode and post-processing), seconds per denoising step,
peak device memory, and MFU: the transformer FLOPs from the config (attention, projections and FFN of
every block, twice per step under guidance) per second over the device's dense bf16 peak. Rows with a
step cache skip work, so their MFU is "effective" (the FLOPs stock diffusers would have spent).

With random weights the step caches' hit rates mean nothing (they depend on how much a trained model's
outputs change between steps); their rows show what a skipped block saves, not what a real checkpoint
will skip.

    python bench/engine_gpu.py                       # all three models at their published sizes, 50 steps
    python bench/engine_gpu.py --models wan2.1-1.3b --steps 20
    python bench/engine_gpu.py --tiny                # the same code on the CPU in about a minute (CI)

`--tiny` uses demo-sized configs, a 48x32x9 clip, 4 steps, and compile's `aot_eager` backend (inductor's
C++ build takes minutes on a small CPU), in the `+ compile` row only; its figures only show that every
row runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from reelchat.engines.demo_lora import save_random_lora  # noqa: E402
from reelchat.engines.speed import SpeedPlan  # noqa: E402
from reelchat.engines.speed_spec import SpeedConfig  # noqa: E402

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s, by a substring of torch.cuda.get_device_name().
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "A100": 312e12, "L40S": 362e12, "4090": 165e12}


@dataclass(frozen=True)
class ModelDef:
    name: str
    family: str  # "wan" or "ltx"
    transformer: dict[str, Any]
    vae: dict[str, Any]
    width: int
    height: int
    frames: int
    spatial: int  # VAE compression x patch, per side
    temporal: int
    text_tokens: int
    pipeline: dict[str, Any] = field(default_factory=dict)


_WAN_COMMON = {"patch_size": [1, 2, 2], "freq_dim": 256, "text_dim": 4096, "cross_attn_norm": True}
_WAN_COMMON |= {"qk_norm": "rms_norm_across_heads", "eps": 1e-6, "rope_max_seq_len": 1024}

MODELS = {
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers
    "wan2.1-1.3b": ModelDef(
        "wan2.1-1.3b",
        "wan",
        _WAN_COMMON
        | {"num_attention_heads": 12, "attention_head_dim": 128, "ffn_dim": 8960, "num_layers": 30}
        | {"in_channels": 16, "out_channels": 16},
        {"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2},
        832,
        480,
        81,
        spatial=16,
        temporal=4,
        text_tokens=512,
    ),
    # Wan-AI/Wan2.2-TI2V-5B-Diffusers: a 16x16x4 VAE with 48 latent channels, per-token timesteps
    "wan2.2-ti2v-5b": ModelDef(
        "wan2.2-ti2v-5b",
        "wan",
        _WAN_COMMON
        | {"num_attention_heads": 24, "attention_head_dim": 128, "ffn_dim": 14336, "num_layers": 30}
        | {"in_channels": 48, "out_channels": 48},
        {
            "base_dim": 160,
            "decoder_base_dim": 256,
            "z_dim": 48,
            "dim_mult": [1, 2, 4, 4],
            "num_res_blocks": 2,
            "is_residual": True,
            "in_channels": 12,
            "out_channels": 12,
            "patch_size": 2,
            "scale_factor_spatial": 16,
            "scale_factor_temporal": 4,
            "latents_mean": [0.0] * 48,
            "latents_std": [1.0] * 48,
        },
        1280,
        704,
        121,
        spatial=32,
        temporal=4,
        text_tokens=512,
        pipeline={"expand_timesteps": True},
    ),
    # Lightricks/LTX-Video (2B, 0.9.x): diffusers' LTX classes default to its config
    "ltx-2b": ModelDef("ltx-2b", "ltx", {}, {}, 768, 512, 121, spatial=32, temporal=8, text_tokens=128),
}

TINY = {
    "wan-tiny": ModelDef(
        "wan-tiny",
        "wan",
        _WAN_COMMON
        | {"num_attention_heads": 2, "attention_head_dim": 12, "ffn_dim": 32, "num_layers": 2, "text_dim": 32}
        | {"in_channels": 16, "out_channels": 16},
        {"base_dim": 3, "z_dim": 16, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1},
        48,
        32,
        9,
        spatial=16,
        temporal=4,
        text_tokens=512,
        pipeline={"expand_timesteps": True},
    ),
    "ltx-tiny": ModelDef(
        "ltx-tiny",
        "ltx",
        {"in_channels": 8, "out_channels": 8, "num_attention_heads": 4, "attention_head_dim": 8}
        | {"cross_attention_dim": 32, "num_layers": 2, "caption_channels": 32},
        {
            "latent_channels": 8,
            "block_out_channels": (8, 8, 8, 8),
            "decoder_block_out_channels": (8, 8, 8, 8),
            "layers_per_block": (1, 1, 1, 1, 1),
            "decoder_layers_per_block": (1, 1, 1, 1, 1),
            "spatio_temporal_scaling": (True, True, False, False),
            "decoder_spatio_temporal_scaling": (True, True, False, False),
            "decoder_inject_noise": (False, False, False, False, False),
            "upsample_residual": (False, False, False, False),
            "upsample_factor": (1, 1, 1, 1),
            "timestep_conditioning": False,
            "patch_size": 1,
            "patch_size_t": 1,
            "encoder_causal": True,
            "decoder_causal": False,
        },
        64,
        32,
        9,
        spatial=8,
        temporal=4,
        text_tokens=16,
    ),
}


def _d() -> Any:
    return importlib.import_module("diffusers")


def build_pipeline(m: ModelDef, device: str, dtype: Any) -> Any:
    """The model's pipeline with random weights, no text encoder (prompts come as embeddings)."""
    import torch

    d = _d()
    torch.manual_seed(0)
    with torch.device(device):
        if m.family == "wan":
            transformer = d.WanTransformer3DModel(**m.transformer).to(dtype)
            vae = d.AutoencoderKLWan(**m.vae).to(torch.float32)
            scheduler = d.FlowMatchEulerDiscreteScheduler(shift=5.0)
            return d.WanPipeline(
                tokenizer=None, text_encoder=None, transformer=transformer, vae=vae, scheduler=scheduler, **m.pipeline
            )
        transformer = d.LTXVideoTransformer3DModel(**m.transformer).to(dtype)
        vae = d.AutoencoderKLLTXVideo(**m.vae).to(dtype)
        return d.LTXPipeline(
            scheduler=d.FlowMatchEulerDiscreteScheduler(),
            vae=vae,
            text_encoder=None,
            tokenizer=None,
            transformer=transformer,
        )


def call_kwargs(m: ModelDef, pipe: Any, steps: int, guidance: float, device: str, dtype: Any) -> dict[str, Any]:
    import torch

    g = torch.Generator("cpu").manual_seed(1)
    dim = int(m.transformer.get("text_dim") or m.transformer.get("caption_channels", 4096))
    text = torch.randn(1, m.text_tokens, dim, generator=g).to(device, dtype)
    negative = torch.randn(1, m.text_tokens, dim, generator=g).to(device, dtype)
    kw: dict[str, Any] = dict(
        prompt_embeds=text,
        negative_prompt_embeds=negative,
        width=m.width,
        height=m.height,
        num_frames=m.frames,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator(device).manual_seed(2),
        output_type="np",
    )
    if m.family == "ltx":
        mask = torch.ones(1, m.text_tokens, dtype=torch.bool, device=device)
        kw.update(prompt_attention_mask=mask, negative_prompt_attention_mask=mask)
    return kw


def flops_per_forward(m: ModelDef) -> float:
    """Transformer FLOPs of one forward pass at the model's size: per block, self-attention (QKV/out
    projections and the L x L products), cross-attention (Q/out over L, K/V over the text) and the FFN."""
    t = m.transformer
    heads = int(t.get("num_attention_heads", 32))
    hidden = heads * int(t.get("attention_head_dim", 64))
    ffn = int(t.get("ffn_dim", 4 * hidden))
    layers = int(t.get("num_layers", 28))
    tokens = ((m.frames - 1) // m.temporal + 1) * (m.height // m.spatial) * (m.width // m.spatial)
    text = m.text_tokens
    self_attn = 8 * tokens * hidden**2 + 4 * tokens**2 * hidden
    cross_attn = 4 * tokens * hidden**2 + 4 * text * hidden**2 + 4 * tokens * text * hidden
    ff = 4 * tokens * hidden * ffn
    return float(layers * (self_attn + cross_attn + ff))


def best_attention() -> str | None:
    """The fastest attention backend installed here (CUDA only), or None for the native default."""
    for name, module in (("flash3", "flash_attn_interface"), ("sage", "sageattention"), ("flash", "flash_attn")):
        if importlib.util.find_spec(module) is not None:
            return name
    return None


@dataclass
class Row:
    model: str
    variant: str
    steps: int
    video_s: float
    step_s: float
    peak_gib: float | None
    mfu: float | None
    note: str = ""


def run_variant(
    m: ModelDef,
    variant: str,
    speed: dict[str, Any] | None,
    *,
    steps: int,
    guidance: float,
    device: str,
    dtype: Any,
    peak_flops: float | None,
) -> Row:
    import torch

    cuda = device.startswith("cuda")
    pipe = build_pipeline(m, "cpu" if speed and speed.get("offload", "none") != "none" else device, dtype)
    pipe.set_progress_bar_config(disable=True)
    plan = None
    if speed is None:
        pipe.to(device)
    else:
        plan = SpeedPlan(SpeedConfig.model_validate(speed), device)
        plan.place(pipe)
        lora = plan.config.lora
        if lora is not None:
            steps = lora.steps or steps
            guidance = lora.guidance_scale if lora.guidance_scale is not None else guidance

    def call(n: int, marks: list[float] | None = None) -> None:
        kw = call_kwargs(m, pipe, n, guidance, device, dtype)
        if marks is not None:

            def on_step(p: Any, i: int, t: Any, k: dict[str, Any]) -> dict[str, Any]:
                if cuda:
                    torch.cuda.synchronize()
                marks.append(time.perf_counter())
                return {}

            kw["callback_on_step_end"] = on_step
        if plan is None:
            pipe(**kw)
        else:
            plan.run(pipe, kw)
        if cuda:
            torch.cuda.synchronize()

    warm = time.perf_counter()
    call(min(steps, 3))  # warm-up: compile, cuDNN/cuBLAS autotuning, allocator
    warm_s = time.perf_counter() - warm
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    marks: list[float] = []
    start = time.perf_counter()
    call(steps, marks)
    video_s = time.perf_counter() - start
    step_s = (marks[-1] - marks[0]) / (len(marks) - 1) if len(marks) > 1 else marks[0] - start
    peak = torch.cuda.max_memory_allocated() / 1024**3 if cuda else None
    passes = 2 if guidance > 1.0 else 1
    mfu = passes * flops_per_forward(m) / step_s / peak_flops if peak_flops else None
    note = f"warm-up {warm_s:.1f} s" if speed and speed.get("compile") else ""
    if cuda:
        torch.cuda.empty_cache()
    return Row(m.name, variant, steps, video_s, step_s, peak, mfu, note)


def variants(m: ModelDef, *, tiny: bool, cuda: bool, lora_path: Path | None) -> list[tuple[str, dict[str, Any] | None]]:
    compile_block: dict[str, Any] = {"backend": "aot_eager"} if tiny else {"mode": "max-autotune-no-cudagraphs"}
    attention = best_attention() if cuda else None
    cache = {"kind": "first_block", "threshold": 0.05}
    rows: list[tuple[str, dict[str, Any] | None]] = [("diffusers (stock)", None), ("reelchat, no switches", {})]
    # --tiny compiles in its own row only: each compile is most of a tiny run's time
    fast: dict[str, Any] = {} if tiny else {"compile": compile_block}
    if attention is not None:
        rows.append((f"+ attention={attention}", {"attention": attention}))
        fast["attention"] = attention
    if m.family == "wan":  # LTX's pipeline batches guidance itself
        rows.append(("+ cfg_batch", {"cfg_batch": True}))
        fast["cfg_batch"] = True
    rows.append(("+ compile", {"compile": compile_block}))
    rows.append(("+ first_block cache 0.05", {"cache": cache}))
    rows.append(("all of the above", fast | {"cache": cache}))
    if lora_path is not None:
        lora = {"path": str(lora_path), "steps": 4, "guidance_scale": 1.0}
        rows.append(("4-step distilled LoRA + above", fast | {"lora": lora}))
    rows.append(("+ vae_tiling", {"vae_tiling": True}))
    if cuda:
        rows.append(("+ offload=model", {"offload": "model"}))
    return rows


def lora_for(m: ModelDef, out: Path, device: str, dtype: Any) -> Path | None:
    if importlib.util.find_spec("peft") is None:
        print(f"{m.name}: peft is not installed; no LoRA row (pip install peft)", file=sys.stderr)
        return None
    pipe = build_pipeline(m, "cpu", dtype)
    cls = _d().WanPipeline if m.family == "wan" else _d().LTXPipeline
    return save_random_lora(pipe.transformer, cls, out / m.name, rank=32 if device != "cpu" else 4, scale=0.01)


def print_table(rows: list[Row], device_name: str) -> None:
    print(f"\nengine_gpu on {device_name}\n")
    print("| model | variant | steps | s/video | s/step | peak GiB | MFU | vs stock | note |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    stock = {r.model: r.video_s for r in rows if r.variant == "diffusers (stock)"}
    for r in rows:
        peak = f"{r.peak_gib:.1f}" if r.peak_gib is not None else "-"
        mfu = f"{100 * r.mfu:.0f}%" if r.mfu is not None else "-"
        speedup = stock[r.model] / r.video_s if r.model in stock and r.video_s > 0 else math.nan
        print(
            f"| {r.model} | {r.variant} | {r.steps} | {r.video_s:.2f} | {r.step_s:.3f} | {peak} | {mfu} "
            f"| {speedup:.2f}x | {r.note} |"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--tiny", action="store_true", help="demo-sized models on the CPU (a CI smoke test)")
    ap.add_argument("--models", help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--steps", type=int, help="denoising steps (default 50; 4 with --tiny)")
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak, for MFU")
    args = ap.parse_args(argv)

    import torch

    _d().utils.logging.set_verbosity_error()  # the random-weight builds warn about casting
    table = TINY if args.tiny else MODELS
    names = args.models.split(",") if args.models else list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        ap.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(table)}")
    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not args.tiny:
        ap.error("no CUDA device: run with --tiny for the CPU smoke test")
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = (
        args.peak_tflops * 1e12
        if args.peak_tflops
        else next((v for k, v in PEAK_BF16.items() if k in device_name), None)
    )
    steps = args.steps or (4 if args.tiny else 50)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="engine-gpu-") as tmp:
        for name in names:
            m = table[name]
            lora = lora_for(m, Path(tmp), device, dtype)
            for variant, speed in variants(m, tiny=args.tiny, cuda=cuda, lora_path=lora):
                row = run_variant(
                    m, variant, speed, steps=steps, guidance=args.guidance, device=device, dtype=dtype, peak_flops=peak
                )
                rows.append(row)
                print(f"{row.model} | {row.variant}: {row.video_s:.2f} s", file=sys.stderr, flush=True)
    print_table(rows, device_name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
