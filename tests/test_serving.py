"""The serving layer's contracts: the rules in `plan_task`, input images, `/healthz`, and the layering.

`plan_task` is pure, so its rules are checked without a server; `/healthz` is checked against a real
PostgreSQL database that is dropped under the running app.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pg import fresh_database
from PIL import Image
from sqlalchemy.engine import make_url

import reelchat.api
from reelchat.api.app import create_app
from reelchat.catalog import load_catalog
from reelchat.domain import InputImage, Orientation, Task, TaskStatus, VideoRequest
from reelchat.service.errors import InvalidRequest
from reelchat.service.inputs import ImageInputs
from reelchat.service.planning import plan_task
from reelchat.settings import Settings

SPEC = load_catalog(None, None)["sora-2"]


def _source() -> Task:
    return Task(
        id="task_01hzzzzzzzzzzzzzzzzzzzzzzz",
        video_id="video_" + "0" * 32,
        sid="s_" + "1" * 32,
        tenant="alice",
        model="sora-2",
        prompt="a cow",
        engine_prompt="a cow",
        orientation=Orientation.LANDSCAPE,
        seconds=SPEC.default_seconds,
        size=SPEC.default_size(Orientation.LANDSCAPE),
        width=160,
        height=96,
        fps=SPEC.fps,
        frames=SPEC.frames_for(SPEC.default_seconds),
        steps=SPEC.steps,
        seed=1234,
        origin="chat",
        status=TaskStatus.COMPLETED,
        created_at=datetime.now(UTC),
    )


def test_a_remix_keeps_its_sources_size_and_seed_and_combines_the_prompts() -> None:
    task = plan_task(SPEC, "alice", VideoRequest("sora-2", "now with a halo"), source=_source(), origin="chat")
    assert (task.orientation, task.size, task.seed) == (Orientation.LANDSCAPE, _source().size, 1234)
    assert task.remixed_from == _source().id
    assert task.engine_prompt == "a cow. now with a halo"
    assert task.prompt == "now with a halo"
    assert not task.has_image


@pytest.mark.parametrize(
    ("req", "param", "code"),
    [
        (VideoRequest("sora-2", "x", seconds=7), "seconds", "unsupported_value"),
        (VideoRequest("sora-2", "x", size="1x1"), "size", "unsupported_value"),
        (VideoRequest("sora-2", "   "), "prompt", "missing_prompt"),
        (VideoRequest("sora-2", "x" * 40_000), "prompt", "prompt_too_long"),
        (VideoRequest("sora-2", "\ud800 a cat"), "prompt", "invalid_value"),  # JSON's "\ud800": no UTF-8 for it
    ],
)
def test_plan_task_refuses_what_the_model_does_not_allow(req: VideoRequest, param: str, code: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        plan_task(SPEC, "alice", req, source=None, origin="videos")
    assert (e.value.param, e.value.code) == (param, code)


def test_an_image_needs_a_model_that_takes_one_and_no_source_video() -> None:
    req = VideoRequest("sora-2", "x", image_url="https://example.com/a.png")
    with pytest.raises(InvalidRequest) as e:
        plan_task(SPEC, "alice", req, source=_source(), origin="chat")
    assert e.value.code == "unsupported_combination"
    text_only = SPEC.model_copy(update={"i2v_pipeline": None})
    with pytest.raises(InvalidRequest) as e:
        plan_task(text_only, "alice", req, source=None, origin="chat")
    assert e.value.code == "unsupported_value"
    assert e.value.param == "input_reference"
    assert plan_task(SPEC, "alice", req, source=None, origin="chat").has_image


@pytest.mark.parametrize(("fmt", "ext"), [("GIF", "gif"), ("BMP", "bmp"), ("PNG", "png"), ("JPEG", "jpg")])
async def test_an_input_image_is_stored_under_the_extension_of_what_it_is(fmt: str, ext: str, tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, format=fmt)
    loaded = await ImageInputs(Settings(home=tmp_path)).load(
        VideoRequest("sora-2", "x", image=InputImage(buf.getvalue(), "application/octet-stream"))
    )
    assert loaded.name.endswith("." + ext)


def test_routes_never_reach_past_the_service() -> None:
    """The API talks to `VideoService` and `ChatServing` only: never to their store, storage,
    catalog, engines or executor (the scale-out swaps those behind the service)."""
    api_root = Path(reelchat.api.__file__).parent
    reach = re.compile(r"service\.(store|storage|catalog|engines|executor|runner)\b")
    offenders = [
        f"{path.relative_to(api_root)}:{n}"
        for path in api_root.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if reach.search(line)
    ]
    assert offenders == []


async def test_healthz_says_503_when_the_database_is_gone(make_home: Callable[[str], Path]) -> None:
    async with fresh_database("reelchat_health") as (url, admin):
        settings = Settings(
            home=make_home("health"),
            database_url=url,
            models_json=json.dumps({"sora-2": {"steps": 1}}),
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1234))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/healthz")).json() == {"status": "ok"}
                await admin.execute(f'DROP DATABASE "{make_url(url).database}" WITH (FORCE)')
                # the probe's answer is at most a second old: the next ones say what happened
                deadline = time.monotonic() + 15
                r = await client.get("/healthz")
                while r.status_code == 200 and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                    r = await client.get("/healthz")
                assert r.status_code == 503, r.text
                body = r.json()
                assert body["status"] == "unavailable"
                assert body["database"].startswith("error")


async def test_a_lone_surrogate_in_a_prompt_is_a_400_in_both_apis(make_home: Callable[[str], Path]) -> None:
    """JSON may spell a lone surrogate ("\\ud800"); it can't be stored or streamed as UTF-8, so it is
    refused before any reply starts (it once tore the chat stream after its 200, and 500ed /v1/videos)."""
    app = create_app(Settings(home=make_home("surrogate"), models_json=json.dumps({"sora-2": {"steps": 1}})))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            chat = b'{"model": "sora-2", "stream": true, "messages": [{"role": "user", "content": "\\ud800 a cat"}]}'
            for path, body in (("/v1/chat/completions", chat), ("/v1/videos", b'{"prompt": "\\ud800 a cat"}')):
                r = await client.post(path, content=body, headers={"content-type": "application/json"})
                assert r.status_code == 400, (path, r.text)
                assert r.json()["error"]["param"] == "prompt"
