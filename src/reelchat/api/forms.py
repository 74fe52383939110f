"""Reading a Videos-API request body, JSON or a form, into plain fields and the files that matter.

The official SDK sends every create, edit and character request as multipart/form-data (even with no
file), and flattens objects into bracketed names (`video[id]`, `input_reference[image_url]`); JSON
clients send the same fields as objects. Both come out here as one dict, with bracketed names nested
again and a name sent more than once holding the list of its values (so `prompt` twice is refused, not
read as its last value). Like OpenAI, unknown text fields are left for the request model to ignore, and unknown or empty
file parts are ignored as well: only the named `files` are read, and a part with no bytes counts as absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile

from .body_parser import BodyParser
from .errors import ApiError

__all__ = ["FORM_TYPES", "Upload", "is_form", "read_fields"]

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_MAX_FILES = 16  # parts with a filename; unknown ones are read past, not refused
_MAX_FIELDS = 100


@dataclass(frozen=True)
class Upload:
    """A file part's bytes and the content type its sender gave."""

    data: bytes
    content_type: str
    filename: str


def is_form(request: Request) -> bool:
    """Whether the body is a form (multipart or urlencoded), where every field is text."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower() in FORM_TYPES


async def read_fields(
    request: Request, bodies: BodyParser, files: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, Upload]]:
    """The body's fields (bracketed names nested: `video[id]` -> {"video": {"id": ...}}) and its
    non-empty file parts named in `files`."""
    if not is_form(request):
        return await bodies.json_object(await request.body()), {}  # a large body parses off the event loop
    try:
        form = await request.form(max_files=_MAX_FILES, max_fields=_MAX_FIELDS)
    except ApiError:  # e.g. 413 from the body size limit
        raise
    except Exception as e:  # malformed multipart, too many parts
        raise ApiError(400, f"Could not parse the form body: {e}", code="invalid_body") from e
    fields: dict[str, Any] = {}
    uploads: dict[str, Upload] = {}
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if key in files and key not in uploads:
                    data = await value.read()
                    if data:  # an empty part is no file at all (a form's untouched file input)
                        ctype_part = value.content_type or "application/octet-stream"
                        uploads[key] = Upload(data, ctype_part, value.filename or "")
                continue  # unknown file parts are ignored, as unknown text fields are
            if key in files and not value:
                continue  # an untouched file input can arrive as an empty text part
            _put(fields, key, value)
    finally:
        await form.close()
    return fields, uploads


def _put(fields: dict[str, Any], key: str, value: str) -> None:
    """`name[sub]` -> fields["name"]["sub"] (one level, what the SDK's form encoder writes). A name sent
    more than once holds a list of its values, which a request model refuses where it wants one value."""
    name, bracket, rest = key.partition("[")
    if bracket and rest.endswith("]") and "[" not in rest and name:
        inner = fields.get(name)
        if not isinstance(inner, dict):
            inner = {}
            fields[name] = inner
        _add(inner, rest[:-1], value)
    else:
        _add(fields, key, value)


def _add(fields: dict[str, Any], key: str, value: str) -> None:
    if key not in fields:
        fields[key] = value
    elif isinstance(fields[key], list):
        fields[key].append(value)
    else:
        fields[key] = [fields[key], value]
