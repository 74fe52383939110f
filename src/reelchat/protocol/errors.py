"""Errors in a request's content, framework-free: the API turns them into OpenAI-shaped 400s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["RequestError", "describe_validation_error"]


class RequestError(ValueError):
    """The request can't be read. Picklable (all fields are in `args`), so it crosses processes."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message, param, code)
        self.message = message
        self.param = param
        self.code = code

    def __str__(self) -> str:
        return self.message


def describe_validation_error(errors: Sequence[Any]) -> tuple[str, str | None, str]:
    """(message, param, code) for pydantic's first error, named by its field path: `messages[0].content`."""
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    param = ""
    for part in loc:
        param += f"[{part}]" if part.isdigit() else (f".{part}" if param else part)
    msg = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        return f"Missing required parameter: '{param}'.", param or None, "missing_required_parameter"
    message = f"Invalid value for '{param}': {msg}." if param else f"Invalid request: {msg}."
    return message, param or None, "invalid_value"
