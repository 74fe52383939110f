"""Running reelchat for many keys, against a real `reelchat serve` driven by the official SDK: the fair
queue, per-key limits (429 + Retry-After, which the SDK's retry honours) and idempotency (replay, 409,
and a chat re-sent while its video is being made following that video).

Keys are made and limited with the CLI while the server runs, as an operator does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from helpers import assert_openai_error, run_cli, user
from server_util import FAST_SORA2, KeyedServer, chat_text, start_server, wait_video

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")]

KEYS = ["holder", "alice", "bob", "conc", "rpm", "daily", "idem", "chat", "chat1"]


class _NeverDone(BaseHTTPRequestHandler):
    """An upstream /v1/videos whose jobs stay in progress: reelchat polls them (and stops at a delete)."""

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer({"id": "video_upstream", "object": "video", "status": "in_progress", "progress": 1})

    def do_GET(self) -> None:
        self._answer({"id": "video_upstream", "object": "video", "status": "in_progress", "progress": 1})

    def do_DELETE(self) -> None:
        self._answer({"id": "video_upstream", "object": "video.deleted", "deleted": True})

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server(make_home: Callable[[str], Path], demo_models: Path) -> Iterator[KeyedServer]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _NeverDone)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{upstream.server_address[1]}/v1"
    stuck: dict[str, Any] = {
        "engine": "upstream",
        "upstream": {"base_url": base_url, "model": "x", "poll_interval_s": 0.2, "deadline_s": 900},
        "seconds": [4],
        "default_seconds": 4,
        "portrait_sizes": ["96x160"],
        "landscape_sizes": ["160x96"],
        "fps": 4,
        "steps": 1,
    }
    # two workers: a stuck video holds one (until deleted), the other makes the demo videos
    env = {"REELCHAT_KEEPALIVE_S": "0.3", "REELCHAT_WORKERS": "2"}
    s = start_server(
        make_home, demo_models, "quotas", models={"stuck": stuck, "sora-2": FAST_SORA2}, keys=KEYS, env=env
    )
    try:
        yield s
    finally:
        s.proc.stop()
        upstream.shutdown()
        upstream.server_close()


def _limit(server: KeyedServer, name: str, *flags: str) -> None:
    out = run_cli(server.proc.home, "keys", "update", name, *flags)
    assert out.returncode == 0, out.stderr
    assert f"Key {name}" in out.stdout


def _started(server: KeyedServer, task_id: str) -> datetime | None:
    started = httpx.get(f"{server.url}/source/{task_id}", timeout=10).json()["started_at"]
    return datetime.fromisoformat(started) if started else None


def _task_id(video: Any) -> str:
    task_id: str = (video.model_extra or {})["task_id"]  # reelchat's extra field: the chat API's and pages' id
    return task_id


def test_one_keys_flood_does_not_make_another_keys_single_video_wait(server: KeyedServer) -> None:
    alice, bob, holder = server.client("alice"), server.client("bob"), server.client("holder")
    held = holder.videos.create(model="stuck", prompt="holds one of the two workers")  # one slot left
    while holder.videos.retrieve(held.id).status != "in_progress":
        time.sleep(0.05)
    flood = [alice.videos.create(model="sora-2", prompt=f"alice's flood {i}") for i in range(20)]
    single = bob.videos.create(model="sora-2", prompt="bob's only video")
    done = wait_video(bob, single.id, timeout_s=120)
    assert done.status == "completed"
    bob_started = _started(server, _task_id(done))
    assert bob_started is not None
    starts = [_started(server, _task_id(v)) for v in flood]
    before = [s for s in starts if s is not None and s < bob_started]
    # one demo worker: alice's first video may have started before bob asked; then bob's is next
    assert len(before) <= 1, f"{len(before)} of alice's videos started before bob's"
    for v in flood:
        alice.videos.delete(v.id)
    holder.videos.delete(held.id)


def test_max_concurrent_gives_429_with_retry_after_which_the_sdk_honours(server: KeyedServer) -> None:
    _limit(server, "conc", "--max-concurrent", "1")
    client = server.client("conc")
    first = client.videos.create(model="stuck", prompt="a video that takes forever")
    with pytest.raises(openai.RateLimitError) as refused:
        client.videos.create(model="stuck", prompt="a second one at once")
    assert refused.value.status_code == 429
    assert refused.value.code == "concurrency_limit_exceeded"
    assert "max-concurrent" in refused.value.message
    retry_after = int(refused.value.response.headers["retry-after"])
    assert retry_after == 2
    with pytest.raises(openai.RateLimitError):  # a chat turn counts against the same limit
        chat_text(client, [user("a chat video too")], model="stuck")

    # the SDK, retrying, waits what Retry-After says; meanwhile the first video goes away
    sent: list[float] = []
    http = openai.DefaultHttpxClient(event_hooks={"request": [lambda _: sent.append(time.monotonic())]})
    retrying = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.keys["conc"], max_retries=2, http_client=http)
    threading.Timer(0.5, lambda: client.videos.delete(first.id)).start()
    second = retrying.videos.create(model="stuck", prompt="a second one, retried")
    assert second.status in ("queued", "in_progress")
    assert len(sent) == 2, "the SDK should have retried once, after Retry-After"
    assert sent[1] - sent[0] >= retry_after - 0.05
    client.videos.delete(second.id)


def test_rpm_gives_429_naming_the_limit(server: KeyedServer) -> None:
    _limit(server, "rpm", "--rpm", "2")
    client = server.client("rpm")
    made = [client.videos.create(model="stuck", prompt=f"video {i}") for i in range(2)]
    with server.http("rpm") as http:
        refused = http.post("/v1/videos", json={"model": "stuck", "prompt": "a third in the same minute"})
    err = assert_openai_error(refused, 429, "rate_limit_exceeded")
    assert err["type"] == "rate_limit_error"
    assert "2 videos per minute" in err["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    for v in made:
        client.videos.delete(v.id)  # deleting gives no request back: the minute still counts them
    with pytest.raises(openai.RateLimitError):
        client.videos.create(model="stuck", prompt="still the same minute")


def test_daily_seconds_charge_completed_videos(server: KeyedServer) -> None:
    _limit(server, "daily", "--daily-seconds", "14")
    client = server.client("daily")
    held = client.videos.create(model="stuck", prompt="four seconds, held while it runs")
    ten = client.videos.create(model="sora-2", prompt="ten seconds")  # 4 held + 10 fits in 14
    with pytest.raises(openai.RateLimitError) as refused:  # 4 + 10 held + 10 does not
        client.videos.create(model="sora-2", prompt="ten more")
    assert refused.value.code == "daily_seconds_exceeded"
    assert "14 seconds of video per 24 hours" in refused.value.message
    client.videos.delete(held.id)  # never completed: not charged, its seconds come back
    # the ten-second video completes and is charged: 10 of 14, so another 10 s does not fit
    assert wait_video(client, ten.id).status == "completed"
    with pytest.raises(openai.RateLimitError) as refused:
        client.videos.create(model="sora-2", prompt="ten more")
    assert refused.value.code == "daily_seconds_exceeded"
    assert int(refused.value.response.headers["retry-after"]) > 86000
    fits = client.videos.create(model="stuck", prompt="four fits")
    assert fits.status in ("queued", "in_progress")
    client.videos.delete(fits.id)


def test_idempotency_key_replays_the_same_video_and_conflicts_on_another_request(server: KeyedServer) -> None:
    client = server.client("idem")
    key = {"Idempotency-Key": "order-1234"}
    first = client.videos.create(model="sora-2", prompt="a lighthouse at dusk", extra_headers=key)
    again = client.videos.create(model="sora-2", prompt="a lighthouse at dusk", extra_headers=key)
    assert again.id == first.id
    with pytest.raises(openai.ConflictError) as conflict:
        client.videos.create(model="sora-2", prompt="a lighthouse at dawn", extra_headers=key)
    assert conflict.value.status_code == 409
    assert conflict.value.code == "idempotency_key_reused"
    assert conflict.value.body is not None
    with server.http("bob") as bob:  # scoped per key's tenant: bob's key of the same name is his own
        other = bob.post("/v1/videos", json={"model": "stuck", "prompt": "bob's"}, headers=key)
        assert other.status_code == 200
        assert other.json()["id"] != first.id
        bob.delete(f"/v1/videos/{other.json()['id']}")

    done = wait_video(client, first.id)
    assert done.status == "completed"
    remix_key = {"Idempotency-Key": "remix-1"}
    remix = client.videos.remix(first.id, prompt="now with a moon", extra_headers=remix_key)
    assert client.videos.remix(first.id, prompt="now with a moon", extra_headers=remix_key).id == remix.id
    with pytest.raises(openai.ConflictError):
        client.videos.remix(first.id, prompt="now with two moons", extra_headers=remix_key)
    assert len(client.videos.list().data) == 2  # two videos made, whatever the retries


def _stream_id(http: httpx.Client, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[str, Any]:
    """Open a streamed chat reply and read it up to its task ID; returns (ID, the open response)."""
    cm = http.stream("POST", "/v1/chat/completions", json=body, headers=headers)
    response = cm.__enter__()
    assert response.status_code == 200
    seen = ""
    lines = response.iter_lines()
    while "task_" not in seen:
        seen += next(lines)
    start = seen.index("task_")
    return seen[start : start + 31], cm


def test_a_chat_resent_while_its_video_runs_follows_that_video(server: KeyedServer) -> None:
    body = {"model": "stuck", "stream": True, "messages": [user("a video that takes forever, asked twice")]}
    with server.http("chat") as http:
        first_id, first = _stream_id(http, body)
        second_id, second = _stream_id(http, body)  # the client retried: the same video, not a second one
        assert second_id == first_id
        other_id, other = _stream_id(http, {**body, "messages": [user("another conversation")]})
        assert other_id != first_id
        listed = http.get("/v1/videos").json()["data"]
        assert len(listed) == 2
        for cm in (first, second, other):
            cm.__exit__(None, None, None)
        for video in listed:
            http.delete(f"/v1/videos/{video['id']}")


def test_a_chat_resent_at_its_keys_limit_still_follows_its_video(server: KeyedServer) -> None:
    # the key's one concurrent video is this conversation's: its retry follows it (no 429), and only a
    # new conversation is refused
    _limit(server, "chat1", "--max-concurrent", "1")
    body = {"model": "stuck", "stream": True, "messages": [user("one video at a time, asked twice")]}
    with server.http("chat1") as http:
        first_id, first = _stream_id(http, body)
        second_id, second = _stream_id(http, body)
        assert second_id == first_id
        refused = http.post("/v1/chat/completions", json={**body, "messages": [user("a second video")]})
        assert_openai_error(refused, 429, "concurrency_limit_exceeded")
        for cm in (first, second):
            cm.__exit__(None, None, None)
        for video in http.get("/v1/videos").json()["data"]:
            http.delete(f"/v1/videos/{video['id']}")


def test_a_chat_idempotency_key_replays_the_reply_and_conflicts_on_another_conversation(server: KeyedServer) -> None:
    client = server.client("chat")
    key = {"Idempotency-Key": "chat-1"}
    messages: Any = [user("a paper boat on a rainy street")]
    one = client.chat.completions.create(model="sora-2", messages=messages, stream=False, extra_headers=key)
    two = client.chat.completions.create(model="sora-2", messages=messages, stream=False, extra_headers=key)
    text_one, text_two = one.choices[0].message.content or "", two.choices[0].message.content or ""
    assert "sid: s_" in text_one
    ids = {t[t.index("task_") : t.index("task_") + 31] for t in (text_one, text_two)}
    assert len(ids) == 1, "the retry made a second video"
    with pytest.raises(openai.ConflictError):
        client.chat.completions.create(
            model="sora-2", messages=[user("a different boat")], stream=False, extra_headers=key
        )
