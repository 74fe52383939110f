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
    import torch

    d: Any = importlib.import_module("diffusers")
    peft: Any = importlib.import_module("peft")
    peft_utils: Any = importlib.import_module("peft.utils")
    transformer = d.WanTransformer3DModel.from_pretrained(str(pipeline_dir), subfolder="transformer")
    config = peft.LoraConfig(
        r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=["to_q", "to_k", "to_v", "to_out.0"]
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        transformer.add_adapter(config)  # init_lora_weights=False: random A and B (peft's default B is zero)
        with torch.no_grad():
            for name, p in transformer.named_parameters():
                if "lora_" in name:
                    p.mul_(scale)
    layers = peft_utils.get_peft_model_state_dict(transformer)
    out_dir.mkdir(parents=True, exist_ok=True)
    d.WanPipeline.save_lora_weights(str(out_dir), transformer_lora_layers=layers, weight_name=WEIGHT_NAME)
    return out_dir / WEIGHT_NAME
