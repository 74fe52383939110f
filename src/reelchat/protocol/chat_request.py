"""Reading a chat conversation in the resellers' `sora-2` format.

The request body is an OpenAI chat completion request. The latest user message is the turn;
the rest of the history only matters for one thing: the most recent assistant reply that
finished a video carries `> sid: s_…`, and the new turn modifies ("remixes") that video.

Pure: no I/O, no web framework.

Decisions made where the brief was silent (kept in one place so that they are easy to find):

- The source video is looked for in assistant messages *before* the latest user message only
  (a trailing assistant message after the turn is not history of it). Within one assistant
  message the last labelled `sid: s_…` wins (that is the done line; the JSON echo's
  `"sid": "s_…"` names the *source* of that turn and is not matched because of its quotes).
- What the user pasted wins over history, in this order: a JSON `sid` > the last `s_<32 hex>`
  in the text > the last task id in the text (a `/web/task_…` or `/source/task_…` link, or a
  bare `task_…`). At most one of `source_sid` / `source_task_id` is set. A JSON `sid` whose
  value is a task id sets `source_task_id`.
- Pasted ids stay in the prompt, except a bare id/link (optionally labelled `sid:` / `ID:` /
  `task id:` and wrapped in backticks or `<>`) at the very start or end of the text, which is
  stripped together with the punctuation that separates it from the words.
- JSON block: the last fenced block tagged ```json (case-insensitive), or an untagged fenced block
  whose body is a JSON object with at least one known key, or the whole text when it is such an
  object. A tagged block that is not a JSON object is an error. Keys with `null` are treated
  as absent; unknown keys are ignored. `seconds`/`duration` accept an int or a numeric string
  ("10", "10s"); `seed` an int or a digit string (0 <= seed < 2**63); `size` is "WxH"
  (also "W*H", "W×H", upper-case X), normalised to "WxH".
- Orientation words: a ratio (9:16 / 16:9), the Chinese words, or an English word followed by
  video/mode/orientation/format/… are strong; a bare English word (portrait, vertical, …) is
  weak. A strong mention beats a weak one; among equals the last mention wins. Words are
  looked for in the prompt and in the text outside the JSON block, with ids and URLs blanked.
  (So "a mountain landscape" alone does give landscape, as the brief's word list asks.)
- Durations from words: the last mention whose value is allowed wins.
- Pasted ids are read case-insensitively and lower-cased. Images come from the latest user
  message only. A user message over 4 x MAX_PROMPT_CHARS is refused without being parsed.
- History is untrusted and unbounded: only the last 16 KiB of each assistant message is searched
  for a sid (our done line ends our reply), and every pattern here runs in linear time (possessive
  runs, bounded values, lookbehinds that start a search only where a run starts), so no text can
  make a pattern backtrack quadratically. `tests/test_redos.py` holds every pattern to that.
- `json_keys` holds the recognised keys of the JSON block with their *normalised* values,
  under canonical names (`duration` → `seconds`), in the JSON's order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictStr,
    Tag,
)

from ..domain import MAX_PROMPT_CHARS, Orientation
from ..ids import SID_PATTERN, SID_RE, TASK_ID_PATTERN, TASK_ID_RE

__all__ = [
    "MAX_PROMPT_CHARS",
    "SID_RE",
    "TASK_ID_RE",
    "ChatCompletionRequest",
    "ChatMessage",
    "ContentPart",
    "ImageURL",
    "ImageUrlPart",
    "OtherPart",
    "TextPart",
    "Turn",
    "TurnError",
    "looks_like_sid",
    "looks_like_task_id",
    "message_images",
    "message_text",
    "read_turn",
]

_MAX_TEXT_CHARS = 4 * MAX_PROMPT_CHARS  # a user message longer than this is refused unread

# --------------------------------------------------------------------------- identifiers

_SID = SID_PATTERN
_TASK = TASK_ID_PATTERN

_B = r"(?<![0-9A-Za-z_])"  # left boundary for ids
_E = r"(?![0-9A-Za-z_])"  # right boundary for ids
# Ids the user typed: case-insensitive (Crockford base32 and hex are), lower-cased when read.
_SID_IN_TEXT = re.compile(_B + "(" + _SID + ")" + _E, re.IGNORECASE)
_TASK_IN_TEXT = re.compile(_B + "(" + _TASK + ")" + _E, re.IGNORECASE)
# The done line of one of our replies: "> sid: s_…" (tolerates `code`, ** and a full-width colon).
# Linear time: every run of spaces and stars is matched possessively (`*+`), so a long run can't be
# split between two quantifiers in all possible ways (the quadratic backtracking of `\s*\**\s*`).
_SID_LABEL_HEAD = r"(?<![0-9A-Za-z_\"'])sid\**+\s*+[:：][\s*]*+`?"
_SID_LABEL = re.compile(_SID_LABEL_HEAD + "(" + _SID + ")" + _E, re.IGNORECASE)


# Something meant as a sid that isn't one (truncated, padded, non-hex): an error, not a fresh video.
_SID_LIKE = re.compile(_B + r"(s_[0-9A-Za-z]{8,})" + _E)
# A labelled value is at most 200 characters: bounded, so each "sid:" costs O(1) however long the text.
_SID_LABEL_ANY = re.compile(_SID_LABEL_HEAD + r"(s_[^\s`]{0,200}+)`?+(?=\s|$)", re.IGNORECASE)


def _reject_malformed(candidates: list[str], where: str) -> None:
    for value in candidates:
        if not SID_RE.fullmatch(value.lower()):
            raise TurnError(
                f"{where} names the video id '{value[:80]}', which is malformed: "
                "a video id is 's_' followed by 32 hex digits."
            )


def looks_like_sid(s: str) -> bool:
    """True when `s` is exactly a video sid (`s_` + 32 lowercase hex)."""
    return SID_RE.fullmatch(s) is not None


def looks_like_task_id(s: str) -> bool:
    """True when `s` is exactly a task id (`task_` + 26 lowercase Crockford base32 chars)."""
    return TASK_ID_RE.fullmatch(s) is not None


# --------------------------------------------------------------------------- request models


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["text"]
    text: StrictStr


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: StrictStr
    detail: StrictStr | None = None


class ImageUrlPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["image_url"]
    image_url: ImageURL | StrictStr

    @property
    def url(self) -> str:
        return self.image_url if isinstance(self.image_url, str) else self.image_url.url


class OtherPart(BaseModel):
    """A content part of a type we do not use (audio, file, refusal, …): accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    type: StrictStr


