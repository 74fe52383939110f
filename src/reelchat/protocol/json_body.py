"""A JSON request body from untrusted bytes: parsed once, its size in values bounded.

Pure and picklable, so the API can run it in a worker process for large bodies (see
`api/body_parser.py`): `json.loads` of a 25 MB body holds the interpreter lock for 50-150 ms.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import RequestError

__all__ = ["MAX_JSON_VALUES", "count_values", "load_json", "load_json_object"]

MAX_JSON_VALUES = 10_000  # values (objects, arrays, scalars) in a body that is not a conversation


def load_json(raw: bytes) -> Any:
    """The JSON value of a request body, or a `RequestError` (400, `invalid_json`)."""
    if not raw.strip():
        raise RequestError("The request body is empty; expected a JSON object.", code="invalid_json")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise RequestError(f"We could not parse the JSON body of your request: {e}.", code="invalid_json") from e


def count_values(value: Any, limit: int) -> int:
    """How many JSON values `value` holds (itself included), counting no further than `limit` + 1."""
    count = 0
    stack = [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def load_json_object(raw: bytes, max_values: int = MAX_JSON_VALUES) -> dict[str, Any]:
    """A JSON object body of at most `max_values` values; anything else is a `RequestError`."""
    body = load_json(raw)
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.", code="invalid_json")
    if count_values(body, max_values) > max_values:
        raise RequestError(
            f"The request body holds more than {max_values} JSON values; this endpoint takes a flat object.",
            code="invalid_json",
        )
    return body
