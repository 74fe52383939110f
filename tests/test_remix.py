"""Continuous modification: a chat conversation is an editing timeline, each turn remixing the last video.

One real server (two API keys: alice and bob) driven through the official `openai` SDK, the way chat
front-ends drive it: every turn sends the whole history back, assistant replies exactly as streamed.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import numpy.typing as npt
import openai
import pytest
from helpers import Reply, assert_openai_error, assistant, probe_video, user
from server_util import FAST_SORA2, KeyedServer, chat, chat_text, start_server, wait_video

from reelchat.media.encode import decode_mp4

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")]

# No trailing period: the remix template "{source_prompt}. {prompt}" then reads exactly as written.
TURN1 = "Generate a high-definition video of cows and horses dancing"
TURN2 = "now give the cow a halo"
TURN3 = "make it a landscape video with snow falling"


@pytest.fixture(scope="module")
def server(make_home: Callable[[str], Path], demo_models: Path) -> Iterator[KeyedServer]:
    srv = start_server(make_home, demo_models, "remix", models={"sora-2": FAST_SORA2}, keys=("alice", "bob"))
    try:
        yield srv
    finally:
        srv.proc.stop()


@pytest.fixture(scope="module")
def alice(server: KeyedServer) -> openai.OpenAI:
    return server.client("alice")


@pytest.fixture(scope="module")
def bob(server: KeyedServer) -> openai.OpenAI:
    return server.client("bob")


def source_of(reply_or_task: Reply | str, server: KeyedServer) -> dict[str, Any]:
    task_id = reply_or_task if isinstance(reply_or_task, str) else reply_or_task.task_id
    r = httpx.get(f"{server.url}/source/{task_id}", timeout=30)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


@dataclass
class Conversation:
    """Three turns by alice: make, modify, modify again; each turn sends the whole history."""

    messages: list[list[dict[str, Any]]]  # what each turn sent
    replies: list[Reply]
    sources: list[dict[str, Any]]  # /source/<task id> of each turn, once finished

    def history(self, turns: int) -> list[dict[str, Any]]:
        """The first `turns` turns as a client resends them: user, assistant, user, assistant, ..."""
        out: list[dict[str, Any]] = []
        for messages, reply in zip(self.messages[:turns], self.replies[:turns], strict=True):
            out += [messages[-1], assistant(reply.content)]
        return out


@pytest.fixture(scope="module")
def conv(server: KeyedServer, alice: openai.OpenAI) -> Conversation:
    conv = Conversation([], [], [])
    # turn 1 streams in zh (no Accept-Language: the server's default), turn 2 streams in en,
    # turn 3 is a whole (non-stream) reply in zh: a remix renders the same in every mode
    for text, stream, locale in ((TURN1, True, "zh"), (TURN2, True, "en"), (TURN3, False, "zh")):
        messages = [*conv.history(len(conv.replies)), user(text)]
        reply = chat(alice, messages, stream=stream, locale=locale)
        conv.messages.append(messages)
        conv.replies.append(reply)
        conv.sources.append(source_of(reply, server))
    return conv


# --------------------------------------------------------------------------- the timeline


def test_each_turn_remixes_the_previous_video(conv: Conversation) -> None:
    r1, r2, r3 = conv.replies
    assert "sid" not in r1.echo  # nothing to modify yet
    assert r1.echo["prompt"] == TURN1
    assert r2.echo["sid"] == r1.sid
    assert r2.echo["prompt"] == TURN2
    assert r3.echo["sid"] == r2.sid
    assert r3.echo["prompt"] == TURN3
    # every turn made a new video with its own sid and task
    assert len({r1.sid, r2.sid, r3.sid}) == 3
    assert len({r1.task_id, r2.task_id, r3.task_id}) == 3
    for reply, src in zip(conv.replies, conv.sources, strict=True):
        assert src["status"] == "completed"
        assert src["sid"] == reply.sid


def test_source_shows_remixed_from_and_lineage_root_first(conv: Conversation) -> None:
    r1, r2, r3 = conv.replies
    s1, s2, s3 = conv.sources
    assert s1["remixed_from"] is None
    assert [e["id"] for e in s1["lineage"]] == [r1.task_id]
    assert s2["remixed_from"] == {"id": r1.task_id, "sid": r1.sid, "video_id": s1["video_id"]}
    assert s3["remixed_from"] == {"id": r2.task_id, "sid": r2.sid, "video_id": s2["video_id"]}
    assert [e["id"] for e in s3["lineage"]] == [r1.task_id, r2.task_id, r3.task_id]
    assert [e["sid"] for e in s3["lineage"]] == [r1.sid, r2.sid, r3.sid]
    assert [e["prompt"] for e in s3["lineage"]] == [TURN1, TURN2, TURN3]
    # the lineage's thumbnails are the ones the chat replies showed
    assert [e["thumbnail_url"] for e in s3["lineage"]] == [r.thumbnail_url for r in conv.replies]


def test_web_page_shows_the_lineage_strip(server: KeyedServer, conv: Conversation) -> None:
    r1, r2, r3 = conv.replies
    page = httpx.get(r3.web_url, timeout=30)
    assert page.status_code == 200
    html = page.text
    for earlier in (r1, r2):
        assert f'href="{earlier.web_url}"' in html, f"no link to {earlier.web_url}"
        assert f'src="{earlier.thumbnail_url}"' in html, f"no thumbnail {earlier.thumbnail_url}"
    # the strip runs root first, and each of its thumbnails is a real image
    assert html.index(r1.web_url) < html.index(r2.web_url) < html.index(f'href="{r3.web_url}"')
    for reply in conv.replies:
        assert reply.thumbnail_url is not None
        thumb = httpx.get(reply.thumbnail_url, timeout=30)
        assert thumb.status_code == 200
        assert thumb.content[8:12] == b"WEBP"


def test_remix_keeps_size_seconds_and_seed_unless_the_turn_changes_them(
    server: KeyedServer, conv: Conversation
) -> None:
    s1, s2, s3 = conv.sources
    _, r2, r3 = conv.replies
    assert (s1["size"], s1["orientation"], s1["seconds"]) == ("96x160", "portrait", 10)
    # turn 2 said nothing about the shape: everything is the source's
    for key in ("size", "orientation", "seconds", "seed", "fps", "frames"):
        assert s2[key] == s1[key], key
    assert r2.echo["orientation"] == "portrait"
    # turn 3 said "landscape video": the shape turns, the rest is kept
    assert (s3["size"], s3["orientation"]) == ("160x96", "landscape")
    assert r3.echo["orientation"] == "landscape"
    assert (s3["seconds"], s3["seed"]) == (s1["seconds"], s1["seed"])
    assert r3.video_url is not None
    video = probe_video(httpx.get(r3.video_url, timeout=30).content)
    assert (video.info.width, video.info.height) == (160, 96)


def test_engine_prompt_combines_source_prompt_and_modification(conv: Conversation) -> None:
    s1, s2, s3 = conv.sources
    assert s1["engine_prompt"] == TURN1
    assert s2["engine_prompt"] == f"{TURN1}. {TURN2}"  # the default template "{source_prompt}. {prompt}"
    assert s3["engine_prompt"] == f"{TURN1}. {TURN2}. {TURN3}"  # the source's full prompt, not just its turn
    assert [s["prompt"] for s in conv.sources] == [TURN1, TURN2, TURN3]  # what the user said stays as said


def test_branch_from_an_earlier_turn(server: KeyedServer, alice: openai.OpenAI, conv: Conversation) -> None:
    """A history that ends at turn 1 (the user edited turn 2 away) remixes turn 1's video, not turn 3's."""
    r1 = conv.replies[0]
    reply = chat(alice, [*conv.history(1), user("give the horse wings instead")], stream=True, locale="zh")
    assert reply.echo["sid"] == r1.sid
    src = source_of(reply, server)
    assert src["remixed_from"]["id"] == r1.task_id
    assert [e["id"] for e in src["lineage"]] == [r1.task_id, reply.task_id]
    assert src["engine_prompt"] == f"{TURN1}. give the horse wings instead"


def test_pasted_sid_wins_over_history(server: KeyedServer, alice: openai.OpenAI, conv: Conversation) -> None:
    r1, _, r3 = conv.replies
    messages = [*conv.history(3), user(f"{r1.sid} give the horse wings")]
    reply = chat(alice, messages, stream=False, locale="en")
    assert reply.echo["sid"] == r1.sid, "the pasted sid must beat the history's (turn 3's)"
    assert reply.echo["sid"] != r3.sid
    assert reply.echo["prompt"] == "give the horse wings"  # the bare pasted id is not part of the prompt
    src = source_of(reply, server)
    assert src["remixed_from"]["id"] == r1.task_id
    assert [e["id"] for e in src["lineage"]] == [r1.task_id, reply.task_id]


def test_pasted_web_link_names_the_source(server: KeyedServer, alice: openai.OpenAI, conv: Conversation) -> None:
    _, r2, _ = conv.replies
    messages = [*conv.history(3), user(f"make it rain {r2.web_url}")]
    reply = chat(alice, messages, stream=True, locale="en")
    assert reply.echo["sid"] == r2.sid
    assert reply.echo["prompt"] == "make it rain"
    src = source_of(reply, server)
    assert src["remixed_from"]["id"] == r2.task_id
    assert [e["id"] for e in src["lineage"]] == [conv.replies[0].task_id, r2.task_id, reply.task_id]


# --------------------------------------------------------------------------- tenants and bad sids


def chat_error(client: openai.OpenAI, messages: list[dict[str, Any]], *, stream: bool) -> tuple[int, dict[str, Any]]:
    """A turn that must be refused before any video is made: (status, the OpenAI error object)."""
    with pytest.raises(openai.APIStatusError) as info:
        chat_text(client, messages, stream=stream, locale="en")
    err = info.value
    assert_openai_error(cast(httpx.Response, err.response), err.status_code)  # the SDK vendors its own httpx
    body: dict[str, Any] = err.response.json()["error"]
    return err.status_code, body


def _shape(error: dict[str, Any], *ids: str) -> dict[str, Any]:
    """The error with the ids it names blanked: what must not differ between 'not yours' and 'no such'."""
    message = error["message"]
    for ident in ids:
        message = message.replace(ident, "<id>")
    return {**error, "message": message}


def random_sid() -> str:
    return "s_" + secrets.token_hex(16)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_other_tenants_sid_is_refused_like_a_missing_one(bob: openai.OpenAI, conv: Conversation, stream: bool) -> None:
    r1 = conv.replies[0]
    assert r1.sid is not None
    fake = random_sid()
    # bob resends alice's conversation (her sid in the history) ...
    status, err = chat_error(bob, [*conv.history(1), user(TURN2)], stream=stream)
    # ... and a conversation whose history names a sid that exists nowhere
    status_missing, err_missing = chat_error(
        bob, [user(TURN1), assistant(conv.replies[0].content.replace(r1.sid, fake)), user(TURN2)], stream=stream
    )
    assert 400 <= status < 500
    assert status == status_missing == 404
    assert _shape(err, r1.sid) == _shape(err_missing, fake)
    # pasting it, or a link to alice's task, is refused the same way
    status_pasted, err_pasted = chat_error(bob, [user(f"{r1.sid} {TURN2}")], stream=stream)
    assert status_pasted == 404
    assert _shape(err_pasted, r1.sid) == _shape(err_missing, fake)
    fake_task = "task_" + "0" * 26
    status_link, err_link = chat_error(bob, [user(f"{TURN2} {r1.web_url}")], stream=stream)
    status_link_missing, err_link_missing = chat_error(bob, [user(f"{TURN2} {fake_task}")], stream=stream)
    assert status_link == status_link_missing == 404
    assert _shape(err_link, r1.task_id) == _shape(err_link_missing, fake_task)


def test_other_tenant_cannot_see_or_remix_videos(server: KeyedServer, bob: openai.OpenAI, conv: Conversation) -> None:
    alice_videos = [s["video_id"] for s in conv.sources]
    bob_http = server.http("bob")
    for video_id in alice_videos:
        with pytest.raises(openai.NotFoundError):
            bob.videos.retrieve(video_id)
        with pytest.raises(openai.NotFoundError):
            bob.videos.remix(video_id, prompt=TURN2)
        assert_openai_error(bob_http.get(f"/v1/videos/{video_id}/content"), 404)
        assert_openai_error(bob_http.delete(f"/v1/videos/{video_id}"), 404)
    # not in bob's list (walk every page), but in alice's, and still there after bob's delete attempts
    assert not set(alice_videos) & {v.id for v in bob.videos.list(limit=100)}
    alice = server.client("alice")
    assert set(alice_videos) <= {v.id for v in alice.videos.list(limit=100)}
    assert alice.videos.retrieve(alice_videos[0]).status == "completed"


@pytest.fixture(scope="module")
def deleted_video(server: KeyedServer, alice: openai.OpenAI) -> dict[str, Any]:
    """A completed video of alice's that she then deleted: its sid, task and video ids."""
    created = alice.videos.create(prompt="a red barn", model="sora-2")
    video = wait_video(alice, created.id)
    assert video.status == "completed", video
    extra = video.model_extra or {}
    assert alice.videos.delete(video.id).deleted
    return {"sid": str(extra["sid"]), "task_id": str(extra["task_id"]), "video_id": video.id}


