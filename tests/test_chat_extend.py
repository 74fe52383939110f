"""A chat turn that asks to continue the history's video extends it instead of remixing it."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import assistant, user

from reelchat.protocol.chat_schema import ChatMessage
from reelchat.protocol.chat_turn import read_turn
from reelchat.protocol.chat_turn_error import TurnError
from reelchat.protocol.chat_words import asks_to_extend

SID = "s_" + "a" * 32
DONE = f"> ✅ 视频生成成功\n> sid: {SID}\n[▶️ 在线播放](http://x/media/a.mp4)"


def turn_after_video(text: str) -> Any:
    messages = [ChatMessage.model_validate(m) for m in (user("a cow dancing"), assistant(DONE), user(text))]
    return read_turn(messages, allowed_seconds=(10,))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("continue for 4 more seconds", 4),
        ("Continue the shot", None),
        ("please extend it by 8 seconds", 8),
        ("keep going, the horse starts to run", None),
        ("make it 6 seconds longer", 6),
        ("now carry on: the cow jumps over the moon", None),
        ("再延长5秒", 5),
        ("接着拍，牛跳过月亮", None),
        ("继续拍 12 秒", 12),
        ('```json\n{"extend": true, "prompt": "the cow bows", "seconds": 8}\n```', 8),
    ],
)
def test_extend_words(text: str, seconds: int | None) -> None:
    turn = turn_after_video(text)
    assert turn.extend
    assert turn.source_sid == SID
    assert turn.seconds == seconds  # what the extension adds (4 to 20), not the clip's length


@pytest.mark.parametrize(
    "text",
    [
        "give the cow a halo",
        "the river continues to flow past the cow",  # "continue" inside a description
        "让牛头上有光环",
        "make it 10 seconds",  # a duration alone is a remix's
        '```json\n{"extend": false, "prompt": "the cow bows"}\n```',
    ],
)
def test_other_words_remix(text: str) -> None:
    turn = turn_after_video(text)
    assert not turn.extend
    assert turn.source_sid == SID


def test_nothing_to_extend_is_a_fresh_video() -> None:
    turn = read_turn([ChatMessage.model_validate(user("continue for 4 more seconds: a cat"))], allowed_seconds=(10,))
    assert not turn.extend
    assert turn.source_sid is None


def test_json_extend_must_be_a_boolean() -> None:
    with pytest.raises(TurnError, match="extend"):
        turn_after_video('```json\n{"extend": "yes", "prompt": "x"}\n```')
    with pytest.raises(TurnError):  # seconds an extension can't add
        turn_after_video('```json\n{"extend": true, "prompt": "x", "seconds": 30}\n```')


def test_asks_to_extend_is_linear_on_long_input() -> None:
    assert not asks_to_extend("1" * 100_000 + " seconds" * 1000)
