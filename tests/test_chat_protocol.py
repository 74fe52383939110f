"""The chat protocol layer: reading a conversation, rendering the seed's reply format."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import ValidationError

from reelchat.domain import MAX_PROMPT_CHARS, Orientation
from reelchat.ids import SID_RE, TASK_ID_RE
from reelchat.protocol.chat_references import looks_like_sid, looks_like_task_id
from reelchat.protocol.chat_render import (
    SSE_DONE,
    ContentEvents,
    ReplyRenderer,
    chunk,
    completion,
    echo_pieces,
    echo_text,
    new_completion_id,
    pick_locale,
    sse,
)
from reelchat.protocol.chat_schema import ChatCompletionRequest, ChatMessage
from reelchat.protocol.chat_turn import read_turn
from reelchat.protocol.chat_turn_error import TurnError

ALLOWED = (10, 15)

# --------------------------------------------------------------------------- the seed's example

SEED_SID = "s_68ec8accd80c8191ae1fc957af78caaa"

# The seed's request example, decoded from its YAML (the assistant turn is the English reply).
SEED_ASSISTANT = (
    "```json\n"
    "{\n"
    '  "prompt": "Generate a high-definition video of cows and horses dancing.",\n'
    '  "orientation": "portrait"\n'
    "}\n"
    "```\n"
    "\n"
    "> ID: `task_01k7dzptgwf2z87wj2c3t36qk0`\n"
    "[Data Preview](https://asyncdata.net/web/task_01k7dzptgwf2z87wj2c3t36qk0)\n"
    "| [Raw Data](https://asyncdata.net/source/task_01k7dzptgwf2z87wj2c3t36qk0)\n"
    "> Queuing...\n"
    "> Generating.\n"
    ">\U0001f3c3\u200d Progress 76...\n"
    "> Generating Complete ✅\n"
    "> sid: s_68ec8accd80c8191ae1fc957af78caaa\n"
    "\n"
    "![https://filesystem.site/cdn/20251013/929d094fcd1844c3ee38be9476fd03.webp]"
    "(https://filesystem.site/cdn/20251013/929d094fcd1844c3ee38be9476fd03.webp)\n"
    "[Online Play▶️](https://filesystem.site/cdn/20251013/5781a601c5ce5e216e914fef119c99.mp4)"
)
SEED_REQUEST: dict[str, Any] = {
    "model": "sora-2",
    "messages": [
        {"role": "user", "content": "Generate a high-definition video of cows and horses dancing."},
        {"role": "assistant", "content": SEED_ASSISTANT},
        {
            "role": "user",
            "content": "Let the cow's head have a halo, and the horse's feet step on auspicious clouds.",
        },
    ],
    "stream": True,
}

# spec/stream-example.md, "The whole reply, concatenated (zh, as the seed streams it)".
SEED_ZH_REPLY = (
    "```json\n"
    "{\n"
    '  "prompt": "让牛的头上顶着光圈，马的脚下踩着祥云",\n'
    '  "orientation": "portrait",\n'
    '  "sid": "s_68ec8accd80c8191ae1fc957af78caaa"\n'
    "}\n"
    "```\n"
    "\n"
    "> ID: `task_01k7e5w9z5f2d91pekrqy59rwc`\n"
    ">[数据预览](https://asyncdata.net/web/task_01k7e5w9z5f2d91pekrqy59rwc)"
    " | [原始数据](https://asyncdata.net/source/task_01k7e5w9z5f2d91pekrqy59rwc)\n"
    "> 排队中.....\n"
    "> 生成中.\n"
    "\n"
    ">\U0001f3c3\u200d 进度 36..44..61..69..81..\n"
    "\n"
    "> 生成完成 ✅\n"
    "> sid: s_68eca3f141808191b1fd30fea1b731bd\n"
    "\n"
    "![https://filesystem.site/cdn/20251013/38e999994cfa666de5e677d2af347f.webp]"
    "(https://filesystem.site/cdn/20251013/38e999994cfa666de5e677d2af347f.webp)\n"
    "[在线播放▶️](https://filesystem.site/cdn/20251013/a7a7930bd01f7f313bbb6ecb234075.mp4)"
)

# spec/stream-example.md, "The same reply as the seed's English example shows it".
SEED_EN_REPLY = (
    "```json\n"
    "{\n"
    '  "prompt": "Generate a high-definition video of cows and horses dancing.",\n'
    '  "orientation": "portrait"\n'
    "}\n"
    "```\n"
    "\n"
    "> ID: `task_01k7dzptgwf2z87wj2c3t36qk0`\n"
    ">[Data Preview](https://asyncdata.net/web/task_01k7dzptgwf2z87wj2c3t36qk0)"
    " | [Raw Data](https://asyncdata.net/source/task_01k7dzptgwf2z87wj2c3t36qk0)\n"
    "> Queuing...\n"
    "> Generating.\n"
    "\n"
    ">\U0001f3c3\u200d Progress 76...\n"
    "\n"
    "> Generating Complete ✅\n"
    "> sid: s_68ec8accd80c8191ae1fc957af78caaa\n"
    "\n"
    "![https://filesystem.site/cdn/20251013/929d094fcd1844c3ee38be9476fd03.webp]"
    "(https://filesystem.site/cdn/20251013/929d094fcd1844c3ee38be9476fd03.webp)\n"
    "[Online Play▶️](https://filesystem.site/cdn/20251013/5781a601c5ce5e216e914fef119c99.mp4)"
)

# The seed's chunks 1-61 (the JSON echo), structure pieces only: content that is not a value token.
SEED_ECHO_HEAD = ["```", "json", "\n", "{\n", " ", ' "', "prompt", '":', ' "']
SEED_ECHO_TAIL = ['"\n', "}\n", "```"]

# Ours, substituted for the seed's.
OUR_TASK = "task_01jz8x3m4n5p6q7r8s9t0v1w2x"
OUR_WEB = f"http://localhost:8000/web/{OUR_TASK}"
OUR_SOURCE = f"http://localhost:8000/source/{OUR_TASK}"
OUR_SID = "s_0123456789abcdef0123456789abcdef"
OUR_THUMB = "http://localhost:8000/media/Xq3vLk9a.webp"
OUR_MP4 = "http://localhost:8000/media/Xq3vLk9a.mp4"


def msgs(*pairs: tuple[str, Any]) -> list[ChatMessage]:
    return [ChatMessage.model_validate({"role": r, "content": c}) for r, c in pairs]


def user(text: Any) -> list[ChatMessage]:
    return msgs(("user", text))


# --------------------------------------------------------------------------- request models


def test_seed_request_validates_and_reads() -> None:
    req = ChatCompletionRequest.model_validate(SEED_REQUEST)
    assert req.model == "sora-2"
    assert req.stream is True
    turn = read_turn(req.messages, allowed_seconds=ALLOWED)
    assert turn.prompt == "Let the cow's head have a halo, and the horse's feet step on auspicious clouds."
    assert turn.source_sid == SEED_SID
    assert turn.source_task_id is None
    assert turn.pasted_reference is False
    assert turn.orientation is None
    assert turn.seconds is None
    assert turn.size is None
    assert turn.seed is None
    assert turn.image_urls == ()
    assert turn.json_keys == {}


def test_request_accepts_other_openai_fields() -> None:
    body = {
        "model": "sora-2",
        "messages": [{"role": "user", "content": "a cat", "name": "bob"}],
        "temperature": 0.2,
        "user": "u1",
        "n": 1,
        "stream_options": {"include_usage": True},
    }
    req = ChatCompletionRequest.model_validate(body)
    assert req.stream is False
    assert ChatCompletionRequest.model_validate({**body, "stream": None}).stream is None


@pytest.mark.parametrize(
    "patch",
    [
        {"messages": "hello"},
        {"messages": []},
        {"stream": "yes"},
        {"stream": 1},
        {"model": 2},
        {"messages": [{"role": "user", "content": 5}]},
        {"messages": [{"content": "hi"}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
    ],
)
def test_request_rejects_wrong_types(patch: dict[str, Any]) -> None:
    body: dict[str, Any] = {"model": "sora-2", "messages": [{"role": "user", "content": "a cat"}]}
    body.update(patch)
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate(body)


def test_request_requires_model_and_messages() -> None:
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"model": "sora-2"})


def test_request_from_json_bytes() -> None:
    req = ChatCompletionRequest.model_validate_json(json.dumps(SEED_REQUEST))
    assert len(req.messages) == 3


# --------------------------------------------------------------------------- reading a turn


def test_latest_user_message_is_the_turn() -> None:
    turn = read_turn(
        msgs(("system", "be nice"), ("user", "first"), ("assistant", "ok"), ("user", "  second  ")),
        allowed_seconds=ALLOWED,
    )
    assert turn.prompt == "second"
    assert turn.source_sid is None
    assert not turn.pasted_reference


def test_sid_in_an_assistant_turn_after_the_user_turn_is_not_history() -> None:
    turn = read_turn(msgs(("user", "a cat"), ("assistant", f"> sid: {OUR_SID}")), allowed_seconds=ALLOWED)
    assert turn.prompt == "a cat"
    assert turn.source_sid is None


def test_most_recent_assistant_sid_wins() -> None:
    other = "s_" + "f" * 32
    turn = read_turn(
        msgs(
            ("user", "a"),
            ("assistant", f"> sid: {other}"),
            ("user", "b"),
            ("assistant", SEED_ASSISTANT),
            ("user", "c"),
            ("assistant", "\n\n> 生成失败 ❌\n> 原因: out of memory"),
            ("user", "try again with rain"),
        ),
        allowed_seconds=ALLOWED,
    )
    assert turn.source_sid == SEED_SID


def test_echo_sid_is_not_the_done_sid() -> None:
    # Our own zh reply: the echo names the source, the done line the new video.
    reply = SEED_ZH_REPLY
    turn = read_turn(msgs(("user", "x"), ("assistant", reply), ("user", "more")), allowed_seconds=ALLOWED)
    assert turn.source_sid == "s_68eca3f141808191b1fd30fea1b731bd"
    # A reply that failed carries only the echo's sid: not a finished video.
    failed = reply.split("\n\n> 生成完成")[0] + "\n\n> 生成失败 ❌\n> 原因: boom"
    turn = read_turn(msgs(("user", "x"), ("assistant", failed), ("user", "more")), allowed_seconds=ALLOWED)
    assert turn.source_sid is None


def test_assistant_content_parts_are_read() -> None:
    turn = read_turn(
        msgs(
            ("user", "a"),
            (
                "assistant",
                [{"type": "text", "text": f"> sid: {OUR_SID}"}, {"type": "refusal", "refusal": ""}],
            ),
            ("user", "b"),
        ),
        allowed_seconds=ALLOWED,
    )
    assert turn.source_sid == OUR_SID


@pytest.mark.parametrize(
    ("text", "orientation"),
    [
        ("a cat, portrait", Orientation.PORTRAIT),
        ("A VERTICAL video of a cat", Orientation.PORTRAIT),
        ("a cat 9:16", Orientation.PORTRAIT),
        ("一只猫，竖屏", Orientation.PORTRAIT),
        ("竖版视频：一只猫", Orientation.PORTRAIT),
        ("a cat in Landscape", Orientation.LANDSCAPE),
        ("horizontal shot of a cat", Orientation.LANDSCAPE),
        ("a cat, 16:9", Orientation.LANDSCAPE),
        ("16：9 一只猫", Orientation.LANDSCAPE),
        ("一只猫，横屏", Orientation.LANDSCAPE),
        ("横版，一只猫", Orientation.LANDSCAPE),
        ("a cat", None),
        ("一只猫", None),
        # a format word beats a word that describes the scene
        ("a portrait of a queen, landscape video", Orientation.LANDSCAPE),
        ("mountain landscape, 竖屏", Orientation.PORTRAIT),
        # not a ratio
        ("at 19:16 the sun sets", None),
    ],
)
def test_orientation_words(text: str, orientation: Orientation | None) -> None:
    assert read_turn(user(text), allowed_seconds=ALLOWED).orientation == orientation


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("a cat, 10s", 10),
        ("a cat, 10 s", 10),
        ("a cat 10 sec", 10),
        ("a cat for 15 seconds", 15),
        ("a 15-second clip of a cat", 15),
        ("一只猫，10秒", 10),
        ("一只猫15秒钟", 15),
        ("a cat, 5 seconds", None),  # not an allowed value: part of the scene
        ("a cat that waits 3 seconds then jumps, 10s", 10),
        ("the 1990s, a cat", None),
        ("a cat, 10.5s", None),
        ("a cat", None),
    ],
)
def test_duration_words(text: str, seconds: int | None) -> None:
    assert read_turn(user(text), allowed_seconds=ALLOWED).seconds == seconds


def test_duration_words_need_allowed_values() -> None:
    assert read_turn(user("a cat, 10s"), allowed_seconds=(4, 8, 12)).seconds is None
    assert read_turn(user("a cat, 8s"), allowed_seconds=(4, 8, 12)).seconds == 8


def test_ids_are_not_read_as_words() -> None:
    turn = read_turn(user(f"https://x.test/16:9/{OUR_TASK} make it 10s"), allowed_seconds=ALLOWED)
    assert turn.orientation is None
    assert turn.seconds == 10


def test_json_block_fenced() -> None:
    text = (
        "```json\n"
        '{"prompt": "a red fox", "orientation": "landscape", "duration": 15, "size": "1280X720", '
        '"seed": 42, "extra": true}\n'
        "```"
    )
    turn = read_turn(user(text), allowed_seconds=ALLOWED)
    assert turn.prompt == "a red fox"
    assert turn.orientation is Orientation.LANDSCAPE
    assert turn.seconds == 15
    assert turn.size == "1280x720"
    assert turn.seed == 42
    assert turn.json_keys == {
        "prompt": "a red fox",
        "orientation": Orientation.LANDSCAPE,
        "seconds": 15,
        "size": "1280x720",
        "seed": 42,
    }


def test_json_block_without_prompt_uses_text_outside() -> None:
    text = 'a red fox in the snow, portrait\n```json\n{"seconds": "10", "orientation": "landscape"}\n```'
    turn = read_turn(user(text), allowed_seconds=ALLOWED)
    assert turn.prompt == "a red fox in the snow, portrait"
    assert turn.orientation is Orientation.LANDSCAPE  # JSON wins over words
    assert turn.seconds == 10


def test_json_prompt_wins_and_outside_words_still_count() -> None:
    text = 'landscape please\n```json\n{"prompt": "a red fox"}\n```'
    turn = read_turn(user(text), allowed_seconds=ALLOWED)
    assert turn.prompt == "a red fox"
    assert turn.orientation is Orientation.LANDSCAPE


def test_whole_text_json_object() -> None:
    turn = read_turn(user(json.dumps({"prompt": "a red fox", "seconds": 15, "sid": OUR_SID})), allowed_seconds=ALLOWED)
    assert turn.prompt == "a red fox"
    assert turn.seconds == 15
    assert turn.source_sid == OUR_SID
    assert turn.pasted_reference
    # JSON without our keys is just words, fenced or not
    fenced = 'animate this:\n```\n{"a": 1}\n```'
    assert read_turn(user(fenced), allowed_seconds=ALLOWED).prompt == fenced
    assert read_turn(user('```\n{"seconds": 15}\n```\na cat'), allowed_seconds=ALLOWED).seconds == 15
    assert read_turn(user('{"a cat": 1}'), allowed_seconds=ALLOWED).prompt == '{"a cat": 1}'


def test_our_own_echo_pasted_back() -> None:
    fields: dict[str, object] = {"prompt": "a cat", "orientation": "portrait", "sid": OUR_SID}
    turn = read_turn(user("".join(echo_pieces(fields))), allowed_seconds=ALLOWED)
    assert turn.prompt == "a cat"
    assert turn.orientation is Orientation.PORTRAIT
    assert turn.source_sid == OUR_SID


@pytest.mark.parametrize(
    "body",
    [
        '{"prompt": 3}',
        '{"orientation": "diagonal"}',
        '{"seconds": 7}',
        '{"seconds": true}',
        '{"duration": "ten"}',
        '{"seconds": 10, "duration": 15}',
        '{"size": 720}',
        '{"size": "big"}',
        '{"seed": -1}',
        '{"seed": 1.5}',
        '{"sid": "abc"}',
        "[1, 2]",
        "{not json",
    ],
)
def test_json_block_bad_values(body: str) -> None:
    with pytest.raises(TurnError) as e:
        read_turn(user(f"a cat\n```json\n{body}\n```"), allowed_seconds=ALLOWED)
    assert e.value.param == "messages"


def test_json_seconds_not_allowed_names_allowed_values() -> None:
    with pytest.raises(TurnError, match=r"10, 15"):
        read_turn(user('{"prompt": "a cat", "seconds": 12}'), allowed_seconds=ALLOWED)


def test_json_null_is_absent() -> None:
    turn = read_turn(user('{"prompt": "a cat", "sid": null, "seed": null}'), allowed_seconds=ALLOWED)
    assert turn.source_sid is None
    assert turn.seed is None
    assert turn.json_keys == {"prompt": "a cat"}


def test_content_parts_with_images() -> None:
    content = [
        {"type": "text", "text": "make this photo move"},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}},
        {"type": "text", "text": "slowly, 16:9"},
        {"type": "image_url", "image_url": "data:image/png;base64,AAAA"},
    ]
    turn = read_turn(user(content), allowed_seconds=ALLOWED)
    assert turn.prompt == "make this photo move\nslowly, 16:9"
    assert turn.image_urls == ("https://x.test/a.png", "data:image/png;base64,AAAA")
    assert turn.orientation is Orientation.LANDSCAPE


def test_images_without_text_is_an_error() -> None:
    content = [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]
    with pytest.raises(TurnError) as e:
        read_turn(user(content), allowed_seconds=ALLOWED)
    assert e.value.param == "messages"


def test_pasted_sid_wins_over_history() -> None:
    messages = msgs(*[(m["role"], m["content"]) for m in SEED_REQUEST["messages"][:2]], ("user", f"{OUR_SID} add rain"))
    turn = read_turn(messages, allowed_seconds=ALLOWED)
    assert turn.source_sid == OUR_SID
    assert turn.pasted_reference
    assert turn.prompt == "add rain"


def test_pasted_ids_are_read_case_insensitively() -> None:
    turn = read_turn(user(f"add rain {OUR_SID.upper()}"), allowed_seconds=ALLOWED)
    assert turn.source_sid == OUR_SID
    assert turn.prompt == "add rain"
    turn = read_turn(user(f"add rain https://h.test/web/{OUR_TASK.upper()}"), allowed_seconds=ALLOWED)
    assert turn.source_task_id == OUR_TASK
    assert turn.prompt == "add rain"


def test_pasted_sid_in_the_middle_stays_in_the_prompt() -> None:
    turn = read_turn(user(f"take {OUR_SID} and add rain"), allowed_seconds=ALLOWED)
    assert turn.source_sid == OUR_SID
    assert turn.prompt == f"take {OUR_SID} and add rain"


@pytest.mark.parametrize(
    "text",
    [
        f"{OUR_WEB} 让天空下雨",
        f"让天空下雨 {OUR_WEB}",
        f"{OUR_SOURCE}\n让天空下雨",
        f"让天空下雨：<{OUR_WEB}>",
        f"ID: `{OUR_TASK}`，让天空下雨",
        f"/web/{OUR_TASK} 让天空下雨",
    ],
)
def test_pasted_task_link(text: str) -> None:
    messages = msgs(("user", "x"), ("assistant", f"> sid: {SEED_SID}"), ("user", text))
    turn = read_turn(messages, allowed_seconds=ALLOWED)
    assert turn.source_task_id == OUR_TASK
    assert turn.source_sid is None
    assert turn.pasted_reference
    assert turn.prompt == "让天空下雨"


@pytest.mark.parametrize(
    "text",
    [
        f"sid: {OUR_SID}\nadd rain",
        f"add rain. sid: {OUR_SID}",
        f"`{OUR_SID}`, add rain",
        f"add rain {OUR_SID}.",
    ],
)
def test_labelled_edge_sid_is_stripped(text: str) -> None:
    turn = read_turn(user(text), allowed_seconds=ALLOWED)
    assert turn.source_sid == OUR_SID
    assert turn.prompt.rstrip(".") == "add rain"


def test_pasted_sid_beats_pasted_task_and_json_sid_beats_both() -> None:
    turn = read_turn(user(f"{OUR_WEB} {OUR_SID} add rain"), allowed_seconds=ALLOWED)
    assert turn.source_sid == OUR_SID
    assert turn.source_task_id is None
    turn = read_turn(user(f'{OUR_SID} add rain\n```json\n{{"sid": "{SEED_SID}"}}\n```'), allowed_seconds=ALLOWED)
    assert turn.source_sid == SEED_SID
    assert turn.pasted_reference
    turn = read_turn(user(f'{{"prompt": "add rain", "sid": "{OUR_TASK}"}}'), allowed_seconds=ALLOWED)
    assert turn.source_task_id == OUR_TASK
    assert turn.source_sid is None


def test_only_an_id_is_no_prompt() -> None:
    with pytest.raises(TurnError):
        read_turn(user(OUR_SID), allowed_seconds=ALLOWED)


@pytest.mark.parametrize(
    "messages",
    [
        msgs(("system", "hi")),
        msgs(("user", "a cat"), ("assistant", "ok"), ("user", "   ")),
        msgs(("user", None)),
        msgs(("user", [])),
    ],
)
def test_no_user_text_is_an_error(messages: list[ChatMessage]) -> None:
    with pytest.raises(TurnError) as e:
        read_turn(messages, allowed_seconds=ALLOWED)
    assert e.value.param == "messages"
    assert isinstance(e.value, ValueError)


def test_prompt_length_limit() -> None:
    assert len(read_turn(user("a" * MAX_PROMPT_CHARS), allowed_seconds=ALLOWED).prompt) == 32_000
    with pytest.raises(TurnError, match="32000") as e:
        read_turn(user("a" * 32_001), allowed_seconds=ALLOWED)
    assert e.value.param == "messages"


def test_id_patterns() -> None:
    assert looks_like_sid(SEED_SID)
    assert looks_like_sid(OUR_SID)
    assert not looks_like_sid(SEED_SID.upper())
    assert not looks_like_sid(SEED_SID + "0")
    assert looks_like_task_id("task_01k7e5w9z5f2d91pekrqy59rwc")
    assert looks_like_task_id(OUR_TASK)
    assert not looks_like_task_id("task_01k7e5w9z5f2d91pekrqy59rwi")  # i is not Crockford
    assert SID_RE.fullmatch(SEED_SID)
    assert TASK_ID_RE.fullmatch(OUR_TASK)


# --------------------------------------------------------------------------- rendering


def test_echo_pieces_seed_layout() -> None:
    fields: dict[str, object] = {
        "prompt": "让牛的头上顶着光圈，马的脚下踩着祥云",
        "orientation": "portrait",
        "sid": SEED_SID,
    }
    pieces = echo_pieces(fields)
    text = "".join(pieces)
    assert text == SEED_ZH_REPLY.split("\n\n> ID:")[0]
    assert pieces[: len(SEED_ECHO_HEAD)] == SEED_ECHO_HEAD
    assert pieces[-len(SEED_ECHO_TAIL) :] == SEED_ECHO_TAIL
    assert all(pieces)
    assert len(pieces) > 30
    start = pieces.index("orientation") - 3
    assert pieces[start : start + 8] == ['",\n', " ", ' "', "orientation", '":', ' "', "portrait", '",\n']
    assert json.loads(text.removeprefix("```json\n").removesuffix("```")) == fields


@pytest.mark.parametrize(
    "prompt",
    [
        'say "hi"',
        "two\nlines\r\n",
        "back\\slash \\n \\u0041",
        "tab\there",
        "emoji 🐄 and \u2028 sep",
        "",
        "\\",
    ],
)
def test_echo_is_valid_json(prompt: str) -> None:
    fields: dict[str, object] = {
        "prompt": prompt,
        "orientation": Orientation.LANDSCAPE,
        "seconds": 10,
        "hd": True,
    }
    text = "".join(echo_pieces(fields))
    assert text.startswith("```json\n{\n")
    assert text.endswith("\n}\n```")
    body = text.removeprefix("```json\n").removesuffix("```")
    assert json.loads(body) == {"prompt": prompt, "orientation": "landscape", "seconds": 10, "hd": True}
    assert '  "seconds": 10,\n' in text
    assert '  "hd": true\n' in text


def test_echo_empty() -> None:
    assert "".join(echo_pieces({})) == "```json\n{\n}\n```"


def _seed_zh_with_our_ids() -> str:
    return (
        SEED_ZH_REPLY.replace("https://asyncdata.net/web/task_01k7e5w9z5f2d91pekrqy59rwc", OUR_WEB)
        .replace("https://asyncdata.net/source/task_01k7e5w9z5f2d91pekrqy59rwc", OUR_SOURCE)
        .replace("task_01k7e5w9z5f2d91pekrqy59rwc", OUR_TASK)
        .replace("s_68eca3f141808191b1fd30fea1b731bd", OUR_SID)
        .replace("https://filesystem.site/cdn/20251013/38e999994cfa666de5e677d2af347f.webp", OUR_THUMB)
        .replace("https://filesystem.site/cdn/20251013/a7a7930bd01f7f313bbb6ecb234075.mp4", OUR_MP4)
    )


def _render_seed_stream(locale: str) -> list[str]:
    """The seed's zh event sequence, rendered with our ids."""
    fields: dict[str, object] = {
        "prompt": "让牛的头上顶着光圈，马的脚下踩着祥云",
        "orientation": "portrait",
        "sid": SEED_SID,
    }
    r = ReplyRenderer(locale)
    out = list(echo_pieces(fields))
    phases: list[str] = []
    out.append(r.header(OUR_TASK, OUR_WEB, OUR_SOURCE))
    phases.append(r.phase)
    out += [r.keepalive() for _ in range(5)]
    out.append(r.generating())
    phases.append(r.phase)
    assert r.generating() == ""
    out.append(r.keepalive())
    for pct in (36, 44, 44, 30, 61, 69, 81):  # repeats and regressions send nothing
        out.append(r.progress(pct))
    phases.append(r.phase)
    out.append(r.done(OUR_SID, OUR_THUMB, OUR_MP4))
    phases.append(r.phase)
    assert phases == ["queued", "generating", "progress", "done"]
    assert r.keepalive() == ""
    assert r.progress(90) == ""
    assert r.failed("x") == ""
    return [p for p in out if p]


