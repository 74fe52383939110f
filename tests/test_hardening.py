"""What a hostile or careless caller notices, against the ASGI app in-process (open mode, loopback).

Open mode behind a proxy, oversized images, failure details on public pages, and the security
headers of pages, page assets, media and JSON.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import assert_openai_error, parse_reply, parse_sse, user
from PIL import Image

from reelchat.api.app import create_app
from reelchat.settings import Settings

BROKEN = {
    "engine": "diffusers",
    "pipeline": "/nonexistent/secretpath",
    "i2v_pipeline": None,
    "seconds": [1],
    "default_seconds": 1,
    "portrait_sizes": ["32x32"],
    "landscape_sizes": ["32x32"],
    "fps": 4,
    "steps": 1,
}
CATALOG = {"sora-2": {"steps": 2, "seconds": [2], "default_seconds": 2}, "broken": BROKEN}


@pytest.fixture(scope="module")
async def client(make_home: Callable[[str], Path]) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        home=make_home("hardening"), models_json=json.dumps(CATALOG), keepalive_s=0.2, max_streams_per_key=1
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=120) as c:
            yield c


async def chat(client: httpx.AsyncClient, messages: list[Any], model: str = "sora-2", **kw: Any) -> httpx.Response:
    return await client.post("/v1/chat/completions", json={"model": model, "messages": messages, "stream": True}, **kw)


# ------------------------------------------------------------------------------ open mode, proxied


@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "for=203.0.113.9;proto=https"},
        {"X-Real-IP": "203.0.113.9"},
    ],
)
async def test_open_mode_refuses_requests_through_a_proxy(client: httpx.AsyncClient, header: dict[str, str]) -> None:
    for response in (
        await chat(client, [user("a cow")], headers=header),
        await client.get("/v1/models", headers=header),
        await client.post("/v1/videos", json={"prompt": "a cow"}, headers=header),
    ):
        err = assert_openai_error(response, 403, "open_mode_behind_proxy")
        assert "reelchat keys create" in err["message"]
        assert next(iter(header)) in err["message"]


async def test_open_mode_still_serves_the_seeds_forwarded_host(client: httpx.AsyncClient) -> None:
    r = await chat(client, [user("a cow")], headers={"X-Forwarded-Host": "localhost:5173"})
    assert r.status_code == 200, r.text
    reply = parse_reply(parse_sse(r.text).content, "zh")
    assert reply.succeeded
    assert reply.web_url.startswith("http://localhost:5173/web/")


# ---------------------------------------------------------------------------------- input images


def png_data_url(width: int, height: int) -> str:
    out = io.BytesIO()
    Image.new("L", (width, height)).save(out, format="PNG")  # compresses to a few kB
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


async def test_a_17_megapixel_image_is_refused_with_a_clear_400(client: httpx.AsyncClient) -> None:
    content = [
        {"type": "text", "text": "make it move"},
        {"type": "image_url", "image_url": {"url": png_data_url(17_000, 1_000)}},
    ]
    err = assert_openai_error(await chat(client, [{"role": "user", "content": content}]), 400)
    assert "17000x1000" in err["message"], err
    assert "16000000 pixels" in err["message"], err
    assert err["param"] == "input_reference"


# ------------------------------------------------------------------------- failures on public pages


async def test_public_pages_show_a_generic_failure_and_the_owner_sees_the_details(
    client: httpx.AsyncClient,
) -> None:
    r = await chat(client, [user("a video that cannot be made")], model="broken")
    reply = parse_reply(parse_sse(r.text).content, "zh")
    assert reply.reason is not None
    assert "secretpath" in reply.reason  # the chat keeps the details
    source = (await client.get(f"/source/{reply.task_id}")).json()
    assert source["status"] == "failed"
    assert source["error"]["message"] == "The video could not be made."
    assert "secretpath" not in json.dumps(source)
    page = await client.get(f"/web/{reply.task_id}")
    assert "The video could not be made." in page.text
    assert "secretpath" not in page.text
    video = (await client.get(f"/v1/videos/{source['video_id']}")).json()  # the owner, through the API
    assert "secretpath" in video["error"]["message"]


# ----------------------------------------------------------------------------------- the headers


def assert_common_headers(response: httpx.Response) -> str:
    assert response.headers["x-content-type-options"] == "nosniff", response.headers
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    return csp


async def test_pages_media_and_json_carry_security_headers(client: httpx.AsyncClient) -> None:
    r = await chat(client, [user("a calm lake")])
    reply = parse_reply(parse_sse(r.text).content, "zh")
    assert reply.video_url
    assert reply.thumbnail_url

    page = await client.get(f"/web/{reply.task_id}")
    csp = assert_common_headers(page)
    assert "script-src 'self'" in csp
    assert "default-src 'none'" in csp
    # nothing inline: every script is a file of ours, no <style> block, no style attribute
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts
    assert all('src="/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert "<style" not in page.text
    assert " style=" not in page.text
    assert "onerror=" not in page.text
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
        served = await client.get(asset)
        assert served.status_code == 200
        assert served.content
        assert_common_headers(served)
    assert_openai_error(await client.get("/static/nothing.js"), 404)

    for url, kind in ((reply.video_url, "video/mp4"), (reply.thumbnail_url, "image/webp")):
        media = await client.get(url)
        assert media.status_code == 200
        assert media.headers["content-type"] == kind
        csp = assert_common_headers(media)
        assert "default-src 'none'" in csp
        assert "script-src" not in csp  # only itself, to show itself
    assert_common_headers(await client.get(f"/source/{reply.task_id}"))
    assert_common_headers(await client.get("/v1/models"))
    assert_common_headers(await client.get("/web/task_00000000000000000000000000"))


# ------------------------------------------------------------------------------------ stream slots


async def test_a_finished_reply_gives_its_stream_slot_back(client: httpx.AsyncClient) -> None:
    # max_streams_per_key=1 here: each turn can only start because the one before gave its slot back
    for words in ("one", "two", "three"):
        r = await chat(client, [user(f"a {words}")])
        assert r.status_code == 200, r.text
        assert parse_reply(parse_sse(r.text).content, "zh").succeeded
    refused = await chat(client, [user("x")], headers={"X-Real-IP": "1.2.3.4"})  # refused before any slot
    assert refused.status_code == 403
    r = await chat(client, [user("a four")])
    assert r.status_code == 200, r.text
