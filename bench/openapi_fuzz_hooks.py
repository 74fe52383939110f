"""schemathesis hooks for fuzzing reelchat's OpenAPI document: real images where the schema says "an image".

A schema can say that `image_url` is a string and `input_reference` a file, not that the string
must name a picture the server can fetch and decode: a generated one is refused (400), rightly,
and a check that valid requests are accepted would blame the server. So every image a generated
request carries as a string or bytes is swapped for a real PNG (a data: URL, or the file's bytes).
Values of another type are left alone: they are the fuzzer's wrong types, and must still be refused.

Loaded by `st run` through SCHEMATHESIS_HOOKS=openapi_fuzz_hooks (with bench/ on PYTHONPATH),
as `bench/fuzz_openapi.sh` and `tests/test_openapi_contract.py` do.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import schemathesis
from PIL import Image


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 80, 40)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def _image_url(value: Any) -> Any:
    if isinstance(value, str):
        return PNG_URL
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        return {**value, "url": PNG_URL}
    if isinstance(value, dict) and isinstance(value.get("image_url"), str):
        return {**value, "image_url": PNG_URL}
    return value


def _chat(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "image_url" and "image_url" in part:
                part["image_url"] = _image_url(part["image_url"])


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    if "messages" in body:
        _chat(body)
    ref = body.get("input_reference")
    if isinstance(ref, bytes | bytearray) or type(ref).__name__ == "Binary":
        body["input_reference"] = PNG
    elif ref is not None:
        body["input_reference"] = _image_url(ref)
    return body
