"""The JSON block of a user turn: finding it in the text, and reading its keys into checked values.

Pure: no I/O, no web framework.

Decisions made where the brief was silent:

- JSON block: the last fenced block tagged ```json (case-insensitive), or an untagged fenced block
  whose body is a JSON object with at least one known key, or the whole text when it is such an
  object. A tagged block that is not a JSON object is an error. Keys with `null` are treated
  as absent; unknown keys are ignored. `seconds`/`duration` accept an int or a numeric string
  ("10", "10s"); `seed` an int or a digit string (0 <= seed < 2**63); `size` is "WxH"
  (also "W*H", "W×H", upper-case X), normalised to "WxH".
- `json_keys` holds the recognised keys of the JSON block with their *normalised* values,
  under canonical names (`duration` → `seconds`), in the JSON's order.
- The value patterns are matched with fullmatch on the stripped value and have no two adjacent
  unbounded runs, so they run in linear time (`tests/test_redos.py`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from ..domain import EXTEND_SECONDS, Orientation
from .chat_references import looks_like_sid, looks_like_task_id
from .chat_turn_error import TurnError
from .chat_words import orientation_named

__all__ = ["find_json_block", "read_json_keys"]

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)```", re.DOTALL)
_KNOWN_KEYS = ("prompt", "orientation", "seconds", "duration", "size", "seed", "sid", "extend")


def find_json_block(text: str) -> tuple[dict[str, Any], str] | None:
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
        o = orientation_named(value.strip().lower())
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


def read_json_keys(obj: dict[str, Any], allowed_seconds: Sequence[int]) -> dict[str, object]:
    """The recognised keys of a JSON block with their normalised values (see the module docstring)."""
    out: dict[str, object] = {}
    extend = obj.get("extend")
    if extend is not None and not isinstance(extend, bool):
        raise TurnError('JSON "extend" must be true or false.')
    if extend:  # the seconds to add, not the clip's length
        out["extend"] = True
        allowed_seconds = EXTEND_SECONDS
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
