"""GET /media/<name>: stored mp4/webp/jpg files, with HTTP Range (browsers seek mp4 with it).

Whatever the storage (a directory, an S3 bucket), the bytes stream: a range is read as chunks from
the opened file or from one ranged S3 GET, never loaded whole.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from ...domain import PREVIEW_SUFFIX
from ...media.ranges import RangeNotSatisfiable, content_range, parse_range
from ...media.storage import CONTENT_TYPES, Storage, StorageError, StorageUnavailable, content_type
from ..contract import documented
from ..deps import StateDep
from ..errors import ApiError
from ..security_headers import MEDIA_ONLY

router = APIRouter()


def _not_found() -> ApiError:
    return ApiError(404, "No such media file.", code="not_found")


# the 200 of a media answer, for the OpenAPI document
MEDIA_CONTENT = {t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(set(CONTENT_TYPES.values()))}


def _unavailable() -> ApiError:
    message = "The media storage did not answer; try again shortly."
    return ApiError(503, message, type="server_error", code="storage_unavailable")


async def serve_media(
    storage: Storage, name: str, request: Request, *, download_name: str | None = None, private: bool = False
) -> Response:
    """A stored file by name, honouring Range; 404 for names that are unknown or not plain file names."""
    try:
        blob = await storage.open(name)
    except (StorageError, FileNotFoundError):
        raise _not_found() from None
    except StorageUnavailable:
        raise _unavailable() from None
    # /media names are public and immutable; /v1/videos content answers an authenticated request,
    # which no shared cache may keep (it would serve it without the tenant check, even after DELETE)
    cache = "private, no-store" if private else "public, max-age=31536000, immutable"
    if name.endswith(PREVIEW_SUFFIX):  # a running task's preview, overwritten under its one name
        cache = "no-cache"
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": cache,
        "Content-Security-Policy": MEDIA_ONLY,
        "ETag": blob.etag,
    }
    if download_name:
        headers["Content-Disposition"] = f'inline; filename="{download_name}"'
    media_type = content_type(name)
    size = blob.size
    try:
        rng = parse_range(request.headers.get("range"), size)
    except RangeNotSatisfiable as e:
        await blob.close()
        return Response(status_code=416, headers={"Content-Range": e.content_range, **headers})
    start, end = rng if rng is not None else (0, size - 1)
    status = 206 if rng is not None else 200
    if rng is not None:
        headers["Content-Range"] = content_range(start, end, size)
    headers["Content-Length"] = str(end - start + 1 if size else 0)
    if request.method == "HEAD" or size == 0:
        await blob.close()
        return Response(status_code=status, headers=headers, media_type=media_type)
    try:
        chunks = await blob.read(start, end)
    except FileNotFoundError:  # deleted (or replaced) since it was opened
        raise _not_found() from None
    except StorageUnavailable:
        raise _unavailable() from None
    return StreamingResponse(chunks, status_code=status, headers=headers, media_type=media_type)


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
