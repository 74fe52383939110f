"""The CLI's side of a running reelchat server: where it is, the key, requests, and following a task.

Only the public API is used, as any client would: `/v1/videos` (create, remix, retrieve, list,
content), `/v1/chat/completions` (a remix by `s_…` sid), and `/source/{task id}` with its live
`/events`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
FINISHED = ("completed", "failed", "cancelled")


class ClientError(Exception):
    """What to tell the user (no traceback): the server's error message, or why it can't be reached."""


def resolve_base_url(given: str | None, env: Mapping[str, str] = os.environ) -> str:
    """--base-url, else REELCHAT_BASE_URL, else OPENAI_BASE_URL, else the default; `/v1` and a trailing
    slash are dropped (OPENAI_BASE_URL names the API root, the CLI wants the server's)."""
    url = given or env.get("REELCHAT_BASE_URL") or env.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    url = url.rstrip("/")
    return url.removesuffix("/v1")


def resolve_api_key(given: str | None, env: Mapping[str, str] = os.environ) -> str | None:
    return given or env.get("REELCHAT_API_KEY") or env.get("OPENAI_API_KEY") or None


@dataclass
class Server:
    base_url: str
    api_key: str | None
    timeout_s: float = 60.0

    def _client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=self.timeout_s, trust_env=False)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            with self._client() as client:
                response = client.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ClientError(
                f"could not reach reelchat at {self.base_url}: is `reelchat serve` running there? "
                "(set it with --base-url or REELCHAT_BASE_URL)"
            ) from None
        except httpx.HTTPError as e:
            raise ClientError(f"request to {self.base_url}{path} failed: {type(e).__name__}: {e}") from None
        if response.status_code >= 400:
            raise ClientError(_error_message(response))
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.request(method, path, **kwargs).json()
        return body

    def task_id_of(self, ref: str) -> str:
        """A task id from a task id or a video id."""
        if ref.startswith("task_"):
            return ref
        video = self.json("GET", f"/v1/videos/{ref}")
        return str(video["task_id"])

    def video_id_of(self, ref: str) -> str:
        """A video id from a video id or a task id."""
        if ref.startswith("task_"):
            return str(self.json("GET", f"/source/{ref}")["video_id"])
        return ref

    def chat_remix(self, sid: str, prompt: str, model: str | None) -> str:
        """A remix of the video `sid` through the chat API (the Videos API names videos by video id);
        returns its task id as soon as the reply announces it (the task goes on without the stream)."""
        block = json.dumps({"sid": sid, "prompt": prompt}, ensure_ascii=False)
        body = {
            "model": model or "sora-2",
            "stream": True,
            "messages": [{"role": "user", "content": f"```json\n{block}\n```"}],
        }
        try:
            with self._client() as client, client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ClientError(_error_message(response))
                seen = ""
                for line in response.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    for choice in json.loads(line[6:]).get("choices", []):
                        seen += (choice.get("delta") or {}).get("content") or ""
                    if (start := seen.find("task_")) >= 0 and len(seen) >= start + 31:
                        return seen[start : start + 31]
        except httpx.ConnectError:
            raise ClientError(f"could not reach reelchat at {self.base_url}") from None
        raise ClientError(f"the chat reply named no task:\n{seen.strip()}")

    def follow(self, task_id: str, on_update: Callable[[str, int], None]) -> dict[str, Any]:
        """Calls `on_update(status, progress)` as the task moves (its live events), until it finishes;
        returns its `/source` view. Falls back to polling if the event stream breaks off."""
        try:
            for status, progress in self._events(task_id):
                on_update(status, progress)
                if status in FINISHED:
                    break
        except httpx.HTTPError:
            pass
        while True:
            view = self.json("GET", f"/source/{task_id}")
            on_update(view["status"], int(view["progress"]))
            if view["status"] in FINISHED:
                return view
            import time

            time.sleep(0.5)

    def _events(self, task_id: str) -> Iterator[tuple[str, int]]:
        with (
            httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(30.0, read=None), trust_env=False) as client,
            client.stream("GET", f"/source/{task_id}/events") as response,
        ):
            if response.status_code >= 400:
                response.read()
                raise ClientError(_error_message(response))
            for line in response.iter_lines():
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    yield str(event["status"]), int(event["progress"])


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{error['message']} (HTTP {response.status_code}, {error.get('code') or error.get('type')})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:300]}"
