"""The OpenAI Videos API (/v1/videos) through the official `openai` SDK against a real server.

One server for the module, with two API keys (`main`, `other`) and a queue cap of 3 waiting videos.
The videos are the chat API's videos too: the last tests cross between the two APIs.
"""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import numpy.typing as npt
import openai
import pytest
from helpers import assert_openai_error, user
from openai.types import VideoSeconds, VideoSize
from PIL import Image
from server_util import FAST_SORA2, KeyedServer, chat, chat_text, start_server, wait_video, wait_video_http

from reelchat.media.encode import decode_mp4, probe_mp4

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")]

MAX_QUEUED = 3
POLL_AFTER_MS = 250
MISSING = "video_" + "0" * 32
SID = re.compile(r"s_[0-9a-f]{32}")
TASK = re.compile(r"task_[0-9a-z]{26}")


# The SDK's Literals list OpenAI's sizes and seconds; reelchat takes any WxH and refuses bad values itself.
def off_list_size(size: str) -> VideoSize:
    return cast("VideoSize", size)


def off_list_seconds(seconds: str) -> VideoSeconds:
    return cast("VideoSeconds", seconds)


@pytest.fixture(scope="module")
def server(make_home: Callable[[str], Path], demo_models: Path) -> Iterator[KeyedServer]:
    srv = start_server(
        make_home,
        demo_models,
        "videos",
        # sora-2-pro is made slow on purpose: the queue-cap test needs a video that holds the worker
        models={"sora-2": FAST_SORA2, "sora-2-pro": {"steps": 60, "fps": 1}},
        keys=("main", "other"),
        env={"REELCHAT_MAX_QUEUED": str(MAX_QUEUED), "REELCHAT_POLL_AFTER_MS": str(POLL_AFTER_MS)},
    )
    try:
        yield srv
    finally:
        srv.proc.stop()


@pytest.fixture(scope="module")
def client(server: KeyedServer) -> openai.OpenAI:
    return server.client("main")


@pytest.fixture(scope="module")
def other(server: KeyedServer) -> openai.OpenAI:
    return server.client("other")


@pytest.fixture(scope="module")
def http(server: KeyedServer) -> Iterator[httpx.Client]:
    with server.http("main") as c:
        yield c


