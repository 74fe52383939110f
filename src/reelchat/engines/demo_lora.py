"""A tiny random LoRA for the demo Wan transformer, built with peft and saved the way diffusers saves
one (`WanPipeline.save_lora_weights`), so that `speed.lora` can be tried and tested without a download.

It stands in for a distilled LoRA (LightX2V's 4-step Wan LoRA, say): it changes what the model renders,
loads through the same diffusers call, and unloads cleanly. It does not make the demo model any better.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

_SEED = 20240301
WEIGHT_NAME = "demo_lora.safetensors"


def build_demo_lora(pipeline_dir: Path, out_dir: Path, *, rank: int = 4, scale: float = 0.5) -> Path:
    """Save a rank-`rank` LoRA on the attention projections of `pipeline_dir`'s transformer into
    `out_dir`; returns the .safetensors file. Needs peft (the `lora` extra)."""
    d: Any = importlib.import_module("diffusers")
    transformer = d.WanTransformer3DModel.from_pretrained(str(pipeline_dir), subfolder="transformer")
    return save_random_lora(transformer, d.WanPipeline, out_dir, rank=rank, scale=scale)


def save_random_lora(transformer: Any, pipeline_cls: Any, out_dir: Path, *, rank: int, scale: float) -> Path:
    """Add a random LoRA to `transformer`'s attention projections, save it as `pipeline_cls` saves LoRAs,
    and take it off the transformer again."""
    import torch

    peft: Any = importlib.import_module("peft")
    peft_utils: Any = importlib.import_module("peft.utils")
    config = peft.LoraConfig(
        r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"]
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        transformer.add_adapter(config, adapter_name="random")  # random A and B (peft's default B is zero)
        with torch.no_grad():
            for name, p in transformer.named_parameters():
                if "lora_" in name:
                    p.mul_(scale)
    layers = peft_utils.get_peft_model_state_dict(transformer, adapter_name="random")
    out_dir.mkdir(parents=True, exist_ok=True)
    pipeline_cls.save_lora_weights(str(out_dir), transformer_lora_layers=layers, weight_name=WEIGHT_NAME)
    transformer.delete_adapters("random")
    return out_dir / WEIGHT_NAME
