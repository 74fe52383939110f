"""An upstream's finished video (or thumbnail), downloaded as a stream and cut off past a byte cap.

Without a cap, an upstream (misconfigured, compromised, or a proxy's error page that never ends)
could fill this server's memory: the SDK's plain download reads the whole body first. Here a
declared Content-Length over the cap is refused before reading, and a body without one is read
chunk by chunk and abandoned the moment it passes the cap.
"""

from __future__ import annotations

from typing import Literal

import openai
from openai.resources.videos import AsyncVideos

from .base import EngineError


class DownloadTooLarge(EngineError):
    def __init__(self, where: str, variant: str, limit: int) -> None:
        super().__init__(
            f"The upstream at {where} sent a {variant} larger than {limit} bytes, the most this server accepts.",
            code="upstream_too_large",
        )


async def download_capped(
    videos: AsyncVideos,
    video_id: str,
    variant: Literal["video", "thumbnail"],
    *,
    limit: int,
    timeout: float,  # noqa: ASYNC109  (the SDK request's own timeout, passed through)
    where: str,
) -> bytes:
    """The content's bytes; DownloadTooLarge past `limit`. HTTP errors are the SDK's, as for any request."""
    async with videos.with_streaming_response.download_content(video_id, variant=variant, timeout=timeout) as response:
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise DownloadTooLarge(where, variant, limit)
        body = bytearray()
        try:
            async for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    raise DownloadTooLarge(where, variant, limit)
        except EngineError:
            raise
        except Exception as e:  # the SDK's HTTP library raises its own errors mid-body: a connection failure
            raise openai.APIConnectionError(
                message=f"the {variant} download broke off", request=response.http_request
            ) from e
    return bytes(body)