def source(server: KeyedServer, task_id: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/source/{task_id}", timeout=30)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def extra(video: Any) -> dict[str, Any]:
    """Our fields beyond OpenAI's Video shape (`task_id`, `sid`), as the SDK keeps them."""
    return dict(video.model_extra or {})


@pytest.fixture(scope="module")
def made(client: openai.OpenAI) -> Any:
    """One finished text-to-video, made with create_and_poll."""
    return client.videos.create_and_poll(prompt="a cow in a field", model="sora-2", poll_interval_ms=100)


# --------------------------------------------------------------------------- create, retrieve, list


def test_create_and_poll(made: Any, client: openai.OpenAI) -> None:
    assert made.status == "completed", made.error
    assert (made.object, made.model, made.seconds, made.size) == ("video", "sora-2", "10", "720x1280")
    assert made.prompt == "a cow in a field"
    assert made.progress == 100
    assert made.error is None
    assert made.remixed_from_video_id is None
    assert made.completed_at is not None
    assert made.completed_at >= made.created_at
    assert SID.fullmatch(extra(made)["sid"])
    assert TASK.fullmatch(extra(made)["task_id"])
    again = client.videos.retrieve(made.id)
    assert (again.id, again.status, again.seconds, again.size) == (made.id, "completed", "10", "720x1280")
    assert extra(again)["sid"] == extra(made)["sid"]


def test_poll_after_header_while_unfinished(http: httpx.Client) -> None:
    created = http.post("/v1/videos", json={"prompt": "a goat on a hill", "model": "sora-2"})
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["status"] == "queued"
    assert created.headers["openai-poll-after-ms"] == str(POLL_AFTER_MS)
    while True:
        r = http.get(f"/v1/videos/{body['id']}")
        assert r.status_code == 200
        status = r.json()["status"]
        if status in ("queued", "in_progress"):
            assert r.headers.get("openai-poll-after-ms") == str(POLL_AFTER_MS), (status, r.headers)
            time.sleep(0.05)
            continue
        assert status == "completed"
        assert "openai-poll-after-ms" not in r.headers  # nothing left to poll for
        break


def test_list_pages_both_orders(client: openai.OpenAI, http: httpx.Client) -> None:
    ids = [client.videos.create(prompt=f"a cat number {i}", model="sora-2").id for i in range(3)]

    def walk(order: str) -> list[str]:
        seen: list[str] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 1, "order": order}
            if after:
                params["after"] = after
            page = client.videos.list(**params)
            assert len(page.data) == 1
            seen.append(page.data[0].id)
            assert page.last_id == page.data[0].id
            if not page.has_more:
                return seen
            after = page.last_id
            assert len(seen) < 100, "has_more never became False"

    asc, desc = walk("asc"), walk("desc")
    assert asc == list(reversed(desc))
    assert len(set(asc)) == len(asc)
    assert asc[-3:] == ids  # the newest three, in the order they were made
    assert desc[:3] == ids[::-1]  # desc is the default order, newest first
    assert [v.id for v in client.videos.list(limit=100)][:3] == ids[::-1]
    # the SDK's auto-pagination follows after=last_id the same way
    assert [v.id for v in client.videos.list(limit=1, order="asc")] == asc
    raw = http.get("/v1/videos", params={"limit": 2, "order": "asc"}).json()
    assert raw["object"] == "list"
    assert raw["has_more"] is True
    assert (raw["first_id"], raw["last_id"]) == (asc[0], asc[1])
    for video_id in ids:
        assert wait_video(client, video_id).status == "completed"


# --------------------------------------------------------------------------- content, remix, delete


def test_download_content_variants(made: Any, client: openai.OpenAI, server: KeyedServer) -> None:
    video = client.videos.download_content(made.id).content  # variant "video" is the default
    info = probe_mp4(video)
    assert info.codec == "h264"
    # OpenAI's default size, rendered by the demo at its own 96x160 and scaled by the encoder
    assert (info.width, info.height) == (720, 1280)
    src = source(server, extra(made)["task_id"])
    assert info.frames == src["frames"] == src["seconds"] * src["fps"]  # exactly the duration
    assert decode_mp4(video).shape[1:] == (1280, 720, 3)
    thumb = client.videos.download_content(made.id, variant="thumbnail").content
    with Image.open(io.BytesIO(thumb)) as img:
        assert (img.format, img.size) == ("WEBP", (720, 1280))
    sprites = client.videos.download_content(made.id, variant="spritesheet").content
    with Image.open(io.BytesIO(sprites)) as img:
        assert img.format == "JPEG"


@pytest.fixture(scope="module")
def remixed(made: Any, client: openai.OpenAI) -> Any:
    started = client.videos.remix(made.id, prompt="give the cow a halo")
    assert started.remixed_from_video_id == made.id
    assert started.status in ("queued", "in_progress")
    return wait_video(client, started.id)


def test_remix(made: Any, remixed: Any, client: openai.OpenAI, server: KeyedServer) -> None:
    assert remixed.status == "completed", remixed.error
    assert remixed.remixed_from_video_id == made.id
    assert (remixed.seconds, remixed.size) == (made.seconds, made.size)
    assert client.videos.retrieve(remixed.id).remixed_from_video_id == made.id
    src = source(server, extra(remixed)["task_id"])
    assert [e["video_id"] for e in src["lineage"]] == [made.id, remixed.id]
    assert src["seed"] == source(server, extra(made)["task_id"])["seed"]