def _part_tag(v: Any) -> str:
    t = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
    if t == "text":
        return "text"
    if t == "image_url":
        return "image_url"
    return "other"


ContentPart = Annotated[
    Annotated[TextPart, Tag("text")] | Annotated[ImageUrlPart, Tag("image_url")] | Annotated[OtherPart, Tag("other")],
    Discriminator(_part_tag),
]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: StrictStr
    content: StrictStr | list[ContentPart] | None = None


class ChatCompletionRequest(BaseModel):
    """The body of `POST /v1/chat/completions`. Other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: StrictStr
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = False


def message_text(message: ChatMessage) -> str:
    """The text of a message: its string content, or its text parts joined with newlines."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p.text for p in content if isinstance(p, TextPart))


def message_images(message: ChatMessage) -> tuple[str, ...]:
    """The urls of a message's image_url parts, in order."""
    content = message.content
    if content is None or isinstance(content, str):
        return ()
    return tuple(p.url for p in content if isinstance(p, ImageUrlPart))


# --------------------------------------------------------------------------- the turn


class TurnError(ValueError):
    """The conversation cannot be read as a video request. `param` names the offending field."""

    def __init__(self, message: str, param: str = "messages") -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Turn:
    """What the latest user turn asks for."""

    prompt: str
    orientation: Orientation | None = None  # None: the user did not say
    seconds: int | None = None
    size: str | None = None
    seed: int | None = None
    source_sid: str | None = None
    source_task_id: str | None = None
    pasted_reference: bool = False  # the source came from the user's words, not our history
    image_urls: tuple[str, ...] = ()
    json_keys: dict[str, object] = field(default_factory=dict)


