"""Every `client.videos.*` method of the official SDK, with OpenAI's own literal values, against a real server.

The server is `reelchat serve` (uvicorn, worker processes, the demo model); the client is openai-python
as any application uses it. Each finished mp4 is decoded and must be the size and length its video object
says; what the server sends must validate strictly against the SDK's own pydantic models. (`extend` is
the long-video issue's.)

Bounded for a 2-core machine: the demo renders at its own tiny sizes and 1 frame a second, and the
encoder scales to the public size, so each video costs mostly its encode (bench/encode_sizes.py).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import httpx
import numpy as np
import openai
import pytest
from helpers import assert_openai_error, user
from openai.types import Video, VideoCreateCharacterResponse, VideoGetCharacterResponse, VideoSeconds, VideoSize
from PIL import Image
from server_util import KeyedServer, chat, start_server, wait_video

from reelchat.media.encode import decode_mp4, encode_mp4, probe_mp4

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")]

FPS = 1  # the demo at 1 fps: 4 s is Wan's 5 frames, of which the mp4 keeps 4
FAST = {"steps": 2, "fps": FPS}


@pytest.fixture(scope="module")
def server(make_home: Callable[[str], Path], demo_models: Path) -> Iterator[KeyedServer]:
    srv = start_server(
        make_home, demo_models, "videos-sdk", models={"sora-2": FAST, "sora-2-pro": FAST}, keys=("main", "other")
    )
    try:
        yield srv
    finally:
        srv.proc.stop()


@pytest.fixture(scope="module")
def client(server: KeyedServer) -> openai.OpenAI:
    return server.client("main")


def raw_video(server: KeyedServer, video_id: str) -> dict[str, Any]:
    with server.http("main") as http:
        r = http.get(f"/v1/videos/{video_id}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def strict_video(server: KeyedServer, video_id: str) -> Video:
    """The video as the server sent it, validated by the SDK's own model (its Literals included)."""
    raw = raw_video(server, video_id)
    raw.pop("task_id"), raw.pop("sid")  # reelchat's extras, for moving to the chat API
    return Video.model_validate(raw, strict=True)