def test_remix_of_a_landscape_video_stays_landscape(client: openai.OpenAI, server: KeyedServer) -> None:
    wide = wait_video(
        client, client.videos.create(prompt="a wide field", model="sora-2", size=off_list_size("160x96")).id
    )
    assert wide.status == "completed"
    assert wide.size == "160x96"
    remix = wait_video(client, client.videos.remix(wide.id, prompt="with a rainbow").id)
    assert remix.status == "completed"
    assert remix.size == "160x96"
    mp4 = client.videos.download_content(remix.id, variant="video").content
    info = probe_mp4(mp4)
    assert (info.width, info.height) == (160, 96)


def test_a_deleted_source_leaves_no_words_or_pictures_in_its_remixes_history(
    client: openai.OpenAI, server: KeyedServer
) -> None:
    parent = wait_video(client, client.videos.create(prompt="a secret garden", model="sora-2").id)
    child = wait_video(client, client.videos.remix(parent.id, prompt="in autumn").id)
    client.videos.delete(parent.id)
    history = source(server, extra(child)["task_id"])["lineage"]
    assert [e["video_id"] for e in history] == [parent.id, child.id]
    assert (history[0]["prompt"], history[0]["thumbnail_url"], history[0]["status"]) == ("(deleted)", None, "deleted")
    page = httpx.get(f"{server.url}/web/{extra(child)['task_id']}", timeout=30).text
    assert "a secret garden" not in page
    assert "in autumn" in page
    gone = source(server, extra(parent)["task_id"])
    assert gone["deleted"] is True
    assert gone["prompt"] == "(deleted)"
    assert gone["url"] is None


def test_delete(remixed: Any, client: openai.OpenAI, http: httpx.Client) -> None:
    gone = client.videos.delete(remixed.id)
    assert (gone.id, gone.object, gone.deleted) == (remixed.id, "video.deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(remixed.id)
    assert_openai_error(http.get(f"/v1/videos/{remixed.id}/content"), 404)
    assert_openai_error(http.get(f"/v1/videos/{remixed.id}/content", params={"variant": "thumbnail"}), 404)
    assert_openai_error(http.post(f"/v1/videos/{remixed.id}/remix", json={"prompt": "again"}), 404)
    assert_openai_error(http.delete(f"/v1/videos/{remixed.id}"), 404)
    assert remixed.id not in {v.id for v in client.videos.list(limit=100)}


# --------------------------------------------------------------------------- images


def png_bytes(pixels: npt.NDArray[np.uint8]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


RED = png_bytes(np.full((160, 96, 3), (230, 30, 30), np.uint8))
_gradient = np.zeros((160, 96, 3), np.uint8)
_gradient[..., 1] = np.linspace(0, 255, 96, dtype=np.uint8)[None, :]
_gradient[..., 2] = np.linspace(255, 0, 160, dtype=np.uint8)[:, None]
GRADIENT = png_bytes(_gradient)
IMAGE_PROMPT = "a cow in a field"
IMAGE_SEED = 7


def frames_of(client: openai.OpenAI, video_id: str) -> npt.NDArray[np.float32]:
    return decode_mp4(client.videos.download_content(video_id).content).astype(np.float32)


def distance(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).mean())


def test_image_conditioning(client: openai.OpenAI, http: httpx.Client, server: KeyedServer) -> None:
    """Same seed and prompt: the same image gives the same video however it is sent; another image doesn't."""

    def json_create(png: bytes) -> str:
        # the model's own size, as the chat turn below gets: the videos are compared pixel by pixel
        body = {
            "prompt": IMAGE_PROMPT,
            "seed": IMAGE_SEED,
            "size": "96x160",
            "input_reference": {"image_url": data_url(png)},
        }
        r = http.post("/v1/videos", json=body)
        assert r.status_code == 200, r.text
        video_id: str = r.json()["id"]
        return video_id

    # JSON bodies with a data: URL (three at once: one runs, two wait, under the queue cap)
    red1, red2, grad = json_create(RED), json_create(RED), json_create(GRADIENT)
    # multipart, the image as a file part, through the SDK (seed as an extra form field)
    red3 = client.videos.create(
        prompt=IMAGE_PROMPT,
        model="sora-2",
        input_reference=("a.png", RED, "image/png"),
        size=off_list_size("96x160"),
        extra_body={"seed": IMAGE_SEED},
    ).id
    videos = {video_id: wait_video(client, video_id) for video_id in (red1, red2, grad, red3)}
    for video in videos.values():
        assert video.status == "completed", video.error
        src = source(server, extra(video)["task_id"])
        assert src["has_image"] is True
        assert src["seed"] == IMAGE_SEED
        assert src["size"] == "96x160"
    # and in chat: an image_url part with the JSON block's prompt and seed
    block = f'```json\n{{"prompt": "{IMAGE_PROMPT}", "seed": {IMAGE_SEED}}}\n```'
    reply = chat(
        client,
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": block},
                    {"type": "image_url", "image_url": {"url": data_url(RED)}},
                ],
            }
        ],
        stream=True,
    )
    assert reply.echo["image"] is True
    assert reply.echo["seed"] == IMAGE_SEED
    assert "sid" not in reply.echo
    chat_src = source(server, reply.task_id)
    assert chat_src["has_image"] is True

    base = frames_of(client, red1)
    same = {
        "json again": distance(frames_of(client, red2), base),
        "multipart": distance(frames_of(client, red3), base),
        "chat": distance(frames_of(client, chat_src["video_id"]), base),
    }
    different = distance(frames_of(client, grad), base)
    print(
        f"\nimage conditioning, mean |pixel difference| to the first red-image video: same image {same}, "
        f"other image {different:.2f}"
    )
    # "the same" allows for float noise (far below one grey level on average; on CPU it is exactly 0);
    # another image moves the video by whole grey levels
    for how, d in same.items():
        assert d < 1.0, (how, d)
    assert different > 3.0
    assert different > 10 * max(same.values())


