"""What live previews cost a job: the same generations with and without them, as a worker runs them.

Runs the demo model (or `--pipeline DIR`, a real checkpoint) through the real `TaskReporter`, with its
flush loop writing progress to a SQLite store and (with previews) each WebP to a local media directory,
alternating runs with and without previews so that drift in the machine's speed hits both alike. Prints
the median job time of each, the overhead (the issue's budget: under 3%), the pictures written, and the
one-off cost of fitting the projection at load.

    .venv/bin/python bench/previews.py [--runs 5] [--size 256x448] [--frames 17] [--steps 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from reelchat.domain import Orientation, Task
from reelchat.engines import previews, step_callback
from reelchat.engines.demo_model import ensure_demo_pipeline
from reelchat.engines.diffusers_engine import DiffusersEngine
from reelchat.engines.diffusers_spec import DiffusersJob
from reelchat.ids import new_sid, new_task_id, new_video_id
from reelchat.media import encode
from reelchat.media.storage import LocalStorage
from reelchat.service.events import LocalEventBus
from reelchat.service.reporter import PREVIEW_MAX_SIDE, TaskReporter
from reelchat.store.tasks import Store


class _Clock:
    """Seconds spent in the preview code itself: the engine thread's taps, the flush loop's writes. Unlike
    the job times, these do not drown in the machine's noise."""

    def __init__(self) -> None:
        self.tap_s = 0.0
        self.write_s = 0.0

    def install(self) -> None:
        tap_step = step_callback.PreviewTap.step
        write = TaskReporter.write_preview
        clock = self

        def timed_step(tap: step_callback.PreviewTap, *args: object) -> None:
            t = time.perf_counter()
            try:
                tap_step(tap, *args)  # type: ignore[arg-type]
            finally:
                clock.tap_s += time.perf_counter() - t

        async def timed_write(reporter: TaskReporter) -> None:
            t = time.perf_counter()
            try:
                await write(reporter)
            finally:
                clock.write_s += time.perf_counter() - t

        step_callback.PreviewTap.step = timed_step  # type: ignore[method-assign,assignment]
        TaskReporter.write_preview = timed_write  # type: ignore[method-assign,assignment]


def _task(job: DiffusersJob) -> Task:
    return Task(
        id=new_task_id(),
        video_id=new_video_id(),
        sid=new_sid(),
        tenant="bench",
        model="bench",
        prompt=job.prompt,
        engine_prompt=job.prompt,
        orientation=Orientation.PORTRAIT if job.height >= job.width else Orientation.LANDSCAPE,
        seconds=1,
        size=f"{job.width}x{job.height}",
        width=job.width,
        height=job.height,
        fps=job.fps,
        frames=job.frames,
        steps=job.steps,
        seed=job.seed,
        created_at=datetime.now(UTC),
    )


async def _run(
    engine: DiffusersEngine, store: Store, storage: LocalStorage, job: DiffusersJob, *, with_previews: bool
) -> tuple[float, int]:
    """One job as a worker runs it: seconds from start to frames, and the previews written."""
    task = _task(job)
    await store.insert_task(task)
    claimed = await store.claim(task.id)
    assert claimed is not None  # noqa: S101  (a fresh task)
    loop = asyncio.get_running_loop()
    reporter = TaskReporter(store, LocalEventBus(), claimed, loop, set(), previews=storage if with_previews else None)
    start = time.perf_counter()
    async with reporter.flushing():
        await engine.generate(job, reporter)
    elapsed = time.perf_counter() - start
    await reporter.flush()
    written = (await store.get_task(task.id)) or claimed
    await storage.delete(claimed.preview_name)
    return elapsed, written.preview or 0


def _picture_costs(engine: DiffusersEngine, job: DiffusersJob) -> tuple[float, float]:
    """Milliseconds for one projection (engine thread) and one WebP encode (the flush loop's thread)."""
    import torch

    projection = engine._projection
    assert projection is not None  # noqa: S101  (fitted at load)
    latents = torch.randn(projection.channels, 5, job.height // 8, job.width // 8)
    t = time.perf_counter()
    for _ in range(20):
        picture = projection.picture(latents)
    project_ms = (time.perf_counter() - t) / 20 * 1000
    assert picture is not None  # noqa: S101
    size = encode.thumbnail_size(job.width, job.height, PREVIEW_MAX_SIDE)
    sample: npt.NDArray[np.uint8] = picture
    t = time.perf_counter()
    for _ in range(20):
        encode.encode_preview(sample, size)
    return project_ms, (time.perf_counter() - t) / 20 * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", type=Path, help="a diffusers checkpoint (default: the demo model)")
    parser.add_argument("--runs", type=int, default=5, help="jobs with and without previews, each")
    parser.add_argument("--size", default="256x448")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="reelchat-bench-previews-") as tmp:
        root = Path(tmp)
        pipeline = args.pipeline or ensure_demo_pipeline(root / "demo", "t2v")
        engine = DiffusersEngine(pipeline)
        t = time.perf_counter()
        await engine.load()
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        pipe = engine._text_pipes()[0]
        engine._fit_projection(pipe)
        fit_s = time.perf_counter() - t
        store = Store(f"sqlite+aiosqlite:///{root / 'bench.db'}")
        await store.migrate()
        storage = LocalStorage(root / "media")
        job = DiffusersJob(
            prompt="a lighthouse at dusk",
            width=width,
            height=height,
            frames=args.frames,
            fps=8,
            steps=args.steps,
            seed=1,
        )
        await _run(engine, store, storage, job, with_previews=False)  # warm-up: first-call costs hit neither
        clock = _Clock()
        clock.install()
        plain: list[float] = []
        shown: list[float] = []
        pictures: list[int] = []
        for _ in range(args.runs):
            plain.append((await _run(engine, store, storage, job, with_previews=False))[0])
            seconds, count = await _run(engine, store, storage, job, with_previews=True)
            shown.append(seconds)
            pictures.append(count)
        await store.close()
        project_ms, encode_ms = _picture_costs(engine, job)
    without, with_ = statistics.median(plain), statistics.median(shown)
    shape = f"{width}x{height}, {args.frames} frames, {args.steps} steps"
    print(f"pipeline {pipeline.name}: {shape}, {args.runs} runs each")
    print(f"  load {load_s:.2f} s, of which fitting the preview projection {fit_s * 1000:.0f} ms (once)")
    print(f"  every {previews.every(args.steps)} steps a picture; written per job: {pictures} (at most 1/s)")
    print(f"  without previews: median {without:.3f} s  (runs: {', '.join(f'{v:.3f}' for v in plain)})")
    print(f"  with previews:    median {with_:.3f} s  (runs: {', '.join(f'{v:.3f}' for v in shown)})")
    print(f"  overhead: {100 * (with_ - without) / without:+.2f}% of the job (budget: < 3%)")
    spent = sum(shown)
    print(
        f"  in the preview code: engine thread {1000 * clock.tap_s / args.runs:.1f} ms a job "
        f"({100 * clock.tap_s / spent:.3f}%), WebP + store {1000 * clock.write_s / args.runs:.1f} ms a job "
        f"({100 * clock.write_s / spent:.3f}%, off the engine's thread)"
    )
    print(f"  per picture: projection {project_ms:.3f} ms, WebP encode {encode_ms:.3f} ms")


if __name__ == "__main__":
    asyncio.run(main())
