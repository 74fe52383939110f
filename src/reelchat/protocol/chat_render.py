"""Rendering a chat reply in the resellers' `sora-2` format, piece by piece.

The concatenated content of a reply is exactly the seed's Markdown (see
`spec/stream-example.md`): clients parse it with regexes (`ID: \\`task_…\\``, `sid: s_…`, the
`.mp4` link), so wording and punctuation are copied verbatim. Pure: no I/O.

Decisions made where the brief was silent:

- `keepalive()` returns "." while queued, generating *and* during progress (the seed's English
  example shows "Progress 76..." = "76.." plus one keep-alive dot); "" once done or failed.
- `progress()` before `generating()` first emits the generating line, so that the progress
  line never follows the queued line directly (the order is always the seed's).
- `header()`, `generating()`, `done()` and `failed()` each return their text once; a second call
  (or any call after done/failed) returns "". Nothing but a dot or "" follows a terminal state.
- An empty failure reason renders as "unknown error" / "未知错误".
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any, Literal

from ..ids import token_bytes

__all__ = [
    "LOCALES",
    "SSE_DONE",
    "Phase",
    "ReplyRenderer",
    "chunk",
    "completion",
    "echo_pieces",
    "echo_text",
    "new_completion_id",
    "pick_locale",
    "sse",
]

Phase = Literal["queued", "generating", "progress", "done", "failed"]

RUNNER = "\U0001f3c3\u200d"  # 🏃 + ZERO WIDTH JOINER, exactly as the seed streams it


@dataclass(frozen=True)
class _Strings:
    data_preview: str
    raw_data: str
    queuing: str
    generating: str
    progress: str
    complete: str
    online_play: str
    failed: str
    reason: str
    unknown_error: str


_STRINGS: dict[str, _Strings] = {
    "zh": _Strings(
        data_preview="数据预览",
        raw_data="原始数据",
        queuing="排队中",
        generating="生成中",
        progress="进度",
        complete="生成完成 ✅",
        online_play="在线播放▶️",
        failed="生成失败 ❌",
        reason="原因",
        unknown_error="未知错误",
    ),
    "en": _Strings(
        data_preview="Data Preview",
        raw_data="Raw Data",
        queuing="Queuing",
        generating="Generating",
        progress="Progress",
        complete="Generating Complete ✅",
        online_play="Online Play▶️",
        failed="Generating Failed ❌",
        reason="Reason",
        unknown_error="unknown error",
    ),
}

LOCALES: tuple[str, ...] = tuple(_STRINGS)


def _locale_of_tag(tag: str) -> str | None:
    primary = tag.strip().lower().replace("_", "-").split("-", 1)[0]
    return primary if primary in _STRINGS else None


def pick_locale(accept_language: str | None, default: str) -> str:
    """The reply's locale ("zh" or "en") for an Accept-Language header.

    Languages are tried by q-value (highest first, header order among equals); q=0 is skipped;
    "*" or nothing we speak gives `default` (itself read as a tag: "en-US" → "en"; anything
    unknown → "zh", the seed's language).
    """
    fallback = _locale_of_tag(default) or "zh"
    if not accept_language:
        return fallback
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(accept_language.split(",")):
        parts = item.strip().split(";")
        tag = parts[0].strip()
        if not tag:
            continue
        q = 1.0
        for param in parts[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        ranked.append((-q, index, tag))
    for _, _, tag in sorted(ranked):
        if tag == "*":
            return fallback
        locale = _locale_of_tag(tag)
        if locale is not None:
            return locale
    return fallback


# --------------------------------------------------------------------------- the JSON echo

_TOKEN = re.compile(r"\\u[0-9a-fA-F]{4}|\\.| ?[A-Za-z]+| ?\d+|\s+|.", re.DOTALL)


def _tokens(s: str) -> list[str]:
    return _TOKEN.findall(s)


def _json(value: object) -> str:
    """JSON with every backtick written `\\u0060`: no prompt can close the echo's ``` fence, even
    for a client that looks for the fence without reading the JSON (a backtick only ever appears
    inside a JSON string, where the escape means the same character)."""
    return json.dumps(value, ensure_ascii=False).replace("`", "\\u0060")


def echo_pieces(fields: dict[str, object]) -> list[str]:
    """The fenced JSON echo as small content pieces, laid out like the seed's chunks 1-61.

    Concatenated: "```json\\n{\\n  \\"key\\": \\"value\\",\\n  …\\n}\\n```". String values are
    JSON-escaped (so the echo is always valid JSON), backticks included; other values are rendered
    as JSON.
    """
    pieces: list[str] = ["```", "json", "\n", "{\n"]
    items = list(fields.items())
    for i, (key, value) in enumerate(items):
        last = i == len(items) - 1
        pieces += [" ", ' "', *_tokens(_json(str(key))[1:-1]), '":']
        if isinstance(value, str):
            pieces.append(' "')
            pieces += _tokens(_json(value)[1:-1])
            pieces.append('"\n' if last else '",\n')
        else:
            pieces.append(" ")
            pieces += _tokens(_json(value))
            pieces.append("\n" if last else ",\n")
    pieces += ["}\n", "```"]
    return [p for p in pieces if p]


def echo_text(fields: dict[str, object]) -> str:
    """The whole JSON echo (what `echo_pieces` concatenates to)."""
    return "".join(echo_pieces(fields))


# --------------------------------------------------------------------------- the status lines


def _one_line(text: str) -> str:
    """The text on one line: its non-blank lines, each stripped, joined with a space."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


_MARKDOWN = re.compile(r"([\\`*\[\]!<>~|])")


def _markdown_text(text: str) -> str:
    """Text that a Markdown renderer shows as itself: every character that could start markup (an
    image `![x](url)`, a link, HTML, code) is backslash-escaped. Reasons can come from an upstream
    server, and chat front-ends render replies as Markdown. `_` is left alone: ids hold it, and at
    worst it makes emphasis."""
    return _MARKDOWN.sub(r"\\\1", text)


class ReplyRenderer:
    """The status part of one reply. Each method returns the content to send next ("" = nothing).

    Call order, as in the seed: `header` → `keepalive`* → `generating` → `keepalive`* →
    `progress`* (with `keepalive`s between) → `done` or `failed`.
    """

    def __init__(self, locale: str) -> None:
        if locale not in _STRINGS:
            raise ValueError(f"unknown locale {locale!r}; expected one of {', '.join(LOCALES)}")
        self.locale = locale
        self._s = _STRINGS[locale]
        self._phase: Phase = "queued"
        self._header_sent = False
        self._last_progress: int | None = None

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def finished(self) -> bool:
        return self._phase in ("done", "failed")

    @property
    def last_progress(self) -> int | None:
        return self._last_progress

    def header(self, task_id: str, web_url: str, source_url: str) -> str:
        """The `> ID` line, the preview / raw-data links and the queued line (seed chunk 63)."""
        if self._header_sent or self.finished:
            return ""
        self._header_sent = True
        s = self._s
        return f"\n\n> ID: `{task_id}`\n>[{s.data_preview}]({web_url}) | [{s.raw_data}]({source_url})\n> {s.queuing}"

    def keepalive(self) -> str:
        """A dot appended to the current status line while the task is not finished."""
        return "" if self.finished else "."

    def generating(self) -> str:
        """The generating line, once."""
        if self._phase != "queued":
            return ""
        self._phase = "generating"
        return f"\n> {self._s.generating}"

    def progress(self, pct: int) -> str:
        """The progress line the first time, then each larger percentage as "NN.."."""
        if self.finished:
            return ""
        pct = max(0, min(100, int(pct)))
        if self._last_progress is None:
            lead = self.generating()
            self._phase = "progress"
            self._last_progress = pct
            return f"{lead}\n\n>{RUNNER} {self._s.progress} {pct}.."
        if pct > self._last_progress:
            self._last_progress = pct
            return f"{pct}.."
        return ""

    def done(self, sid: str, thumbnail_url: str, video_url: str) -> str:
        """The done line with the sid, the webp thumbnail and the mp4 link (seed chunk 76)."""
        if self.finished:
            return ""
        self._phase = "done"
        s = self._s
        return (
            f"\n\n> {s.complete}\n> sid: {sid}\n\n![{thumbnail_url}]({thumbnail_url})\n[{s.online_play}]({video_url})"
        )

    def failed(self, reason: str) -> str:
        """The failure lines; the reason is made one line of Markdown-escaped text."""
        if self.finished:
            return ""
        self._phase = "failed"
        s = self._s
        return f"\n\n> {s.failed}\n> {s.reason}: {_markdown_text(_one_line(reason)) or s.unknown_error}"


# --------------------------------------------------------------------------- wire objects

SSE_DONE = b"data: [DONE]\n\n"

_ID_ALPHABET = string.ascii_letters + string.digits


# each byte to one of 62 letters (the bias of 256 % 62 is irrelevant for an id)
_ID_LETTERS = bytes(ord(_ID_ALPHABET[b % len(_ID_ALPHABET)]) for b in range(256))


def new_completion_id() -> str:
    """ "chatcmpl-" + 29 random alphanumerics, like the seed's ids."""
    return "chatcmpl-" + token_bytes(29).translate(_ID_LETTERS).decode("ascii")


def chunk(
    completion_id: str,
    created: int,
    model: str,
    *,
    content: str | None = None,
    role: str | None = None,
    finish_reason: str | None = None,
) -> dict[str, Any]:
    """One `chat.completion.chunk`.

    With `role`: delta {"role": role, "content": content or ""}; with only `content`:
    {"content": content}; with neither: {} (the final chunk, with finish_reason "stop").
    """
    delta: dict[str, Any] = {}
    if role is not None:
        delta = {"role": role, "content": content if content is not None else ""}
    elif content is not None:
        delta = {"content": content}
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def sse(data: dict[str, Any]) -> bytes:
    """One server-sent event: `data: <compact JSON>` and a blank line (UTF-8, not ASCII-escaped)."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


class ContentEvents:
    """A reply's content chunks as server-sent events, byte for byte `sse(chunk(..., content=piece))`,
    with the envelope (id, created, model) encoded once per reply rather than once per piece: the
    echo alone is ~60 pieces, and a burst of replies spent more time in `json.dumps` than anywhere."""

    __slots__ = ("_head", "_tail")

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        envelope = sse(chunk(completion_id, created, model, content=""))
        cut = envelope.rindex(b'"content":""') + len(b'"content":')
        self._head, self._tail = envelope[:cut], envelope[cut + 2 :]

    def first(self, role: str = "assistant") -> bytes:
        """The reply's first chunk, byte for byte `sse(chunk(..., role=role, content=""))`."""
        field = len(b'"content":')
        role_field = b'"role":' + encode_basestring(role).encode() + b","
        return self._head[:-field] + role_field + self._head[-field:] + b'""' + self._tail

    def __call__(self, piece: str) -> bytes:
        # the C encoder json.dumps(piece, ensure_ascii=False) ends in, without building an encoder per piece
        return self._head + encode_basestring(piece).encode("utf-8") + self._tail


def completion(completion_id: str, created: int, model: str, content: str) -> dict[str, Any]:
    """A whole (non-stream) `chat.completion` carrying the reply's concatenated content."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }
