"""The request schemas narrowed to what this server really accepts: its catalog, and text that is not blank.

A schema that says `seconds: integer` promises that any integer works, and a fuzzer (rightly) holds
the server to it. So the document is built per app, from the catalog in effect:
- a body with `model`, `seconds` and `size` becomes one variant per model naming its own seconds and
  sizes (and one without `model`, for the default model), from the same values `service/planning.py`
  checks (`allowed_seconds`, `allowed_sizes`);
- a `prompt` must hold a character that `str.strip` keeps (the service strips it, and refuses it empty);
- a chat `model` is one of the catalog's; a user message carries prompt text, and the limits
  `protocol/chat_parse.py` enforces on messages and parts are stated.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..catalog import ModelSpec
from ..protocol.chat_parse import MAX_CONTENT_PARTS, MAX_MESSAGES

__all__ = ["NOT_BLANK", "allowed_seconds", "allowed_sizes", "catalog_refiner"]


def _not_blank_pattern() -> str:
    """A regex (valid in Python and ECMA 262) matching one character that Python's `str.strip` keeps."""
    ranges: list[list[int]] = []
    for c in range(sys.maxunicode + 1):
        if chr(c).isspace():
            if ranges and ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
    parts = "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)
    return f"[^{parts}]"


NOT_BLANK = _not_blank_pattern()


def allowed_seconds(spec: ModelSpec) -> list[int]:
    """The `seconds` a request may name for this model (what `plan_task` accepts)."""
    return list(spec.seconds)


def allowed_sizes(spec: ModelSpec) -> list[str]:
    """The `size` values a request may name for this model (what `plan_task` accepts)."""
    return list(spec.all_sizes)


def _is_form(schema: dict[str, Any]) -> bool:
    return str(schema.get("title", "")).endswith("(multipart)")


def _video_variant(base: dict[str, Any], spec: ModelSpec, *, default: bool) -> dict[str, Any]:
    """The body for one model; the default model's may leave `model` out."""
    variant = copy.deepcopy(base)
    props = variant["properties"]
    seconds = allowed_seconds(spec)
    form = _is_form(base)
    # a form carries text; JSON takes the SDK's string or a number, or null for the model's default
    props["seconds"] = {"enum": [str(s) for s in seconds] if form else [*seconds, *(str(s) for s in seconds), None]}
    props["size"] = {"enum": allowed_sizes(spec) if form else [*allowed_sizes(spec), None]}
    props["model"] = {"const": spec.name}
    required = [r for r in variant.get("required", []) if r != "model"]
    if not default:
        required.append("model")
    variant["title"] = f"{spec.name}{' (the default)' if default else ''}: {base.get('title', '')}"
    if "input_reference" in props:
        if not spec.capabilities.image_input:
            props["input_reference"] = False  # refused when present
        elif not spec.capabilities.text_to_video:
            required.append("input_reference")
    variant["required"] = required
    return variant


def _by_model(schema: dict[str, Any], specs: Sequence[ModelSpec], default_model: str) -> dict[str, Any]:
    variants = [_video_variant(schema, spec, default=spec.name == default_model) for spec in specs]
    # the fields stay declared at the top too (a form's file part is found there); the variants say what they hold
    props = {**schema["properties"]}
    for name, what in (("model", "a model of the catalog"), ("seconds", "whole seconds"), ("size", "WxH")):
        props[name] = {"description": f"{what}: the values each model takes are in its variant below"}
    return {**schema, "properties": props, "anyOf": variants}


def _user_message(message: dict[str, Any], text_part: dict[str, Any]) -> dict[str, Any]:
    """A user message: the prompt is its text, so a string with a character or at least one such text part."""
    user = copy.deepcopy(message)
    user["title"] = "user message"
    user["properties"]["role"] = {"const": "user"}
    parts = copy.deepcopy(user["properties"]["content"]["anyOf"][1])
    parts["maxItems"] = MAX_CONTENT_PARTS
    parts["contains"] = {
        **text_part,
        "properties": {**text_part["properties"], "text": {"type": "string", "pattern": NOT_BLANK}},
    }
    user["properties"]["content"] = {"anyOf": [{"type": "string", "pattern": NOT_BLANK}, parts]}
    user["required"] = ["role", "content"]
    return user


def _other_message(message: dict[str, Any]) -> dict[str, Any]:
    other = copy.deepcopy(message)
    other["title"] = "system, assistant, tool… message"
    other["properties"]["role"] = {"type": "string", "not": {"const": "user"}}
    other["properties"]["content"]["anyOf"][1]["maxItems"] = MAX_CONTENT_PARTS
    return other


def catalog_refiner(specs: Sequence[ModelSpec], default_model: str) -> Callable[[dict[str, Any]], None]:
    """What `openapi_document` applies to the document for this catalog."""
    names = [s.name for s in specs]

    def refine(doc: dict[str, Any]) -> None:
        schemas: dict[str, Any] = doc["components"]["schemas"]
        for name, schema in list(schemas.items()):
            props = schema.get("properties", {})
            prompt = props.get("prompt")
            if isinstance(prompt, dict) and prompt.get("type") == "string":
                prompt["pattern"] = NOT_BLANK
            if {"model", "seconds", "size"} <= props.keys():
                schemas[name] = _by_model(schema, specs, default_model)
        chat = schemas.get("ChatCompletionRequest")
        if chat is not None:
            chat["properties"]["model"] = {"enum": names}
            chat["properties"]["messages"]["maxItems"] = MAX_MESSAGES
            chat["properties"]["messages"]["contains"] = {
                "properties": {"role": {"const": "user"}},
                "required": ["role"],
            }
            message = schemas["ChatMessage"]
            schemas["ChatMessage"] = {
                "title": "ChatMessage",
                "description": "The latest user message is the video's prompt; earlier turns are its history.",
                "anyOf": [_user_message(message, schemas["TextPart"]), _other_message(message)],
            }

    return refine


assert re.search(NOT_BLANK, " \t\n\u3000\x85") is None  # noqa: S101  (checks a constant once, at import)
