"""Memory honesty: what a model needs is estimated before it loads, and a model that cannot fit is
refused with what to change, never left to run out of memory half-way through a user's video."""

from __future__ import annotations

import importlib
import json
import logging
import struct
from pathlib import Path
from typing import Any

import pytest

from reelchat.catalog import load_catalog
from reelchat.engines import memory
from reelchat.engines.base import EngineError, QuietReporter
from reelchat.engines.demo_model import ensure_demo_pipeline
from reelchat.engines.diffusers_engine import DiffusersEngine
from reelchat.engines.diffusers_spec import DiffusersJob
from reelchat.engines.registry import EngineRegistry
from reelchat.engines.speed_spec import SpeedConfig, Workload
from reelchat.settings import Settings

SHAPE = Workload(48, 32, 9, guidance=True)

# Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json (published)
WAN_1_3B = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_demo_pipeline(tmp_path_factory.mktemp("memory-demo"), "t2v")


def test_weights_come_from_the_safetensors_headers(demo: Path) -> None:
    import torch

    diffusers: Any = importlib.import_module("diffusers")

    for dtype, elt in (("float32", 4), ("bfloat16", 2)):
        est = memory.estimate(demo, dtype=dtype, speed=SpeedConfig(), workloads={SHAPE})
        loaded = diffusers.WanTransformer3DModel.from_pretrained(str(demo), subfolder="transformer")
        assert est.weights["transformer"] == sum(t.numel() for t in loaded.state_dict().values()) * elt
        vae = diffusers.AutoencoderKLWan.from_pretrained(str(demo), subfolder="vae", torch_dtype=torch.float32)
        assert est.weights["vae"] == sum(t.numel() for t in vae.state_dict().values()) * 4  # always float32
        assert set(est.weights) == {"text_encoder", "transformer", "vae"}


def _header_only_checkpoint(folder: Path, model: Any, config: dict[str, Any]) -> None:
    """A safetensors file with the real header and no data: all the estimate reads."""
    folder.mkdir(parents=True)
    header = {
        k: {"dtype": "F32", "shape": list(t.shape), "data_offsets": [0, 0]} for k, t in model.state_dict().items()
    }
    raw = json.dumps(header).encode()
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    (folder / "config.json").write_text(json.dumps(config))


def test_wan_1_3b_at_480p_is_estimated_sensibly(tmp_path: Path) -> None:
    import torch

    diffusers: Any = importlib.import_module("diffusers")

    with torch.device("meta"):
        transformer = diffusers.WanTransformer3DModel(**WAN_1_3B)
    _header_only_checkpoint(tmp_path / "transformer", transformer, WAN_1_3B)
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "config.json").write_text(json.dumps({"base_dim": 96, "dim_mult": [1, 2, 4, 4]}))
    index = {"_class_name": "WanPipeline", "transformer": ["diffusers", "WanTransformer3DModel"]}
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    big = Workload(832, 480, 81, guidance=True)
    est = memory.estimate(tmp_path, dtype="bfloat16", speed=SpeedConfig(), workloads={big, SHAPE})
    assert est.workload == big
    assert 1.3e9 * 2 < est.weights["transformer"] < 1.5e9 * 2  # 1.3 billion parameters in bfloat16
    # 21 latent frames x 30 x 52 patches = 32,760 tokens of width 1536
    assert 1 * memory.GIB < est.activations["transformer"] < 4 * memory.GIB
    batched = memory.estimate(tmp_path, dtype="bfloat16", speed=SpeedConfig(cfg_batch=True), workloads={big})
    assert batched.activations["transformer"] == 2 * est.activations["transformer"]
    tiled = memory.estimate(tmp_path, dtype="bfloat16", speed=SpeedConfig(vae_tiling=True), workloads={big})
    assert tiled.activations["vae"] < est.activations["vae"]


async def test_a_model_that_cannot_fit_is_refused_with_what_to_change(demo: Path) -> None:
    est = memory.estimate(demo, dtype="float32", speed=SpeedConfig(), workloads={SHAPE})
    need_all, need_offloaded = est.needed("none"), est.needed("model")
    assert need_offloaded < need_all
    between_gb = (need_all + need_offloaded) / 2 / memory.GIB

    engine = DiffusersEngine(demo, memory_gb=between_gb)
    engine.workloads = {SHAPE}
    with pytest.raises(EngineError) as refused:
        await engine.load()
    message = str(refused.value)
    assert "needs about" in message
    assert "48x32x9" in message
    assert '"offload": "model"' in message  # the change that makes it fit
    assert "REELCHAT_DEVICE_MEMORY_GB" in message
    assert refused.value.code == "engine_unavailable"
    assert engine._t2v is None  # nothing was loaded

    offloaded = DiffusersEngine(demo, memory_gb=between_gb, speed=SpeedConfig(offload="model"))
    offloaded.workloads = {SHAPE}
    await offloaded.load()  # fits with the change the message named
    assert offloaded._t2v is not None


async def test_a_refused_model_fails_its_jobs_with_the_reason(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("REELCHAT_DEVICE_MEMORY_GB", "0.001")
    settings = Settings(home=tmp_path)
    assert settings.device_memory_gb == 0.001
    entry = {
        "pipeline": str(demo),
        "i2v_pipeline": None,
        "seconds": [2],
        "default_seconds": 2,
        "portrait_sizes": ["32x48"],
        "landscape_sizes": ["48x32"],
        "fps": 4,
        "steps": 2,
    }
    spec = load_catalog(models_json=json.dumps({"m": entry}))["m"]
    registry = EngineRegistry(tmp_path, device_memory_gb=settings.device_memory_gb)
    with caplog.at_level(logging.INFO, logger="reelchat.engines"):
        await registry.preload([spec])
    refusal = next(r for r in caplog.records if "could not load model m" in r.getMessage())
    assert refusal.exc_info is None  # a message that says what to change, not a traceback
    assert "needs about" in refusal.getMessage()
    engine = next(iter(registry._local.values()))
    job = DiffusersJob(prompt="x", width=48, height=32, frames=9, fps=4, steps=2, seed=1)

    with pytest.raises(EngineError, match=r"needs about .* REELCHAT_DEVICE_MEMORY_GB"):
        await engine.generate(job, QuietReporter())
    await registry.close()
