"""POST /v1/chat/completions and the pages around it, against the ASGI app in-process.

The app runs its real lifespan (store, workers, demo model) on a small catalog: `sora-2` keeps
its sizes but makes 2-second clips in 2 steps, so each generation takes about a second here.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import (
    SEED_FIRST_TURN,
    SEED_SECOND_TURN,
    SEED_ZH_TURN,
    Reply,
    SSEStream,
    assert_openai_error,
    assistant,
    decode_webp,
    keepalive_count,
    parse_reply,
    parse_sse,
    probe_video,
    user,
)
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from reelchat.api.app import create_app
from reelchat.service.keys import create_key
from reelchat.settings import Settings

MAX_BODY = 64 * 1024
BROKEN = {
    "engine": "diffusers",
    "pipeline": "/nonexistent",
    "i2v_pipeline": None,
    "seconds": [1],
    "default_seconds": 1,
    "portrait_sizes": ["32x32"],
    "landscape_sizes": ["32x32"],
    "fps": 4,
    "steps": 1,
}
CATALOG = {"sora-2": {"steps": 2, "seconds": [2], "default_seconds": 2}, "broken": BROKEN}
BASE = "http://testserver"


def make_client(app: Any, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 1234))
    return httpx.AsyncClient(transport=transport, base_url=BASE, timeout=120.0)


@pytest.fixture(scope="module")
async def app(make_home: Callable[[str], Path]) -> AsyncIterator[Any]:
    settings = Settings(
        home=make_home("chat-api"),
        models_json=json.dumps(CATALOG),
        keepalive_s=0.2,
        max_body_bytes=MAX_BODY,
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="module")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(app) as c:
        yield c


async def chat_stream(
    client: httpx.AsyncClient, messages: list[dict[str, Any]], *, model: str = "sora-2", headers: Any = None
) -> SSEStream:
    r = await client.post(
        "/v1/chat/completions", json={"model": model, "messages": messages, "stream": True}, headers=headers
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    return parse_sse(r.text)


def check_chunks(stream: SSEStream, model: str = "sora-2") -> None:
    """The chunk protocol of the seed: what the OpenAI SDK and every chat UI rely on."""
    chunks = [ChatCompletionChunk.model_validate(p) for p in stream.payloads]
    assert stream.done, "the stream must end with data: [DONE]"
    assert len(chunks) >= 3
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].id.startswith("chatcmpl-")
    assert len({c.created for c in chunks}) == 1
    assert {c.model for c in chunks} == {model}
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert all(len(c.choices) == 1 and c.choices[0].index == 0 for c in chunks)
    first, last = chunks[0].choices[0], chunks[-1].choices[0]
    assert first.delta.role == "assistant"
    assert first.delta.content == ""
    assert last.delta.content is None
    assert last.delta.role is None
    assert last.finish_reason == "stop"
    assert stream.payloads[-1]["choices"][0]["delta"] == {}
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.choices[0].delta.role is None for c in chunks[1:])


@pytest.fixture(scope="module")
async def first_video(client: httpx.AsyncClient) -> tuple[SSEStream, Reply]:
    """The seed's first turn, streamed (zh, the default locale): a finished portrait video."""
    stream = await chat_stream(client, [user(SEED_FIRST_TURN)])
    return stream, parse_reply(stream.content, "zh")


# --------------------------------------------------------------------------- the seed's format


async def test_first_turn_streams_the_seeds_chunks_and_markdown(first_video: tuple[SSEStream, Reply]) -> None:
    stream, reply = first_video
    check_chunks(stream)
    # the fenced JSON echo, laid out like the seed's (two-space indent, no ASCII escaping)
    assert reply.echo == {"prompt": SEED_FIRST_TURN, "orientation": "portrait"}
    assert reply.echo_text == json.dumps(reply.echo, ensure_ascii=False, indent=2)
    assert stream.content_pieces[1:4] == ["```", "json", "\n"], "the echo streams in small pieces, as the seed's"
    # the links point at this server's task pages
    assert reply.web_url == f"{BASE}/web/{reply.task_id}"
    assert reply.source_url == f"{BASE}/source/{reply.task_id}"
    assert "\n> 排队中" in reply.content
    assert "\n> 生成中" in reply.content
    assert len(reply.progress) >= 2, reply.progress
    assert reply.progress == sorted(set(reply.progress)), reply.progress
    assert all(0 < p < 100 for p in reply.progress)
    assert reply.sid is not None
    assert reply.video_url
    assert reply.thumbnail_url
    assert reply.thumbnail_alt == reply.thumbnail_url  # the seed's ![url](url)
    assert reply.video_url.startswith(f"{BASE}/media/")
    assert reply.thumbnail_url.startswith(f"{BASE}/media/")
    # loading the model takes longer than the 0.2 s keep-alive interval: the client sees it's alive
    assert keepalive_count(stream) >= 1


