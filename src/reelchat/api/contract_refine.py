"""The request schemas narrowed to what this server really accepts: its catalog, and text that is not blank.

A schema that says `seconds: integer` promises that any integer works, and a fuzzer (rightly) holds
the server to it. So the document is built per app, from the catalog in effect:
- a body with `model`, `seconds` and `size` becomes one variant per set of models that take the same
  seconds and sizes (the default model's may leave `model` out), from the same values
  `service/planning.py` checks (`allowed_seconds`, `allowed_sizes`: OpenAI's and the model's own);
- a `prompt`, and a character's `name`, must hold a character that `str.strip` keeps (the service
  strips them, and refuses them empty);
- an edit's `model` (which model edits an uploaded video) is one of the catalog's;
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
from ..domain import EXTEND_SECONDS
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
    """The `seconds` a request may name for this model (what `plan_task` accepts): OpenAI's and its own."""
    return list(spec.allowed_seconds)


def allowed_sizes(spec: ModelSpec) -> list[str]:
    """The `size` values a request may name for this model (what `plan_task` accepts): OpenAI's and its own."""
    return list(spec.public_sizes)


def _is_form(schema: dict[str, Any]) -> bool:
    return str(schema.get("title", "")).endswith("(multipart)")


def _video_variant(base: dict[str, Any], group: Sequence[ModelSpec], *, default: str | None) -> dict[str, Any]:
    """The body for models that take the same values (`group`); the default model's may leave `model` out."""
    spec = group[0]
    variant = copy.deepcopy(base)
    props = variant["properties"]
    seconds = allowed_seconds(spec)
    form = _is_form(base)
    # a form carries text; JSON takes the SDK's string or a number, or null for the model's default
    props["seconds"] = {"enum": [str(s) for s in seconds] if form else [*seconds, *(str(s) for s in seconds), None]}
    props["size"] = {"enum": allowed_sizes(spec) if form else [*allowed_sizes(spec), None]}
    names = [s.name for s in group]
    props["model"] = {"const": names[0]} if len(names) == 1 else {"enum": names}
    required = [r for r in variant.get("required", []) if r != "model"]
    if default is None:
        required.append("model")
    title = ", ".join(f"{name} (the default)" if name == default else name for name in names)
    variant["title"] = f"{title}: {base.get('title', '')}"
    if "input_reference" in props:
        if not spec.capabilities.image_input:
            props["input_reference"] = False  # refused when present
        else:
            if form:  # the file part is declared at the top; a variant holding no bytes is one a fuzzer can judge
                del props["input_reference"]
            if not spec.capabilities.text_to_video:
                required.append("input_reference")
    variant["required"] = required
    return variant


def _same_values(spec: ModelSpec) -> tuple[Any, ...]:
    caps = spec.capabilities
    return (tuple(allowed_seconds(spec)), tuple(allowed_sizes(spec)), caps.image_input, caps.text_to_video)


def _by_model(schema: dict[str, Any], specs: Sequence[ModelSpec], default_model: str) -> dict[str, Any]:
    # one variant per set of models that take the same values: fewer branches, and the default model's
    # companions need not name themselves (which, with a file part in the body, schemathesis can't tell
    # from an invalid body: it does not validate bytes against the other branches)
    groups: dict[tuple[Any, ...], list[ModelSpec]] = {}
    for spec in specs:
        groups.setdefault(_same_values(spec), []).append(spec)
    variants = [
        _video_variant(schema, group, default=default_model if any(s.name == default_model for s in group) else None)
        for group in groups.values()
    ]
    # the fields stay declared at the top too (a form's file part is found there); the variants say what they hold
    props = {**schema["properties"]}
    for name, what in (("model", "a model of the catalog"), ("seconds", "whole seconds"), ("size", "WxH")):
        props[name] = {"description": f"{what}: the values each model takes are in its variant below"}
    return {**schema, "properties": props, "anyOf": variants}


def _extension(schema: dict[str, Any], specs: Sequence[ModelSpec]) -> dict[str, Any]:
    """`POST /v1/videos/extensions`: the video (an id, or an uploaded file in a form) is required, `seconds`
    is what an extension adds, and `model` (which model extends an upload) one that can extend."""
    ext = copy.deepcopy(schema)
    props = ext["properties"]
    form = _is_form(schema)
    seconds = list(EXTEND_SECONDS)
    props["seconds"] = {"enum": [str(s) for s in seconds] if form else [*seconds, *(str(s) for s in seconds)]}
    names = [s.name for s in specs if s.capabilities.extend]
    props["model"] = {"enum": names if form else [*names, None]}
    if not form:
        props["video"] = {"$ref": "#/components/schemas/VideoReference"}
    ext["required"] = sorted({*ext.get("required", []), "video"})
    return ext


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


def _request_bodies(doc: dict[str, Any]) -> set[str]:
    """The component names that some operation takes as its request body."""
    names: set[str] = set()
    for operations in doc["paths"].values():
        for op in operations.values():
            for content in op.get("requestBody", {}).get("content", {}).values():
                ref = content.get("schema", {}).get("$ref")
                if isinstance(ref, str):
                    names.add(ref.rsplit("/", 1)[-1])
    return names


def catalog_refiner(specs: Sequence[ModelSpec], default_model: str) -> Callable[[dict[str, Any]], None]:
    """What `openapi_document` applies to the document for this catalog."""
    names = [s.name for s in specs]

    def refine(doc: dict[str, Any]) -> None:
        schemas: dict[str, Any] = doc["components"]["schemas"]
        bodies = _request_bodies(doc)  # a response (a Video's `seconds`: an extension's total) is not narrowed
        for name, schema in list(schemas.items()):
            props = schema.get("properties", {})
            prompt = props.get("prompt")
            if isinstance(prompt, dict) and prompt.get("type") == "string":
                prompt["pattern"] = NOT_BLANK
            if name in bodies and {"model", "seconds", "size"} <= props.keys():
                schemas[name] = _by_model(schema, specs, default_model)
            if name in ("ExtendBody", "ExtendBodyForm"):
                schemas[name] = _extension(schema, specs)
            elif name.startswith("EditVideoBody"):  # and its form
                props["model"] = {"enum": names if _is_form(schema) else [*names, None]}
            elif name.startswith("CreateCharacterBody"):
                props["name"]["pattern"] = NOT_BLANK
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
