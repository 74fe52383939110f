"""No request can make the server's regular expressions, or its body parsing, take long.

Every compiled pattern in the package is found by walking it (a pattern added later is held to
the same rule without anyone listing it) and fed 100,000-character runs of what makes a
backtracking engine go quadratic: whitespace, `*`, `:`, digits, slashes, and mixes, behind the
prefixes its pattern looks for. A quadratic pattern takes seconds to minutes on these; a linear
one takes milliseconds. Then whole conversations built from the same runs go through the real
parser, and a real server answers `/healthz` while such bodies arrive.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import pkgutil
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from helpers import ServerProcess, assistant, user

import reelchat
from reelchat.protocol.chat_parse import MAX_CONTENT_PARTS, MAX_MESSAGES, parse_chat_body
from reelchat.protocol.chat_schema import ChatMessage
from reelchat.protocol.chat_turn import read_turn
from reelchat.protocol.errors import RequestError

N = 100_000
# Generous for a loaded 2-core CI machine; a quadratic pattern on 100k characters takes over 10 s.
PATTERN_BUDGET_S = 0.5
TURN_BUDGET_S = 2.0

UNITS = [" ", "\t", "\n", "*", ":", "0", "/", "`", "-", "a", " *", ": ", "0 ", "* :", "sid: ", "9:", "16 ", "1s "]
PREFIXES = ["", "sid", "sid:", "s_", "task_", "http://h", "a/web/", "```json\n", "bytes=", "<", "16"]


def _all_patterns() -> dict[str, re.Pattern[str]]:
    found: dict[str, re.Pattern[str]] = {}
    for info in pkgutil.walk_packages(reelchat.__path__, "reelchat."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
                found.setdefault(value.pattern, value)
                found[f"{info.name}.{name}"] = value
    return {k: v for k, v in found.items() if k.startswith("reelchat.")}


PATTERNS = _all_patterns()


def test_the_walk_finds_the_patterns_that_read_user_text() -> None:
    names = set(PATTERNS)
    for expected in (
        "reelchat.protocol.chat_references._SID_LABEL",
        "reelchat.protocol.chat_references._SID_LABEL_ANY",
        "reelchat.protocol.chat_words._DURATION",
        "reelchat.protocol.chat_references._LEADING_REF",
        "reelchat.protocol.chat_references._TRAILING_REF",
        "reelchat.media.ranges._RANGE_SPEC",
        "reelchat.api.links._HOST_RE",
        "reelchat.net.fetch._HOSTNAME_RE",
    ):
        assert expected in names


def _adversarial() -> list[str]:
    return [prefix + unit * (N // len(unit)) for unit in UNITS for prefix in PREFIXES]


INPUTS = _adversarial()


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_pattern_is_linear_on_adversarial_runs(name: str) -> None:
    pattern = PATTERNS[name]
    slowest, worst = 0.0, ""
    for text in INPUTS:
        started = time.perf_counter()
        pattern.search(text)
        pattern.match(text)
        pattern.fullmatch(text)
        for _ in pattern.finditer(text):
            pass
        took = time.perf_counter() - started
        if took > slowest:
            slowest, worst = took, text[:24]
    assert slowest < PATTERN_BUDGET_S, f"{name} took {slowest:.2f} s on {worst!r}… ({N} characters)"


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


@pytest.mark.parametrize(
    "history",
    [
        "sid:" + " " * N,  # the review's probe: 16k of these took 8 s
        "sid:" + "*" * N,
        "sid: " + "s_" + "0" * N,
        "**sid**:" + " *" * (N // 2),
        ("-sid:s_" + "x" * 20) * (N // 27),
        "sid:" + "\n" * N + "s_zz",
        "10" + " " * N + "-",
    ],
)
def test_a_hostile_history_is_read_fast(history: str) -> None:
    messages = [ChatMessage(role="user", content="a cat"), ChatMessage(role="assistant", content=history)] * 3
    messages.append(ChatMessage(role="user", content="now make it 10 s"))
    assert _timed(lambda: _read_or_refuse(messages)) < TURN_BUDGET_S


@pytest.mark.parametrize(
    "turn",
    [
        " " * 60_000,
        "a" + " " * 60_000 + "b",
        "10" + " " * 60_000 + "s",
        "9" + " " * 60_000 + ":16",
        "task_" + "/" * 60_000,
        "<" + "/" * 60_000 + " task_01hzzzzzzzzzzzzzzzzzzzzz",
        "```json\n" + " " * 60_000,
        "sid:" + " " * 60_000 + "s_",
        ("https://h/web/" + "/" * 40) * 1_000,
    ],
)
def test_a_hostile_turn_is_read_fast(turn: str) -> None:
    messages = [ChatMessage(role="user", content=turn)]
    assert _timed(lambda: _read_or_refuse(messages)) < TURN_BUDGET_S


def _read_or_refuse(messages: list[ChatMessage]) -> None:
    with contextlib.suppress(ValueError):  # refused with a clear message is as good as read
        read_turn(messages, allowed_seconds=[5, 10])


def test_a_conversation_over_the_message_limit_is_refused_before_it_is_validated() -> None:
    body = {"model": "sora-2", "messages": [assistant("x")] * MAX_MESSAGES + [user("a cat")]}
    with pytest.raises(RequestError) as e:
        parse_chat_body(json.dumps(body).encode(), {"sora-2": (10,)})
    assert e.value.code == "too_many_messages"
    assert e.value.param == "messages"
    assert str(MAX_MESSAGES) in e.value.message


def test_a_message_over_the_part_limit_is_refused() -> None:
    parts = [{"type": "text", "text": "x"}] * (MAX_CONTENT_PARTS + 1)
    body = {"model": "sora-2", "messages": [{"role": "user", "content": parts}]}
    with pytest.raises(RequestError) as e:
        parse_chat_body(json.dumps(body).encode(), {"sora-2": (10,)})
    assert e.value.code == "too_many_parts"
    assert e.value.param == "messages[0].content"


def test_a_sid_in_a_long_reply_is_still_found_near_its_end() -> None:
    sid = "s_" + "ab" * 16
    reply = "chatter " * 50_000 + f"\n\n> Generating Complete ✅\n> sid: {sid}\n\n![t](http://h/t.webp)"
    turn = read_turn(
        [ChatMessage(role="user", content="a cat"), ChatMessage(role="assistant", content=reply), user_msg("more")],
        allowed_seconds=[10],
    )
    assert turn.source_sid == sid


def user_msg(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


# --------------------------------------------------------------------------- a real server


@pytest.mark.slow
def test_healthz_answers_while_hostile_bodies_arrive(make_home: Callable[[str], Path]) -> None:
    """The review's probes against a real uvicorn: each hostile body gets its 400 (or its reply), and
    `/healthz` keeps answering meanwhile. On the code before the fix the first probe held it for about 10 s."""
    home = make_home("redos")
    with ServerProcess(home, {"REELCHAT_MODELS_JSON": json.dumps({"sora-2": {"steps": 1}})}) as server:
        url = server.base_url
        latencies: list[float] = []
        stop = threading.Event()

        def poll() -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                while not stop.is_set():
                    started = time.perf_counter()
                    c.get("/healthz")
                    latencies.append(time.perf_counter() - started)
                    time.sleep(0.01)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            bodies = [
                # a sid label followed by a long run of spaces, in the history
                # the review's probe: replies of "sid:" and 16,000 spaces (2 s each on the old code), the
                # oldest ending in a malformed sid, so that the request is a 400 once all were read
                {
                    "model": "sora-2",
                    "messages": [user("a cat"), assistant("sid:" + " " * 16_000 + "s_zz")]
                    + [user("b"), assistant("sid:" + " " * 16_000)] * 4
                    + [user("c")],
                },
                # many small messages: 17 MB that pydantic once took 0.6 s to validate on the loop
                {"model": "sora-2", "messages": [assistant("x" * 50)] * 200_000},
                # one 12 MB message: parsed in the worker process
                {"model": "sora-2", "messages": [assistant("sid:" + " " * 12_000_000), user("x" * 40_000)]},
            ]
            with httpx.Client(base_url=url, timeout=60) as c:
                for body in bodies:
                    r = c.post("/v1/chat/completions", content=json.dumps(body))
                    assert r.status_code == 400, r.text
                    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        finally:
            stop.set()
            poller.join()
        assert latencies, "the poller never got an answer"
        # a loaded 2-core CI machine can delay one answer by a second; the old code held it for 10 s
        assert max(latencies) < 2.5, f"/healthz waited {max(latencies):.2f} s behind a hostile body"
