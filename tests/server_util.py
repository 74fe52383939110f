"""What the Videos-API and remix end-to-end tests add to `helpers`: a keyed server, SDK chat turns, polling.

The server itself is `helpers.ServerProcess`; its catalog points at the session's shared demo build
(conftest's `demo_models`), so no server spends its first request building a model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
from helpers import Reply, ServerProcess, parse_reply, run_cli

# Small and fast for a 2-core CI machine: 10 s at 1 fps is 10 frames (Wan makes 13), and two denoising steps.
# The public shape (seconds "10", sizes 96x160 / 160x96) stays the built-in one.
FAST_SORA2: dict[str, Any] = {"steps": 2, "fps": 1}


def models_json(demo_root: Path, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """REELCHAT_MODELS_JSON: the built-in entries on the shared demo pipelines, plus `overrides`."""
    merged: dict[str, dict[str, Any]] = {
        name: {"pipeline": str(demo_root / "t2v"), "i2v_pipeline": str(demo_root / "i2v")}
        for name in ("sora-2", "sora-2-pro")
    }
    for name, fields in (overrides or {}).items():
        merged.setdefault(name, {}).update(fields)
    return json.dumps(merged)


def create_key(home: Path, name: str) -> str:
    """`reelchat keys create --name NAME` as an operator runs it; the secret is the output's last line."""
    out = run_cli(home, "keys", "create", "--name", name)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1].strip()


@dataclass
class KeyedServer:
    """A running server and the API keys created for it (by name)."""

    proc: ServerProcess
    keys: dict[str, str]

    @property
    def url(self) -> str:
        return self.proc.base_url

    def client(self, key_name: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.keys[key_name], max_retries=0, timeout=120.0)

    def http(self, key_name: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[key_name]}"} if key_name else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120.0)


def start_server(
    make_home: Callable[[str], Path],
    demo_models: Path,
    name: str,
    *,
    models: Mapping[str, Mapping[str, Any]] | None = None,
    keys: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> KeyedServer:
    """A fresh home, its keys created with the CLI first (so the server runs closed), then `reelchat serve`."""
    home = make_home(name)
    secrets = {key_name: create_key(home, key_name) for key_name in keys}
    extra = {"REELCHAT_MODELS_JSON": models_json(demo_models, models), "TOKENIZERS_PARALLELISM": "false"}
    proc = ServerProcess(home, {**extra, **(env or {})}).start()
    return KeyedServer(proc, secrets)


# --------------------------------------------------------------------------- chat through the SDK


def chat_text(
    client: openai.OpenAI,
    messages: list[dict[str, Any]],
    *,
    stream: bool = True,
    locale: str | None = None,
    model: str = "sora-2",
) -> str:
    """One chat turn through the official SDK: the reply's whole content (streamed deltas joined)."""
    headers = {"Accept-Language": locale} if locale else None
    msgs: Any = messages
    if stream:
        parts: list[str] = []
        for event in client.chat.completions.create(model=model, messages=msgs, stream=True, extra_headers=headers):
            for choice in event.choices:
                if choice.delta.content:
                    parts.append(choice.delta.content)
        return "".join(parts)
    done = client.chat.completions.create(model=model, messages=msgs, stream=False, extra_headers=headers)
    return done.choices[0].message.content or ""


def chat(
    client: openai.OpenAI,
    messages: list[dict[str, Any]],
    *,
    stream: bool = True,
    locale: str = "zh",
    model: str = "sora-2",
) -> Reply:
    """A turn that must succeed, its reply checked against the seed's structure in `locale`."""
    reply = parse_reply(chat_text(client, messages, stream=stream, locale=locale, model=model), locale)
    assert reply.succeeded, f"the generation failed: {reply.reason}\n{reply.content}"
    return reply


# --------------------------------------------------------------------------- waiting


def wait_video(client: openai.OpenAI, video_id: str, timeout_s: float = 120.0) -> Any:
    """Poll /v1/videos/{id} until it is completed or failed (the SDK's poll() sleeps 1 s at a time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        video = client.videos.retrieve(video_id)
        if video.status in ("completed", "failed"):
            return video
        assert time.monotonic() < deadline, f"{video_id} still {video.status} after {timeout_s} s"
        time.sleep(0.1)


def wait_video_http(http: httpx.Client, video_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = http.get(f"/v1/videos/{video_id}")
        assert r.status_code == 200, r.text
        video: dict[str, Any] = r.json()
        if video["status"] in ("completed", "failed"):
            return video
        assert time.monotonic() < deadline, f"{video_id} still {video['status']} after {timeout_s} s"
        time.sleep(0.1)