def assert_media(client: openai.OpenAI, video: Video) -> None:
    """The mp4, thumbnail and spritesheet are the size the video object says, and the mp4 lasts `seconds`."""
    width, height = (int(v) for v in video.size.split("x"))
    mp4 = client.videos.download_content(video.id).read()
    info = probe_mp4(mp4)
    frames = decode_mp4(mp4)
    assert (info.codec, info.width, info.height) == ("h264", width, height)
    assert frames.shape[1:] == (height, width, 3)
    assert abs(info.duration - int(video.seconds)) <= 1 / info.fps + 1e-6, (info.duration, video.seconds)
    assert abs(len(frames) / info.fps - int(video.seconds)) <= 1 / info.fps + 1e-6
    thumb = Image.open(io.BytesIO(client.videos.download_content(video.id, variant="thumbnail").read()))
    assert (thumb.format, thumb.size) == ("WEBP", (width, height))
    sheet = Image.open(io.BytesIO(client.videos.download_content(video.id, variant="spritesheet").read()))
    columns = min(5, len(frames))
    rows = -(-min(25, len(frames)) // columns)
    assert (sheet.format, sheet.size) == ("JPEG", (columns * width, rows * height))


def test_the_sdk_literals_are_openai_values() -> None:
    # if openai-python changes its lists, this test says which values reelchat must now accept
    assert get_args(VideoSeconds) == ("4", "8", "12")
    assert get_args(VideoSize) == ("720x1280", "1280x720", "1024x1792", "1792x1024")


@pytest.mark.parametrize(
    ("model", "seconds", "size"),
    [("sora-2", "4", "720x1280"), ("sora-2-pro", "8", "1792x1024"), ("sora-2", "12", "1280x720")],
)
def test_create_with_openai_values_delivers_them(
    server: KeyedServer, client: openai.OpenAI, model: str, seconds: VideoSeconds, size: VideoSize
) -> None:
    made = client.videos.create(prompt="a lighthouse at dusk", model=model, seconds=seconds, size=size)
    assert (made.seconds, made.size, made.status) == (seconds, size, "queued")
    done = wait_video(client, made.id)
    assert done.status == "completed", done.error
    video = strict_video(server, made.id)
    assert (video.model, video.seconds, video.size, video.progress) == (model, seconds, size, 100)
    assert_media(client, video)


def test_every_size_and_duration_is_accepted(client: openai.OpenAI, server: KeyedServer) -> None:
    """The rest of the grid is accepted (and queued) as asked; the model's own values are too."""
    made = []
    for seconds in get_args(VideoSeconds):
        for size in get_args(VideoSize):
            made.append(client.videos.create(prompt="x", seconds=seconds, size=size))
            assert (made[-1].seconds, made[-1].size) == (seconds, size)
    own = client.videos.create(prompt="x", seconds="10", size="96x160")  # type: ignore[arg-type]  # the model's own
    assert (own.seconds, own.size) == ("10", "96x160")
    for video in [*made, own]:
        client.videos.delete(video.id)  # nothing of this test needs rendering


def test_other_values_are_refused_with_what_is_allowed(server: KeyedServer) -> None:
    with server.http("main") as http:
        err = assert_openai_error(http.post("/v1/videos", json={"prompt": "x", "seconds": "5"}), 400)
        assert err["param"] == "seconds"
        assert "4, 8, 10, 12" in err["message"]
        err = assert_openai_error(http.post("/v1/videos", json={"prompt": "x", "size": "640x480"}), 400)
        assert err["param"] == "size"
        for size in (*get_args(VideoSize), "96x160", "160x96"):
            assert size in err["message"]


def test_chat_json_block_takes_openai_values(server: KeyedServer, client: openai.OpenAI) -> None:
    turn = 'a sailboat\n```json\n{"seconds": 4, "size": "1280x720"}\n```'
    reply = chat(client, [user(turn)])
    videos = client.videos.list(limit=1).data
    assert "sailboat" in (videos[0].prompt or "")
    assert (videos[0].seconds, videos[0].size) == ("4", "1280x720")
    assert_media(client, strict_video(server, videos[0].id))
    assert reply.sid


def test_chat_defaults_stay_the_seeds(client: openai.OpenAI) -> None:
    with httpx.Client(base_url=str(client.base_url), headers={"Authorization": f"Bearer {client.api_key}"}) as http:
        models = {m["id"]: m for m in http.get("models").json()["data"]}
    assert models["sora-2"]["default_seconds"] == "10"
    assert models["sora-2-pro"]["default_seconds"] == "15"
    assert {"4", "8", "12", "10"} <= set(models["sora-2"]["seconds"])
    assert set(get_args(VideoSize)) <= set(models["sora-2-pro"]["sizes"])


def test_list_retrieve_remix_delete(server: KeyedServer, client: openai.OpenAI) -> None:
    made = wait_video(client, client.videos.create(prompt="a red kite", seconds="4", size="1024x1792").id)
    assert made.status == "completed", made.error
    listed = client.videos.list(limit=100)
    assert made.id in [v.id for v in listed.data]
    for item in listed.data:
        if item.size in get_args(VideoSize):
            Video.model_validate(item.model_dump(), strict=True)
    remix = client.videos.remix(made.id, prompt="the kite turns blue")
    assert remix.remixed_from_video_id == made.id
    done = wait_video(client, remix.id)
    assert done.status == "completed", done.error
    video = strict_video(server, remix.id)
    assert (video.size, video.seconds, video.remixed_from_video_id) == ("1024x1792", "4", made.id)
    assert_media(client, video)
    deleted = client.videos.delete(remix.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (remix.id, True, "video.deleted")
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(remix.id)


def test_edit_a_video_by_id(server: KeyedServer, client: openai.OpenAI) -> None:
    source = wait_video(client, client.videos.create(prompt="a calm lake", seconds="4", size="1280x720").id)
    assert source.status == "completed", source.error
    # openai-python 3.57 types `video={"id": ...}` but its file extraction refuses a dict before sending
    # (RuntimeError "Expected entry at `video` to be bytes..."), so an edit by id goes as JSON through the
    # SDK's own client, and as the form the SDK would send (`video[id]`) over plain HTTP
    with pytest.raises(RuntimeError, match="Expected entry at `video`"):
        client.videos.edit(prompt="add a swan", video={"id": source.id})
    edited = client.post("/videos/edits", cast_to=Video, body={"prompt": "add a swan", "video": {"id": source.id}})
    assert edited.remixed_from_video_id == source.id
    with server.http("main") as http:
        r = http.post("/v1/videos/edits", files={"prompt": (None, "add a duck"), "video[id]": (None, source.id)})
    assert r.status_code == 200, r.text
    assert r.json()["remixed_from_video_id"] == source.id
    client.videos.delete(r.json()["id"])
    done = wait_video(client, edited.id)
    assert done.status == "completed", done.error
    video = strict_video(server, edited.id)
    assert (video.size, video.seconds, video.remixed_from_video_id) == ("1280x720", "4", source.id)
    assert_media(client, video)
    # another tenant's video is no one's: 404, as for an id that never existed
    with pytest.raises(openai.NotFoundError):
        server.client("other").post("/videos/edits", cast_to=Video, body={"prompt": "x", "video": {"id": source.id}})


def _upload_mp4(width: int = 64, height: int = 112, frames: int = 8, fps: int = 4) -> bytes:
    grid = np.arange(frames * height * width * 3, dtype=np.uint32).reshape(frames, height, width, 3)
    return encode_mp4((grid % 251).astype(np.uint8), fps)


def _webm(width: int = 64, height: int = 48, frames: int = 6) -> bytes:
    import av

    out = io.BytesIO()
    with av.open(out, mode="w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=3)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            rgb = np.full((height, width, 3), (i * 40) % 255, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    return out.getvalue()


def test_edit_an_uploaded_video(server: KeyedServer, client: openai.OpenAI) -> None:
    edited = client.videos.edit(prompt="make it snow", video=("clip.mp4", _upload_mp4(), "video/mp4"))
    assert edited.remixed_from_video_id is None
    done = wait_video(client, edited.id)
    assert done.status == "completed", done.error
    video = strict_video(server, edited.id)
    # a portrait upload of 2 s: OpenAI's portrait size, the allowed duration nearest 2 s
    assert (video.size, video.seconds) == ("720x1280", "4")
    assert_media(client, video)
    # any container PyAV reads is taken (converted to mp4 once)
    landscape = client.videos.edit(prompt="now sunny", video=("clip.webm", _webm(), "video/webm"))
    assert wait_video(client, landscape.id).status == "completed"
    assert raw_video(server, landscape.id)["size"] == "1280x720"


def _media_files(server: KeyedServer) -> set[str]:
    media = server.proc.home / "media"
    return {p.name for p in media.rglob("*") if p.is_file()} if media.exists() else set()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "required"),  # an empty part is no file at all
        (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200, "not a video"),
        (b"plain text, not a video at all", "not a video"),
        (_upload_mp4()[:600], "decode"),  # cut off
    ],
)
def test_edit_refuses_what_is_not_a_video_and_stores_nothing(server: KeyedServer, data: bytes, words: str) -> None:
    before = _media_files(server)
    with server.http("main") as http:
        r = http.post("/v1/videos/edits", data={"prompt": "x"}, files={"video": ("v.mp4", data, "video/mp4")})
    err = assert_openai_error(r, 400)
    assert err["param"] == "video"
    assert any(w in err["message"].lower() for w in (words, "no frames", "not a video", "could not")), err
    assert _media_files(server) == before


