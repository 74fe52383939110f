"""S3 storage against a real S3-protocol server (moto's standalone server, over HTTP).

Round trips, keys under the prefix, streamed ranged reads, presigned links, the startup check, the
factory's choice, and /media served from a bucket with full Range support.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

import httpx
import pytest
from moto_s3 import CREDENTIALS, MotoS3, require_s3_tools

from reelchat.media.storage import CHUNK_BYTES, LocalStorage, StorageConfigError, StorageError, new_media_name
from reelchat.media.storage_url import S3Location, parse_storage_url
from reelchat.service.factory import build_storage
from reelchat.settings import Settings


@pytest.fixture
def aws(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> MotoS3:
    """The standard AWS variables pointing at moto, as an operator would set them for reelchat."""
    require_s3_tools()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in moto_s3.aws_env().items():
        monkeypatch.setenv(name, value)
    return moto_s3


@pytest.fixture
def bucket(aws: MotoS3) -> str:
    return aws.new_bucket()


def s3_storage(bucket: str, prefix: str = "media/v1", presign: int | None = None) -> Any:
    from reelchat.media.s3_storage import S3Storage

    return S3Storage(parse_storage_url(f"s3://{bucket}/{prefix}"), presign_expires_s=presign)


def blob_bytes(n: int) -> bytes:
    return bytes(i * 7 % 251 for i in range(n))


# --------------------------------------------------------------------------- the URL


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://media-bucket", "media-bucket", ""),
        ("s3://media-bucket/", "media-bucket", ""),
        ("s3://media-bucket/reelchat", "media-bucket", "reelchat/"),
        ("s3://media-bucket//prod/reelchat/", "media-bucket", "prod/reelchat/"),
        ("s3://a.b-c/x_y.z", "a.b-c", "x_y.z/"),
    ],
)
def test_storage_url_parses(url: str, bucket: str, prefix: str) -> None:
    assert parse_storage_url(url) == S3Location(bucket, prefix)
    assert parse_storage_url(url).key("ab.mp4") == f"{prefix}ab.mp4"


@pytest.mark.parametrize(
    "url",
    [
        "/var/media",
        "https://bucket.s3.amazonaws.com/x",
        "s3://",
        "s3://Upper/x",
        "s3://ab",
        "s3://user:secret@bucket/x",
        "s3://bucket:9000/x",
        "s3://bucket/x?versionId=1",
        "s3://bucket/../etc",
        "s3://bucket/a b",
        "s3://bucket/x#frag",
        "s3://bad..bucket/x",
    ],
)
def test_bad_storage_urls_name_the_variable(url: str) -> None:
    with pytest.raises(StorageConfigError, match="REELCHAT_STORAGE_URL") as e:
        parse_storage_url(url)
    assert "s3://BUCKET" in str(e.value)


# --------------------------------------------------------------------------- round trips


async def test_round_trip_under_the_prefix(bucket: str, aws: MotoS3) -> None:
    storage = s3_storage(bucket)
    name = new_media_name("mp4")
    assert not await storage.exists(name)
    with pytest.raises(FileNotFoundError):
        await storage.load(name)

    await storage.save(name, b"hello")
    assert await storage.exists(name)
    assert await storage.load(name) == b"hello"
    assert aws.keys(bucket) == [f"media/v1/{name}"]
    head = aws.client().head_object(Bucket=bucket, Key=f"media/v1/{name}")
    assert head["ContentType"] == "video/mp4"  # what a browser following a presigned link needs

    await storage.save(name, b"replaced")
    assert await storage.load(name) == b"replaced"

    thumb = new_media_name("webp")
    await storage.save(thumb, b"RIFF....WEBP")
    assert aws.keys(bucket) == sorted([f"media/v1/{name}", f"media/v1/{thumb}"])

    await storage.delete(name)
    assert not await storage.exists(name)
    await storage.delete(name)  # missing is fine
    assert aws.keys(bucket) == [f"media/v1/{thumb}"]


async def test_prefixes_keep_servers_apart(bucket: str) -> None:
    a, b = s3_storage(bucket, "a"), s3_storage(bucket, "b")
    name = new_media_name("jpg")
    await a.save(name, b"A")
    assert not await b.exists(name)
    with pytest.raises(FileNotFoundError):
        await b.open(name)


@pytest.mark.parametrize("name", ["../x.mp4", "a/b.mp4", "x.exe", "reelchat.db", "", ".tmp-1.mp4", "x.mp4\n"])
async def test_unsafe_names_never_reach_the_bucket(bucket: str, aws: MotoS3, name: str) -> None:
    storage = s3_storage(bucket)
    for call in (storage.save(name, b"x"), storage.load(name), storage.delete(name), storage.open(name)):
        with pytest.raises(StorageError):
            await call
    with pytest.raises(StorageError):
        storage.direct_url(name)
    assert aws.keys(bucket) == []


# --------------------------------------------------------------------------- ranged reads


async def collect(chunks: Any) -> list[bytes]:
    return [c async for c in chunks]


async def test_ranged_reads_stream_in_chunks(bucket: str) -> None:
    storage = s3_storage(bucket)
    name = new_media_name("mp4")
    data = blob_bytes(CHUNK_BYTES * 2 + 1234)
    await storage.save(name, data)

    blob = await storage.open(name)
    assert blob.size == len(data)
    assert blob.etag.startswith('"')
    assert blob.etag.endswith('"')
    whole = await collect(await blob.read(0, len(data) - 1))
    assert b"".join(whole) == data
    assert len(whole) >= 3  # streamed chunk by chunk, never one body in memory
    assert max(len(c) for c in whole) <= CHUNK_BYTES
    assert b"".join(await collect(await blob.read(100, 199))) == data[100:200]
    assert b"".join(await collect(await blob.read(len(data) - 10, len(data) - 1))) == data[-10:]
    await blob.close()


async def test_a_blob_deleted_or_replaced_after_open_is_not_found(bucket: str) -> None:
    storage = s3_storage(bucket)
    name = new_media_name("mp4")
    await storage.save(name, b"first version")
    blob = await storage.open(name)
    await storage.save(name, b"second, longer version")
    with pytest.raises(FileNotFoundError):  # never half of one version and half of another
        await blob.read(0, blob.size - 1)
    blob = await storage.open(name)
    await storage.delete(name)
    with pytest.raises(FileNotFoundError):
        await blob.read(0, 1)


# --------------------------------------------------------------------------- presigned links


async def test_presigned_links_fetch_the_object_and_end_in_its_name(bucket: str, aws: MotoS3) -> None:
    name = new_media_name("mp4")
    assert s3_storage(bucket).direct_url(name) is None  # proxy mode: links stay reelchat's
    storage = s3_storage(bucket, presign=120)
    await storage.save(name, b"mp4 bytes")
    url = storage.direct_url(name)
    assert url is not None
    assert url.startswith(f"{aws.endpoint}/")
    assert url.endswith(name)  # clients of the sora-2 format look for a link ending in .mp4
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["120"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    async with httpx.AsyncClient(timeout=30) as http:
        r = await http.get(url)
        ranged = await http.get(url, headers={"Range": "bytes=4-"})
    assert r.status_code == 200, r.text
    assert r.content == b"mp4 bytes"
    assert r.headers["content-type"] == "video/mp4"
    assert r.headers["content-disposition"] == f"inline; filename={name}"
    assert (ranged.status_code, ranged.content) == (206, b"bytes")
    # moto checks neither signatures nor expiry: check the signature as S3 does, after our reordering
    assert sigv4_query_signature(url, CREDENTIALS["AWS_SECRET_ACCESS_KEY"]) == query["X-Amz-Signature"][0]
    tampered = url.replace(f"filename%3D{name}", "filename%3Dother.mp4")
    assert sigv4_query_signature(tampered, CREDENTIALS["AWS_SECRET_ACCESS_KEY"]) != query["X-Amz-Signature"][0]


def sigv4_query_signature(url: str, secret: str) -> str:
    """The SigV4 signature S3 expects for a presigned GET: computed from the query parameters sorted
    by name (AWS's "CanonicalQueryString"), so the order they appear in the URL can't matter."""
    parts = urlsplit(url)
    params = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "X-Amz-Signature"]
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params))
    fields = dict(params)
    request = "\n".join(["GET", parts.path, canonical_query, f"host:{parts.netloc}", "", "host", "UNSIGNED-PAYLOAD"])
    scope = fields["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", fields["X-Amz-Date"], scope, hashlib.sha256(request.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------- startup


def test_check_passes_on_a_bucket_that_exists(bucket: str) -> None:
    s3_storage(bucket).check()


def test_check_names_a_missing_bucket(aws: MotoS3) -> None:
    with pytest.raises(StorageConfigError) as e:
        s3_storage("no-such-bucket-here").check()
    message = str(e.value)
    assert "REELCHAT_STORAGE_URL=s3://no-such-bucket-here/media/v1/" in message
    assert "does not exist" in message
    assert aws.endpoint in message


def test_check_names_an_unreachable_endpoint(aws: MotoS3, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    with pytest.raises(StorageConfigError) as e:
        s3_storage("any-bucket").check()
    assert "cannot reach the S3 endpoint" in str(e.value)
    assert "AWS_ENDPOINT_URL" in str(e.value)
    assert dead in str(e.value)


def test_factory_picks_the_store(bucket: str, tmp_path: Path) -> None:
    from reelchat.media.s3_storage import S3Storage

    local = build_storage(Settings(home=tmp_path))
    assert isinstance(local, LocalStorage)
    s3 = build_storage(Settings(home=tmp_path, storage_url=f"s3://{bucket}/p"), check=True)
    assert isinstance(s3, S3Storage)
    assert (s3.location, s3.presign_expires_s) == (S3Location(bucket, "p/"), None)
    presigned = build_storage(
        Settings(home=tmp_path, storage_url=f"s3://{bucket}", s3_links="presigned", s3_presign_expires_s=60)
    )
    assert isinstance(presigned, S3Storage)
    assert presigned.presign_expires_s == 60
    with pytest.raises(StorageConfigError, match="does not exist"):
        build_storage(Settings(home=tmp_path, storage_url="s3://missing-bucket-x/p"), check=True)


def test_factory_without_boto3_says_which_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # an import of it fails, as when it is not installed
    monkeypatch.setitem(sys.modules, "reelchat.media.s3_storage", None)
    with pytest.raises(StorageConfigError) as e:
        build_storage(Settings(home=tmp_path, storage_url="s3://some-bucket/p"))
    assert "REELCHAT_STORAGE_URL" in str(e.value)
    assert "pip install 'reelchat[s3]'" in str(e.value)


# --------------------------------------------------------------------------- /media from a bucket


async def test_media_route_serves_ranges_from_the_bucket(bucket: str, tmp_path: Path) -> None:
    from reelchat.api.app import create_app

    app = create_app(Settings(home=tmp_path, storage_url=f"s3://{bucket}/served"))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    storage = app.state.reelchat.storage
    name = new_media_name("mp4")
    data = blob_bytes(CHUNK_BYTES + 5000)
    await storage.save(name, data)
    async with client:
        full = await client.get(f"/media/{name}")
        assert full.status_code == 200
        assert full.content == data
        assert full.headers["content-type"] == "video/mp4"
        assert full.headers["content-length"] == str(len(data))
        assert full.headers["accept-ranges"] == "bytes"
        etag = full.headers["etag"]
        assert etag == (await storage.open(name)).etag

        part = await client.get(f"/media/{name}", headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
        assert part.headers["content-length"] == "1000"
        assert part.content == data[1000:2000]

        tail = await client.get(f"/media/{name}", headers={"Range": "bytes=-10"})
        assert (tail.status_code, tail.content) == (206, data[-10:])
        past = await client.get(f"/media/{name}", headers={"Range": f"bytes={len(data)}-"})
        assert past.status_code == 416
        assert past.headers["content-range"] == f"bytes */{len(data)}"

        head = await client.head(f"/media/{name}", headers={"Range": "bytes=0-99"})
        assert head.status_code == 206
        assert head.headers["content-length"] == "100"
        assert head.headers["etag"] == etag
        assert head.content == b""

        await storage.delete(name)
        gone = await client.get(f"/media/{name}")
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "not_found"
        for bad in ("..%2Freelchat.db", "reelchat.db", "nothing"):
            assert (await client.get(f"/media/{bad}")).status_code == 404


async def test_media_route_answers_503_when_s3_does_not_answer(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers import free_port

    from reelchat.api.app import create_app

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    app = create_app(Settings(home=tmp_path, storage_url=f"s3://{bucket}/served"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        r = await client.get(f"/media/{new_media_name('mp4')}")
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "storage_unavailable"