def _json_turn(sid: str) -> dict[str, Any]:
    turn: dict[str, Any] = user(f'```json\n{{"prompt": "{TURN2}", "sid": "{sid}"}}\n```')
    return turn


def _history_turn(sid: str) -> list[dict[str, Any]]:
    return [user(TURN1), assistant(f"> Generating Complete ✅\n> sid: {sid}\n"), user(TURN2)]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_tampered_sids_are_client_errors(
    server: KeyedServer, alice: openai.OpenAI, deleted_video: dict[str, Any], stream: bool
) -> None:
    tampered = {
        "31 hex digits": "s_" + secrets.token_hex(16)[:31],
        "upper-case hex": "s_" + secrets.token_hex(16).upper(),
        "well-formed, no such video": random_sid(),
        "a deleted video's": deleted_video["sid"],
    }
    for what, sid in tampered.items():
        # named in a JSON block: a malformed one is a 400, a well-formed unknown one a 404
        status, err = chat_error(alice, [_json_turn(sid)], stream=stream)
        assert 400 <= status < 500, (what, status, err)
        assert status == (400 if what == "31 hex digits" else 404), (what, err)
    for what in ("upper-case hex", "well-formed, no such video", "a deleted video's"):
        sid = tampered[what]
        # in the history's done line, and pasted in the user's words
        for messages in (_history_turn(sid), [user(f"{sid} {TURN2}")]):
            status, err = chat_error(alice, messages, stream=stream)
            assert status == 404, (what, err)
            assert err["code"] == "video_not_found"
    # the deleted video can't be remixed through the Videos API either
    with pytest.raises(openai.NotFoundError):
        alice.videos.remix(deleted_video["video_id"], prompt=TURN2)
    # and the server keeps serving
    assert server.proc.proc is not None
    assert server.proc.proc.poll() is None
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200
    assert len(alice.videos.list(limit=1).data) == 1


