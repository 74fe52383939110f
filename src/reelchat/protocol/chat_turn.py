"""Reading a chat conversation in the resellers' `sora-2` format into a `Turn`.

The request body is an OpenAI chat completion request (`chat_schema`). The latest user message
is the turn; the rest of the history only matters for one thing: the most recent assistant reply
that finished a video carries `> sid: s_…`, and the new turn modifies ("remixes") that video.

Pure: no I/O, no web framework. The readers a turn is built from, each with the decisions it
makes where the brief was silent: `chat_json_block` (the JSON block and its keys), `chat_words`
(orientation and duration words), `chat_references` (the sid in history, pasted ids and links).

Decisions made here, where the brief was silent:

- What the user pasted wins over history, in this order: a JSON `sid` > the last `s_<32 hex>`
  in the text > the last task id in the text (a `/web/task_…` or `/source/task_…` link, or a
  bare `task_…`). At most one of `source_sid` / `source_task_id` is set. A JSON `sid` whose
  value is a task id sets `source_task_id`.
- Orientation and duration words are looked for in the prompt and in the text outside the JSON
  block (when the prompt came from the block).
- Images come from the latest user message only. A user message over 4 x MAX_PROMPT_CHARS is
  refused without being parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..domain import EXTEND_SECONDS, MAX_PROMPT_CHARS, Orientation
from .chat_json_block import find_json_block, read_json_keys
from .chat_references import history_sid, looks_like_sid, pasted_source, strip_edge_refs
from .chat_schema import ChatMessage, message_images, message_text
from .chat_turn_error import TurnError
from .chat_words import asks_to_extend, orientation_from_words, seconds_from_words

__all__ = ["Turn", "read_turn"]

_MAX_TEXT_CHARS = 4 * MAX_PROMPT_CHARS  # a user message longer than this is refused unread


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
    # continue the source video (its `seconds` more) instead of remixing it
    extend: bool = False


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

    block = find_json_block(text)
    json_keys: dict[str, object] = {}
    outside = text
    if block is not None:
        obj, outside = block
        json_keys = read_json_keys(obj, allowed_seconds)

    json_prompt = json_keys.get("prompt")
    prompt = json_prompt if isinstance(json_prompt, str) else strip_edge_refs(outside)
    prompt = prompt.strip()
    if not prompt:
        what = "an image alone is not enough; " if image_urls else ""
        raise TurnError(f"The last user message has no prompt text ({what}describe the video).")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise TurnError(f"The prompt is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS} characters.")

    # Where orientation and duration words are looked for: the prompt, and the user's words
    # beside a JSON block when the prompt came from the block.
    words = f"{outside}\n{prompt}" if isinstance(json_prompt, str) else prompt

    source_sid: str | None
    source_task_id: str | None
    json_sid = json_keys.get("sid")
    if isinstance(json_sid, str):
        source_sid, source_task_id = (json_sid, None) if looks_like_sid(json_sid) else (None, json_sid)
    else:
        source_sid, source_task_id = pasted_source(text)
    pasted = source_sid is not None or source_task_id is not None
    if not pasted:
        source_sid = history_sid(messages[:turn_index])

    orientation_value = json_keys.get("orientation")
    orientation = orientation_value if isinstance(orientation_value, Orientation) else orientation_from_words(words)
    # extending needs a video to extend: the history's, or one the user pasted
    has_source = source_sid is not None or source_task_id is not None
    extend = has_source and (json_keys.get("extend") is True or asks_to_extend(words))
    seconds_value = json_keys.get("seconds")
    if isinstance(seconds_value, int):
        seconds: int | None = seconds_value
    else:  # an extension's seconds are what it adds, from their own allowed set
        seconds = seconds_from_words(words, EXTEND_SECONDS if extend else allowed_seconds, more=extend)
    size_value = json_keys.get("size")
    seed_value = json_keys.get("seed")

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
        extend=extend,
    )