def test_edit_refuses_videos_past_the_limits(server: KeyedServer) -> None:
    too_wide = _upload_mp4(width=2048, height=32, frames=2)
    too_long = _upload_mp4(width=32, height=32, frames=200, fps=2)  # 100 s
    with server.http("main") as http:
        for data, words in ((too_wide, "sides"), (too_long, "lasts")):
            r = http.post("/v1/videos/edits", data={"prompt": "x"}, files={"video": ("v.mp4", data, "video/mp4")})
            assert words in assert_openai_error(r, 400, "invalid_video")["message"]


def test_characters(server: KeyedServer, client: openai.OpenAI) -> None:
    made = client.videos.create_character(name="Mochi", video=("mochi.mp4", _upload_mp4(), "video/mp4"))
    with server.http("main") as http:
        raw = http.get(f"/v1/videos/characters/{made.id}").json()
    assert set(raw) == {"id", "created_at", "name"}
    got = VideoGetCharacterResponse.model_validate(raw, strict=True)
    assert (got.id, got.name, got.created_at) == (made.id, "Mochi", made.created_at)
    VideoCreateCharacterResponse.model_validate(made.model_dump(), strict=True)
    assert client.videos.get_character(got.id or "") == got
    with pytest.raises(openai.NotFoundError):
        server.client("other").videos.get_character(got.id or "")  # another tenant's
    # a prompt naming it conditions on its reference frame (image-to-video on the demo)
    video = client.videos.create(prompt="@Mochi rides a bicycle", seconds="4", size="720x1280")
    done = wait_video(client, video.id)
    assert done.status == "completed", done.error
    task = raw_video(server, video.id)["task_id"]
    source = httpx.get(f"{server.url}/source/{task}").json()
    assert source["has_image"] is True
    # and a character from one of the tenant's own videos, by id
    from_video = client.post(
        "/videos/characters", cast_to=VideoCreateCharacterResponse, body={"name": "Kite", "video": {"id": video.id}}
    )
    assert client.videos.get_character(from_video.id or "").name == "Kite"
    with pytest.raises(openai.BadRequestError):
        client.videos.create_character(name="", video=("m.mp4", _upload_mp4(), "video/mp4"))


def test_unknown_and_empty_file_parts_are_ignored(server: KeyedServer) -> None:
    files = [
        ("input_reference", ("", b"", "application/octet-stream")),  # a form's untouched file input
        ("attachment", ("notes.txt", b"hello", "text/plain")),  # a part no one asked for
    ]
    with server.http("main") as http:
        r = http.post("/v1/videos", data={"prompt": "x", "seconds": "4", "size": "96x160"}, files=files)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "queued"
        http.delete(f"/v1/videos/{r.json()['id']}")
