"""A real `reelchat serve` (uvicorn, subprocess) driven by the official `openai` SDK, and the CLI.

The server runs the built-in catalog unchanged: what `sora-2` and `sora-2-pro` give by default is
what these tests check.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from helpers import (
    SEED_FIRST_TURN,
    TASK_ID_RE,
    ServerProcess,
    decode_webp,
    free_port,
    parse_reply,
    poll_source,
    probe_video,
    run_cli,
    user,
)
from moto_s3 import MotoS3
from openai.types.chat import ChatCompletion, ChatCompletionChunk

pytestmark = pytest.mark.slow

SECRET_RE = re.compile(r"rc-[A-Za-z0-9_-]{20,}")


# Run once with the embedded defaults (media in a local directory), once with the media in S3
# (moto's standalone server): the same replies, links and videos either way.
@pytest.fixture(scope="module", params=["local", "s3"])
def e2e(request: pytest.FixtureRequest, make_home: Callable[[str], Path]) -> Iterator[tuple[ServerProcess, str]]:
    """A server on the default catalog, with one API key (created with the CLI, as a user would)."""
    env = {"REELCHAT_KEEPALIVE_S": "0.2"}
    if request.param == "s3":
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        env |= moto.env(moto.new_bucket("e2e"), "e2e")
    home = make_home(f"e2e-{request.param}")
    created = run_cli(home, "keys", "create", "--name", "e2e")
    assert created.returncode == 0, created.stderr
    secret = SECRET_RE.findall(created.stdout)[0]
    with ServerProcess(home, env) as server:
        yield server, secret


@pytest.fixture(scope="module")
def sdk(e2e: tuple[ServerProcess, str]) -> Iterator[openai.OpenAI]:
    server, secret = e2e
    # no retries: a silent retry would submit a second video
    with openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=secret, max_retries=0, timeout=300) as client:
        yield client


def download(url: str) -> bytes:
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200, (url, r.status_code)
    return r.content


def check_video(server: ServerProcess, task_id: str, video_url: str, thumb_url: str) -> dict[str, Any]:
    """The mp4 is what /source says: H.264 yuv420p, its size and frame count; the thumbnail decodes."""
    src = httpx.get(f"{server.base_url}/source/{task_id}").json()
    assert src["status"] == "completed"
    assert src["url"] == video_url
    assert src["thumbnail_url"] == thumb_url
    probed = probe_video(download(video_url))
    assert probed.info.codec == "h264"
    assert probed.info.pix_fmt == "yuv420p"
    width, height = (int(n) for n in src["size"].split("x"))
    assert (probed.info.width, probed.info.height) == (width, height)
    assert probed.info.frames == probed.decoded_frames == src["frames"]
    assert probed.decoded_shape == (src["frames"], height, width, 3)
    assert abs(probed.info.duration - src["frames"] / src["fps"]) < 0.5
    tw, th = decode_webp(download(thumb_url))
    assert (tw > th) == (width > height)
    return dict(src)


def test_sdk_stream_sora_2_defaults(sdk: openai.OpenAI, e2e: tuple[ServerProcess, str]) -> None:
    server, _ = e2e
    stream = sdk.chat.completions.create(model="sora-2", messages=[user(SEED_FIRST_TURN)], stream=True)
    chunks: list[ChatCompletionChunk] = list(stream)
    assert len({c.id for c in chunks}) == 1
    assert {c.model for c in chunks} == {"sora-2"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert chunks[-1].choices[0].finish_reason == "stop"
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    reply = parse_reply(content, "zh")
    assert reply.echo == {"prompt": SEED_FIRST_TURN, "orientation": "portrait"}
    assert reply.web_url == f"{server.base_url}/web/{reply.task_id}"
    assert reply.progress
    assert reply.progress == sorted(set(reply.progress))
    assert reply.video_url
    assert reply.thumbnail_url
    src = check_video(server, reply.task_id, reply.video_url, reply.thumbnail_url)
    # the seed: sora-2 "only supports 10s standard definition"
    assert (src["seconds"], src["size"], src["orientation"], src["frames"]) == (10, "96x160", "portrait", 40)


def assert_stored_where_configured(server: ServerProcess, video_url: str, request: pytest.FixtureRequest) -> None:
    """The mp4 is in the bucket under the prefix (and not on disk) with S3, in the media directory without."""
    name = video_url.rsplit("/", 1)[-1]
    on_disk = (server.home / "media" / name).is_file()
    url = server.env.get("REELCHAT_STORAGE_URL")
    if url is None:
        assert on_disk
        return
    moto: MotoS3 = request.getfixturevalue("moto_s3")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    assert f"{prefix}/{name}" in moto.keys(bucket)
    assert not on_disk


def test_sdk_non_stream_landscape(
    sdk: openai.OpenAI, e2e: tuple[ServerProcess, str], request: pytest.FixtureRequest
) -> None:
    server, _ = e2e
    completion = sdk.chat.completions.create(
        model="sora-2",
        messages=[user("A landscape video of horses galloping along a beach")],
        stream=False,
    )
    assert isinstance(completion, ChatCompletion)
    assert completion.choices[0].finish_reason == "stop"
    reply = parse_reply(completion.choices[0].message.content or "", "zh")
    assert reply.echo["orientation"] == "landscape"
    assert reply.video_url
    assert reply.thumbnail_url
    src = check_video(server, reply.task_id, reply.video_url, reply.thumbnail_url)
    assert (src["size"], src["seconds"]) == ("160x96", 10)
    assert_stored_where_configured(server, reply.video_url, request)
    # a hostile Host header through a real socket: the page still renders, with links that can't be hijacked
    r = httpx.get(f"{server.base_url}/source/{reply.task_id}", headers={"Host": "a)[x](http://evil"})
    assert r.status_code == 200
    assert "evil" not in r.text


def test_sdk_sora_2_pro_has_its_own_defaults(sdk: openai.OpenAI, e2e: tuple[ServerProcess, str]) -> None:
    server, _ = e2e
    stream = sdk.chat.completions.create(
        model="sora-2-pro",
        messages=[user("cows and horses dancing")],
        stream=True,
        extra_headers={"Accept-Language": "en"},
    )
    content = "".join(c.choices[0].delta.content or "" for c in stream)
    reply = parse_reply(content, "en")
    assert reply.video_url
    assert reply.thumbnail_url
    src = check_video(server, reply.task_id, reply.video_url, reply.thumbnail_url)
    # the seed: sora-2-pro "supports 15s high definition": longer and larger than sora-2
    assert (src["model"], src["seconds"], src["size"], src["frames"]) == ("sora-2-pro", 15, "144x256", 60)


def test_a_client_that_disconnects_does_not_cancel_the_task(sdk: openai.OpenAI, e2e: tuple[ServerProcess, str]) -> None:
    server, _ = e2e
    stream = sdk.chat.completions.create(
        model="sora-2",
        messages=[user("a lighthouse in a storm")],
        stream=True,
    )
    content = ""
    for chunk in stream:
        content += chunk.choices[0].delta.content or ""
        if TASK_ID_RE.search(content):
            break
    stream.close()
    match = TASK_ID_RE.search(content)
    assert match is not None
    task_id = match.group(1)
    # we really left before the end: the video wasn't made yet
    assert httpx.get(f"{server.base_url}/source/{task_id}").json()["status"] in ("queued", "in_progress")
    src = poll_source(server.base_url, task_id, timeout=120)
    assert src["status"] == "completed", src
    assert len(download(src["url"])) > 0


def test_sdk_lists_models(sdk: openai.OpenAI) -> None:
    ids = {m.id for m in sdk.models.list()}
    assert {"sora-2", "sora-2-pro"} <= ids


def test_sdk_sees_our_errors_as_openai_errors(sdk: openai.OpenAI, e2e: tuple[ServerProcess, str]) -> None:
    server, _ = e2e
    with pytest.raises(openai.NotFoundError) as not_found:
        sdk.chat.completions.create(model="sora-3", messages=[user("hi")])
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="sora-2", messages=[user("x" * 32_001)])
    wrong = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="rc-wrong", max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError) as denied:
        wrong.models.list()
    assert denied.value.status_code == 401
    assert denied.value.code == "invalid_api_key"


# --------------------------------------------------------------------------- the CLI


def test_cli_keys_are_shown_once_listed_without_secrets_and_revocable(make_home: Callable[[str], Path]) -> None:
    home = make_home("cli-keys")
    created = run_cli(home, "keys", "create", "--name", "alice")
    assert created.returncode == 0, created.stderr
    secrets = SECRET_RE.findall(created.stdout)
    assert len(secrets) == 1, created.stdout
    secret = secrets[0]
    assert created.stdout.count(secret) == 1

    listed = run_cli(home, "keys", "list")
    assert listed.returncode == 0
    assert "alice" in listed.stdout
    assert "active" in listed.stdout
    assert secret not in listed.stdout
    assert secret not in listed.stderr
    assert secret[12:] not in listed.stdout  # not even most of it

    revoked = run_cli(home, "keys", "revoke", "alice")
    assert revoked.returncode == 0
    assert "Revoked 1" in revoked.stdout
    assert "revoked" in run_cli(home, "keys", "list").stdout
    again = run_cli(home, "keys", "revoke", "alice")
    assert again.returncode != 0

    # a revoked key doesn't count: the server still refuses to listen on a public address
    refused = run_cli(home, "serve", "--host", "0.0.0.0", "--port", str(free_port()), timeout=30)  # noqa: S104  (the refusal under test)
    assert refused.returncode != 0
    assert "no API keys" in refused.stderr
    assert "reelchat keys create" in refused.stderr


def test_cli_serve_on_a_public_address_needs_a_key(make_home: Callable[[str], Path]) -> None:
    home = make_home("cli-serve")
    try:
        refused = run_cli(home, "serve", "--host", "0.0.0.0", "--port", str(free_port()), timeout=30)  # noqa: S104  (the refusal under test)
    except subprocess.TimeoutExpired:  # it started listening: the very thing it must not do
        pytest.fail("reelchat serve --host 0.0.0.0 with no keys kept running")
    assert refused.returncode != 0
    assert "refusing to listen on 0.0.0.0" in refused.stderr

    assert run_cli(home, "keys", "create", "--name", "ops").returncode == 0
    server = ServerProcess(home, host="0.0.0.0").start()  # noqa: S104  (a public bind, with a key: under test)
    try:
        assert httpx.get(f"{server.base_url}/healthz").json() == {"status": "ok"}
        r = httpx.get(f"{server.base_url}/v1/models")
        assert r.status_code == 401  # open to the network, so closed to strangers
    finally:
        status = server.stop()
    assert status in (0, -signal.SIGTERM)  # uvicorn re-raises the SIGTERM it handled
    assert "Application shutdown complete" in server.log()