async def test_second_turn_remixes_the_video_named_in_the_history(
    client: httpx.AsyncClient, first_video: tuple[SSEStream, Reply]
) -> None:
    """The seed's request: the whole history sent back; the reply echoes the sid it modifies."""
    _, first = first_video
    stream = await chat_stream(client, [user(SEED_FIRST_TURN), assistant(first.content), user(SEED_SECOND_TURN)])
    check_chunks(stream)
    reply = parse_reply(stream.content, "zh")
    assert reply.echo == {"prompt": SEED_SECOND_TURN, "orientation": "portrait", "sid": first.sid}
    assert reply.task_id != first.task_id
    assert reply.sid is not None
    assert reply.sid != first.sid
    assert reply.video_url != first.video_url
    source = (await client.get(f"/source/{reply.task_id}")).json()
    assert source["status"] == "completed"
    assert source["remixed_from"]["sid"] == first.sid
    assert source["size"] == "96x160"
    assert [step["id"] for step in source["lineage"]] == [first.task_id, reply.task_id]


async def test_the_seeds_verbatim_request_names_a_video_this_server_never_made(client: httpx.AsyncClient) -> None:
    seed_assistant = (
        '```json\n{\n  "prompt": "Generate a high-definition video of cows and horses dancing.",\n'
        '  "orientation": "portrait"\n}\n```\n\n> ID: `task_01k7dzptgwf2z87wj2c3t36qk0`\n'
        "> Generating Complete ✅\n> sid: s_68ec8accd80c8191ae1fc957af78caaa\n"
    )
    r = await client.post(
        "/v1/chat/completions",
        json={
            "model": "sora-2",
            "messages": [user(SEED_FIRST_TURN), assistant(seed_assistant), user(SEED_SECOND_TURN)],
            "stream": True,
        },
    )
    err = assert_openai_error(r, 404, "video_not_found")
    assert "s_68ec8accd80c8191ae1fc957af78caaa" in err["message"]


async def test_english_reply_with_accept_language_en(client: httpx.AsyncClient) -> None:
    stream = await chat_stream(client, [user(SEED_FIRST_TURN)], headers={"Accept-Language": "en-US,en;q=0.9"})
    check_chunks(stream)
    reply = parse_reply(stream.content, "en")
    assert "\n> Queuing" in reply.content
    assert "\n> Generating" in reply.content
    assert "Progress" in reply.content
    assert "Generating Complete ✅" in reply.content
    assert reply.video_url
    assert "[Online Play▶️](" in reply.content
    assert "排队中" not in reply.content


async def test_landscape_words_give_a_landscape_video(client: httpx.AsyncClient) -> None:
    stream = await chat_stream(client, [user(f"横屏，{SEED_ZH_TURN}")])
    reply = parse_reply(stream.content, "zh")
    assert reply.echo["orientation"] == "landscape"
    assert reply.echo["prompt"].endswith(SEED_ZH_TURN)
    source = (await client.get(f"/source/{reply.task_id}")).json()
    assert (source["orientation"], source["size"]) == ("landscape", "160x96")
    assert reply.video_url is not None
    video = await client.get(reply.video_url)
    info = probe_video(video.content).info
    assert (info.width, info.height) == (160, 96)