BAD_IMAGE_URLS = {
    "loopback": ("http://127.0.0.1:1/x.png", "image_url_forbidden"),
    "cloud metadata": ("http://169.254.169.254/latest/meta-data", "image_url_forbidden"),
    "private network": ("http://10.0.0.1/a.png", "image_url_forbidden"),
    "file scheme": ("file:///etc/passwd", "invalid_image_url"),
    "not an image": ("data:image/png;base64," + base64.b64encode(b"hello, not a png").decode(), "invalid_image"),
}


@pytest.mark.parametrize(("url", "code"), list(BAD_IMAGE_URLS.values()), ids=list(BAD_IMAGE_URLS))
def test_image_fetch_refusals(url: str, code: str, http: httpx.Client, client: openai.OpenAI) -> None:
    err = assert_openai_error(
        http.post("/v1/videos", json={"prompt": "a cow", "input_reference": {"image_url": url}}), 400, code
    )
    assert err["param"] == "input_reference"
    # a bare string input_reference is read as the image URL too
    err = assert_openai_error(http.post("/v1/videos", json={"prompt": "a cow", "input_reference": url}), 400, code)
    assert err["param"] == "input_reference"
    # and so are multipart form fields: plain, and the object form as form encoders flatten it
    for field in ("input_reference", "input_reference[image_url]"):
        response = http.post("/v1/videos", files={"prompt": (None, "a cow"), field: (None, url)})
        err = assert_openai_error(response, 400, code)
        assert err["param"] == "input_reference"
    # the same refusal for a chat image_url part, streamed or not
    content = [{"type": "text", "text": "a cow"}, {"type": "image_url", "image_url": {"url": url}}]
    for stream in (True, False):
        r = http.post(
            "/v1/chat/completions",
            json={"model": "sora-2", "stream": stream, "messages": [{"role": "user", "content": content}]},
        )
        err = assert_openai_error(r, 400, code)
        assert err["param"] == "input_reference"


def test_image_file_that_is_not_an_image(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt="a cow", input_reference=("a.png", b"hello, not a png", "image/png"))
    err = assert_openai_error(cast(httpx.Response, info.value.response), 400, "invalid_image")
    assert err["param"] == "input_reference"


