"""Shared test helpers: a real `reelchat serve` subprocess, SSE reading, reply parsing, media probing.

Replies are read with the regexes that real clients of the resellers' `sora-2` format use
(`ID: \\`task_…\\``, `sid: s_…`, the `.mp4` link), so a change that breaks those clients breaks
these tests.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn

import httpx
import pytest

from reelchat.media.encode import VideoInfo, decode_mp4, probe_mp4

# --------------------------------------------------------------------------- the seed's conversation

SEED_FIRST_TURN = "Generate a high-definition video of cows and horses dancing."
SEED_SECOND_TURN = "Let the cow's head have a halo, and the horse's feet step on auspicious clouds."
SEED_ZH_TURN = "让牛的头上顶着光圈，马的脚下踩着祥云"


def user(text: str) -> Any:  # Any: also what the SDK's message TypedDicts accept
    return {"role": "user", "content": text}


def assistant(text: str) -> Any:
    return {"role": "assistant", "content": text}


# --------------------------------------------------------------------------- processes

SERVER_START_TIMEOUT_S = 60.0


def missing_dependency(what: str) -> NoReturn:
    """A test dependency that isn't here (PostgreSQL, Chromium) skips, named in the summary (`-rs`).
    Under CI=true, where .ci/run provides both, it fails instead: CI must never pass by skipping."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (required under CI=true)", pytrace=False)
    pytest.skip(what)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a reelchat subprocess: ours minus any REELCHAT_* of the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELCHAT_")}
    env["REELCHAT_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_cli(
    home: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """`reelchat <args>` as a user runs it, with REELCHAT_HOME=home."""
    return subprocess.run(  # noqa: S603  (fixed argv: this interpreter and our own CLI)
        [sys.executable, "-m", "reelchat.cli", *args],
        env=clean_env(home, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class PortTaken(RuntimeError):
    """The port picked for a server was bound by someone else before the server could bind it."""


class ServerProcess:
    """`reelchat serve` in a subprocess on a free port; stop it with SIGTERM (`stop`) or SIGKILL (`kill`)."""

    _live: ClassVar[set[subprocess.Popen[bytes]]] = set()

    def __init__(
        self,
        home: Path,
        env: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.home = home
        self.env = dict(env or {})
        self.host = host
        self._port_given = port is not None
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / f"server-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = SERVER_START_TIMEOUT_S) -> ServerProcess:
        for _ in range(3):
            try:
                return self._start(timeout)
            except PortTaken:
                if self._port_given:
                    raise
                # another process bound the free port between our pick and uvicorn's bind (uvicorn binds
                # only after the app's startup): pick another one
                self.port = free_port()
                self.log_path = self.home / f"server-{self.port}.log"
        return self._start(timeout)

    def _start(self, timeout: float) -> ServerProcess:
        cmd = [sys.executable, "-m", "reelchat.cli", "serve", "--host", self.host, "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603  (fixed argv: this interpreter and our own CLI)
                cmd, env=clean_env(self.home, self.env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        ServerProcess._live.add(self.proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "address already in use" in self.log()[-4000:]:
                    ServerProcess._live.discard(self.proc)
                    raise PortTaken(self.port)
                raise RuntimeError(f"reelchat serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"reelchat serve did not answer /healthz within {timeout} s:\n{self.log()[-4000:]}")

    def _signal(self, sig: int, timeout: float) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        ServerProcess._live.discard(self.proc)
        return int(self.proc.returncode)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (graceful); SIGKILL if it doesn't exit within `timeout`. Returns the exit status."""
        return self._signal(signal.SIGTERM, timeout)

    def kill(self) -> int:
        """SIGKILL: the process dies at once, mid-write if it must."""
        return self._signal(signal.SIGKILL, 10.0)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.stop()


@atexit.register
def _kill_leftover_servers() -> None:
    """A run interrupted with Ctrl-C must not leave servers behind (they run in their own session)."""
    for proc in list(ServerProcess._live):
        if proc.poll() is None:
            proc.kill()


# --------------------------------------------------------------------------- SSE


@dataclass
class SSEStream:
    """A whole `text/event-stream` body, read strictly."""

    payloads: list[dict[str, Any]]  # every `data: {...}` in order
    done: bool  # ended with `data: [DONE]` and nothing after it
    comments: int  # `: keep-alive` lines

    @property
    def content(self) -> str:
        return "".join(p["choices"][0]["delta"].get("content") or "" for p in self.payloads)

    @property
    def content_pieces(self) -> list[str]:
        return [p["choices"][0]["delta"].get("content") or "" for p in self.payloads]


def iter_sse(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """("data", payload) and ("comment", text) items from SSE lines; one data line per event."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield "data", "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        else:
            raise AssertionError(f"unexpected SSE line: {line!r}")
    if data:
        yield "data", "\n".join(data)


def parse_sse(text: str) -> SSEStream:
    payloads: list[dict[str, Any]] = []
    done = False
    comments = 0
    for kind, value in iter_sse(text.split("\n")):
        assert not done, f"something came after data: [DONE]: {kind} {value!r}"
        if kind == "comment":
            comments += 1
        elif value == "[DONE]":
            done = True
        else:
            payloads.append(json.loads(value))
    return SSEStream(payloads, done, comments)


# --------------------------------------------------------------------------- the reply's Markdown

WORDS = {
    "zh": {
        "preview": "数据预览",
        "raw": "原始数据",
        "queuing": "排队中",
        "generating": "生成中",
        "progress": "进度",
        "complete": "生成完成 ✅",
        "play": "在线播放▶️",
        "failed": "生成失败 ❌",
        "reason": "原因",
    },
    "en": {
        "preview": "Data Preview",
        "raw": "Raw Data",
        "queuing": "Queuing",
        "generating": "Generating",
        "progress": "Progress",
        "complete": "Generating Complete ✅",
        "play": "Online Play▶️",
        "failed": "Generating Failed ❌",
        "reason": "Reason",
    },
}

# what clients in the wild grep the reply for
TASK_ID_RE = re.compile(r"> ID: `(task_[0-9a-z]{26})`")
SID_LINE_RE = re.compile(r"> sid: (s_[0-9a-f]{32})")
MP4_LINK_RE = re.compile(r"\[(?:在线播放|Online Play)▶️\]\((\S+?\.mp4)\)")
WEBP_IMAGE_RE = re.compile(r"!\[[^\]]*\]\((\S+?\.webp)\)")
JSON_BLOCK_RE = re.compile(r"```json\n(\{.*?\})\n```", re.DOTALL)
PROGRESS_NUMBER_RE = re.compile(r"(\d+)\.\.")


def _reply_re(locale: str) -> re.Pattern[str]:
    w = {k: re.escape(v) for k, v in WORDS[locale].items()}
    runner = re.escape("🏃\u200d")
    return re.compile(
        r"\A```json\n(?P<json>\{.*?\})\n```"
        r"\n\n> ID: `(?P<task_id>task_[0-9a-z]{26})`"
        rf"\n>\[{w['preview']}\]\((?P<web>\S+)\) \| \[{w['raw']}\]\((?P<source>\S+)\)"
        rf"\n> {w['queuing']}\.*"
        rf"(?:\n> {w['generating']}\.*)?"
        rf"(?:\n\n>{runner} {w['progress']} (?P<progress>(?:\d+\.{{2,}})+))?"
        r"(?:"
        rf"\n\n> {w['complete']}\n> sid: (?P<sid>s_[0-9a-f]{{32}})"
        r"\n\n!\[(?P<thumb_alt>[^\]]*)\]\((?P<thumb>\S+\.webp)\)"
        rf"\n\[{w['play']}\]\((?P<mp4>\S+\.mp4)\)"
        r"|"
        rf"\n\n> {w['failed']}\n> {w['reason']}: (?P<reason>[^\n]+)"
        r")\Z",
        re.DOTALL,
    )


@dataclass
class Reply:
    """One chat reply, taken apart."""

    content: str
    echo: dict[str, Any]
    echo_text: str
    task_id: str
    web_url: str
    source_url: str
    progress: list[int] = field(default_factory=list)
    sid: str | None = None
    thumbnail_url: str | None = None
    thumbnail_alt: str | None = None
    video_url: str | None = None
    reason: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.video_url is not None


def parse_reply(content: str, locale: str = "zh") -> Reply:
    """The reply in the seed's structure (success or failure), or an AssertionError showing it."""
    m = _reply_re(locale).match(content)
    assert m is not None, f"reply does not have the seed's {locale} structure:\n{content}"
    echo_text = m["json"]
    echo = json.loads(echo_text)
    assert isinstance(echo, dict)
    progress = [int(n) for n in PROGRESS_NUMBER_RE.findall(m["progress"] or "")]
    # and the loose regexes clients use find the same things
    assert TASK_ID_RE.findall(content) == [m["task_id"]]
    if m["sid"]:
        assert SID_LINE_RE.findall(content) == [m["sid"]]
        assert MP4_LINK_RE.findall(content) == [m["mp4"]]
        assert WEBP_IMAGE_RE.findall(content) == [m["thumb"]]
    return Reply(
        content=content,
        echo=echo,
        echo_text=echo_text,
        task_id=m["task_id"],
        web_url=m["web"],
        source_url=m["source"],
        progress=progress,
        sid=m["sid"],
        thumbnail_url=m["thumb"],
        thumbnail_alt=m["thumb_alt"],
        video_url=m["mp4"],
        reason=m["reason"],
    )


def keepalive_count(stream: SSEStream) -> int:
    """Keep-alives a client saw: SSE comments plus the dots appended to the queued/generating lines."""
    return stream.comments + sum(1 for piece in stream.content_pieces if piece == ".")


# --------------------------------------------------------------------------- media


@dataclass(frozen=True)
class Probed:
    info: VideoInfo
    decoded_frames: int
    decoded_shape: tuple[int, ...]


def probe_video(data: bytes) -> Probed:
    info = probe_mp4(data)
    frames = decode_mp4(data)
    return Probed(info=info, decoded_frames=int(frames.shape[0]), decoded_shape=tuple(frames.shape))


def decode_webp(data: bytes) -> tuple[int, int]:
    """(width, height) of a WebP image; raises if Pillow can't decode it."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "WEBP"
        img.load()
        return img.size


# --------------------------------------------------------------------------- waiting

FINISHED = ("completed", "failed", "cancelled")


def poll_source(base_url: str, task_id: str, *, until: tuple[str, ...] = FINISHED, timeout: float = 120.0) -> Any:
    """GET /source/<task id> until its status is one of `until`; returns the JSON."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        r = httpx.get(f"{base_url}/source/{task_id}", timeout=10.0)
        assert r.status_code == 200, r.text
        last = r.json()
        if last["status"] in until:
            return last
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not reach {until} within {timeout} s; last: {last}")


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is the OpenAI error shape with this status (and code); returns the error object."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str), err
    assert err["message"], err
    assert isinstance(err["type"], str), err
    assert err["type"], err
    assert err["param"] is None or isinstance(err["param"], str), err
    if code is not None:
        assert err["code"] == code, err
    return dict(err)
