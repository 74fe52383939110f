"""Engines by catalog entry: local models built and loaded at startup (`preload`), others on first
use; shared between entries that name the same model."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from ..catalog import DEMO_I2V_PIPELINE, DEMO_PIPELINE, ModelSpec
from .base import Engine

log = logging.getLogger("reelchat.engines")


class EngineRegistry:
    def __init__(self, models_dir: Path, *, device: str | None = None, dtype: str | None = None) -> None:
        self.models_dir = models_dir
        self.device = device
        self.dtype = dtype
        self._engines: dict[tuple[str, ...], Engine] = {}
        self._lock = asyncio.Lock()

    def _key(self, spec: ModelSpec) -> tuple[str, ...]:
        if spec.engine == "upstream":
            assert spec.upstream is not None  # noqa: S101  (narrows a type; never input validation)
            return ("upstream", spec.name)
        return ("diffusers", spec.pipeline, spec.i2v_pipeline or "")

    async def _resolve_dir(self, value: str) -> Path:
        if value in (DEMO_PIPELINE, DEMO_I2V_PIPELINE):
            from .demo_model import ensure_demo_pipeline

            kind: Literal["t2v", "i2v"] = "i2v" if value == DEMO_I2V_PIPELINE else "t2v"
            return await asyncio.to_thread(ensure_demo_pipeline, self.models_dir / "demo", kind)
        return Path(value).expanduser()  # noqa: ASYNC240  (reads $HOME only, no disk I/O)

    async def get(self, spec: ModelSpec) -> Engine:
        key = self._key(spec)
        async with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = await self._build(spec)
                self._engines[key] = engine
            return engine

    async def preload(self, specs: Iterable[ModelSpec]) -> None:
        """Build and load every local model now, so no task waits (claimed) through a slow load.
        A model that fails to load is logged; its tasks fail with the reason when they run."""
        for spec in specs:
            if spec.engine != "diffusers" or self._key(spec) in self._engines:
                continue
            started = time.monotonic()
            log.info("loading model %s (%s)...", spec.name, spec.pipeline)
            try:
                engine = await self.get(spec)
                await engine.load()
            except Exception:
                log.exception("could not load model %s", spec.name)
                continue
            log.info("model %s loaded in %.1f s", spec.name, time.monotonic() - started)

    async def _build(self, spec: ModelSpec) -> Engine:
        if spec.engine == "upstream":
            from .upstream import UpstreamEngine

            assert spec.upstream is not None  # noqa: S101  (narrows a type; never input validation)
            return UpstreamEngine(spec.upstream)
        from .diffusers_engine import DiffusersEngine

        t2v = await self._resolve_dir(spec.pipeline)
        i2v = await self._resolve_dir(spec.i2v_pipeline) if spec.i2v_pipeline else None
        # the constructor imports torch and probes CUDA: seconds, off the event loop
        return await asyncio.to_thread(DiffusersEngine, t2v, i2v_pipeline_dir=i2v, device=self.device, dtype=self.dtype)

    def supports_image(self, spec: ModelSpec) -> bool:
        if spec.engine == "upstream":
            return spec.upstream is not None and spec.upstream.supports_reference
        return spec.i2v_pipeline is not None

    async def close(self) -> None:
        for engine in self._engines.values():
            await engine.close()
        self._engines.clear()