# --------------------------------------------------------------------------- across the two APIs


def test_chat_video_fetched_and_remixed_through_videos_api(client: openai.OpenAI, server: KeyedServer) -> None:
    reply = chat(client, [user("a horse running on a beach")], stream=True, locale="en")
    video_id = source(server, reply.task_id)["video_id"]
    video = client.videos.retrieve(video_id)
    assert (video.status, video.seconds, video.size) == ("completed", "10", "96x160")
    assert extra(video) == {"task_id": reply.task_id, "sid": reply.sid}
    remix = client.videos.remix(video_id, prompt="at sunset")
    assert remix.remixed_from_video_id == video_id
    remix = wait_video(client, remix.id)
    assert remix.status == "completed", remix.error
    lineage = source(server, extra(remix)["task_id"])["lineage"]
    assert [e["id"] for e in lineage] == [reply.task_id, extra(remix)["task_id"]]


def test_videos_api_video_remixed_in_chat_by_sid(made: Any, client: openai.OpenAI, server: KeyedServer) -> None:
    sid = extra(made)["sid"]
    reply = chat(client, [user(f"give the cow a halo {sid}")], stream=False, locale="zh")
    assert reply.echo["sid"] == sid
    assert reply.echo["prompt"] == "give the cow a halo"
    src = source(server, reply.task_id)
    assert src["remixed_from"] == {"id": extra(made)["task_id"], "sid": sid, "video_id": made.id}
    assert [e["id"] for e in src["lineage"]] == [extra(made)["task_id"], reply.task_id]
    assert client.videos.retrieve(src["video_id"]).remixed_from_video_id == made.id


# --------------------------------------------------------------------------- errors


def test_unknown_ids_are_404(http: httpx.Client, client: openai.OpenAI) -> None:
    for video_id in (MISSING, "nope", "s_" + "0" * 32):
        assert_openai_error(http.get(f"/v1/videos/{video_id}"), 404, "video_not_found")
        assert_openai_error(http.get(f"/v1/videos/{video_id}/content"), 404, "video_not_found")
        assert_openai_error(http.post(f"/v1/videos/{video_id}/remix", json={"prompt": "x"}), 404, "video_not_found")
        assert_openai_error(http.delete(f"/v1/videos/{video_id}"), 404, "video_not_found")
    assert_openai_error(http.get("/v1/videos", params={"after": MISSING}), 404)
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(MISSING)
    with pytest.raises(openai.NotFoundError):
        client.videos.remix(MISSING, prompt="x")


def test_other_tenants_videos_are_404(made: Any, other: openai.OpenAI, server: KeyedServer) -> None:
    with server.http("other") as http:
        missing = assert_openai_error(http.get(f"/v1/videos/{MISSING}"), 404)
        for response in (
            http.get(f"/v1/videos/{made.id}"),
            http.get(f"/v1/videos/{made.id}/content"),
            http.post(f"/v1/videos/{made.id}/remix", json={"prompt": "x"}),
            http.delete(f"/v1/videos/{made.id}"),
        ):
            err = assert_openai_error(response, 404)
            # indistinguishable from an id that doesn't exist
            assert {**err, "message": err["message"].replace(made.id, MISSING)} == missing
        assert_openai_error(http.get("/v1/videos", params={"after": made.id}), 404)
    with pytest.raises(openai.NotFoundError):
        other.videos.retrieve(made.id)
    assert made.id not in {v.id for v in other.videos.list(limit=100)}
    assert server.client("main").videos.retrieve(made.id).status == "completed"  # untouched


