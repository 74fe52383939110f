"""Extensions (`POST /v1/videos/extensions`) through the official `openai` SDK against a real server,
and the chat turn that asks to continue; the result decoded back with PyAV.

One server: sora-2 at 2 fps with a 9-frame window (so a 10 s clip takes several passes), two keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from helpers import assert_openai_error, assistant, user
from server_util import KeyedServer, chat, start_server, wait_video

from reelchat.media.encode import decode_mp4, encode_mp4

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")]

FPS = 2
WINDOW = 9


@pytest.fixture(scope="module")
def server(make_home: Callable[[str], Path], demo_models: Path) -> Iterator[KeyedServer]:
    srv = start_server(
        make_home,
        demo_models,
        "extensions",
        models={"sora-2": {"steps": 2, "fps": FPS, "window_frames": WINDOW, "max_seconds": 30}},
        keys=("main", "other"),
    )
    try:
        yield srv
    finally:
        srv.proc.stop()


@pytest.fixture(scope="module")
def client(server: KeyedServer) -> openai.OpenAI:
    return server.client("main")


@pytest.fixture(scope="module")
def http(server: KeyedServer) -> Iterator[httpx.Client]:
    with server.http("main") as c:
        yield c


@pytest.fixture(scope="module")
def finished(client: openai.OpenAI) -> Any:
    video = wait_video(client, client.videos.create(model="sora-2", prompt="a red kite over the sea").id)
    assert video.status == "completed", video.error
    return video


def assert_prefix_kept(source: np.ndarray, out: np.ndarray) -> None:
    """The source's frames come through, bar the blended overlap at the end: as close as one more H.264
    generation of the source itself is (the extension's mp4 is encoded again), far from anything else."""
    kept = len(source) - 5
    again = decode_mp4(encode_mp4(source, FPS))[:kept].astype(int)
    baseline = float(np.abs(again - source[:kept].astype(int)).mean())
    diff = float(np.abs(out[:kept].astype(int) - source[:kept].astype(int)).mean())
    assert diff <= baseline * 1.25 + 0.5, (diff, baseline)
    unrelated = float(np.abs(out[:kept].astype(int) - source[::-1][:kept].astype(int)).mean())
    assert unrelated > 4 * diff, (unrelated, diff)  # the test can tell a kept source from another picture


def frames_of(client: openai.OpenAI, video_id: str) -> np.ndarray:
    return decode_mp4(client.videos.download_content(video_id, variant="video").read())


def test_a_long_clip_is_made_in_windows(http: httpx.Client, finished: Any, client: openai.OpenAI) -> None:
    frames = frames_of(client, finished.id)
    # 10 s at 2 fps: exactly 20 frames; the model makes 21 (4k+1): 9, then 4 new ones per 9-frame pass
    assert len(frames) == 20
    page = http.get(f"/source/{finished.id}").json()  # /source takes the video id as well
    assert page["video_id"] == finished.id
    assert page["windows"] == 4
    assert page["kind"] == "generation"


def test_extend_by_id(client: openai.OpenAI, http: httpx.Client, finished: Any) -> None:
    """video={"id": ...} as the SDK's multipart encoder flattens it (`video[id]`). The installed SDK's own
    `videos.extend` refuses a dict before sending anything (its file extraction wants a file at `video`),
    so the form is sent as it would send it."""
    r = http.post("/v1/videos/extensions", data={"prompt": "the kite dives", "seconds": "4", "video[id]": finished.id})
    assert r.status_code == 200, r.text
    ext = r.json()
    assert ext["status"] in ("queued", "in_progress")
    assert ext["seconds"] == "14"  # the total
    done = wait_video(client, ext["id"])
    assert done.status == "completed", done.error
    source = frames_of(client, finished.id)
    out = frames_of(client, done.id)
    assert len(out) == len(source) + 4 * FPS
    assert_prefix_kept(source, out)
    page = http.get(f"/source/{done.id}").json()
    assert page["kind"] == "extension"
    assert page["extended_from"]["video_id"] == finished.id
    assert page["remixed_from"] is None
    assert [e["kind"] for e in page["lineage"]] == ["generation", "extension"]
    assert done.remixed_from_video_id is None
    html = http.get(f"/web/{page['id']}").text
    assert "extended" in html
    assert 'data-kind="extension"' in html


def test_extend_an_upload_through_the_sdk(client: openai.OpenAI, http: httpx.Client, finished: Any) -> None:
    mp4 = client.videos.download_content(finished.id, variant="video").read()
    ext = client.videos.extend(prompt="the kite climbs", seconds="4", video=("kite.mp4", mp4, "video/mp4"))
    assert ext.seconds == "14"  # 10 s uploaded (20 frames at 2 fps), plus 4
    done = wait_video(client, ext.id)
    assert done.status == "completed", done.error
    source = decode_mp4(mp4)
    out = frames_of(client, done.id)
    assert len(out) == len(source) + 4 * FPS
    assert_prefix_kept(source, out)
    page = http.get(f"/source/{done.id}").json()
    assert page["kind"] == "extension"
    assert page["extended_from"] is None  # nothing here to link to
    # not a video: a 400 naming the field
    r = http.post(
        "/v1/videos/extensions",
        data={"prompt": "x", "seconds": "4"},
        files={"video": ("v.mp4", b"not a video", "video/mp4")},
    )
    assert assert_openai_error(r, 400, "invalid_video")["param"] == "video"
    both = http.post(
        "/v1/videos/extensions",
        data={"prompt": "x", "seconds": "4", "video[id]": finished.id},
        files={"video": ("v.mp4", mp4, "video/mp4")},
    )
    assert_openai_error(both, 400)


def test_an_upload_shorter_than_the_overlap_goes_on_from_its_last_frame(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    # a window continues from the last 5 frames (frame_multiple + 1); two frames go on from the last one,
    # as image-to-video would: the first frame comes through unchanged, the second is blended
    two = np.full((2, 64, 64, 3), 120, np.uint8)
    two[1] = 60
    r = http.post(
        "/v1/videos/extensions", data={"prompt": "x", "seconds": "4"}, files={"video": ("v.mp4", encode_mp4(two, 1))}
    )
    assert r.status_code == 200, r.text
    assert r.json()["seconds"] == "6"
    done = wait_video(client, r.json()["id"])
    assert done.status == "completed", done.error
    out = frames_of(client, done.id)
    assert len(out) == 2 + 4  # 2 s at 1 fps, then 4 s more at the upload's fps
    assert np.abs(out[0].astype(int) - 120).mean() < 6  # the source's first frame, through two encodes


def test_extend_with_a_json_body(http: httpx.Client, client: openai.OpenAI, finished: Any) -> None:
    r = http.post("/v1/videos/extensions", json={"prompt": "and lands", "seconds": 4, "video": {"id": finished.id}})
    assert r.status_code == 200, r.text
    assert r.json()["seconds"] == "14"
    assert r.json()["extended_from_video_id"] == finished.id
    assert wait_video(client, r.json()["id"]).status == "completed"


@pytest.mark.parametrize(
    ("value", "code"), [(3, "unsupported_value"), (21, "unsupported_value"), ("four", None), (None, None)]
)
def test_bad_seconds_are_400(http: httpx.Client, finished: Any, value: object, code: str | None) -> None:
    r = http.post("/v1/videos/extensions", json={"prompt": "x", "seconds": value, "video": {"id": finished.id}})
    assert assert_openai_error(r, 400, code)["param"] == "seconds"


def test_extending_an_unfinished_video_is_409(http: httpx.Client, client: openai.OpenAI) -> None:
    running = client.videos.create(model="sora-2", prompt="a slow sunrise")
    r = http.post("/v1/videos/extensions", json={"prompt": "x", "seconds": 4, "video": {"id": running.id}})
    assert_openai_error(r, 409, "video_not_ready")
    wait_video(client, running.id)


def test_total_past_the_max_is_400(http: httpx.Client, client: openai.OpenAI, finished: Any) -> None:
    r = http.post("/v1/videos/extensions", json={"prompt": "more", "seconds": 16, "video": {"id": finished.id}})
    assert r.status_code == 200, r.text
    assert wait_video(client, r.json()["id"]).status == "completed"
    again = http.post("/v1/videos/extensions", json={"prompt": "more", "seconds": 8, "video": {"id": r.json()["id"]}})
    err = assert_openai_error(again, 400, "video_too_long")
    assert "30 s" in err["message"]


def test_other_tenants_and_unknown_videos_are_404(server: KeyedServer, finished: Any) -> None:
    with server.http("other") as other:
        r = other.post("/v1/videos/extensions", json={"prompt": "x", "seconds": 4, "video": {"id": finished.id}})
        assert_openai_error(r, 404, "video_not_found")
    with server.http("main") as main:
        missing = {"prompt": "x", "seconds": 4, "video": {"id": "video_" + "0" * 32}}
        assert_openai_error(main.post("/v1/videos/extensions", json=missing), 404, "video_not_found")
    with server.http("other") as other:
        form = {"prompt": "x", "seconds": "4", "video[id]": finished.id}
        assert_openai_error(other.post("/v1/videos/extensions", data=form), 404, "video_not_found")


def test_a_chat_turn_that_asks_to_continue_extends(client: openai.OpenAI, http: httpx.Client) -> None:
    first = chat(client, [user("a paper boat on a pond")], locale="en")
    history = [user("a paper boat on a pond"), assistant(first.content)]
    second = chat(client, [*history, user("continue for 4 more seconds")], locale="en")
    page = http.get(f"/source/{second.task_id}").json()
    assert page["kind"] == "extension"
    assert page["seconds"] == 14
    assert page["extended_from"]["sid"] == first.sid
    third = chat(client, [*history, user("让小船转个弯")], locale="zh")  # no extend words: a remix
    assert http.get(f"/source/{third.task_id}").json()["kind"] == "remix"
    fourth = chat(client, [*history, user("再延长4秒")], locale="zh")
    page = http.get(f"/source/{fourth.task_id}").json()
    assert (page["kind"], page["seconds"]) == ("extension", 14)
