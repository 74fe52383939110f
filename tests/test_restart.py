"""A server killed with SIGKILL mid-work loses nothing: on restart every task finishes, old videos stay."""

from __future__ import annotations

import hashlib
import json
import signal
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from helpers import TASK_ID_RE, ServerProcess, iter_sse, parse_reply, poll_source, probe_video, user

# short clips at sora-2's size: each still takes long enough that three of them queue up behind each other
CATALOG = {"sora-2": {"seconds": [2], "default_seconds": 2}}
pytestmark = pytest.mark.slow

ENV = {"REELCHAT_MODELS_JSON": json.dumps(CATALOG), "REELCHAT_KEEPALIVE_S": "0.2"}


def submit_and_leave(base_url: str, prompt: str) -> str:
    """Stream a chat turn just until its task ID shows, then hang up; returns the task id."""
    body = {"model": "sora-2", "messages": [user(prompt)], "stream": True}
    content = ""
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        for kind, value in iter_sse(r.iter_lines()):
            if kind == "data" and value != "[DONE]":
                content += json.loads(value)["choices"][0]["delta"].get("content") or ""
            match = TASK_ID_RE.search(content)
            if match:
                return match.group(1)
    raise AssertionError(f"no task ID in {content!r}")


def test_sigkill_then_restart_finishes_every_task(make_home: Callable[[str], Path]) -> None:
    home = make_home("restart")
    first = ServerProcess(home, ENV).start()
    try:
        # a video completed before the crash
        r = httpx.post(
            f"{first.base_url}/v1/chat/completions",
            json={"model": "sora-2", "messages": [user("a red kite over green hills")], "stream": False},
            timeout=120,
        )
        done = parse_reply(r.json()["choices"][0]["message"]["content"])
        assert done.video_url is not None
        before = httpx.get(done.video_url).content
        media_path = urlsplit(done.video_url).path

        task_ids = [submit_and_leave(first.base_url, f"scene {i}: a paper boat on a river") for i in range(3)]
        states = {t: httpx.get(f"{first.base_url}/source/{t}").json()["status"] for t in task_ids}
        assert any(s in ("queued", "in_progress") for s in states.values()), states
    finally:
        status = first.kill()
    assert status == -signal.SIGKILL

    with ServerProcess(home, ENV) as second:
        for task_id in task_ids:
            src = poll_source(second.base_url, task_id, timeout=180)
            assert src["status"] == "completed", src
            assert src["error"] is None
            probed = probe_video(httpx.get(src["url"]).content)
            assert probed.info.frames == src["frames"] == 8  # 2 s at 4 fps
            if states[task_id] == "in_progress":  # interrupted mid-run: run again, fenced by a new attempt
                assert src["attempt"] >= 2, src
        # the video made before the crash is still there, byte for byte, at the same name
        old = httpx.get(f"{second.base_url}/source/{done.task_id}").json()
        assert old["status"] == "completed"
        assert old["sid"] == done.sid
        assert urlsplit(old["url"]).path == media_path
        after = httpx.get(f"{second.base_url}{media_path}").content
        assert hashlib.sha256(after).digest() == hashlib.sha256(before).digest()


def test_a_second_server_on_the_same_home_refuses_to_start(make_home: Callable[[str], Path]) -> None:
    # it would take the first one's running tasks for its own interrupted work and run them twice
    home = make_home("one-home")
    with ServerProcess(home) as first:
        second = ServerProcess(home)
        with pytest.raises(RuntimeError, match="already serving"):
            second.start(timeout=30)
        assert httpx.get(f"{first.base_url}/healthz").status_code == 200