# ---- JSON block

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)```", re.DOTALL)
_KNOWN_KEYS = ("prompt", "orientation", "seconds", "duration", "size", "seed", "sid")


def _find_json_block(text: str) -> tuple[dict[str, Any], str] | None:
    """The JSON object of the turn and the text outside it, or None when there is none."""
    chosen: tuple[dict[str, Any], str] | None = None
    for m in _FENCE.finditer(text):
        lang = m.group(1).lower()
        body = m.group(2)
        if lang == "json":
            try:
                obj = json.loads(body)
            except ValueError as e:
                raise TurnError(f"The ```json block in the last user message is not valid JSON: {e}") from e
            if not isinstance(obj, dict):
                raise TurnError("The ```json block in the last user message must be a JSON object.")
        elif lang == "":
            try:
                obj = json.loads(body)
            except ValueError:
                continue
            if not isinstance(obj, dict) or not any(k in obj for k in _KNOWN_KEYS):
                continue
        else:
            continue
        outside = text[: m.start()] + "\n" + text[m.end() :]
        chosen = (obj, outside)  # the last block wins
    if chosen is not None:
        return chosen
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            return None
        if isinstance(obj, dict) and any(k in obj for k in _KNOWN_KEYS):
            return obj, ""
    return None


# Matched with fullmatch on the stripped value (no two adjacent unbounded runs: linear time).
_SECONDS_STR = re.compile(r"(\d{1,4})\s*(?:s|sec|secs|seconds?|秒)?", re.IGNORECASE)
_SIZE_STR = re.compile(r"(\d{2,5})\s*[xX*×]\s*(\d{2,5})")
_MAX_SEED = 2**63 - 1


def _allowed_text(allowed_seconds: Sequence[int]) -> str:
    if not allowed_seconds:
        return "this model takes no duration"
    return "allowed values: " + ", ".join(str(s) for s in sorted(set(allowed_seconds)))


def _json_seconds(key: str, value: object, allowed_seconds: Sequence[int]) -> int:
    n: int | None = None
    if isinstance(value, bool):
        n = None
    elif isinstance(value, int):
        n = value
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    elif isinstance(value, str):
        m = _SECONDS_STR.fullmatch(value.strip())
        n = int(m.group(1)) if m else None
    if n is None:
        raise TurnError(f'JSON "{key}" must be a whole number of seconds ({_allowed_text(allowed_seconds)}).')
    if n not in allowed_seconds:
        raise TurnError(f'JSON "{key}" is {n}, which this model does not support ({_allowed_text(allowed_seconds)}).')
    return n


def _json_orientation(value: object) -> Orientation:
    if isinstance(value, str):
        o = _ORIENTATION_VALUES.get(value.strip().lower())
        if o is not None:
            return o
    raise TurnError('JSON "orientation" must be "portrait" or "landscape".')


def _json_size(value: object) -> str:
    if isinstance(value, str):
        m = _SIZE_STR.fullmatch(value.strip())
        if m:
            return f"{int(m.group(1))}x{int(m.group(2))}"
    raise TurnError('JSON "size" must be a string "WIDTHxHEIGHT", e.g. "720x1280".')


def _json_seed(value: object) -> int:
    n: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and value.strip().isdigit():
        n = int(value.strip())
    if n is None or not 0 <= n <= _MAX_SEED:
        raise TurnError(f'JSON "seed" must be an integer from 0 to {_MAX_SEED}.')
    return n


def _json_sid(value: object) -> str:
    if isinstance(value, str):
        v = value.strip().lower()
        if looks_like_sid(v) or looks_like_task_id(v):
            return v
    raise TurnError('JSON "sid" must be a video id ("s_" and 32 hex digits) or a task id ("task_…").')