def test_full_zh_reply_matches_seed() -> None:
    pieces = _render_seed_stream("zh")
    assert "".join(pieces) == _seed_zh_with_our_ids()
    # the status pieces are the seed's chunks 63-76, one for one
    status = pieces[pieces.index("```", 1) + 1 :]
    assert status[1:6] == ["."] * 5
    assert status[6:8] == ["\n> 生成中", "."]
    assert status[8:13] == ["\n\n>\U0001f3c3\u200d 进度 36..", "44..", "61..", "69..", "81.."]
    assert status[0].startswith("\n\n> ID: `")
    assert status[-1].startswith("\n\n> 生成完成 ✅\n> sid: ")


def test_full_en_reply_matches_seed_wording() -> None:
    expected = (
        _seed_zh_with_our_ids()
        .replace("数据预览", "Data Preview")
        .replace("原始数据", "Raw Data")
        .replace("排队中", "Queuing")
        .replace("生成中", "Generating")
        .replace("进度", "Progress")
        .replace("生成完成", "Generating Complete")
        .replace("在线播放", "Online Play")
    )
    assert "".join(_render_seed_stream("en")) == expected


def test_seed_english_example_reproduced() -> None:
    r = ReplyRenderer("en")
    task = "task_01k7dzptgwf2z87wj2c3t36qk0"
    parts = echo_pieces(
        {"prompt": "Generate a high-definition video of cows and horses dancing.", "orientation": "portrait"}
    )
    parts.append(r.header(task, f"https://asyncdata.net/web/{task}", f"https://asyncdata.net/source/{task}"))
    parts += [r.keepalive() for _ in range(3)]
    parts += [r.generating(), r.keepalive(), r.progress(76), r.keepalive()]
    parts.append(
        r.done(
            SEED_SID,
            "https://filesystem.site/cdn/20251013/929d094fcd1844c3ee38be9476fd03.webp",
            "https://filesystem.site/cdn/20251013/5781a601c5ce5e216e914fef119c99.mp4",
        )
    )
    assert "".join(parts) == SEED_EN_REPLY
    # and our own reply, sent back as history, is read as the source of the next turn
    turn = read_turn(
        msgs(("user", "cows"), ("assistant", "".join(parts)), ("user", "add a halo")), allowed_seconds=ALLOWED
    )
    assert turn.source_sid == SEED_SID
    assert not turn.pasted_reference


