"""What does delivering OpenAI's sizes cost? The demo model renders at its own tiny sizes; the encoder
scales to the public size. This renders one clip per orientation with the demo model (the built-in
`sora-2`: 10 s at 4 fps, 41 frames, 96x160 / 160x96), then times what the server does with it for each
public size: the mp4 (crop to aspect, swscale, libx264), the webp thumbnail and the jpg spritesheet, all
at the video's size. The native size is the baseline.

    .venv/bin/python bench/encode_sizes.py [--repeat 3] [--seconds 10] [--fps 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from reelchat.engines.base import QuietReporter
from reelchat.engines.demo_model import ensure_demo_pipeline
from reelchat.engines.diffusers_engine import DiffusersEngine
from reelchat.engines.diffusers_spec import DiffusersJob
from reelchat.media import encode


def _render(root: Path, width: int, height: int, frames: int, fps: int) -> tuple[npt.NDArray[np.uint8], float]:
    engine = DiffusersEngine(ensure_demo_pipeline(root, "t2v"))
    job = DiffusersJob(
        prompt="cows and horses dancing", width=width, height=height, frames=frames, fps=fps, steps=4, seed=1
    )
    start = time.perf_counter()
    result = asyncio.run(engine.generate(job, QuietReporter()))
    if result.frames is None:
        raise SystemExit("the demo model returned no frames")
    return result.frames, time.perf_counter() - start


def _time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(clip: npt.NDArray[np.uint8], fps: int, seconds: int, size: tuple[int, int], repeat: int) -> str:
    mp4 = encode.encode_mp4(clip, fps, size=size)
    info = encode.probe_mp4(mp4)
    if (info.width, info.height) != size or abs(info.duration - seconds) > 1e-6:
        raise SystemExit(f"the mp4 is not {size[0]}x{size[1]}, {seconds} s: {info}")
    frame = encode.pick_thumbnail_frame(clip)
    t_mp4 = _time(lambda: encode.encode_mp4(clip, fps, size=size), repeat)
    t_webp = _time(lambda: encode.encode_webp(frame, size=size), repeat)
    t_sheet = _time(lambda: encode.encode_spritesheet(clip, tile_size=size), repeat)
    total = t_mp4 + t_webp + t_sheet
    return f"{t_mp4:7.2f} {t_webp:7.2f} {t_sheet:8.2f} {total:8.2f} {len(mp4) / 1024:8.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--fps", type=int, default=4)
    args = ap.parse_args(argv)
    keep = args.seconds * args.fps
    frames_made = 4 * -(-(keep - 1) // 4) + 1
    cases = [
        ((96, 160), [(96, 160), (720, 1280), (1024, 1792)]),
        ((160, 96), [(160, 96), (1280, 720), (1792, 1024)]),
    ]
    print(f"demo model, {args.seconds} s at {args.fps} fps: {frames_made} frames made, {keep} encoded", end="")
    print(f"; median of {args.repeat}")
    print(f"{'render':>9} {'public':>10} {'mp4 s':>7} {'webp s':>7} {'sheet s':>8} {'total s':>8} {'mp4 KiB':>8}")
    with tempfile.TemporaryDirectory(prefix="reelchat-bench-") as tmp:
        for (rw, rh), publics in cases:
            clip, render_s = _render(Path(tmp), rw, rh, frames_made, args.fps)
            clip = clip[:keep]
            print(f"  (rendering {rw}x{rh} took {render_s:.2f} s)")
            for pw, ph in publics:
                figures = _measure(clip, args.fps, args.seconds, (pw, ph), args.repeat)
                print(f"{rw}x{rh:<5} {pw}x{ph:<5} {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
