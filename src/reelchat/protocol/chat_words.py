"""Orientation and duration read from the user's words ("a vertical video", "9:16", "10 s", "竖屏").

Pure: no I/O, no web framework.

Decisions made where the brief was silent:

- Orientation words: a ratio (9:16 / 16:9), the Chinese words, or an English word followed by
  video/mode/orientation/format/… are strong; a bare English word (portrait, vertical, …) is
  weak. A strong mention beats a weak one; among equals the last mention wins. Words are
  looked for with ids and URLs blanked (`chat_turn` says in which text).
  (So "a mountain landscape" alone does give landscape, as the brief's word list asks.)
- Durations from words: the last mention whose value is allowed wins.
- Asking to continue: the turn starts with continue / extend / keep going / carry on (after an
  optional "please", "now", "ok"), or says "N more seconds" / "N seconds longer", or in Chinese
  延长 / 接着 / 续拍 / 继续拍 / 继续生成 anywhere. "continue" inside a description ("the river
  continues to flow") is not a request to extend.
- Every pattern here runs in linear time (possessive runs, lookbehinds); `tests/test_redos.py`
  holds them to that.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..domain import Orientation
from .chat_references import blank_references

__all__ = ["asks_to_extend", "orientation_from_words", "orientation_named", "seconds_from_words"]

_ORIENTATION_VALUES: dict[str, Orientation] = {
    "portrait": Orientation.PORTRAIT,
    "vertical": Orientation.PORTRAIT,
    "9:16": Orientation.PORTRAIT,
    "竖屏": Orientation.PORTRAIT,
    "竖版": Orientation.PORTRAIT,
    "landscape": Orientation.LANDSCAPE,
    "horizontal": Orientation.LANDSCAPE,
    "16:9": Orientation.LANDSCAPE,
    "横屏": Orientation.LANDSCAPE,
    "横版": Orientation.LANDSCAPE,
}

_EN_WORD = r"(portrait|vertical|landscape|horizontal)"
_ORIENT_STRONG = re.compile(
    r"(?<![\d:：])(9|16)\s*[:：]\s*(16|9)(?![\d:：])"
    r"|(竖屏|竖版|横屏|横版)"
    r"|\b" + _EN_WORD + r"[\s-]+(?:video|videos|mode|orientation|format|aspect|ratio|shot|clip|screen|layout)\b",
    re.IGNORECASE,
)
_ORIENT_WEAK = re.compile(r"\b" + _EN_WORD + r"\b", re.IGNORECASE)

_DURATION = re.compile(
    r"(?<![\d.,:])(\d{1,3})\s*+-?+\s*+(?:(?:s|sec|secs|second|seconds)(?![A-Za-z])|秒)",
    re.IGNORECASE,
)


def orientation_named(word: str) -> Orientation | None:
    """The orientation one word or ratio names ("portrait", "16:9", "竖屏"; lower-case), or None."""
    return _ORIENTATION_VALUES.get(word)


def orientation_from_words(text: str) -> Orientation | None:
    """The orientation the text asks for: the last strong mention, else the last weak one, else None."""
    text = blank_references(text)
    strong: Orientation | None = None
    for m in _ORIENT_STRONG.finditer(text):
        if m.group(1):
            a, b = m.group(1), m.group(2)
            if a == b:
                continue
            strong = _ORIENTATION_VALUES[f"{a}:{b}"]
        else:
            word = m.group(3) or m.group(4)
            strong = _ORIENTATION_VALUES[word.lower()]
    if strong is not None:
        return strong
    weak: Orientation | None = None
    for m in _ORIENT_WEAK.finditer(text):
        weak = _ORIENTATION_VALUES[m.group(1).lower()]
    return weak


_MORE_DURATION = re.compile(
    r"(?<![\d.,:])(\d{1,3})\s*+-?+\s*+(?:(?:more|extra|additional)\s++)?+"
    r"(?:(?:s|sec|secs|second|seconds)(?![A-Za-z])|秒)",
    re.IGNORECASE,
)


def seconds_from_words(text: str, allowed_seconds: Sequence[int], *, more: bool = False) -> int | None:
    """The last duration the text mentions that is one of `allowed_seconds`, or None. With `more` (an
    extension), "4 more seconds" counts too."""
    found: int | None = None
    for m in (_MORE_DURATION if more else _DURATION).finditer(blank_references(text)):
        n = int(m.group(1))
        if n in allowed_seconds:
            found = n
    return found


_EXTEND_EN_LEAD = re.compile(
    r"\A\s*+(?:(?:please|now|ok|okay|and|then)[\s,]++)*+(?:continue|extend|keep\s++going|carry\s++on)\b",
    re.IGNORECASE,
)
_EXTEND_EN_MORE = re.compile(
    r"\b\d{1,3}\s*+(?:more|extra|additional)\s++(?:s|sec|secs|second|seconds)\b"
    r"|\b\d{1,3}\s*+(?:s|sec|secs|second|seconds)\s++longer\b"
    r"|\bextend\s++(?:it|this|that|the\s++(?:video|clip|shot))\b",
    re.IGNORECASE,
)
_EXTEND_ZH = re.compile(r"延长|接着|续拍|继续拍|继续生成|再拍")


def asks_to_extend(text: str) -> bool:
    """Whether the turn asks to continue the video ("continue for 4 more seconds", "再延长5秒", "接着拍…")."""
    text = blank_references(text)
    return bool(_EXTEND_EN_LEAD.search(text) or _EXTEND_EN_MORE.search(text) or _EXTEND_ZH.search(text))
