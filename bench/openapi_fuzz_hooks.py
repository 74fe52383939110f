"""schemathesis hooks for fuzzing reelchat's OpenAPI document: real images and videos where the schema says so.

A schema can say that `image_url` is a string and `input_reference` a file, not that the string
must name a picture the server can fetch and decode: a generated one is refused (400), rightly,
and a check that valid requests are accepted would blame the server. So every image a generated
request carries as a string or bytes is swapped for a real PNG (a data: URL, or the file's bytes),
and every uploaded `video` file (an edit's, a character's, an extension's) of a valid request for a real
nine-frame MP4.
Values of another type are left alone: they are the fuzzer's wrong types, and must still be refused.

Loaded by `st run` through SCHEMATHESIS_HOOKS=openapi_fuzz_hooks (with bench/ on PYTHONPATH),
as `bench/fuzz_openapi.sh` and `tests/test_openapi_contract.py` do.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import av
import numpy as np
import schemathesis
from PIL import Image


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 80, 40)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def _mp4() -> bytes:
    """Nine 64x64 frames at 1 fps (enough for any model's windows to continue from): a 9 s video whose
    extension is a few cheap frames."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for shade in range(40, 220, 20):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), shade, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return buf.getvalue()


MP4 = _mp4()


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


def _is_file(value: Any) -> bool:
    return isinstance(value, bytes | bytearray) or type(value).__name__ == "Binary"


def _real_video(body: dict[str, Any]) -> None:
    if _is_file(body.get("video")):
        body["video"] = MP4


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    # just before sending, in every phase (the coverage phase builds bodies without `map_body`, a file
    # part holding a 1x1 PNG there); only a valid case's video: an invalid case must stay invalid
    # (schemathesis re-validates a body a hook edits, and can't validate bytes: it would call the case
    # invalid. A real MP4 is exactly what the schema's binary part means, so the case keeps its verdict.)
    meta = case.meta
    if meta is not None and meta.generation.mode.is_positive and isinstance(case.body, dict):
        _real_video(case.body)
        case._sync_validated_hashes()
    elif meta is not None and isinstance(case.body, dict):
        _really_drop_removed_requirements(meta, case.body)


def _really_drop_removed_requirements(meta: Any, body: dict[str, Any]) -> None:
    """A negative case made by dropping a property from `required` may still carry that property, and
    is then a valid request that the server rightly accepts (schemathesis 4.32 reports it as "should
    have been rejected"). Drop the property itself, so the case is what it claims: a request missing a
    required field, which the server must refuse."""
    data = getattr(getattr(meta, "phase", None), "data", None)
    for mutation in getattr(data, "mutations", None) or ():
        operator = getattr(getattr(mutation, "operator", None), "value", None)
        if operator == "remove_required_property" and tuple(mutation.path) == () and mutation.parameter in body:
            del body[mutation.parameter]


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    if "messages" in body:
        _chat(body)
    ref = body.get("input_reference")
    if _is_file(ref):
        body["input_reference"] = PNG
    elif ref is not None:
        body["input_reference"] = _image_url(ref)
    return body
