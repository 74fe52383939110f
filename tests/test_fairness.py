"""Per-key caps: one tenant can't fill the queue or hold every stream while the others wait.

A real `reelchat serve` whose `stuck` model has an upstream that accepts connections and never
answers, so its videos stay unfinished and its chat replies stay open for as long as a test needs.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from helpers import assert_openai_error, user
from server_util import KeyedServer, chat_text, start_server

pytestmark = pytest.mark.slow

QUEUED_PER_KEY = 2
STREAMS_PER_KEY = 1


class SilentUpstream:
    """Accepts connections and never answers them."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self.sock.close()


@pytest.fixture(scope="module")
def server(make_home: Callable[[str], Path], demo_models: Path) -> Iterator[KeyedServer]:
    silent = SilentUpstream()
    stuck: dict[str, Any] = {
        "engine": "upstream",
        "upstream": {"base_url": silent.base_url, "model": "x", "request_timeout_s": 600, "deadline_s": 900},
        "seconds": [4],
        "default_seconds": 4,
        "portrait_sizes": ["96x160"],
        "landscape_sizes": ["160x96"],
        "fps": 4,
        "steps": 1,
    }
    env = {
        "REELCHAT_MAX_QUEUED_PER_KEY": str(QUEUED_PER_KEY),
        "REELCHAT_MAX_STREAMS_PER_KEY": str(STREAMS_PER_KEY),
        "REELCHAT_KEEPALIVE_S": "0.3",
    }
    s = start_server(
        make_home, demo_models, "fairness", models={"stuck": stuck}, keys=["alice", "bob", "carol", "dave"], env=env
    )
    try:
        yield s
    finally:
        s.proc.stop()
        silent.close()


def _create(http: httpx.Client, prompt: str) -> httpx.Response:
    return http.post("/v1/videos", json={"prompt": prompt, "model": "stuck"})


def test_a_key_over_its_queue_cap_gets_429_while_another_key_is_served(server: KeyedServer) -> None:
    with server.http("alice") as alice, server.http("bob") as bob:
        mine = []
        for i in range(QUEUED_PER_KEY):
            r = _create(alice, f"alice's video {i}")
            assert r.status_code == 200, r.text
            mine.append(r.json()["id"])
        refused = _create(alice, "one too many")
        err = assert_openai_error(refused, 429, "too_many_queued_for_key")
        assert err["type"] == "rate_limit_error"
        assert "REELCHAT_MAX_QUEUED_PER_KEY" in err["message"]
        assert f"{QUEUED_PER_KEY} videos" in err["message"]
        assert int(refused.headers["retry-after"]) > 0
        # a chat turn counts against the same cap
        with pytest.raises(openai.RateLimitError):
            chat_text(server.client("alice"), [user("one too many")], model="stuck")
        # bob is served all the same
        served = _create(bob, "bob's video")
        assert served.status_code == 200, served.text
        assert served.json()["status"] in ("queued", "in_progress")
        # once one of alice's is gone, she has room again
        assert alice.delete(f"/v1/videos/{mine[0]}").status_code == 200
        again = _create(alice, "alice's next video")
        assert again.status_code == 200, again.text


def test_a_key_over_its_stream_cap_gets_429_while_another_key_streams(server: KeyedServer) -> None:
    body = {"model": "stuck", "stream": True, "messages": [user("a video that takes forever")]}
    with server.http("carol") as carol, server.http("dave") as dave:
        with carol.stream("POST", "/v1/chat/completions", json=body) as held:
            assert held.status_code == 200
            lines = held.iter_lines()  # kept: a closed iterator would close the response (and free its slot)
            seen = ""
            while "task_" not in seen:  # the reply is under way: its ID is out
                seen += next(lines)
            with carol.stream("POST", "/v1/chat/completions", json=body) as refused:
                assert refused.status_code == 429, "a second reply was let through"  # (and it would never end)
                refused.read()
            err = assert_openai_error(refused, 429, "too_many_streams_for_key")
            assert "REELCHAT_MAX_STREAMS_PER_KEY" in err["message"]
            assert int(refused.headers["retry-after"]) > 0
            with dave.stream("POST", "/v1/chat/completions", json=body) as other:
                assert other.status_code == 200
                other_lines = other.iter_lines()
                assert next(other_lines).startswith("data: ")
            assert isinstance(next(lines), str)  # carol's reply is still open (no StopIteration)
        # carol hung up: her slot comes back
        deadline = time.monotonic() + 15
        while True:
            with carol.stream("POST", "/v1/chat/completions", json=body) as again:
                if again.status_code == 200:
                    break
                assert again.status_code == 429
            assert time.monotonic() < deadline, "the stream slot was never released"
            time.sleep(0.2)
