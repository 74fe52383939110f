"""Each `speed` switch on the tiny demo Wan pipeline, on the CPU: it engages, and it does what it says.

The transformer's real work is counted at `blocks[-1].attn1.to_q`, a layer that runs only when the last
block's self-attention really computes: a step cache that skips blocks, a TaylorSeer prediction and a
batched guidance pass all show up there as fewer calls.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reelchat.catalog import CatalogError, DiffusersSpec, load_catalog
from reelchat.engines import memory, speed
from reelchat.engines.base import EngineError, QuietReporter
from reelchat.engines.demo_lora import build_demo_lora
from reelchat.engines.demo_model import ensure_demo_pipeline
from reelchat.engines.diffusers_engine import DiffusersEngine
from reelchat.engines.diffusers_spec import DiffusersJob
from reelchat.engines.registry import EngineRegistry
from reelchat.engines.speed_spec import SpeedConfig, Workload

W, H, F, STEPS = 48, 32, 9, 6
SHAPE = Workload(W, H, F, guidance=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_demo_pipeline(tmp_path_factory.mktemp("speed-demo"), "t2v")


@pytest.fixture(scope="module")
def lora_file(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("peft") is None:
        pytest.skip("peft is not installed (the `lora` extra)")
    return build_demo_lora(demo, tmp_path_factory.mktemp("lora"))


async def loaded(demo: Path, speed_block: dict[str, Any]) -> DiffusersEngine:
    engine = DiffusersEngine(demo, speed=SpeedConfig.model_validate(speed_block))
    engine.workloads = {SHAPE}
    await engine.load()
    return engine


def job(**kw: Any) -> DiffusersJob:
    args: dict[str, Any] = dict(prompt="a red fox in snow", width=W, height=H, frames=F, fps=8, steps=STEPS, seed=3)
    return DiffusersJob(**(args | kw))


@contextmanager
def passes(engine: DiffusersEngine) -> Iterator[list[int]]:
    calls: list[int] = []
    layer = engine._text_pipes()[0].transformer.blocks[-1].attn1.to_q
    handle = layer.register_forward_hook(lambda *_: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


async def render(engine: DiffusersEngine, j: DiffusersJob | None = None) -> tuple[np.ndarray, int]:
    with passes(engine) as calls:
        result = await engine.generate(j or job(), QuietReporter())
    assert result.frames is not None
    assert result.frames.shape == (F, H, W, 3) or j is not None
    return result.frames, len(calls)


def dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


@pytest.fixture(scope="module")
async def stock(demo: Path) -> tuple[np.ndarray, int]:
    return await render(await loaded(demo, {}))


async def test_stock_runs_two_passes_per_step(stock: tuple[np.ndarray, int]) -> None:
    assert stock[1] == 2 * STEPS  # guidance: a conditional and an unconditional pass per step


async def test_cfg_batch_is_one_pass_per_step_with_the_same_frames(demo: Path, stock: tuple[np.ndarray, int]) -> None:
    engine = await loaded(demo, {"cfg_batch": True})
    frames, calls = await render(engine)
    assert calls == STEPS
    assert engine.speed.guidance[0].batched_calls == STEPS
    assert dist(frames, stock[0]) < 0.5  # the same video, to float rounding
    # without guidance there is nothing to batch: one pass per step, untouched
    _, calls = await render(engine, job(guidance_scale=1.0))
    assert calls == STEPS


async def test_cfg_batch_serves_remixes_too(demo: Path) -> None:
    engine = await loaded(demo, {"cfg_batch": True})
    source = np.full((F, H, W, 3), 120, np.uint8)
    with passes(engine) as calls:
        result = await engine.generate(job(source_frames=source, strength=0.5), QuietReporter())
    assert result.frames is not None
    assert result.frames.shape == (F, H, W, 3)
    assert len(calls) == STEPS  # a remix runs `steps` steps, each one pass


@pytest.mark.parametrize(
    "cache",
    [
        {"kind": "first_block", "threshold": 0.5},
        {"kind": "taylorseer", "cache_interval": 2, "disable_cache_before_step": 1},
        {"kind": "mag", "mag_ratios": [1.0] * STEPS, "threshold": 0.5, "retention_ratio": 0.0},
    ],
    ids=["first_block", "taylorseer", "mag"],
)
async def test_step_cache_cuts_transformer_work(
    demo: Path, stock: tuple[np.ndarray, int], cache: dict[str, Any]
) -> None:
    engine = await loaded(demo, {"cache": cache})
    frames, calls = await render(engine)
    assert calls < stock[1] * 0.75, f"{cache['kind']}: {calls} passes, stock {stock[1]}"
    assert frames.std() > 5  # still a picture, not a flat field
    # the next run starts afresh (cache state is reset), so it repeats exactly
    again, calls_again = await render(engine)
    assert calls_again == calls
    assert np.array_equal(again, frames)


async def test_mag_cache_follows_the_step_count(demo: Path) -> None:
    engine = await loaded(demo, {"cache": {"kind": "mag", "mag_ratios": [1.0] * 4, "threshold": 0.5}})
    for steps in (4, 8):
        _, calls = await render(engine, job(steps=steps))
        assert calls < 2 * steps


async def test_lora_changes_the_video_and_unloads_cleanly(
    demo: Path, lora_file: Path, stock: tuple[np.ndarray, int]
) -> None:
    for fuse in (True, False):
        engine = await loaded(demo, {"lora": {"path": str(lora_file), "fuse": fuse}})
        frames, _ = await render(engine)
        assert dist(frames, stock[0]) > 2, "the LoRA changed nothing"
        speed.unload_lora(engine._text_pipes()[0])
        back, _ = await render(engine)
        assert dist(back, stock[0]) < 0.05, "the base model did not come back"
        transformer = engine._text_pipes()[0].transformer
        assert not any("lora" in n for n, _ in transformer.named_parameters())


async def test_lora_brings_its_steps_guidance_and_scheduler(demo: Path, lora_file: Path) -> None:
    lora = {
        "path": str(lora_file.parent),  # a directory holding one .safetensors
        "steps": 2,
        "guidance_scale": 1.0,
        "scheduler": "UniPCMultistepScheduler",
        "scheduler_config": {"flow_shift": 3.0},
    }
    spec = load_catalog(models_json=json.dumps({"sora-2": {"steps": 30, "speed": {"lora": lora}}}))["sora-2"]
    assert isinstance(spec, DiffusersSpec)
    assert (spec.steps, spec.guidance_scale) == (2, 1.0)  # the LoRA's sampling wins over the entry's
    engine = await loaded(demo, {"lora": lora})
    t2v, v2v = engine._text_pipes()
    assert type(t2v.scheduler).__name__ == type(v2v.scheduler).__name__ == "UniPCMultistepScheduler"
    assert t2v.scheduler.config.flow_shift == 3.0
    _, calls = await render(engine, job(steps=spec.steps, guidance_scale=spec.guidance_scale))
    assert calls == 2  # two steps, one pass each (no guidance)


async def test_lora_errors_say_what_is_wrong(demo: Path, lora_file: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no LoRA"):
        await loaded(demo, {"lora": {"path": str(tmp_path / "missing.safetensors")}})
    with pytest.raises(EngineError, match="not a diffusers scheduler"):
        await loaded(demo, {"lora": {"path": str(lora_file), "scheduler": "NoSuchScheduler"}})


async def test_vae_tiling_and_slicing_engage(demo: Path) -> None:
    engine = await loaded(demo, {"vae_tiling": True, "vae_slicing": True})
    vae = engine._text_pipes()[0].vae
    assert vae.use_tiling
    assert vae.use_slicing
    tiles: list[int] = []
    tiled_decode = vae.tiled_decode

    def counted(*args: Any, **kwargs: Any) -> Any:
        tiles.append(1)
        return tiled_decode(*args, **kwargs)

    vae.tiled_decode = counted
    wide = job(width=288, height=32, frames=5, steps=2)  # wider than one 256-px tile
    result = await engine.generate(wide, QuietReporter())
    assert tiles, "the VAE decoded without tiling"
    assert result.frames is not None
    assert result.frames.shape == (5, 32, 288, 3)


async def test_model_offload_installs_its_hooks_and_keeps_the_video(demo: Path, stock: tuple[np.ndarray, int]) -> None:
    engine = await loaded(demo, {"offload": "model"})
    pipe = engine._text_pipes()[0]
    assert pipe._all_hooks, "no offload hooks"
    assert hasattr(pipe.transformer, "_hf_hook")
    frames, _ = await render(engine)
    assert dist(frames, stock[0]) < 0.05


async def test_sequential_offload_and_cuda_only_attention_are_refused_on_the_cpu(demo: Path) -> None:
    with pytest.raises(EngineError, match=r'offload="sequential" needs a CUDA device.*speed block'):
        await loaded(demo, {"offload": "sequential"})
    for backend in ("flash", "sage"):
        with pytest.raises(EngineError, match=rf"attention='{backend}' needs a CUDA device.*native"):
            await loaded(demo, {"attention": backend})


async def test_attention_backend_is_set(demo: Path, stock: tuple[np.ndarray, int]) -> None:
    engine = await loaded(demo, {"attention": "native"})
    transformer = engine._text_pipes()[0].transformer
    backends = {m.processor._attention_backend for m in transformer.modules() if hasattr(m, "processor")}
    assert backends == {"native"}
    frames, _ = await render(engine)
    assert dist(frames, stock[0]) < 0.05


async def test_compile_is_warmed_up_at_startup(demo: Path, stock: tuple[np.ndarray, int]) -> None:
    """Compiled while loading, on the shapes the entry serves: the first user's job compiles nothing.
    (aot_eager: dynamo and AOTAutograd do their work, without inductor's C++ build, which takes minutes
    on a shared 2-core CI machine; bench/engine_gpu.py times inductor.)"""
    import torch

    counters = torch._dynamo.utils.counters
    torch._dynamo.reset()
    counters.clear()
    engine = await loaded(demo, {"compile": {"backend": "aot_eager"}, "cfg_batch": True})
    blocks = engine._text_pipes()[0].transformer.blocks
    assert all(getattr(b, "_compiled_call_impl", None) is not None for b in blocks)
    compiled_at_startup = counters["stats"]["unique_graphs"]
    assert compiled_at_startup > 0
    frames, _ = await render(engine)  # (the compiled blocks run no Python forward hooks: nothing to count)
    assert counters["stats"]["unique_graphs"] == compiled_at_startup, "the first job compiled again"
    assert dist(frames, stock[0]) < 0.5  # the same video as stock diffusers
    torch._dynamo.reset()


def test_speed_block_in_the_catalog() -> None:
    catalog = load_catalog(
        models_json=json.dumps({"sora-2": {"speed": {"compile": True, "cache": {"kind": "first_block"}}}})
    )
    spec = catalog["sora-2"]
    assert isinstance(spec, DiffusersSpec)
    assert spec.speed.compile is not None
    assert spec.speed.compile.warmup
    assert spec.speed.cache is not None
    assert spec.speed.cache.kind == "first_block"
    assert catalog["sora-2-pro"].model_dump()["speed"]["compile"] is None  # off unless asked
    with pytest.raises(CatalogError, match="turbo"):
        load_catalog(models_json=json.dumps({"sora-2": {"speed": {"turbo": True}}}))
    with pytest.raises(CatalogError, match="attention"):
        load_catalog(models_json=json.dumps({"sora-2": {"speed": {"attention": "warp"}}}))
    with pytest.raises(CatalogError, match="mag_ratios"):
        load_catalog(models_json=json.dumps({"sora-2": {"speed": {"cache": {"kind": "mag"}}}}))


async def test_startup_line_lists_every_switch(
    demo: Path, tmp_path: Path, lora_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    block = {
        "attention": "native",
        "cache": {"kind": "first_block", "threshold": 0.1},
        "cfg_batch": True,
        "lora": {"path": str(lora_file), "steps": 3},
        "vae_tiling": True,
        "offload": "model",
    }
    catalog = load_catalog(models_json=json.dumps({"fast": {**_entry(demo), "speed": block}}))
    registry = EngineRegistry(tmp_path)
    with caplog.at_level(logging.INFO, logger="reelchat.engines"):
        await registry.preload([catalog["fast"]])
    line = next(r.getMessage() for r in caplog.records if "loaded in" in r.getMessage())
    for switch in (
        "attention=native",
        "compile=off",
        "cache=first_block(0.1)",
        "cfg_batch=on",
        "lora=",
        "3 steps",
        "vae_tiling=on",
        "vae_slicing=off",
        "offload=model",
    ):
        assert switch in line, f"{switch} missing from: {line}"
    await registry.close()


def _entry(demo: Path) -> dict[str, Any]:
    return {
        "pipeline": str(demo),
        "i2v_pipeline": None,
        "seconds": [2],
        "default_seconds": 2,
        "portrait_sizes": ["32x48"],
        "landscape_sizes": ["48x32"],
        "fps": 4,
        "steps": 2,
    }


# -- LTX-Video: the same switches on the tiny demo-ltx pipeline --------------------------------------

LTX_W = 64  # LTX pipelines take multiples of 32 px


def ltx_job(**kw: Any) -> DiffusersJob:
    return job(width=LTX_W, guidance_scale=3.0, **kw)


async def ltx_render(engine: DiffusersEngine, j: DiffusersJob) -> tuple[np.ndarray, int]:
    calls: list[int] = []
    layer = engine._text_pipes()[0].transformer.transformer_blocks[-1].attn1.to_q
    handle = layer.register_forward_hook(lambda *_: calls.append(1))
    try:
        result = await engine.generate(j, QuietReporter())
    finally:
        handle.remove()
    assert result.frames is not None
    return result.frames, len(calls)


async def test_ltx_takes_the_speed_block_but_batches_its_own_guidance(demo_models: Path) -> None:
    """A step cache cuts LTX's transformer work too (TaylorSeer: FirstBlockCache needs two blocks);
    cfg_batch leaves its pipelines alone (they already run guidance as one batch of two); the memory
    estimate reads an LTX checkpoint; a remix arms MagCache for the steps it really runs (LTX's
    `denoise_strength` over an explicit schedule)."""
    ltx = demo_models / "ltx"
    stock = DiffusersEngine(ltx, speed=SpeedConfig(cfg_batch=True))
    stock.workloads = {Workload(LTX_W, H, F, guidance=True)}
    await stock.load()
    assert stock.speed.guidance == []  # nothing installed: LTX batches guidance itself
    _, stock_calls = await ltx_render(stock, ltx_job())
    assert stock_calls == STEPS  # guided, yet one (batched) pass per step

    taylor = {"kind": "taylorseer", "cache_interval": 2, "disable_cache_before_step": 1}
    cached = DiffusersEngine(ltx, speed=SpeedConfig.model_validate({"cache": taylor}))
    await cached.load()
    frames, calls = await ltx_render(cached, ltx_job())
    assert calls < stock_calls * 0.75, f"taylorseer on LTX: {calls} passes, stock {stock_calls}"
    assert frames.std() > 5
    again, calls_again = await ltx_render(cached, ltx_job())  # cache state reset between runs
    assert (calls_again, np.array_equal(again, frames)) == (calls, True)

    # FirstBlockCache needs a first and a last block: the one-block demo refuses it by name
    with pytest.raises(EngineError, match=r"speed.cache='first_block' does not apply.*LTXVideoTransformer3DModel"):
        await DiffusersEngine(ltx, speed=SpeedConfig.model_validate({"cache": {"kind": "first_block"}})).load()

    est = memory.estimate(ltx, dtype="bfloat16", speed=SpeedConfig(), workloads={Workload(LTX_W, H, F, True)})
    vae_values = sum(p.numel() for p in stock._text_pipes()[0].vae.state_dict().values())
    assert est.weights["vae"] == vae_values * 2  # LTX's VAE takes the engine's dtype (Wan's stays float32)
    single = memory.estimate(ltx, dtype="bfloat16", speed=SpeedConfig(), workloads={Workload(LTX_W, H, F, False)})
    assert est.activations["transformer"] == 2 * single.activations["transformer"]  # guidance: a batch of two

    mag = DiffusersEngine(ltx, speed=SpeedConfig.model_validate({"cache": {"kind": "mag", "mag_ratios": [1.0] * 4}}))
    await mag.load()
    source = np.full((F, H, LTX_W, 3), 120, np.uint8)
    result = await mag.generate(ltx_job(source_frames=source, strength=0.6), QuietReporter())
    assert result.frames is not None
    assert set(mag.speed._mag_steps.values()) == {STEPS}  # not the stretched schedule's length


async def test_ltx_compile_is_warmed_up_at_startup(demo_models: Path) -> None:
    """compile's warm-up runs through the LTX family's own call (see the Wan test above for aot_eager)."""
    import torch

    counters = torch._dynamo.utils.counters
    torch._dynamo.reset()
    counters.clear()
    engine = DiffusersEngine(
        demo_models / "ltx", speed=SpeedConfig.model_validate({"compile": {"backend": "aot_eager"}})
    )
    engine.workloads = {Workload(LTX_W, H, F, guidance=True)}
    await engine.load()
    blocks = engine._text_pipes()[0].transformer.transformer_blocks
    assert all(getattr(b, "_compiled_call_impl", None) is not None for b in blocks)
    compiled_at_startup = counters["stats"]["unique_graphs"]
    assert compiled_at_startup > 0
    result = await engine.generate(ltx_job(), QuietReporter())
    assert result.frames is not None
    assert result.frames.shape == (F, H, LTX_W, 3)
    assert counters["stats"]["unique_graphs"] == compiled_at_startup, "the first job compiled again"
    torch._dynamo.reset()