def _read_json_keys(obj: dict[str, Any], allowed_seconds: Sequence[int]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in obj.items():
        if value is None:
            continue
        if key == "prompt":
            if not isinstance(value, str):
                raise TurnError('JSON "prompt" must be a string.')
            if value.strip():
                out["prompt"] = value.strip()
        elif key == "orientation":
            out["orientation"] = _json_orientation(value)
        elif key in ("seconds", "duration"):
            n = _json_seconds(key, value, allowed_seconds)
            if "seconds" in out and out["seconds"] != n:
                raise TurnError('JSON "seconds" and "duration" disagree; give one of them.')
            out["seconds"] = n
        elif key == "size":
            out["size"] = _json_size(value)
        elif key == "seed":
            out["seed"] = _json_seed(value)
        elif key == "sid":
            out["sid"] = _json_sid(value)
    return out


# ---- orientation and duration words

_ORIENTATION_VALUES: dict[str, Orientation] = {
    "portrait": Orientation.PORTRAIT,
    "vertical": Orientation.PORTRAIT,
    "9:16": Orientation.PORTRAIT,
    "竖屏": Orientation.PORTRAIT,
    "竖版": Orientation.PORTRAIT,
    "landscape": Orientation.LANDSCAPE,
    "horizontal": Orientation.LANDSCAPE,
    "16:9": Orientation.LANDSCAPE,
    "横屏": Orientation.LANDSCAPE,
    "横版": Orientation.LANDSCAPE,
}

_EN_WORD = r"(portrait|vertical|landscape|horizontal)"
_ORIENT_STRONG = re.compile(
    r"(?<![\d:：])(9|16)\s*[:：]\s*(16|9)(?![\d:：])"
    r"|(竖屏|竖版|横屏|横版)"
    r"|\b" + _EN_WORD + r"[\s-]+(?:video|videos|mode|orientation|format|aspect|ratio|shot|clip|screen|layout)\b",
    re.IGNORECASE,
)
_ORIENT_WEAK = re.compile(r"\b" + _EN_WORD + r"\b", re.IGNORECASE)

_DURATION = re.compile(
    r"(?<![\d.,:])(\d{1,3})\s*+-?+\s*+(?:(?:s|sec|secs|second|seconds)(?![A-Za-z])|秒)",
    re.IGNORECASE,
)
_URL = re.compile(r"https?://\S+|/(?:web|source)/" + _TASK)


def _blank_refs(text: str) -> str:
    """The text with URLs and ids replaced by spaces, so that their digits are not read as words."""
    text = _URL.sub(" ", text)
    text = _SID_IN_TEXT.sub(" ", text)
    return _TASK_IN_TEXT.sub(" ", text)


def _orientation_from_words(text: str) -> Orientation | None:
    text = _blank_refs(text)
    strong: Orientation | None = None
    for m in _ORIENT_STRONG.finditer(text):
        if m.group(1):
            a, b = m.group(1), m.group(2)
            if a == b:
                continue
            strong = _ORIENTATION_VALUES[f"{a}:{b}"]
        else:
            word = m.group(3) or m.group(4)
            strong = _ORIENTATION_VALUES[word.lower()]
    if strong is not None:
        return strong
    weak: Orientation | None = None
    for m in _ORIENT_WEAK.finditer(text):
        weak = _ORIENTATION_VALUES[m.group(1).lower()]
    return weak


def _seconds_from_words(text: str, allowed_seconds: Sequence[int]) -> int | None:
    found: int | None = None
    for m in _DURATION.finditer(_blank_refs(text)):
        n = int(m.group(1))
        if n in allowed_seconds:
            found = n
    return found


# ---- pasted references

_REF_STOP = r"[^\s<>()\[\]`'\"，。、；：！？]"
# A link to one of our pages, with or without scheme and host: "https://h/web/task_…", "h:8000/source/task_…".
# It starts where a run of link characters starts (the lookbehind): a search then tries each run once
# instead of once per character of it, which kept a long run of "/" quadratic.
_URL_REF = (
    r"(?<!"
    + _REF_STOP
    + r")(?:https?://)?"
    + _REF_STOP
    + r"*?/(?:web|source)/"
    + _TASK
    + r"(?:[/?#]"
    + _REF_STOP
    + r"*+)?"
)
_REF = r"(?:" + _URL_REF + "|" + _SID + "|" + _TASK + ")"
_WRAPPED = _B + r"(?:<" + _REF + r">|`" + _REF + r"`|" + _REF + r")" + _E
_LABEL = r"(?:(?<![0-9A-Za-z_])(?:sid|id|task[ _]?id)\s*[:：=]\s*)?"
_LEADING_REF = re.compile(r"(?<!\s)\s*+" + _LABEL + _WRAPPED + r"\s*[,，:：;；、.。-]*\s*", re.IGNORECASE)
_TRAILING_REF = re.compile(_LABEL + _WRAPPED + r"[.。]?$", re.IGNORECASE)
_TRAILING_SEPARATORS = " \t\r\n,，:：;；、-"
_TAIL_WINDOW = 1024  # a trailing reference is looked for in the text's last characters only


def _strip_edge_refs(text: str) -> str:
    """Remove a bare id or link (and its label) from the start and the end of the text.

    Linear in the text's length: the leading pattern is anchored, the trailing one only searched
    for in a bounded tail window.
    """
    text = text.strip()
    while True:
        before = text
        m = _LEADING_REF.match(text)
        if m:
            text = text[m.end() :].strip()
        cut = max(0, len(text) - _TAIL_WINDOW)
        m = _TRAILING_REF.search(text, cut)
        if m:
            text = text[: m.start()].rstrip(_TRAILING_SEPARATORS)
        text = text.strip()
        if text == before:
            return text


def _pasted_source(text: str) -> tuple[str | None, str | None]:
    """(sid, task id) the user pasted in the text; at most one is set, a sid wins."""
    sids = _SID_IN_TEXT.findall(text)
    if sids:
        return str(sids[-1]).lower(), None
    _reject_malformed(_SID_LIKE.findall(text), "The latest message")
    tasks = _TASK_IN_TEXT.findall(text)
    if tasks:
        return None, str(tasks[-1]).lower()
    return None, None


_HISTORY_TAIL_CHARS = 16_384  # our done line ends a reply: only a message's last characters are read


def _history_sid(messages: Sequence[ChatMessage]) -> str | None:
    for message in reversed(messages):
        if message.role != "assistant":
            continue
        text = message_text(message)[-_HISTORY_TAIL_CHARS:]
        sids = _SID_LABEL.findall(text)
        if sids:
            return str(sids[-1]).lower()
        _reject_malformed(_SID_LABEL_ANY.findall(text), "The conversation")
    return None


def read_turn(messages: Sequence[ChatMessage], *, allowed_seconds: Sequence[int]) -> Turn:
    """Read the latest user turn of a conversation into a `Turn`.

    Raises `TurnError` (param "messages") when there is no user message with text, when the
    prompt is longer than `MAX_PROMPT_CHARS`, or when a JSON block has bad values.
    """
    turn_index = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)
    if turn_index is None:
        raise TurnError("messages must contain a user message with the video prompt.")
    message = messages[turn_index]
    text = message_text(message)
    image_urls = message_images(message)
    if len(text) > _MAX_TEXT_CHARS:  # surely over the limit: do not parse it
        raise TurnError(
            f"The last user message is {len(text)} characters long; the prompt limit is {MAX_PROMPT_CHARS} characters."
        )

    block = _find_json_block(text)
    json_keys: dict[str, object] = {}
    outside = text
    if block is not None:
        obj, outside = block
        json_keys = _read_json_keys(obj, allowed_seconds)

    json_prompt = json_keys.get("prompt")
    prompt = json_prompt if isinstance(json_prompt, str) else _strip_edge_refs(outside)
    prompt = prompt.strip()
    if not prompt:
        what = "an image alone is not enough; " if image_urls else ""
        raise TurnError(f"The last user message has no prompt text ({what}describe the video).")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise TurnError(f"The prompt is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS} characters.")

    # Where orientation and duration words are looked for: the prompt, and the user's words
    # beside a JSON block when the prompt came from the block.
    words = f"{outside}\n{prompt}" if isinstance(json_prompt, str) else prompt

    orientation_value = json_keys.get("orientation")
    orientation = orientation_value if isinstance(orientation_value, Orientation) else _orientation_from_words(words)
    seconds_value = json_keys.get("seconds")
    seconds = seconds_value if isinstance(seconds_value, int) else _seconds_from_words(words, allowed_seconds)
    size_value = json_keys.get("size")
    seed_value = json_keys.get("seed")

    source_sid: str | None
    source_task_id: str | None
    json_sid = json_keys.get("sid")
    if isinstance(json_sid, str):
        source_sid, source_task_id = (json_sid, None) if looks_like_sid(json_sid) else (None, json_sid)
    else:
        source_sid, source_task_id = _pasted_source(text)
    pasted = source_sid is not None or source_task_id is not None
    if not pasted:
        source_sid = _history_sid(messages[:turn_index])

    return Turn(
        prompt=prompt,
        orientation=orientation,
        seconds=seconds,
        size=size_value if isinstance(size_value, str) else None,
        seed=seed_value if isinstance(seed_value, int) else None,
        source_sid=source_sid,
        source_task_id=source_task_id,
        pasted_reference=pasted,
        image_urls=image_urls,
        json_keys=json_keys,
    )
