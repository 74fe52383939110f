"""Engines by catalog entry: local models built and loaded at startup (`preload`), others on first
use; shared between entries that name the same model. `prepare` hands the runner a job its engine
has made ready, so the runner never asks which kind of engine it is."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from .base import Engine, EngineError, JobRequest, PreparedJob
from .diffusers_spec import DEMO_I2V_PIPELINE, DEMO_LTX_PIPELINE, DEMO_PIPELINE, DiffusersSpec
from .speed_spec import workloads
from .upstream_spec import UpstreamSpec

if TYPE_CHECKING:
    from .diffusers_engine import DiffusersEngine
    from .upstream_engine import UpstreamEngine

log = logging.getLogger("reelchat.engines")


class EngineRegistry:
    def __init__(
        self,
        models_dir: Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        device_memory_gb: float | None = None,
    ) -> None:
        self.models_dir = models_dir
        self.device = device
        self.dtype = dtype
        self.device_memory_gb = device_memory_gb
        self._local: dict[tuple[str, str, str], DiffusersEngine] = {}
        self._upstream: dict[str, UpstreamEngine] = {}
        self._lock = asyncio.Lock()

    async def prepare(self, spec: DiffusersSpec | UpstreamSpec, request: JobRequest) -> PreparedJob:
        """The job for `request`, made by `spec`'s engine (built now if it wasn't), ready to run."""
        if isinstance(spec, UpstreamSpec):
            upstream = await self._get_upstream(spec)
            job = await upstream.prepare(spec, request)
            return PreparedJob(functools.partial(upstream.generate, job), local=False)
        local = await self._get_local(spec)
        local_job = await local.prepare(spec, request)
        return PreparedJob(functools.partial(local.generate, local_job), local=True)

    async def preload(self, specs: Iterable[DiffusersSpec | UpstreamSpec]) -> None:
        """Build and load every local model now, so no task waits (claimed) through a slow load.
        A model that fails to load is logged; its tasks fail with the reason when they run."""
        local = [spec for spec in specs if isinstance(spec, DiffusersSpec)]
        for spec in local:  # every entry's shapes first: the memory check and compile's warm-up cover them all
            with contextlib.suppress(Exception):  # reported by the loop below
                await self._get_local(spec)
        loaded: set[tuple[str, str, str]] = set()
        for spec in local:
            if _local_key(spec) in loaded:
                continue
            loaded.add(_local_key(spec))
            started = time.monotonic()
            log.info("loading model %s (%s)...", spec.name, spec.pipeline)
            try:
                engine = await self._get_local(spec)
                await engine.load()
            except EngineError as e:  # a reason worth reading as is (too little memory, not pulled yet): no traceback
                log.error("could not load model %s: %s", spec.name, e)
                continue
            except Exception:
                log.exception("could not load model %s", spec.name)
                continue
            log.info(
                "model %s loaded in %.1f s on %s; speed: %s",
                spec.name,
                time.monotonic() - started,
                engine.device,
                spec.speed.describe(),
            )

    async def _get_local(self, spec: DiffusersSpec) -> DiffusersEngine:
        key = _local_key(spec)
        async with self._lock:
            engine = self._local.get(key)
            if engine is None:
                from .diffusers_engine import DiffusersEngine

                t2v = await self._resolve_dir(spec.name, spec.pipeline)
                i2v = await self._resolve_dir(spec.name, spec.i2v_pipeline) if spec.i2v_pipeline else None
                # the constructor imports torch and probes CUDA: seconds, off the event loop
                engine = await asyncio.to_thread(
                    functools.partial(
                        DiffusersEngine,
                        t2v,
                        i2v_pipeline_dir=i2v,
                        device=self.device,
                        dtype=self.dtype,
                        speed=spec.speed,
                        memory_gb=self.device_memory_gb,
                    )
                )
                self._local[key] = engine
            engine.workloads |= workloads(spec, spec.guidance_scale)
            return engine

    async def _get_upstream(self, spec: UpstreamSpec) -> UpstreamEngine:
        async with self._lock:
            engine = self._upstream.get(spec.name)
            if engine is None:
                from .upstream_engine import UpstreamEngine

                engine = self._upstream[spec.name] = UpstreamEngine(spec.upstream)
            return engine

    async def _resolve_dir(self, model: str, value: str) -> Path:
        """A catalog `pipeline` value as a checkpoint directory: a demo (built on first use), a Hugging
        Face repo id (from the local cache only: `reelchat pull` fetches it), or a directory."""
        if value in (DEMO_PIPELINE, DEMO_I2V_PIPELINE, DEMO_LTX_PIPELINE):
            from .demo_model import ensure_demo_pipeline, needs_build

            kinds: dict[str, Literal["t2v", "i2v", "ltx"]] = {
                DEMO_PIPELINE: "t2v",
                DEMO_I2V_PIPELINE: "i2v",
                DEMO_LTX_PIPELINE: "ltx",
            }
            root, kind = self.models_dir / "demo", kinds[value]
            if not await asyncio.to_thread(needs_build, root, kind):
                return root / kind
            started = time.monotonic()
            log.info(
                "building the demo model %r for %s in %s (first start only; random weights, no download)...",
                kind,
                model,
                root / kind,
            )
            path = await asyncio.to_thread(ensure_demo_pipeline, root, kind)
            log.info("demo model %r built in %.1f s", kind, time.monotonic() - started)
            return path
        from . import hub

        if await asyncio.to_thread(hub.is_repo_id, value):
            snapshot = await asyncio.to_thread(hub.cached_snapshot, value)
            if snapshot is None:
                raise EngineError(hub.missing_message(model, value), "engine_unavailable")
            return snapshot
        return Path(value).expanduser()  # noqa: ASYNC240  (reads $HOME only, no disk I/O)

    async def close(self) -> None:
        engines: list[Engine] = [*self._local.values(), *self._upstream.values()]
        self._local.clear()
        self._upstream.clear()
        for engine in engines:
            await engine.close()


def _local_key(spec: DiffusersSpec) -> tuple[str, str, str]:
    """Entries naming the same pipelines with the same speed switches share one engine (one copy of the
    weights); different switches (a LoRA fused into the weights, say) need their own."""
    return (spec.pipeline, spec.i2v_pipeline or "", spec.speed.key())
