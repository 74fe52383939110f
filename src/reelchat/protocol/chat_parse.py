"""A chat completion body, from untrusted bytes to what the service needs, in bounded work.

Pure and picklable both ways, so that the API can run it in a worker process: a body may be
`REELCHAT_MAX_BODY_BYTES` of hostile JSON, and parsing it (`json.loads`, pydantic, the regexes)
holds the interpreter lock for as long as it runs, which a thread would not hide from the event loop.

What bounds the work:
- the JSON is parsed once, then its shape is checked (at most `MAX_MESSAGES` messages, at most
  `MAX_CONTENT_PARTS` parts in a message) before pydantic sees it;
- every regular expression over user text runs in linear time (see `tests/test_redos.py`);
- `read_turn` reads only the tail of each history message, where our done line is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .chat_schema import ChatCompletionRequest
from .chat_turn import Turn, read_turn
from .chat_turn_error import TurnError
from .errors import RequestError, describe_validation_error
from .json_body import load_json

__all__ = ["MAX_CONTENT_PARTS", "MAX_MESSAGES", "ParsedChat", "conversation_digest", "parse_chat_body"]

MAX_MESSAGES = 2048  # a conversation of a thousand turns
MAX_CONTENT_PARTS = 256  # parts (text, image_url, …) in one message


@dataclass(frozen=True)
class ParsedChat:
    """A chat request read: its model, whether it streams, and the latest turn.

    `turn` is None when `model` is not one the caller named in `seconds_by_model`: the service
    then answers with its own "unknown model" error, as it does for every API.
    """

    model: str
    stream: bool
    turn: Turn | None
    conversation: str = ""  # sha256 of the model and the messages (key order aside): the same chat re-sent


def conversation_digest(model: str, messages: Any) -> str:
    text = json.dumps([model, messages], sort_keys=True, separators=(",", ":"))  # ASCII: lone surrogates too
    return hashlib.sha256(text.encode()).hexdigest()


def _check_shape(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return  # pydantic names the problem
    if len(messages) > MAX_MESSAGES:
        raise RequestError(
            f"The conversation has {len(messages)} messages; at most {MAX_MESSAGES} are accepted.",
            param="messages",
            code="too_many_messages",
        )
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and len(content) > MAX_CONTENT_PARTS:
            raise RequestError(
                f"Message {i} has {len(content)} content parts; at most {MAX_CONTENT_PARTS} are accepted.",
                param=f"messages[{i}].content",
                code="too_many_parts",
            )


def parse_chat_body(raw: bytes, seconds_by_model: Mapping[str, Sequence[int]]) -> ParsedChat:
    """Parse and read a `POST /v1/chat/completions` body; raises `RequestError` with the OpenAI fields."""
    body = load_json(raw)
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.", code="invalid_json")
    _check_shape(body)
    try:
        req = ChatCompletionRequest.model_validate(body)
    except ValidationError as e:
        message, param, code = describe_validation_error(e.errors())
        raise RequestError(message, param=param, code=code) from None
    allowed = seconds_by_model.get(req.model)
    if allowed is None:
        return ParsedChat(req.model, bool(req.stream), None)
    try:
        turn = read_turn(req.messages, allowed_seconds=allowed)
    except TurnError as e:
        raise RequestError(str(e), param=e.param, code="invalid_value") from None
    return ParsedChat(req.model, bool(req.stream), turn, conversation_digest(req.model, body["messages"]))
