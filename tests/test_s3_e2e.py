"""`reelchat serve` with its media in S3 (moto's standalone server), driven by the official `openai` SDK.

The worker processes write the mp4, thumbnail and spritesheet straight to the bucket under the
prefix; nothing lands in the local media directory. Links are reelchat's and stream from S3 with
Range (`REELCHAT_S3_LINKS=proxy`, the default), or presigned S3 URLs (`presigned`); the Videos API's
content is reelchat's answer either way. A bucket that doesn't exist stops the start with a clear line.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from helpers import SEED_FIRST_TURN, assert_openai_error, decode_webp, free_port, probe_video, run_cli, user
from moto_s3 import MotoS3
from PIL import Image
from server_util import FAST_SORA2, KeyedServer, chat, start_server

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")]

PREFIX = "tenant-media/reelchat"
PRESIGN_S = 300


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 160), (230, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()


def extra(video: Any) -> dict[str, Any]:
    return dict(video.model_extra or {})


@pytest.fixture(scope="module")
def proxied(make_home: Callable[[str], Path], demo_models: Path, moto_s3: MotoS3) -> Iterator[tuple[KeyedServer, str]]:
    bucket = moto_s3.new_bucket("proxied")
    env = moto_s3.env(bucket, PREFIX)
    keys = ("main", "other")
    srv = start_server(make_home, demo_models, "s3-proxy", models={"sora-2": FAST_SORA2}, keys=keys, env=env)
    try:
        yield srv, bucket
    finally:
        srv.proc.stop()


@pytest.fixture(scope="module")
def presigned(
    make_home: Callable[[str], Path], demo_models: Path, moto_s3: MotoS3
) -> Iterator[tuple[KeyedServer, str]]:
    bucket = moto_s3.new_bucket("presigned")
    env = moto_s3.env(bucket, PREFIX, REELCHAT_S3_LINKS="presigned", REELCHAT_S3_PRESIGN_EXPIRES_S=str(PRESIGN_S))
    srv = start_server(make_home, demo_models, "s3-presigned", models={"sora-2": FAST_SORA2}, keys=("main",), env=env)
    try:
        yield srv, bucket
    finally:
        srv.proc.stop()


def media_keys(*names: str | None) -> set[str]:
    return {f"{PREFIX}/{n}" for n in names if n}


def test_videos_api_writes_to_the_bucket_and_serves_content(proxied: tuple[KeyedServer, str], moto_s3: MotoS3) -> None:
    server, bucket = proxied
    client = server.client("main")
    before = set(moto_s3.keys(bucket))
    image = ("a.png", PNG, "image/png")
    started = client.videos.create(prompt="a cow in a field", model="sora-2", size="96x160", input_reference=image)  # type: ignore[arg-type]  # the model's own size, beside OpenAI's
    video = client.videos.poll(started.id, poll_interval_ms=100)
    assert video.status == "completed", video.error
    made = set(moto_s3.keys(bucket)) - before
    # the input image (saved by the API process as it accepts the request), the mp4, thumbnail and spritesheet
    assert sorted(k.rsplit(".", 1)[1] for k in made) == ["jpg", "mp4", "png", "webp"], made
    assert all(k.startswith(f"{PREFIX}/") for k in made)
    mp4 = client.videos.download_content(video.id).content
    probed = probe_video(mp4)  # decoded back with PyAV
    assert probed.info.codec == "h264"
    assert (probed.info.width, probed.info.height) == (96, 160)
    assert probed.decoded_frames == probed.info.frames > 0
    thumb = client.videos.download_content(video.id, variant="thumbnail").content
    assert decode_webp(thumb)[0] > 0

    src = httpx.get(f"{server.url}/source/{extra(video)['task_id']}", timeout=30).json()
    names = [urlsplit(src[k]).path.rsplit("/", 1)[-1] for k in ("url", "thumbnail_url", "spritesheet_url")]
    assert all(src[k].startswith(f"{server.url}/media/") for k in ("url", "thumbnail_url", "spritesheet_url"))
    stored = set(moto_s3.keys(bucket))
    assert media_keys(*names) <= stored  # under the prefix, written by the worker process
    assert moto_s3.client().get_object(Bucket=bucket, Key=f"{PREFIX}/{names[0]}")["Body"].read() == mp4
    media_dir = server.proc.home / "media"
    assert not media_dir.exists() or not any(media_dir.iterdir())  # nothing on the API machine's disk

    # tenants stay apart exactly as with a local directory
    assert_openai_error(server.http("other").get(f"/v1/videos/{video.id}/content"), 404)

    # delete removes the objects, the input image's too
    client.videos.delete(video.id)
    assert not (made & set(moto_s3.keys(bucket)))
    assert httpx.get(src["url"], timeout=30).status_code == 404


def test_chat_stream_mp4_link_streams_from_s3_with_range(proxied: tuple[KeyedServer, str]) -> None:
    server, _ = proxied
    reply = chat(server.client("main"), [user(SEED_FIRST_TURN)])
    assert reply.video_url is not None
    assert reply.thumbnail_url is not None
    assert reply.video_url.startswith(f"{server.url}/media/")
    full = httpx.get(reply.video_url, timeout=30)
    assert full.status_code == 200
    assert full.headers["content-type"] == "video/mp4"
    assert full.headers["etag"]
    assert probe_video(full.content).info.codec == "h264"
    size = len(full.content)
    part = httpx.get(reply.video_url, headers={"Range": "bytes=10-1033"}, timeout=30)
    assert (part.status_code, part.headers["content-range"]) == (206, f"bytes 10-1033/{size}")
    assert part.content == full.content[10:1034]
    head = httpx.head(reply.video_url, timeout=30)
    assert (head.status_code, head.headers["content-length"], head.headers["etag"]) == (
        200,
        str(size),
        full.headers["etag"],
    )
    assert httpx.get(reply.video_url, headers={"Range": f"bytes={size}-"}, timeout=30).status_code == 416
    assert decode_webp(httpx.get(reply.thumbnail_url, timeout=30).content)[0] > 0


def test_presigned_links_point_at_the_bucket(presigned: tuple[KeyedServer, str], moto_s3: MotoS3) -> None:
    server, bucket = presigned
    client = server.client("main")
    reply = chat(client, [user(SEED_FIRST_TURN)])  # the seed's strict reply structure: links end in .mp4 / .webp
    assert reply.video_url is not None
    assert reply.thumbnail_url is not None
    for url in (reply.video_url, reply.thumbnail_url):
        assert url.startswith(f"{moto_s3.endpoint}/{bucket}/{PREFIX}/")
        assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == [str(PRESIGN_S)]
    direct = httpx.get(reply.video_url, timeout=30)  # straight from S3, not through reelchat
    assert direct.status_code == 200
    assert probe_video(direct.content).info.codec == "h264"
    assert decode_webp(httpx.get(reply.thumbnail_url, timeout=30).content)[0] > 0

    src = httpx.get(f"{server.url}/source/{reply.task_id}", timeout=30).json()
    assert src["url"].startswith(f"{moto_s3.endpoint}/")
    page = httpx.get(f"{server.url}/web/{reply.task_id}", timeout=30)
    directives = dict(d.strip().split(" ", 1) for d in page.headers["content-security-policy"].split(";"))
    assert moto_s3.endpoint in directives["media-src"].split()  # the page may play what the links point at
    assert moto_s3.endpoint in directives["img-src"].split()
    assert moto_s3.endpoint not in directives["script-src"]

    # the Videos API still answers with the bytes (OpenAI's contract), behind the tenant check
    video_id = src["video_id"]
    assert client.videos.download_content(video_id).content == direct.content


def test_a_missing_bucket_stops_the_start_with_a_clear_message(
    make_home: Callable[[str], Path], moto_s3: MotoS3
) -> None:
    home = make_home("s3-missing")
    out = run_cli(home, "serve", "--port", str(free_port()), env=moto_s3.env("no-such-bucket-anywhere"), timeout=120)
    assert out.returncode == 2, out
    assert "REELCHAT_STORAGE_URL=s3://no-such-bucket-anywhere/media/" in out.stderr
    assert "does not exist" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_an_unreachable_endpoint_stops_the_start_with_a_clear_message(
    make_home: Callable[[str], Path], moto_s3: MotoS3
) -> None:
    home = make_home("s3-unreachable")
    env = {**moto_s3.env("some-bucket"), "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    out = run_cli(home, "serve", "--port", str(free_port()), env=env, timeout=120)
    assert out.returncode == 2, out
    assert "REELCHAT_STORAGE_URL" in out.stderr
    assert "AWS_ENDPOINT_URL" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_no_boto3_stops_the_start_with_the_extra_to_install(make_home: Callable[[str], Path]) -> None:
    import subprocess

    from helpers import clean_env

    home = make_home("s3-no-boto3")
    code = "import sys; sys.modules['boto3'] = None; from reelchat.cli import main; raise SystemExit(main())"
    out = subprocess.run(  # noqa: S603  (fixed argv: this interpreter and our own CLI)
        [sys.executable, "-c", code, "serve", "--port", str(free_port())],
        env=clean_env(home, {"REELCHAT_STORAGE_URL": "s3://some-bucket/media"}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2, out
    assert "REELCHAT_STORAGE_URL" in out.stderr
    assert "pip install 'reelchat[s3]'" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
