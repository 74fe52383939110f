"""Live previews: while a local model denoises, a small picture of the video so far, every few steps.

Units on the demo engine (the picture is the right size, is the clip and not noise, encodes as WebP),
then a real server: /source links the picture while the task runs and not after, and /web shows it
updating in place in Chromium before the video replaces it.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from browser import Browser, find_chromium
from helpers import missing_dependency
from PIL import Image
from server_util import KeyedServer, start_server
from test_engine import FakeReporter, job

from reelchat.engines import previews
from reelchat.engines.diffusers_engine import DiffusersEngine
from reelchat.media import encode

# ---------------------------------------------------------------------------- the engine's pictures


@pytest.fixture(scope="module")
def engine(demo_models: Path) -> DiffusersEngine:
    return DiffusersEngine(demo_models / "t2v")


def test_projection_maps_latents_to_a_picture_of_the_latent_grid() -> None:
    projection = previews.Projection(
        factors=np.eye(4, 3, dtype=np.float32), bias=np.zeros(3, dtype=np.float32)
    )  # channels 0-2 are R, G, B
    latents = torch.zeros(4, 3, 5, 7)
    latents[0, 1] = 1.0  # the middle frame is red
    picture = projection.picture(latents)
    assert picture is not None
    assert picture.dtype == np.uint8
    assert picture.shape == (5, 7, 3)
    assert picture[..., 0].min() == 255
    assert picture[..., 1].max() == 128
    assert projection.picture(torch.zeros(8, 3, 5, 7)) is None  # another model's latents: no picture


def test_fit_recovers_a_linear_decoder() -> None:
    factors = torch.randn(6, 3) * 0.3
    bias = torch.tensor([0.1, -0.2, 0.05])

    def decode(latents: torch.Tensor) -> torch.Tensor:  # 4x nearest upsampling of a linear map
        rgb = torch.einsum("bcthw,cr->brthw", latents, factors) + bias.view(1, 3, 1, 1, 1)
        return rgb.repeat_interleave(4, dim=3).repeat_interleave(4, dim=4)

    fitted = previews.fit(decode, 6)
    assert np.allclose(fitted.factors, factors.numpy(), atol=1e-4)
    assert np.allclose(fitted.bias, bias.numpy(), atol=1e-4)


def _pooled(frame: np.ndarray, side: int) -> np.ndarray:
    pixels = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    return torch.nn.functional.avg_pool2d(pixels, side)[0].permute(1, 2, 0).numpy()


async def test_a_demo_job_previews_its_own_clip(engine: DiffusersEngine) -> None:
    reporter = FakeReporter(previews=True)
    j = job(steps=10, width=64, height=64)
    result = await engine.generate(j, reporter)
    assert result.frames is not None
    # every 10 // 5 = 2 steps, the first step excepted (nothing to tell x0 from yet) and the last (the video)
    assert len(reporter.pictures) == 4
    assert all(p.shape == (8, 8, 3) and p.dtype == np.uint8 for p in reporter.pictures)
    # the pictures converge on the video's middle frame (seen at the latent grid's size), far from noise
    final = _pooled(result.frames[len(result.frames) // 2], 8)
    errors = [float(np.abs(final - p).mean()) for p in reporter.pictures]
    noise = np.random.default_rng(0).integers(0, 256, (8, 8, 3))
    assert errors[-1] < 3 < float(np.abs(final - noise).mean()) / 10
    assert errors == sorted(errors, reverse=True)
    # a WebP that Pillow opens, at a preview's size for this video (its short side grown to 128 px)
    data = encode.encode_preview(reporter.pictures[-1], encode.thumbnail_size(64, 64, 320))
    image = Image.open(io.BytesIO(data))
    assert image.format == "WEBP"
    assert image.size == (128, 128)


async def test_ltx_previews_its_packed_latents(demo_models: Path) -> None:
    ltx = DiffusersEngine(demo_models / "ltx")
    reporter = FakeReporter(previews=True)
    await ltx.generate(job(steps=10, width=64, height=64, frames=17), reporter)
    assert len(reporter.pictures) == 4
    assert all(p.shape == (16, 16, 3) for p in reporter.pictures)  # its 4x VAE's latent grid
    assert max(float(p.std()) for p in reporter.pictures) > 1  # a picture, not a flat colour


async def test_no_previews_unless_the_reporter_wants_them(engine: DiffusersEngine) -> None:
    reporter = FakeReporter()
    await engine.generate(job(steps=10, width=64, height=64), reporter)
    assert reporter.pictures == []


# ---------------------------------------------------------------------------- a real server and page


@pytest.fixture(scope="module")
def server(make_home: Callable[[str], Path], demo_models: Path) -> Iterator[KeyedServer]:
    # big and slow enough for a few previews (about 0.2 s a step on 2 cores, one preview a second)
    slow = {"steps": 24, "fps": 4, "portrait_sizes": ["256x448"], "landscape_sizes": ["448x256"]}
    s = start_server(make_home, demo_models, "previews", models={"sora-2": slow})
    try:
        yield s
    finally:
        s.proc.stop()


def _wait_done(server: KeyedServer, task_id: str) -> list[str]:
    """Poll /source (by video id too) until the task finishes; returns the preview links seen."""
    seen: list[str] = []
    with server.http() as http:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            view = http.get(f"/source/{task_id}").json()
            if view["status"] == "in_progress" and view["preview_url"] and view["preview_url"] not in seen:
                seen.append(view["preview_url"])
                got = http.get(view["preview_url"])
                if got.status_code == 200:  # (a picture replaced by the next one meanwhile is still served)
                    assert got.headers["content-type"] == "image/webp"
                    assert got.headers["cache-control"] == "no-cache"
                    assert Image.open(io.BytesIO(got.content)).format == "WEBP"
            if view["status"] in ("completed", "failed"):
                return seen
            time.sleep(0.1)
    raise AssertionError("the task did not finish")


@pytest.mark.slow
def test_source_links_the_preview_while_the_task_runs(server: KeyedServer) -> None:
    with server.http() as http:
        created = http.post("/v1/videos", json={"prompt": "a lighthouse at dusk", "model": "sora-2", "seconds": "4"})
        assert created.status_code == 200, created.text
        video = created.json()
    seen = _wait_done(server, video["task_id"])
    assert len(seen) >= 2, seen  # it changed while the task ran
    with server.http() as http:
        for ident in (video["task_id"], video["id"]):  # the video id names the same task
            done = http.get(f"/source/{ident}").json()
            assert done["status"] == "completed"
            assert done["preview_url"] is None
        # the picture is gone with the run
        assert http.get(seen[-1]).status_code == 404


@pytest.mark.slow
def test_page_shows_the_preview_updating_then_the_video(server: KeyedServer) -> None:
    chromium = find_chromium()
    if chromium is None:
        missing_dependency("chromium is not installed (.ci/run installs Debian's chromium)")
    with server.http() as http:
        created = http.post("/v1/videos", json={"prompt": "waves on a beach", "model": "sora-2", "seconds": "4"})
        assert created.status_code == 200, created.text
        task_id = created.json()["task_id"]
    with Browser(chromium) as browser:
        browser.open(f"{server.url}/web/{task_id}")
        shown = "(p => !p.hidden && p.complete && p.naturalWidth > 0 && p.getAttribute('src'))"
        first = browser.wait_for(f"{shown}(document.getElementById('preview'))", timeout=120)
        # the same <img>, a newer picture
        browser.wait_for(
            f"{shown}(document.getElementById('preview')) && document.getElementById('preview').getAttribute('src') "
            f"!== {first!r}",
            timeout=60,
        )
        browser.wait_for("document.getElementById('status').textContent === 'completed'", timeout=120)
        assert browser.eval("document.getElementById('preview').hidden")
        assert browser.eval("document.getElementById('player').getAttribute('src')")
