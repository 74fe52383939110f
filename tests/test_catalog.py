"""The model catalog by engine kind, and the capabilities the service checks before queuing."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reelchat.api.app import create_app
from reelchat.catalog import CatalogError, DiffusersSpec, UpstreamSpec, load_catalog
from reelchat.domain import InputImage, Orientation, Task, TaskStatus, VideoRequest
from reelchat.engines import images
from reelchat.service.errors import InvalidRequest
from reelchat.service.videos import VideoService
from reelchat.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"
UPSTREAM = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}


def _readme_catalogs() -> list[dict[str, object]]:
    blocks = re.findall(r"```json\n(.*?)```", README.read_text(), re.DOTALL)
    return [json.loads(b) for b in blocks if '"default_seconds"' in b or '"engine"' in b]


def test_readme_catalog_examples_load() -> None:
    examples = _readme_catalogs()
    assert len(examples) >= 2
    for example in examples:
        catalog = load_catalog(models_json=json.dumps(example))
        assert set(example) <= set(catalog)


def test_engine_defaults_to_diffusers_and_picks_the_spec_type() -> None:
    catalog = load_catalog(models_json=json.dumps({"sora-2": {"engine": "upstream", "upstream": UPSTREAM}}))
    assert isinstance(catalog["sora-2-pro"], DiffusersSpec)
    assert catalog["sora-2-pro"].engine == "diffusers"
    up = catalog["sora-2"]
    # switched to upstream, it keeps what it shares with the built-in (sizes, seconds) and drops the rest
    assert isinstance(up, UpstreamSpec)
    assert up.seconds == [10]
    assert up.upstream.model == "m"


def test_catalog_errors_stay_errors() -> None:
    with pytest.raises(CatalogError):
        load_catalog(models_json=json.dumps({"sora-2": {"engine": "upstream"}}))  # no upstream section
    with pytest.raises(CatalogError):
        load_catalog(models_json=json.dumps({"sora-2": {"engine": "nope"}}))
    with pytest.raises(CatalogError):
        load_catalog(models_json=json.dumps({"sora-2": {"stepz": 3}}))  # a field no engine kind has


def test_capabilities_by_kind() -> None:
    catalog = load_catalog(
        models_json=json.dumps(
            {
                "t2v-only": {"i2v_pipeline": None, **_shape()},
                "ref-only": {"engine": "upstream", "upstream": {**UPSTREAM, "supports_remix": False}, **_shape()},
                "bare": {"engine": "upstream", "upstream": {**UPSTREAM, **_off()}, **_shape()},
            }
        )
    )
    caps = {name: spec.capabilities for name, spec in catalog.items()}
    assert caps["sora-2"].image_input
    assert caps["sora-2"].remix
    assert caps["sora-2"].text_to_video
    assert not caps["t2v-only"].image_input
    assert caps["t2v-only"].remix
    assert caps["ref-only"].remix
    assert caps["ref-only"].image_input
    assert not caps["bare"].remix
    assert not caps["bare"].image_input
    assert caps["bare"].text_to_video


# ---- the service refuses what a model can't do, before queuing ------------------------------------


def _shape() -> dict[str, object]:
    return {
        "seconds": [4],
        "default_seconds": 4,
        "portrait_sizes": ["96x160"],
        "landscape_sizes": ["160x96"],
        "fps": 4,
        "steps": 1,
    }


def _off() -> dict[str, bool]:
    return {"supports_remix": False, "supports_reference": False}


@pytest.fixture
async def service(make_home: Callable[[str], Path]) -> AsyncIterator[VideoService]:
    catalog = {
        "full": {"engine": "upstream", "upstream": UPSTREAM, **_shape()},
        "bare": {"engine": "upstream", "upstream": {**UPSTREAM, **_off()}, **_shape()},
    }
    app = create_app(Settings(home=make_home("capabilities"), models_json=json.dumps(catalog)))
    async with app.router.lifespan_context(app):
        yield app.state.reelchat.service


def _finished(model: str) -> Task:
    return Task(
        id="task_source",
        video_id="video_source",
        sid="s_" + "0" * 32,
        tenant="t",
        model=model,
        prompt="a fox",
        engine_prompt="a fox",
        orientation=Orientation.PORTRAIT,
        seconds=4,
        size="96x160",
        width=96,
        height=160,
        fps=4,
        frames=17,
        steps=1,
        seed=1,
        status=TaskStatus.COMPLETED,
        created_at=datetime.now(UTC),
    )


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 20, 20)).save(out, format="PNG")
    return out.getvalue()


async def test_remix_by_a_model_that_cannot_remix_is_refused_before_queuing(service: VideoService) -> None:
    with pytest.raises(InvalidRequest) as info:
        await service.prepare("t", VideoRequest(model="bare", prompt="at night"), source=_finished("full"))
    assert info.value.code == "unsupported_value"
    assert info.value.param == "model"
    assert "bare can't modify an existing video" in str(info.value)
    assert service.executor.pending() == 0
    assert await service.store.counts.unfinished_count("t") == 0
    # a model that can remix takes the same request
    task = await service.prepare("t", VideoRequest(model="full", prompt="at night"), source=_finished("bare"))
    assert task.remixed_from == "task_source"


async def test_image_to_a_model_without_image_input_is_refused(service: VideoService) -> None:
    request = VideoRequest(model="bare", prompt="a fox", image=InputImage(_png(), "image/png"))
    with pytest.raises(InvalidRequest) as info:
        await service.prepare("t", request)
    assert info.value.code == "unsupported_value"
    assert info.value.param == "input_reference"
    full = await service.prepare("t", VideoRequest(model="full", prompt="a fox", image=InputImage(_png(), "image/png")))
    assert full.has_image


# ---- one image fit for both engines --------------------------------------------------------------


def test_fit_image_applies_exif_orientation_and_crops_without_stretching() -> None:
    # stored landscape (left half red, right half blue) with "rotate 90° clockwise to view" (6)
    stored = np.zeros((40, 80, 3), np.uint8)
    stored[:, :40] = (255, 0, 0)
    stored[:, 40:] = (0, 0, 255)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes(), quality=95)
    fitted = np.asarray(images.fit_image(out.getvalue(), 40, 80))
    assert fitted.shape == (80, 40, 3)  # upright: portrait, filled without stretching
    top, bottom = fitted[5, 20].astype(int), fitted[-5, 20].astype(int)
    assert top[0] > 200
    assert top[2] < 60
    assert bottom[2] > 200
    assert bottom[0] < 60