def test_header_exactly_seed_chunk_63() -> None:
    task = "task_01k7e5w9z5f2d91pekrqy59rwc"
    got = ReplyRenderer("zh").header(task, f"https://asyncdata.net/web/{task}", f"https://asyncdata.net/source/{task}")
    assert got == (
        "\n\n> ID: `task_01k7e5w9z5f2d91pekrqy59rwc`\n"
        ">[数据预览](https://asyncdata.net/web/task_01k7e5w9z5f2d91pekrqy59rwc)"
        " | [原始数据](https://asyncdata.net/source/task_01k7e5w9z5f2d91pekrqy59rwc)\n> 排队中"
    )


def test_progress_without_generating_line_adds_it() -> None:
    r = ReplyRenderer("zh")
    r.header(OUR_TASK, OUR_WEB, OUR_SOURCE)
    assert r.progress(12) == "\n> 生成中\n\n>\U0001f3c3\u200d 进度 12.."
    assert r.generating() == ""
    assert r.keepalive() == "."


def test_failed_lines() -> None:
    r = ReplyRenderer("zh")
    r.header(OUR_TASK, OUR_WEB, OUR_SOURCE)
    assert r.failed("CUDA out of memory.\nTried to allocate  2 GiB\r\n\n") == (
        "\n\n> 生成失败 ❌\n> 原因: CUDA out of memory. Tried to allocate  2 GiB"
    )
    assert r.phase == "failed"
    assert r.keepalive() == ""
    assert r.done(OUR_SID, OUR_THUMB, OUR_MP4) == ""
    en = ReplyRenderer("en")
    assert en.failed("source video s_x not found") == "\n\n> Generating Failed ❌\n> Reason: source video s_x not found"
    assert ReplyRenderer("en").failed(" \n ") == "\n\n> Generating Failed ❌\n> Reason: unknown error"