def test_malformed_sid_is_not_mistaken_for_a_video(server: KeyedServer, alice: openai.OpenAI) -> None:
    """A 31-digit sid in the history's done line or pasted in the words is no video: a client error, or
    a fresh generation that claims no source. Never a 5xx, never a remix of something else."""
    short = "s_" + secrets.token_hex(16)[:31]
    for messages in (_history_turn(short), [user(f"{short} {TURN2}")]):
        try:
            content = chat_text(alice, messages, stream=True, locale="en")
        except openai.APIStatusError as e:
            assert 400 <= e.status_code < 500, e  # noqa: PT017  (an error is one allowed outcome, not the expected one)
            assert_openai_error(cast(httpx.Response, e.response), e.status_code)
            continue
        match = re.search(r"\A```json\n(\{.*?\})\n```", content, re.DOTALL)
        assert match, content
        assert '"sid"' not in match.group(1), f"a malformed sid was taken as a source:\n{content}"
        assert "> sid: s_" in content, content  # a fresh video was made
    assert httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


# --------------------------------------------------------------------------- the remix really derives from its source


def frames_of(url: str) -> npt.NDArray[np.float32]:
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200
    return decode_mp4(r.content).astype(np.float32)


def distance(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    """Mean absolute pixel difference over every decoded frame (0..255)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).mean())


def test_remix_is_closer_to_its_source_than_a_fresh_generation(
    server: KeyedServer, alice: openai.OpenAI, conv: Conversation
) -> None:
    """Turn 2 ("now give the cow a halo") against generations from the same words with the same seed."""
    s1, s2 = conv.sources[0], conv.sources[1]
    seed = s1["seed"]
    # fresh, from the combined prompt the remix ran on, through the chat JSON block
    body = f'{{"prompt": "{s2["engine_prompt"]}", "seed": {seed}}}'
    fresh_combined = chat(alice, [user(f"```json\n{body}\n```")], stream=True, locale="en")
    fc = source_of(fresh_combined, server)
    assert "sid" not in fresh_combined.echo
    assert (fc["engine_prompt"], fc["seed"], fc["size"], fc["frames"]) == (
        s2["engine_prompt"],
        seed,
        s2["size"],
        s2["frames"],
    )
    # fresh, from the modification alone, through /v1/videos with a seed
    http = server.http("alice")
    # at the chat's size (the Videos API's default is OpenAI's 720x1280): the videos are compared pixel by pixel
    created = http.post("/v1/videos", json={"prompt": TURN2, "model": "sora-2", "seed": seed, "size": s2["size"]})
    assert created.status_code == 200, created.text
    video = wait_video(alice, created.json()["id"])
    assert video.status == "completed", video
    fm = source_of((video.model_extra or {})["task_id"], server)
    assert (fm["seed"], fm["size"], fm["frames"]) == (seed, s2["size"], s2["frames"])

    source = frames_of(s1["url"])
    d_remix = distance(frames_of(s2["url"]), source)
    d_combined = distance(frames_of(fc["url"]), source)
    d_modification = distance(frames_of(fm["url"]), source)
    print(
        f"\nmean |pixel difference| to the source video (0..255): remix {d_remix:.2f}, "
        f"fresh from the combined prompt {d_combined:.2f}, fresh from the modification alone {d_modification:.2f} "
        f"(seed {seed}, {source.shape[0]} frames {source.shape[2]}x{source.shape[1]})"
    )
    nearest_fresh = min(d_combined, d_modification)
    assert d_remix < 0.8 * nearest_fresh, (
        f"the remix ({d_remix:.2f}) is not measurably closer to its source than a fresh generation "
        f"with the same seed ({nearest_fresh:.2f})"
    )


# --------------------------------------------------------------------------- modes and locales


def test_remix_turns_in_both_stream_modes_and_locales(conv: Conversation) -> None:
    """The conversation's remix turns: turn 2 streamed in en, turn 3 whole in zh (the branch tests add
    streamed zh and whole en). Each parsed against the seed's full structure in its locale."""
    _, r2, r3 = conv.replies
    assert "Generating Complete ✅" in r2.content
    assert "Online Play▶️" in r2.content
    assert "生成完成 ✅" in r3.content
    assert "在线播放▶️" in r3.content
    assert "生成完成" not in r2.content
    assert "Generating Complete" not in r3.content
