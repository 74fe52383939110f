"""Video and task ids in a conversation: the sid in our history, and what the user pasted.

Pure: no I/O, no web framework.

Decisions made where the brief was silent:

- The source video is looked for in assistant messages *before* the latest user message only
  (a trailing assistant message after the turn is not history of it). Within one assistant
  message the last labelled `sid: s_…` wins (that is the done line; the JSON echo's
  `"sid": "s_…"` names the *source* of that turn and is not matched because of its quotes).
- In the user's text, the last `s_<32 hex>` wins over the last task id (a `/web/task_…` or
  `/source/task_…` link, or a bare `task_…`). At most one of the two is set.
- Pasted ids stay in the prompt, except a bare id/link (optionally labelled `sid:` / `ID:` /
  `task id:` and wrapped in backticks or `<>`) at the very start or end of the text, which is
  stripped together with the punctuation that separates it from the words.
- Pasted ids are read case-insensitively and lower-cased.
- Something meant as a sid that is not one (truncated, padded, non-hex) is an error, not a fresh video.
- History is untrusted and unbounded: only the last 16 KiB of each assistant message is searched
  for a sid (our done line ends our reply), and every pattern here runs in linear time (possessive
  runs, bounded values, lookbehinds that start a search only where a run starts), so no text can
  make a pattern backtrack quadratically. `tests/test_redos.py` holds every pattern to that.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..ids import SID_PATTERN, SID_RE, TASK_ID_PATTERN, TASK_ID_RE
from .chat_schema import ChatMessage, message_text
from .chat_turn_error import TurnError

__all__ = [
    "blank_references",
    "history_sid",
    "looks_like_sid",
    "looks_like_task_id",
    "pasted_source",
    "strip_edge_refs",
]

# --------------------------------------------------------------------------- identifiers

_SID = SID_PATTERN
_TASK = TASK_ID_PATTERN

_B = r"(?<![0-9A-Za-z_])"  # left boundary for ids
_E = r"(?![0-9A-Za-z_])"  # right boundary for ids
# Ids the user typed: case-insensitive (Crockford base32 and hex are), lower-cased when read.
_SID_IN_TEXT = re.compile(_B + "(" + _SID + ")" + _E, re.IGNORECASE)
_TASK_IN_TEXT = re.compile(_B + "(" + _TASK + ")" + _E, re.IGNORECASE)
# The done line of one of our replies: "> sid: s_…" (tolerates `code`, ** and a full-width colon).
# Linear time: every run of spaces and stars is matched possessively (`*+`), so a long run can't be
# split between two quantifiers in all possible ways (the quadratic backtracking of `\s*\**\s*`).
_SID_LABEL_HEAD = r"(?<![0-9A-Za-z_\"'])sid\**+\s*+[:：][\s*]*+`?"
_SID_LABEL = re.compile(_SID_LABEL_HEAD + "(" + _SID + ")" + _E, re.IGNORECASE)


# Something meant as a sid that isn't one (truncated, padded, non-hex): an error, not a fresh video.
_SID_LIKE = re.compile(_B + r"(s_[0-9A-Za-z]{8,})" + _E)
# A labelled value is at most 200 characters: bounded, so each "sid:" costs O(1) however long the text.
_SID_LABEL_ANY = re.compile(_SID_LABEL_HEAD + r"(s_[^\s`]{0,200}+)`?+(?=\s|$)", re.IGNORECASE)


def _reject_malformed(candidates: list[str], where: str) -> None:
    for value in candidates:
        if not SID_RE.fullmatch(value.lower()):
            raise TurnError(
                f"{where} names the video id '{value[:80]}', which is malformed: "
                "a video id is 's_' followed by 32 hex digits."
            )


def looks_like_sid(s: str) -> bool:
    """True when `s` is exactly a video sid (`s_` + 32 lowercase hex)."""
    return SID_RE.fullmatch(s) is not None


def looks_like_task_id(s: str) -> bool:
    """True when `s` is exactly a task id (`task_` + 26 lowercase Crockford base32 chars)."""
    return TASK_ID_RE.fullmatch(s) is not None


_URL = re.compile(r"https?://\S+|/(?:web|source)/" + _TASK)


def blank_references(text: str) -> str:
    """The text with URLs and ids replaced by spaces, so that their digits are not read as words."""
    text = _URL.sub(" ", text)
    text = _SID_IN_TEXT.sub(" ", text)
    return _TASK_IN_TEXT.sub(" ", text)


# --------------------------------------------------------------------------- pasted references

_REF_STOP = r"[^\s<>()\[\]`'\"，。、；：！？]"
# A link to one of our pages, with or without scheme and host: "https://h/web/task_…", "h:8000/source/task_…".
# It starts where a run of link characters starts (the lookbehind): a search then tries each run once
# instead of once per character of it, which kept a long run of "/" quadratic.
_URL_REF = (
    r"(?<!"
    + _REF_STOP
    + r")(?:https?://)?"
    + _REF_STOP
    + r"*?/(?:web|source)/"
    + _TASK
    + r"(?:[/?#]"
    + _REF_STOP
    + r"*+)?"
)
_REF = r"(?:" + _URL_REF + "|" + _SID + "|" + _TASK + ")"
_WRAPPED = _B + r"(?:<" + _REF + r">|`" + _REF + r"`|" + _REF + r")" + _E
_LABEL = r"(?:(?<![0-9A-Za-z_])(?:sid|id|task[ _]?id)\s*[:：=]\s*)?"
_LEADING_REF = re.compile(r"(?<!\s)\s*+" + _LABEL + _WRAPPED + r"\s*[,，:：;；、.。-]*\s*", re.IGNORECASE)
_TRAILING_REF = re.compile(_LABEL + _WRAPPED + r"[.。]?$", re.IGNORECASE)
_TRAILING_SEPARATORS = " \t\r\n,，:：;；、-"
_TAIL_WINDOW = 1024  # a trailing reference is looked for in the text's last characters only


def strip_edge_refs(text: str) -> str:
    """Remove a bare id or link (and its label) from the start and the end of the text.

    Linear in the text's length: the leading pattern is anchored, the trailing one only searched
    for in a bounded tail window.
    """
    text = text.strip()
    while True:
        before = text
        m = _LEADING_REF.match(text)
        if m:
            text = text[m.end() :].strip()
        cut = max(0, len(text) - _TAIL_WINDOW)
        m = _TRAILING_REF.search(text, cut)
        if m:
            text = text[: m.start()].rstrip(_TRAILING_SEPARATORS)
        text = text.strip()
        if text == before:
            return text


def pasted_source(text: str) -> tuple[str | None, str | None]:
    """(sid, task id) the user pasted in the text; at most one is set, a sid wins."""
    sids = _SID_IN_TEXT.findall(text)
    if sids:
        return str(sids[-1]).lower(), None
    _reject_malformed(_SID_LIKE.findall(text), "The latest message")
    tasks = _TASK_IN_TEXT.findall(text)
    if tasks:
        return None, str(tasks[-1]).lower()
    return None, None


# --------------------------------------------------------------------------- history

_HISTORY_TAIL_CHARS = 16_384  # our done line ends a reply: only a message's last characters are read


def history_sid(messages: Sequence[ChatMessage]) -> str | None:
    """The sid in the done line (`sid: s_…`) of the latest assistant message that has one.

    Raises `TurnError` when a later assistant message labels a malformed sid instead.
    """
    for message in reversed(messages):
        if message.role != "assistant":
            continue
        text = message_text(message)[-_HISTORY_TAIL_CHARS:]
        sids = _SID_LABEL.findall(text)
        if sids:
            return str(sids[-1]).lower()
        _reject_malformed(_SID_LABEL_ANY.findall(text), "The conversation")
    return None