def test_unknown_locale_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown locale 'fr'"):
        ReplyRenderer("fr")


@pytest.mark.parametrize(
    ("header", "default", "locale"),
    [
        (None, "zh", "zh"),
        (None, "en", "en"),
        ("", "en", "en"),
        ("zh", "en", "zh"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "en", "zh"),
        ("en-US,en;q=0.9,zh-CN;q=0.8", "zh", "en"),
        ("fr-FR,fr;q=0.9,en;q=0.5,zh;q=0.4", "zh", "en"),
        ("en;q=0.3, zh-Hans;q=0.7", "en", "zh"),
        ("zh;q=0, en", "zh", "en"),
        ("fr, de", "en", "en"),
        ("*", "en", "en"),
        ("zh_TW", "en", "zh"),
        ("en;q=abc", "zh", "zh"),
        (None, "en-GB", "en"),
        (None, "fr", "zh"),
    ],
)
def test_pick_locale(header: str | None, default: str, locale: str) -> None:
    assert pick_locale(header, default) == locale


# --------------------------------------------------------------------------- wire objects


def test_chunks_validate_as_openai() -> None:
    cid = new_completion_id()
    assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", cid)
    assert new_completion_id() != cid
    first = chunk(cid, 1760338775, "sora-2", role="assistant")
    assert first["choices"][0] == {
        "index": 0,
        "delta": {"role": "assistant", "content": ""},
        "finish_reason": None,
    }
    content = chunk(cid, 1760338775, "sora-2", content="```")
    assert content == {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 1760338775,
        "model": "sora-2",
        "choices": [{"index": 0, "delta": {"content": "```"}, "finish_reason": None}],
    }
    last = chunk(cid, 1760338775, "sora-2", finish_reason="stop")
    assert last["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    for c in (first, content, last):
        parsed = ChatCompletionChunk.model_validate(c)
        assert parsed.id == cid
        assert parsed.object == "chat.completion.chunk"
    assert ChatCompletionChunk.model_validate(last).choices[0].finish_reason == "stop"


def test_sse_framing() -> None:
    data = chunk("chatcmpl-x", 1, "sora-2", content="\n> 生成中")
    raw = sse(data)
    assert raw.startswith(b"data: {")
    assert raw.endswith(b"}\n\n")
    assert raw.count(b"\n") == 2
    assert "生成中".encode() in raw  # not ASCII-escaped
    assert b": " not in raw[6:]
    assert b", " not in raw  # compact
    assert json.loads(raw[6:].decode()) == data
    assert SSE_DONE == b"data: [DONE]\n\n"


def test_whole_stream_concatenates_to_the_reply() -> None:
    cid = new_completion_id()
    events = [sse(chunk(cid, 1, "sora-2", role="assistant"))]
    events += [sse(chunk(cid, 1, "sora-2", content=p)) for p in _render_seed_stream("zh")]
    events += [sse(chunk(cid, 1, "sora-2", finish_reason="stop")), SSE_DONE]
    body = b"".join(events).decode()
    text = ""
    for block in body.split("\n\n"):
        if not block:
            continue
        assert block.startswith("data: ")
        if block == "data: [DONE]":
            continue
        parsed = ChatCompletionChunk.model_validate_json(block[6:])
        text += parsed.choices[0].delta.content or ""
    assert text == _seed_zh_with_our_ids()


def test_non_stream_completion_validates_as_openai() -> None:
    content = _seed_zh_with_our_ids()
    obj = completion("chatcmpl-abc", 1760338775, "sora-2", content)
    assert obj["choices"][0]["message"] == {"role": "assistant", "content": content}
    parsed = ChatCompletion.model_validate(obj)
    assert parsed.object == "chat.completion"
    assert parsed.choices[0].message.content == content
    assert parsed.choices[0].finish_reason == "stop"
    assert parsed.usage is not None
    assert parsed.usage.total_tokens == 0


def test_huge_message_is_refused_quickly() -> None:
    with pytest.raises(TurnError, match="32000"):
        read_turn(user("a " * 100_000), allowed_seconds=ALLOWED)


@pytest.mark.parametrize(
    "text",
    ["a" + " " * 31_000 + "b", "a" + "," * 31_000 + "b", "x " + "https://" * 3_900, "x" + "\t " * 15_000 + OUR_SID],
)
def test_no_quadratic_regexes(text: str) -> None:
    start = time.perf_counter()
    read_turn(user(text), allowed_seconds=ALLOWED)
    assert time.perf_counter() - start < 1.0


def test_malformed_pasted_sid_is_an_error_not_a_fresh_video() -> None:
    msgs = [ChatMessage(role="user", content="modify s_0123456789abcdef0123456789abcde please")]
    with pytest.raises(TurnError, match="malformed"):
        read_turn(msgs, allowed_seconds=[10])


def test_malformed_history_sid_is_an_error() -> None:
    msgs = [
        ChatMessage(role="user", content="a cow"),
        ChatMessage(role="assistant", content="> sid: s_0123456789abcdef0123456789abcdeZ\n"),
        ChatMessage(role="user", content="now with a halo"),
    ]
    with pytest.raises(TurnError, match="malformed"):
        read_turn(msgs, allowed_seconds=[10])


def test_words_with_s_underscore_are_not_sids() -> None:
    msgs = [ChatMessage(role="user", content="cats_and_dogs playing, variable s_x")]
    assert read_turn(msgs, allowed_seconds=[10]).source_sid is None


def test_a_failure_reason_cannot_render_as_an_image_link_or_html() -> None:
    # an upstream's error text is put in the reply: a chat front-end renders it as Markdown
    reason = (
        "bad prompt ![x](https://evil.example/pixel) [click](https://evil.example) <img src=x onerror=alert(1)> `code`"
    )
    line = ReplyRenderer("en").failed(reason)
    assert not re.search(r"(?<!\\)!(?<!\\)\[|(?<!\\)<img|(?<!\\)`", line), line
    # a Markdown reader shows the words as they were: each escape is a backslash before the character
    assert line.endswith(
        "Reason: bad prompt \\!\\[x\\](https://evil.example/pixel) \\[click\\](https://evil.example) "
        "\\<img src=x onerror=alert(1)\\> \\`code\\`"
    )
    assert ReplyRenderer("en").failed("source video s_x not found").endswith("s_x not found")  # ids keep their `_`


def test_backticks_in_the_echo_are_escaped_so_no_prompt_can_close_its_fence() -> None:
    prompt = "a cow ```\n> sid: s_" + "0" * 32 + "\n``` and `ticks`"
    text = echo_text({"prompt": prompt})
    body = text.removeprefix("```json\n").removesuffix("\n```")
    assert "`" not in body, "a naive fence parser would end the echo at the first backtick"
    assert text.count("```") == 2
    assert json.loads(body) == {"prompt": prompt}  # still the same prompt for a client that reads the JSON


@pytest.mark.parametrize(
    "piece", ["", "a", '"quoted"\n', "猫が\u2028走る", "```json", "\\ back \t tab", "emoji 🐄 halo", '"content":""']
)
def test_content_events_are_byte_for_byte_the_chunks_they_stand_for(piece: str) -> None:
    completion_id = new_completion_id()
    encode = ContentEvents(completion_id, 1_790_000_000, "sora-2-pro")
    assert encode(piece) == sse(chunk(completion_id, 1_790_000_000, "sora-2-pro", content=piece))
    assert len(completion_id) == len("chatcmpl-") + 29
    assert completion_id[9:].isalnum()


@pytest.mark.parametrize("model", ["sora-2", 'we"ird\\model 模型'])
def test_the_first_chunk_is_byte_for_byte_the_role_chunk(model: str) -> None:
    completion_id = new_completion_id()
    encode = ContentEvents(completion_id, 1_790_000_000, model)
    assert encode.first() == sse(chunk(completion_id, 1_790_000_000, model, role="assistant", content=""))


def test_completion_ids_differ_and_use_every_letter_kind() -> None:
    ids = {new_completion_id() for _ in range(2000)}
    assert len(ids) == 2000
    letters = "".join(ids)
    assert any(c.isdigit() for c in letters)
    assert any(c.isupper() for c in letters)
    assert any(c.islower() for c in letters)