async def test_non_stream_returns_one_chat_completion(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/chat/completions", json={"model": "sora-2", "messages": [user(SEED_ZH_TURN)], "stream": False}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    completion = ChatCompletion.model_validate(r.json())
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "sora-2"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content is not None
    reply = parse_reply(choice.message.content, "zh")
    assert reply.echo == {"prompt": SEED_ZH_TURN, "orientation": "portrait"}
    assert reply.sid
    assert reply.video_url
    assert reply.thumbnail_url
    assert reply.progress, "the whole reply carries the same progress line as the stream"
    # the same video record
    source = (await client.get(f"/source/{reply.task_id}")).json()
    assert source["sid"] == reply.sid
    assert source["url"] == reply.video_url


async def test_stream_omitted_means_one_chat_completion(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/chat/completions", json={"model": "broken", "messages": [user("x")]})
    assert r.status_code == 200
    completion = ChatCompletion.model_validate(r.json())
    assert completion.choices[0].message.content is not None


# --------------------------------------------------------------------------- links behind proxies


async def test_x_forwarded_host_from_a_trusted_proxy_steers_links(client: httpx.AsyncClient) -> None:
    stream = await chat_stream(client, [user(SEED_ZH_TURN)], headers={"X-Forwarded-Host": "localhost:5173"})
    reply = parse_reply(stream.content, "zh")
    front = "http://localhost:5173"
    assert reply.web_url == f"{front}/web/{reply.task_id}"
    assert reply.source_url == f"{front}/source/{reply.task_id}"
    assert reply.video_url is not None
    assert reply.video_url.startswith(f"{front}/media/")
    assert reply.thumbnail_url is not None
    assert reply.thumbnail_url.startswith(f"{front}/media/")


async def test_an_untrusted_client_cannot_steer_links(make_home: Callable[[str], Path]) -> None:
    # a server that trusts only its proxy at 10.0.0.2: a direct (loopback) caller can't set X-Forwarded-*
    settings = Settings(
        home=make_home("untrusted-links"), models_json=json.dumps(CATALOG), trusted_proxies=["10.0.0.2/32"]
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application), make_client(application) as direct:
        stream = await chat_stream(
            direct,
            [user(SEED_ZH_TURN)],
            headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"},
        )
    reply = parse_reply(stream.content, "zh")
    assert "evil.example" not in reply.content
    assert reply.web_url == f"{BASE}/web/{reply.task_id}"
    assert reply.video_url is not None
    assert reply.video_url.startswith(f"{BASE}/media/")


async def test_open_mode_serves_loopback_callers_only(app: Any) -> None:
    # no keys exist: a caller from another address is refused, even if the server listens there
    async with make_client(app, peer="203.0.113.5") as stranger:
        r = await stranger.post("/v1/chat/completions", json={"model": "sora-2", "messages": [user("x")]})
        assert_openai_error(r, 401)
        assert (await stranger.get("/v1/videos")).status_code == 401


async def test_a_hostile_host_header_does_not_inject_into_links(client: httpx.AsyncClient) -> None:
    stream = await chat_stream(client, [user("x")], model="broken", headers={"Host": "a.example)[x](http://evil"})
    assert "evil" not in stream.content
    parse_reply(stream.content, "zh")


# --------------------------------------------------------------------------- /source and /web


async def test_source_shows_the_finished_task(client: httpx.AsyncClient, first_video: tuple[SSEStream, Reply]) -> None:
    _, reply = first_video
    r = await client.get(f"/source/{reply.task_id}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    src = r.json()
    for key in (
        "id", "status", "progress", "model", "prompt", "orientation", "seconds", "size", "sid", "url",
        "thumbnail_url", "created_at", "completed_at", "error", "frames", "fps",
    ):  # fmt: skip
        assert key in src, key
    assert src["id"] == reply.task_id
    assert (src["status"], src["progress"], src["error"]) == ("completed", 100, None)
    assert (src["model"], src["prompt"], src["orientation"]) == ("sora-2", SEED_FIRST_TURN, "portrait")
    assert (src["seconds"], src["size"], src["fps"], src["frames"]) == (2, "96x160", 4, 8)
    assert src["sid"] == reply.sid
    assert src["url"] == reply.video_url
    assert src["thumbnail_url"] == reply.thumbnail_url
    created = datetime.fromisoformat(src["created_at"])
    completed = datetime.fromisoformat(src["completed_at"])
    assert created.tzinfo is not None
    assert created <= completed
    # the video is what the task says it is
    video = await client.get(src["url"])
    probed = probe_video(video.content)
    assert (probed.info.width, probed.info.height) == (96, 160)
    assert probed.info.frames == probed.decoded_frames == src["frames"]
    assert probed.info.codec == "h264"
    assert probed.info.pix_fmt == "yuv420p"
    thumb = await client.get(src["thumbnail_url"])
    assert thumb.headers["content-type"] == "image/webp"
    w, h = decode_webp(thumb.content)
    assert h > w  # a portrait thumbnail


async def test_web_page_shows_the_task(client: httpx.AsyncClient, first_video: tuple[SSEStream, Reply]) -> None:
    _, reply = first_video
    r = await client.get(f"/web/{reply.task_id}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert reply.task_id in r.text
    assert SEED_FIRST_TURN in r.text
    assert reply.video_url is not None
    assert reply.video_url in r.text  # the player plays the video


async def test_web_page_escapes_the_prompt(client: httpx.AsyncClient) -> None:
    prompt = '<script>alert(1)</script> & "quotes"'
    stream = await chat_stream(client, [user(prompt)])
    reply = parse_reply(stream.content, "zh")
    assert reply.echo["prompt"] == prompt  # the JSON echo stays valid JSON with the same words
    page = (await client.get(f"/web/{reply.task_id}")).text
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;" in page
    src = (await client.get(f"/source/{reply.task_id}")).json()
    assert src["prompt"] == prompt


@pytest.mark.parametrize(
    "path",
    [
        "/source/task_00000000000000000000000000",
        "/source/not-a-task",
        "/source/s_68ec8accd80c8191ae1fc957af78caaa",
    ],
)
async def test_unknown_task_source_is_404(client: httpx.AsyncClient, path: str) -> None:
    assert_openai_error(await client.get(path), 404)


async def test_unknown_task_web_is_404_html(client: httpx.AsyncClient) -> None:
    r = await client.get("/web/task_00000000000000000000000000")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")


# --------------------------------------------------------------------------- /media


async def test_media_full_and_ranged(client: httpx.AsyncClient, first_video: tuple[SSEStream, Reply]) -> None:
    _, reply = first_video
    assert reply.video_url is not None
    full = await client.get(reply.video_url)
    assert full.status_code == 200
    assert full.headers["content-type"] == "video/mp4"
    assert int(full.headers["content-length"]) == len(full.content) > 100
    assert full.headers["accept-ranges"] == "bytes"
    size = len(full.content)

    part = await client.get(reply.video_url, headers={"Range": "bytes=0-99"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 0-99/{size}"
    assert len(part.content) == 100
    assert part.content == full.content[:100]

    tail = await client.get(reply.video_url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206
    assert tail.content == full.content[-10:]

    bad = await client.get(reply.video_url, headers={"Range": f"bytes={size}-"})
    assert bad.status_code == 416
    assert bad.headers["content-range"] == f"bytes */{size}"


@pytest.mark.parametrize(
    "name",
    [
        "%2E%2E",
        "..%2Freelchat.db",
        "..%5Creelchat.db",
        "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "reelchat.db",
        "0123456789abcdef0123456789abcdef.mp4",
        "nothing",
    ],
)
async def test_media_bad_or_unknown_names_are_404(client: httpx.AsyncClient, name: str) -> None:
    r = await client.get(f"/media/{name}")
    assert r.status_code == 404
    assert b"SQLite" not in r.content
    assert b"root:" not in r.content


async def test_media_never_serves_the_database_even_when_media_dir_is_home(make_home: Callable[[str], Path]) -> None:
    home = make_home("media-is-home")
    application = create_app(Settings(home=home, media_dir=home))
    async with application.router.lifespan_context(application), make_client(application) as c:
        assert (home / "reelchat.db").is_file()
        r = await c.get("/media/reelchat.db")
        assert r.status_code == 404
        assert b"SQLite" not in r.content


# --------------------------------------------------------------------------- models


async def test_models_lists_sora_2_and_sora_2_pro(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert "sora-2" in ids
    assert "sora-2-pro" in ids
    assert all(m["object"] == "model" for m in body["data"])


# --------------------------------------------------------------------------- failures


async def test_a_failing_model_ends_the_stream_with_the_failure_line(client: httpx.AsyncClient) -> None:
    stream = await chat_stream(client, [user("a video that cannot be made")], model="broken")
    check_chunks(stream, model="broken")
    reply = parse_reply(stream.content, "zh")
    assert reply.reason is not None
    assert reply.reason.strip()
    assert "\n\n> 生成失败 ❌\n> 原因: " in reply.content
    assert reply.sid is None
    assert reply.video_url is None
    assert ".mp4" not in reply.content
    src = (await client.get(f"/source/{reply.task_id}")).json()
    assert src["status"] == "failed"
    assert src["error"]
    assert src["error"]["message"]
    assert src["url"] is None
    assert src["sid"] is None


async def test_a_failing_model_in_english_non_stream(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "broken", "messages": [user("nope")], "stream": False},
        headers={"Accept-Language": "en"},
    )
    assert r.status_code == 200
    content = ChatCompletion.model_validate(r.json()).choices[0].message.content
    assert content is not None
    reply = parse_reply(content, "en")
    assert "\n\n> Generating Failed ❌\n> Reason: " in content
    assert reply.reason


# --------------------------------------------------------------------------- bad requests

LONG_PROMPT = "x" * 32_001


def _body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


BAD_REQUESTS: list[tuple[str, bytes, int, str | None]] = [
    ("malformed json", b'{"model": "sora-2", "messages": [', 400, "invalid_json"),
    ("empty body", b"", 400, "invalid_json"),
    ("invalid utf-8", b'{"model": "\xff\xfe"}', 400, "invalid_json"),
    ("body is a list", b"[]", 400, None),
    ("body is a string", b'"hello"', 400, None),
    ("body is null", b"null", 400, None),
    ("missing messages", _body({"model": "sora-2", "stream": True}), 400, "missing_required_parameter"),
    ("missing model", _body({"messages": [user("hi")], "stream": True}), 400, "missing_required_parameter"),
    ("messages is a string", _body({"model": "sora-2", "messages": "x"}), 400, None),
    ("messages is empty", _body({"model": "sora-2", "messages": []}), 400, None),
    ("message is a string", _body({"model": "sora-2", "messages": ["hi"]}), 400, None),
    ("message without role", _body({"model": "sora-2", "messages": [{"content": "hi"}]}), 400, None),
    ("content is a number", _body({"model": "sora-2", "messages": [{"role": "user", "content": 5}]}), 400, None),
    ("stream is a string", _body({"model": "sora-2", "messages": [user("hi")], "stream": "yes"}), 400, None),
    ("model is a number", _body({"model": 2, "messages": [user("hi")]}), 400, None),
    ("unknown model", _body({"model": "sora-3", "messages": [user("hi")]}), 404, "model_not_found"),
    ("no user message", _body({"model": "sora-2", "messages": [{"role": "system", "content": "hi"}]}), 400, None),
    ("blank user text", _body({"model": "sora-2", "messages": [user("   ")]}), 400, None),
    (
        "image without text",
        _body(
            {
                "model": "sora-2",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]}
                ],
            }
        ),
        400,
        None,
    ),
    ("prompt of 32001 chars", _body({"model": "sora-2", "messages": [user(LONG_PROMPT)]}), 400, None),
    (
        "bad json block",
        _body({"model": "sora-2", "messages": [user('```json\n{"prompt": "a", "orientation": "diagonal"}\n```')]}),
        400,
        None,
    ),
]


@pytest.mark.parametrize(("body", "status", "code"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
async def test_bad_requests_get_the_openai_error_shape(
    client: httpx.AsyncClient, body: bytes, status: int, code: str | None
) -> None:
    r = await client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    err = assert_openai_error(r, status, code)
    assert "Traceback" not in err["message"]


async def test_missing_parameter_errors_name_the_parameter(client: httpx.AsyncClient) -> None:
    err = assert_openai_error(await client.post("/v1/chat/completions", json={"model": "sora-2"}), 400)
    assert err["param"] == "messages"
    err = assert_openai_error(
        await client.post("/v1/chat/completions", json={"model": "sora-2", "messages": [user("a")], "stream": "yes"}),
        400,
    )
    assert err["param"] == "stream"


async def test_body_over_the_limit_is_413_with_content_length(client: httpx.AsyncClient) -> None:
    body = _body({"model": "sora-2", "messages": [user("y" * (MAX_BODY + 10))]})
    r = await client.post("/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
    assert_openai_error(r, 413, "request_too_large")


async def test_body_over_the_limit_is_413_when_chunked(client: httpx.AsyncClient) -> None:
    body = _body({"model": "sora-2", "messages": [user("y" * (MAX_BODY + 10))]})

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    r = await client.post("/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers  # really chunked
    assert_openai_error(r, 413, "request_too_large")


async def test_wrong_method_and_unknown_path_get_the_error_shape(client: httpx.AsyncClient) -> None:
    assert_openai_error(await client.get("/v1/chat/completions"), 405)
    assert_openai_error(await client.post("/v1/nothing-here", json={}), 404)


async def test_after_all_the_bad_requests_the_server_still_works(
    client: httpx.AsyncClient, first_video: tuple[SSEStream, Reply]
) -> None:
    stream = await chat_stream(client, [user("after the storm, a calm sea")])
    check_chunks(stream)
    reply = parse_reply(stream.content, "zh")
    assert reply.video_url is not None
    assert (await client.get(reply.video_url)).status_code == 200
    # and the first video is still there
    _, first = first_video
    src = (await client.get(f"/source/{first.task_id}")).json()
    assert src["status"] == "completed"
    assert src["url"] == first.video_url
    assert first.video_url is not None
    assert (await client.get(first.video_url)).status_code == 200


# --------------------------------------------------------------------------- keys and a public base URL

PUBLIC = "https://videos.example.com"


@pytest.fixture(scope="module")
async def keyed(make_home: Callable[[str], Path]) -> AsyncIterator[tuple[Any, str]]:
    """An app with one API key and REELCHAT_PUBLIC_BASE_URL set."""
    settings = Settings(
        home=make_home("chat-keys"),
        models_json=json.dumps(CATALOG),
        keepalive_s=0.2,
        public_base_url=PUBLIC + "/",
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        _, secret = await create_key(application.state.reelchat.service.store, "alice")
        yield application, secret


async def test_missing_key_is_401_when_keys_exist(keyed: tuple[Any, str]) -> None:
    app, _ = keyed
    async with make_client(app) as c:
        r = await c.post("/v1/chat/completions", json={"model": "sora-2", "messages": [user("hi")], "stream": True})
        assert_openai_error(r, 401, "missing_api_key")
        assert_openai_error(await c.get("/v1/models"), 401)


@pytest.mark.parametrize("header", ["Bearer rc-not-a-real-key", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "rc-bare"])
async def test_bad_key_is_401_when_keys_exist(keyed: tuple[Any, str], header: str) -> None:
    app, _ = keyed
    async with make_client(app) as c:
        r = await c.post(
            "/v1/chat/completions",
            json={"model": "sora-2", "messages": [user("hi")], "stream": True},
            headers={"Authorization": header},
        )
    err = assert_openai_error(r, 401)
    assert err["code"] in ("invalid_api_key", "missing_api_key")
    assert "rc-not-a-real-key" not in err["message"]  # never echo a whole secret back


async def test_valid_key_works_and_public_base_url_wins(keyed: tuple[Any, str]) -> None:
    app, secret = keyed
    async with make_client(app) as c:
        c.headers["Authorization"] = f"Bearer {secret}"
        assert (await c.get("/v1/models")).status_code == 200
        stream = await chat_stream(c, [user(SEED_ZH_TURN)], headers={"X-Forwarded-Host": "localhost:5173"})
        check_chunks(stream)
        reply = parse_reply(stream.content, "zh")
        assert reply.web_url == f"{PUBLIC}/web/{reply.task_id}"
        assert reply.source_url == f"{PUBLIC}/source/{reply.task_id}"
        assert reply.video_url is not None
        assert reply.video_url.startswith(f"{PUBLIC}/media/")
        assert reply.thumbnail_url is not None
        assert reply.thumbnail_url.startswith(f"{PUBLIC}/media/")
        assert "localhost:5173" not in reply.content
        assert "testserver" not in reply.content
        # the page is public by link: no key needed to look at it
        del c.headers["Authorization"]
        src = (await c.get(f"/source/{reply.task_id}")).json()
        assert src["status"] == "completed"
        assert re.fullmatch(re.escape(PUBLIC) + r"/media/[0-9a-f]{32}\.mp4", src["url"])


async def test_behind_a_root_path_the_fastapi_routes_serve_the_direct_ones_too(app: Any) -> None:
    # the direct routes (`api/direct.py`) match the bare path; an app mounted under a prefix takes
    # FastAPI's routes instead, which call the same functions: same reply, same errors
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1234), root_path="/reelchat")
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/reelchat", timeout=120.0) as prefixed:
        assert (await prefixed.get("/healthz")).json() == {"status": "ok"}
        r = await prefixed.post(
            "/v1/chat/completions",
            json={"model": "sora-2", "stream": True, "messages": [{"role": "user", "content": "a kite, root path"}]},
        )
        assert r.status_code == 200, r.text
        check_chunks(parse_sse(r.text))
        bad = await prefixed.post("/v1/chat/completions", json={"model": "sora-2", "messages": []})
        assert bad.status_code == 400
        assert set(bad.json()["error"]) == {"message", "type", "param", "code"}
