"""A reelchat (A) whose models are made by a second reelchat (B) over the OpenAI Videos API.

Both are real servers; the chat API of A is driven through the official SDK. B runs the demo model
and is closed by an API key that only A holds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import assistant, free_port, parse_reply, poll_source, probe_video, user
from server_util import FAST_SORA2, KeyedServer, chat, chat_text, start_server

pytestmark = pytest.mark.slow

SLOW_PRO: dict[str, Any] = {"steps": 8}


def _upstream_catalog(b_url: str, demo_models: Path) -> str:
    common = {"engine": "upstream", "pipeline": str(demo_models / "t2v"), "i2v_pipeline": None}
    upstream = {"base_url": f"{b_url}/v1", "api_key_env": "RC_UPSTREAM_KEY", "poll_interval_s": 0.2}
    return json.dumps(
        {
            "sora-2": {**common, "upstream": {**upstream, "model": "sora-2"}},
            "sora-2-pro": {**common, "upstream": {**upstream, "model": "sora-2-pro"}},
            "missing-upstream-model": {
                **common,
                "seconds": [10],
                "default_seconds": 10,
                "portrait_sizes": ["96x160"],
                "landscape_sizes": ["160x96"],
                "fps": 4,
                "steps": 1,
                "upstream": {**upstream, "model": "no-such-model"},
            },
            "unreachable": {
                **common,
                "seconds": [10],
                "default_seconds": 10,
                "portrait_sizes": ["96x160"],
                "landscape_sizes": ["160x96"],
                "fps": 4,
                "steps": 1,
                "upstream": {
                    "base_url": f"http://127.0.0.1:{free_port()}/v1",
                    "model": "sora-2",
                    "max_retries": 1,
                    "retry_backoff_s": 0.1,
                    "request_timeout_s": 2,
                    "deadline_s": 20,
                },
            },
        }
    )


@pytest.fixture(scope="module")
def servers(make_home: Callable[[str], Path], demo_models: Path) -> Iterator[tuple[KeyedServer, KeyedServer]]:
    b = start_server(
        make_home, demo_models, "upstream-b", models={"sora-2": FAST_SORA2, "sora-2-pro": SLOW_PRO}, keys=["gateway"]
    )
    a = start_server(
        make_home,
        demo_models,
        "gateway-a",
        keys=["alice"],
        env={"REELCHAT_MODELS_JSON": _upstream_catalog(b.url, demo_models), "RC_UPSTREAM_KEY": b.keys["gateway"]},
    )
    try:
        yield a, b
    finally:
        a.proc.stop()
        b.proc.stop()


def _b_videos(b: KeyedServer) -> list[dict[str, Any]]:
    with b.http("gateway") as http:
        r = http.get("/v1/videos", params={"limit": 100, "order": "asc"})
        assert r.status_code == 200, r.text
        data: list[dict[str, Any]] = r.json()["data"]
        return data


def test_chat_through_upstream_then_remix_uses_the_upstream_remix(servers: tuple[KeyedServer, KeyedServer]) -> None:
    a, b = servers
    client = a.client("alice")
    first_words = "cows and horses dancing on a hill"
    turn1 = chat(client, [user(first_words)], stream=True, locale="en")
    assert turn1.video_url is not None
    with httpx.Client(timeout=60) as http:
        video = http.get(turn1.video_url)
        assert video.status_code == 200
        info = probe_video(video.content)
        assert (info.info.codec, info.info.width, info.info.height) == ("h264", 96, 160)
        # the media is A's own, served from A's links
        assert turn1.video_url.startswith(a.url)
        source1 = poll_source(a.url, turn1.task_id)
    made_by_b = [v for v in _b_videos(b) if v["prompt"] == first_words]
    assert len(made_by_b) == 1
    assert made_by_b[0]["status"] == "completed"
    assert source1["status"] == "completed"
    assert source1["sid"] == turn1.sid

    # turn 2 sends the history back: A remixes via B's /remix with only the turn's words
    history = [user(first_words), assistant(turn1.content), user("now give the cow a halo")]
    turn2 = chat(client, history, stream=False, locale="zh")
    assert turn2.echo["sid"] == turn1.sid
    b_remix = [v for v in _b_videos(b) if v["remixed_from_video_id"] == made_by_b[0]["id"]]
    assert len(b_remix) == 1, _b_videos(b)
    assert b_remix[0]["prompt"] == "now give the cow a halo"
    lineage = [e["id"] for e in poll_source(a.url, turn2.task_id)["lineage"]]
    assert lineage == [turn1.task_id, turn2.task_id]


def test_restart_resumes_the_same_upstream_job(
    servers: tuple[KeyedServer, KeyedServer], make_home: Callable[[str], Path], demo_models: Path
) -> None:
    a, b = servers
    words = "a slow upstream job that must not be paid for twice"
    # start a long sora-2-pro job through A and leave after the ID
    with httpx.Client(base_url=a.url, timeout=60, headers={"Authorization": f"Bearer {a.keys['alice']}"}) as http:
        with http.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "sora-2-pro", "stream": True, "messages": [user(words)]},
        ) as r:
            assert r.status_code == 200
            text = ""
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    text += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                if "> ID:" in text and "`" in text.split("> ID:")[1][2:]:
                    break
        task_id = text.split("> ID: `")[1].split("`")[0]
    # wait until B has the job (A stored its id before polling), then kill A mid-job
    deadline = time.monotonic() + 60
    while not [v for v in _b_videos(b) if v["prompt"] == words]:
        assert time.monotonic() < deadline, "B never received the job"
        time.sleep(0.1)
    b_job = next(v for v in _b_videos(b) if v["prompt"] == words)
    assert b_job["status"] in ("queued", "in_progress"), "the job finished before the kill; make it slower"
    a.proc.kill()
    a.proc.start()
    done = poll_source(a.url, task_id, timeout=180)
    assert done["status"] == "completed", done
    assert done["attempt"] >= 2  # it really ran again after the restart ...
    same = [v for v in _b_videos(b) if v["prompt"] == words]
    assert len(same) == 1, same  # ... and polled the same upstream job instead of submitting a new one
    with httpx.Client(timeout=60) as http:
        assert probe_video(http.get(done["url"]).content).info.codec == "h264"


def test_upstream_rejection_reaches_the_user(servers: tuple[KeyedServer, KeyedServer]) -> None:
    a, _ = servers
    content = chat_text(a.client("alice"), [user("anything")], stream=True, locale="en", model="missing-upstream-model")
    reply = parse_reply(content, "en")
    assert not reply.succeeded
    assert "no-such-model" in (reply.reason or "")  # B's own words about the model it doesn't have
    source = poll_source(a.url, reply.task_id)
    assert source["status"] == "failed"
    assert source["error"]["code"] == "upstream_rejected"
    assert a.keys["alice"] not in content


def test_unreachable_upstream_fails_clearly_and_in_bounded_time(servers: tuple[KeyedServer, KeyedServer]) -> None:
    a, _ = servers
    started = time.monotonic()
    content = chat_text(a.client("alice"), [user("anything")], stream=False, locale="en", model="unreachable")
    reply = parse_reply(content, "en")
    assert not reply.succeeded
    assert "unreachable" in (reply.reason or "").lower()
    assert time.monotonic() - started < 30
    # the gateway still serves
    assert chat(a.client("alice"), [user("still alive")], stream=True, locale="en").sid
