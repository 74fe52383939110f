"""GET /media/<name>: stored mp4/webp/jpg files, with HTTP Range (browsers seek mp4 with it)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import BinaryIO

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from ...media.ranges import RangeNotSatisfiable, content_range, parse_range
from ...media.storage import Storage, StorageError
from ..contract import documented
from ..deps import StateDep
from ..errors import ApiError
from ..security_headers import MEDIA_ONLY

router = APIRouter()

CONTENT_TYPES = {
    "mp4": "video/mp4",
    "webp": "image/webp",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "bmp": "image/bmp",
}
CHUNK = 256 * 1024
# the 200 of a media answer, for the OpenAPI document
MEDIA_CONTENT = {t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(set(CONTENT_TYPES.values()))}


def _iter_file(f: BinaryIO, start: int, end: int) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        try:
            await asyncio.to_thread(f.seek, start)
            remaining = end - start + 1
            while remaining > 0:
                data = await asyncio.to_thread(f.read, min(CHUNK, remaining))
                if not data:
                    break
                remaining -= len(data)
                yield data
        finally:
            await asyncio.to_thread(f.close)

    return gen()


async def serve_media(
    storage: Storage, name: str, request: Request, *, download_name: str | None = None, private: bool = False
) -> Response:
    """A stored file by name, honouring Range; 404 for names that are unknown or not plain file names."""
    try:
        path = storage.local_path(name)
        exists = await storage.exists(name)
    except StorageError:
        exists, path = False, None
    if not exists:
        raise ApiError(404, "No such media file.", code="not_found")
    ext = name.rsplit(".", 1)[-1].lower()
    # /media names are public and immutable; /v1/videos content answers an authenticated request,
    # which no shared cache may keep (it would serve it without the tenant check, even after DELETE)
    cache = "private, no-store" if private else "public, max-age=31536000, immutable"
    headers = {"Accept-Ranges": "bytes", "Cache-Control": cache, "Content-Security-Policy": MEDIA_ONLY}
    if download_name:
        headers["Content-Disposition"] = f'inline; filename="{download_name}"'
    media_type = CONTENT_TYPES.get(ext, "application/octet-stream")
    data: bytes | None = None
    f: BinaryIO | None = None
    try:
        if path is None:  # a remote store: whole body, ranges sliced in memory
            data = await storage.load(name)
            size = len(data)
        else:  # opened now, so a file deleted a moment ago is a 404, not a broken stream
            f = await asyncio.to_thread(open, path, "rb")
            size = (await asyncio.to_thread(os.fstat, f.fileno())).st_size
    except FileNotFoundError:
        raise ApiError(404, "No such media file.", code="not_found") from None
    try:
        rng = parse_range(request.headers.get("range"), size)
    except RangeNotSatisfiable as e:
        if f is not None:
            f.close()
        return Response(status_code=416, headers={"Content-Range": e.content_range, **headers})
    start, end = rng if rng is not None else (0, size - 1)
    status = 206 if rng is not None else 200
    if rng is not None:
        headers["Content-Range"] = content_range(start, end, size)
    headers["Content-Length"] = str(end - start + 1 if size else 0)
    if request.method == "HEAD" or size == 0:
        if f is not None:
            f.close()
        return Response(status_code=status, headers=headers, media_type=media_type)
    if data is not None:
        return Response(data[start : end + 1], status_code=status, headers=headers, media_type=media_type)
    assert f is not None  # noqa: S101  (narrows a type; never input validation)
    return StreamingResponse(_iter_file(f, start, end), status_code=status, headers=headers, media_type=media_type)


RANGES = {
    206: {"description": "The part of the file a `Range` header asked for", "content": MEDIA_CONTENT},
    416: {"description": "A `Range` outside the file", "content": {}},
}


@router.head(
    "/media/{name}", operation_id="media_head", **documented(ok_content=MEDIA_CONTENT, errors=[404], extra=RANGES)
)
@router.get("/media/{name}", operation_id="media", **documented(ok_content=MEDIA_CONTENT, errors=[404], extra=RANGES))
async def media(name: str, request: Request, state: StateDep) -> Response:
    return await serve_media(state.storage, name, request)