@pytest.mark.parametrize(
    ("body", "param", "must_name"),
    [
        ({"prompt": "x", "size": "1x1"}, "size", ["size", "96x160", "160x96"]),
        ({"prompt": "x", "seconds": "7"}, "seconds", ["seconds", "10"]),
        ({"prompt": "x", "seconds": "ten"}, "seconds", ["seconds"]),
        ({"size": "96x160"}, "prompt", ["prompt"]),
        ({"prompt": ""}, "prompt", ["prompt"]),
        ({"prompt": "x" * 32_001}, "prompt", ["prompt", "32000"]),
    ],
    ids=["size 1x1", "seconds 7", "seconds ten", "no prompt", "empty prompt", "prompt 32001 chars"],
)
def test_bad_create_fields_are_400(body: dict[str, Any], param: str, must_name: list[str], http: httpx.Client) -> None:
    for response in (http.post("/v1/videos", json=body), http.post("/v1/videos", data=body)):  # JSON and form
        err = assert_openai_error(response, 400)
        assert err["param"] == param
        for word in must_name:
            assert word in err["message"], (word, err["message"])


def test_bad_fields_through_the_sdk(client: openai.OpenAI, made: Any) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt="x", size=off_list_size("1x1"))
    assert "96x160" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.videos.create(prompt="x", seconds=off_list_seconds("7"))
    assert "10" in info.value.message
    with pytest.raises(openai.BadRequestError):
        client.videos.remix(made.id, prompt="")
    with pytest.raises(openai.NotFoundError) as nf:
        client.videos.create(prompt="x", model="sora-9")
    assert nf.value.code == "model_not_found"


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": "many"}, {"order": "sideways"}], ids=str)
def test_bad_list_params_are_400(params: dict[str, Any], http: httpx.Client) -> None:
    err = assert_openai_error(http.get("/v1/videos", params=params), 400)
    assert err["param"] == next(iter(params))


def test_keys_are_required_once_they_exist(server: KeyedServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        for headers in ({}, {"Authorization": "Bearer rc-not-a-real-key"}, {"Authorization": "Basic abc"}):
            assert_openai_error(anon.get("/v1/videos", headers=headers), 401)
            assert_openai_error(anon.post("/v1/videos", json={"prompt": "x"}, headers=headers), 401)
            assert_openai_error(anon.get(f"/v1/videos/{MISSING}", headers=headers), 401)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="rc-wrong", max_retries=0).videos.list()


def test_queue_cap_gives_429(server: KeyedServer, http: httpx.Client, client: openai.OpenAI) -> None:
    """REELCHAT_MAX_QUEUED=3: with one video running and three waiting, the next create is refused.

    The running one is a deliberately slow sora-2-pro video, so the queue stays full while we look.
    """
    slow = http.post("/v1/videos", json={"prompt": "a very slow sheep", "model": "sora-2-pro"})
    assert slow.status_code == 200, slow.text
    accepted = [slow.json()["id"]]
    try:
        deadline = time.monotonic() + 60
        while client.videos.retrieve(accepted[0]).status == "queued":  # wait until it holds the worker
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for i in range(MAX_QUEUED):
            r = http.post("/v1/videos", json={"prompt": f"a queue of sheep {i}", "model": "sora-2"})
            assert r.status_code == 200, r.text
            accepted.append(r.json()["id"])
        refused = http.post("/v1/videos", json={"prompt": "one sheep too many", "model": "sora-2"})
        err = assert_openai_error(refused, 429)
        assert err["type"] == "rate_limit_error"
        assert int(refused.headers["retry-after"]) > 0
        # the SDK sees a RateLimitError, for a create and for a chat turn alike
        with pytest.raises(openai.RateLimitError):
            client.videos.create(prompt="one sheep too many", model="sora-2")
        with pytest.raises(openai.RateLimitError):
            chat_text(client, [user("one sheep too many")], stream=True)
        assert client.videos.retrieve(accepted[0]).status == "in_progress", "the slow video finished too soon"
    finally:
        for video_id in accepted:  # a deleted video never runs, and the running one stops: the queue drains
            http.delete(f"/v1/videos/{video_id}")
    deadline = time.monotonic() + 60
    while True:
        r = http.post("/v1/videos", json={"prompt": "a last sheep", "model": "sora-2"})
        if r.status_code != 429 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.status_code == 200, r.text
    assert wait_video_http(http, r.json()["id"])["status"] == "completed"
