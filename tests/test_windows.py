"""Clips longer than the model's window, on the demo model (CPU): made window by window, each
conditioned on the end of the one before; and extensions, which continue a finished video."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from reelchat.catalog import CatalogError, load_catalog
from reelchat.engines import windows
from reelchat.engines.base import EngineError, QuietReporter
from reelchat.engines.demo_model import ensure_demo_pipeline
from reelchat.engines.diffusers_engine import DiffusersEngine
from reelchat.engines.diffusers_spec import DiffusersJob, DiffusersSpec

W, H = 48, 32


class Reporter(QuietReporter):
    def __init__(self) -> None:
        self.values: list[int] = []

    def progress(self, percent: int) -> None:
        self.values.append(percent)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> DiffusersEngine:
    root: Path = tmp_path_factory.mktemp("demo")
    return DiffusersEngine(ensure_demo_pipeline(root, "t2v"))


def job(**kw: object) -> DiffusersJob:
    base = DiffusersJob(prompt="cows and horses dancing", width=W, height=H, frames=41, fps=4, steps=3, seed=3)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- planning (pure)


def test_plan_cuts_a_clip_into_overlapping_windows() -> None:
    plan = windows.plan(41, 17, 4)
    assert plan == [windows.Window(0, 17, 0), windows.Window(12, 17, 5), windows.Window(24, 17, 5)]
    assert plan[-1].start + plan[-1].length == 41
    # a clip within the window is one pass; a last window may be shorter, still k*4+1
    assert windows.plan(17, 17, 4) == [windows.Window(0, 17, 0)]
    assert [w.length for w in windows.plan(33, 17, 4)] == [17, 17, 9]
    # an extension starts `overlap` frames before the end of the video it continues
    assert windows.plan(41 + 16, 17, 4, prefix=41) == [windows.Window(36, 17, 5), windows.Window(48, 9, 5)]
    # a source shorter than the overlap goes on from its last frame; later windows share the full overlap
    assert windows.plan(2 + 20, 17, 4, prefix=2) == [windows.Window(1, 17, 1), windows.Window(13, 9, 5)]
    assert windows.plan(1 + 4, 17, 4, prefix=1) == [windows.Window(0, 5, 1)]


@pytest.mark.parametrize("window", [16, 5, 1])
def test_plan_refuses_windows_a_model_cannot_render(window: int) -> None:
    with pytest.raises(ValueError, match="window_frames"):
        windows.plan(41, window, 4)


def test_catalog_window_frames_default_and_check() -> None:
    catalog = load_catalog()
    spec = catalog["sora-2"]
    assert isinstance(spec, DiffusersSpec)
    assert spec.window_frames is None
    assert spec.windows_for(spec.frames_for(10)) == 1  # unset: nothing changes
    windowed = load_catalog(models_json='{"sora-2": {"window_frames": 17}}')["sora-2"]
    assert isinstance(windowed, DiffusersSpec)
    assert windowed.windows_for(41) == 3
    with pytest.raises(CatalogError, match="window_frames"):
        load_catalog(models_json='{"sora-2": {"window_frames": 16}}')


def test_join_cross_fades_across_the_overlap() -> None:
    old = np.zeros((9, 2, 2, 3), np.uint8)
    new = np.full((9, 2, 2, 3), 240, np.uint8)
    w = windows.Window(4, 9, 5)
    blended = windows.join(old, new, w)
    cut = windows.join(old, new, w, blend=False)
    assert len(blended) == len(cut) == 13
    means = blended.reshape(13, -1).mean(axis=1)
    assert list(means[:4]) == [0, 0, 0, 0]
    assert list(means[9:]) == [240] * 4
    assert np.all(np.diff(means[3:10]) == 40)  # 1/6 .. 5/6 of the way: even steps, no jump
    assert np.diff(cut.reshape(13, -1).mean(axis=1)).max() == 240  # the hard cut: one step carries it all
    assert windows.seam_ratio(blended, windows.seams_of([w])) < windows.seam_ratio(cut, windows.seams_of([w]))


# ---------------------------------------------------------------------------- the demo model


async def test_long_clip_is_made_in_windows(engine: DiffusersEngine) -> None:
    reporter = Reporter()
    out = await engine.generate(job(window_frames=17), reporter)
    assert out.frames is not None
    frames = out.frames
    assert frames.shape == (41, H, W, 3)  # 10 s at 4 fps, from three 17-frame passes
    plan = windows.plan(41, 17, 4)
    assert len(plan) == 3
    ratio = windows.seam_ratio(frames, windows.seams_of(plan))
    assert 0 < ratio <= 3.0, ratio
    # progress runs once from 0 to 99 across all windows, never back
    assert reporter.values == sorted(reporter.values)
    assert reporter.values[-1] == 99
    assert reporter.values[0] < 34  # the first window's steps are a third of the job
    assert len(reporter.values) == 3 * 3  # every step of every window reported


async def test_each_window_continues_the_one_before(engine: DiffusersEngine) -> None:
    """The overlap is re-drawn, not invented: with the cross-fade off, the frames after the first
    window's end still follow on from it as closely as frames inside a window follow each other."""
    cut = await engine.generate(job(window_frames=17, blend_seams=False), Reporter())
    one = await engine.generate(job(frames=17), Reporter())
    assert cut.frames is not None
    assert one.frames is not None
    assert np.array_equal(cut.frames[:17], one.frames)  # the first window is the plain 17-frame clip
    ratio = windows.seam_ratio(cut.frames, windows.seams_of(windows.plan(41, 17, 4)))
    assert ratio <= 3.0, ratio


async def test_extension_keeps_its_source_and_adds_frames(engine: DiffusersEngine) -> None:
    source = await engine.generate(job(frames=17), Reporter())
    assert source.frames is not None
    reporter = Reporter()
    out = await engine.generate(
        job(prompt="the horse jumps", frames=16, source_frames=source.frames, extend=True, window_frames=13), reporter
    )
    assert out.frames is not None
    assert out.prefix is not None
    overlap = windows.overlap_for(4)
    # the source comes through unchanged (as its own frames, at its own size), bar the blend over its last
    # `overlap` frames, which open the engine's frames
    assert np.array_equal(out.prefix, source.frames[: 17 - overlap])
    clip = np.concatenate([out.prefix, out.frames])
    assert clip.shape == (17 + 16, H, W, 3)
    plan = windows.plan(33, 13, 4, prefix=17)
    assert len(plan) == 2
    assert windows.seam_ratio(clip, windows.seams_of(plan)) <= 3.0
    assert reporter.values == sorted(reporter.values)


async def test_extension_needs_whole_latent_frames(engine: DiffusersEngine) -> None:
    src = np.zeros((9, H, W, 3), np.uint8)
    with pytest.raises(EngineError, match="4k frames"):
        await engine.generate(job(frames=6, source_frames=src, extend=True), Reporter())
