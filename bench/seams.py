"""How visible the seams of a clip made in several windows are, with and without the cross-fade.

Runs the demo model (CPU) on clips longer than a small `window_frames`, as fresh clips and as
extensions, and prints, per clip, the windows and the seam ratio: the largest frame-to-frame change
at a seam over the 95th percentile of the changes inside the windows (engines/windows.seam_ratio; the
tests require <= 3 with blending).

    .venv/bin/python bench/seams.py [--seeds 3] [--window 17]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
from pathlib import Path

import numpy as np

from reelchat.engines import windows
from reelchat.engines.base import QuietReporter
from reelchat.engines.demo_model import ensure_demo_pipeline
from reelchat.engines.diffusers_engine import DiffusersEngine
from reelchat.engines.diffusers_spec import DiffusersJob


def _mismatch(blended: np.ndarray, cut: np.ndarray, plan: list[windows.Window]) -> float:
    """How far a window's re-drawn overlap is from the frames it re-draws (mean abs, 0..255): the blend
    moves each shared frame by w * (new - old) off the old one, so (blended - cut) / w recovers it."""
    errors = []
    for w in plan:
        if w.overlap:
            weights = np.arange(1, w.overlap + 1, dtype=np.float64) / (w.overlap + 1)
            span = slice(w.start, w.start + w.overlap)
            moved = np.abs(blended[span].astype(np.float64) - cut[span].astype(np.float64)).mean(axis=(1, 2, 3))
            errors.append(float((moved / weights).mean()))
    return float(np.mean(errors)) if errors else 0.0


async def _independent(engine: DiffusersEngine, job: DiffusersJob, plan: list[windows.Window]) -> tuple[float, ...]:
    """The same windows rendered unconditioned (each its own seed), joined: what the pinning buys."""
    clips: dict[bool, np.ndarray | None] = {True: job.source_frames if job.extend else None}
    clips[False] = clips[True]
    for i, w in enumerate(plan):
        part = dataclasses.replace(job, frames=w.length, seed=job.seed + i, extend=False, source_frames=None)
        out = await engine.generate(dataclasses.replace(part, window_frames=None), QuietReporter())
        assert out.frames is not None  # noqa: S101
        for blend in (True, False):
            clips[blend] = windows.join(clips[blend], out.frames, w, blend=blend)
    blended, cut = clips[True], clips[False]
    assert blended is not None  # noqa: S101
    assert cut is not None  # noqa: S101
    seams = windows.seams_of(plan)
    return windows.seam_ratio(blended, seams), windows.seam_ratio(cut, seams), _mismatch(blended, cut, plan)


async def _run(engine: DiffusersEngine, job: DiffusersJob) -> tuple[int, float, float, float, float, float, float]:
    blended = await engine.generate(job, QuietReporter())
    cut = await engine.generate(dataclasses.replace(job, blend_seams=False), QuietReporter())
    assert blended.frames is not None  # noqa: S101
    assert cut.frames is not None  # noqa: S101
    prefix = 0 if job.source_frames is None else len(job.source_frames)
    window = job.window_frames or job.frames + windows.overlap_for(4)
    plan = windows.plan(prefix + job.frames, window, 4, prefix=prefix)
    seams = windows.seams_of(plan)
    indep_blend, indep_cut, indep_mismatch = await _independent(engine, job, plan)
    return (
        len(plan),
        windows.seam_ratio(blended.frames, seams),
        windows.seam_ratio(cut.frames, seams),
        indep_blend,
        indep_cut,
        _mismatch(blended.frames, cut.frames, plan),
        indep_mismatch,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--window", type=int, default=17, help="window_frames (4k+1)")
    parser.add_argument("--frames", type=int, default=41, help="frames of a fresh clip (sora-2: 10 s at 4 fps)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = DiffusersEngine(ensure_demo_pipeline(Path(tmp), "t2v"))
        rows: list[tuple[str, int, float, float, float, float, float, float]] = []
        for seed in range(args.seeds):
            base = DiffusersJob(
                prompt="cows and horses dancing", width=96, height=160, frames=args.frames, fps=4, steps=4, seed=seed
            )
            fresh = dataclasses.replace(base, window_frames=args.window)
            rows.append((f"fresh seed={seed}", *await _run(engine, fresh)))
            source = await engine.generate(base, QuietReporter())
            ext = dataclasses.replace(
                base, prompt="the horse jumps", frames=16, source_frames=source.frames, extend=True
            )
            rows.append((f"extend seed={seed}", *await _run(engine, ext)))
        print("seam ratio: largest step at a seam / p95 of steps inside windows (target <= 3);")
        print(
            "overlap error: mean abs difference (0..255) between a window's re-drawn overlap and the frames it re-draws"
        )
        columns = ("pinned+blend", "pinned,cut", "indep+blend", "indep,cut", "err pinned", "err indep")
        print(f"{'clip':<16} {'windows':>7} " + " ".join(f"{c:>12}" for c in columns))
        for name, n, *figures in rows:
            print(f"{name:<16} {n:>7} " + " ".join(f"{f:>12.2f}" for f in figures))
        medians = [statistics.median(float(r[2 + i]) for r in rows) for i in range(len(columns))]
        print("median: " + ", ".join(f"{c} {m:.2f}" for c, m in zip(columns, medians, strict=True)))


if __name__ == "__main__":
    asyncio.run(main())
