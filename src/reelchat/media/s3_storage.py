"""Media in an S3 bucket (AWS S3 or any server that speaks its protocol), under a key prefix.

`REELCHAT_STORAGE_URL=s3://bucket/prefix`; the endpoint, credentials and region are the standard
`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION` (or anything
else boto3 reads: profiles, instance roles). Extra: `pip install 'reelchat[s3]'`.

boto3, each blocking call in a worker thread (`asyncio.to_thread`), rather than aiobotocore: a call
here moves a whole mp4 or a 256 KiB chunk, so a thread hop costs nothing that shows; boto3 clients are
thread-safe; presigning is a local computation; and aiobotocore would add aiohttp and pin botocore
to its own narrow range. Reads stream: a ranged GET per request, read chunk by chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from .storage import (
    CHUNK_BYTES,
    Blob,
    Storage,
    StorageConfigError,
    StorageUnavailable,
    check_media_name,
    content_type,
)
from .storage_url import S3Location

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client

__all__ = ["S3Storage"]

T = TypeVar("T")

_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404"})
_DENIED = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"})

# Serving: generous, a video is large. Startup check: quick, a server that doesn't answer is an error.
_SERVING = Config(
    signature_version="s3v4",
    max_pool_connections=64,
    connect_timeout=10,
    read_timeout=60,
    retries={"mode": "standard", "max_attempts": 3},
)
_CHECK = Config(signature_version="s3v4", connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 2})


def _code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _call(fn: Callable[[], T], what: str) -> T:
    """Run one S3 request: a missing object is FileNotFoundError, any other failure StorageUnavailable."""
    try:
        return fn()
    except ClientError as e:
        code = _code(e)
        if code in _NOT_FOUND:  # (NoSuchBucket is an outage, not a missing video)
            raise FileNotFoundError(what) from None
        if code in ("PreconditionFailed", "412"):  # replaced since it was opened: never mix two versions
            raise FileNotFoundError(what) from None
        raise StorageUnavailable(f"S3 refused {e.operation_name} of {what}: {code or e}") from e
    except BotoCoreError as e:
        raise StorageUnavailable(f"S3 did not answer for {what}: {e}") from e


class S3Storage(Storage):
    """Media as objects `<prefix><name>` in one bucket; `presign_expires_s` set: direct links are presigned."""

    def __init__(self, location: S3Location, *, presign_expires_s: int | None = None) -> None:
        self.location = location
        self.presign_expires_s = presign_expires_s
        self._session = boto3.session.Session()
        self._client: S3Client = self._session.client("s3", config=_SERVING)

    @property
    def endpoint(self) -> str:
        return str(self._client.meta.endpoint_url)

    def _key(self, name: str) -> str:
        return self.location.key(check_media_name(name))

    # ------------------------------------------------------------------ startup

    def check(self) -> None:
        """Blocking: the bucket exists and these credentials may use it; else StorageConfigError saying the fix."""
        client: S3Client = self._session.client("s3", config=_CHECK)
        shown = f"REELCHAT_STORAGE_URL={self.location}"
        bucket = self.location.bucket
        try:
            client.head_bucket(Bucket=bucket)
        except (NoCredentialsError, PartialCredentialsError):
            raise StorageConfigError(
                f"{shown}: no AWS credentials were found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or a profile or role boto3 can use)."
            ) from None
        except ClientError as e:
            code = _code(e)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise StorageConfigError(
                    f"{shown}: the bucket {bucket!r} does not exist at {self.endpoint}. Create it "
                    f"(e.g. `aws s3 mb s3://{bucket}`), or point REELCHAT_STORAGE_URL at an existing bucket "
                    "(and AWS_ENDPOINT_URL at the server that holds it)."
                ) from None
            if code in _DENIED:
                raise StorageConfigError(
                    f"{shown}: access to the bucket {bucket!r} at {self.endpoint} was denied ({code}). Check "
                    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the bucket's policy."
                ) from None
            if code in ("301", "PermanentRedirect", "AuthorizationHeaderMalformed"):
                raise StorageConfigError(
                    f"{shown}: the bucket {bucket!r} is in another region ({code}). Set AWS_DEFAULT_REGION "
                    "to the bucket's region."
                ) from None
            raise StorageConfigError(f"{shown}: S3 at {self.endpoint} answered {code or e}.") from None
        except BotoCoreError as e:
            raise StorageConfigError(
                f"{shown}: cannot reach the S3 endpoint {self.endpoint} ({e}). Set AWS_ENDPOINT_URL to a "
                "reachable S3 server (unset for AWS), and check that it is up."
            ) from None

    # ------------------------------------------------------------------ Storage

    async def save(self, name: str, data: bytes) -> None:
        key = self._key(name)
        body = bytes(data)
        # one PUT: S3 shows an object whole or not at all, as the local store's rename does
        put = self._client.put_object
        await asyncio.to_thread(
            _call, lambda: put(Bucket=self.location.bucket, Key=key, Body=body, ContentType=content_type(name)), name
        )

    async def load(self, name: str) -> bytes:
        key = self._key(name)
        return await asyncio.to_thread(_call, lambda: self._read_all(key), name)

    def _read_all(self, key: str) -> bytes:
        body = self._client.get_object(Bucket=self.location.bucket, Key=key)["Body"]
        try:
            return body.read()
        finally:
            body.close()

    async def delete(self, name: str) -> None:
        key = self._key(name)
        delete = self._client.delete_object
        await asyncio.to_thread(_call, lambda: delete(Bucket=self.location.bucket, Key=key), name)

    async def exists(self, name: str) -> bool:
        try:
            await self.open(name)
        except FileNotFoundError:
            return False
        return True

    async def open(self, name: str) -> Blob:
        key = self._key(name)
        head = self._client.head_object
        meta = await asyncio.to_thread(_call, lambda: head(Bucket=self.location.bucket, Key=key), name)
        return _S3Blob(self, key, name, int(meta["ContentLength"]), str(meta["ETag"]))

    def direct_url(self, name: str) -> str | None:
        """A presigned GET (when configured) that ends in the name, as `.mp4` / `.webp` links do.

        The signed `response-content-disposition` (`inline; filename=<name>`) goes last: SigV4 signs
        the query parameters sorted by name, so their order in the URL is free, and clients that look
        for a link ending in `.mp4` find one.
        """
        key = self._key(name)
        if self.presign_expires_s is None:
            return None
        params = {"Bucket": self.location.bucket, "Key": key, "ResponseContentDisposition": f"inline; filename={name}"}
        url = self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=self.presign_expires_s)
        base, _, query = url.partition("?")
        pairs = query.split("&")
        last = [p for p in pairs if p.startswith("response-content-disposition=")]
        rest = [p for p in pairs if not p.startswith("response-content-disposition=")]
        return f"{base}?{'&'.join(rest + last)}"

    # ------------------------------------------------------------------ ranged reads

    def _get_range(self, key: str, start: int, end: int, etag: str) -> StreamingBody:
        resp = self._client.get_object(Bucket=self.location.bucket, Key=key, Range=f"bytes={start}-{end}", IfMatch=etag)
        return resp["Body"]


class _S3Blob:
    """An object opened by HEAD: its size and ETag; each read is one ranged GET fenced by that ETag."""

    def __init__(self, storage: S3Storage, key: str, name: str, size: int, etag: str) -> None:
        self._storage = storage
        self._key = key
        self._name = name
        self._size = size
        self._etag = etag

    @property
    def size(self) -> int:
        return self._size

    @property
    def etag(self) -> str:
        return self._etag

    async def read(self, start: int, end: int) -> AsyncIterator[bytes]:
        get = self._storage._get_range
        body = await asyncio.to_thread(_call, lambda: get(self._key, start, end, self._etag), self._name)
        return self._chunks(body)

    async def _chunks(self, body: StreamingBody) -> AsyncIterator[bytes]:
        try:
            while True:
                data = await asyncio.to_thread(_call, lambda: body.read(CHUNK_BYTES), self._name)
                if not data:
                    return
                yield data
        finally:
            # not awaited: a client that left cancels this generator, and an await here would be
            # cancelled too, leaking the connection (closing a response is quick: no draining)
            body.close()

    async def close(self) -> None:
        """Nothing held between the HEAD and a read."""
