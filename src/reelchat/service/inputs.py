"""Input images for image-to-video: uploaded bytes or a URL, checked and decoded with limits.

Fetching goes through the SSRF-checked fetcher; decoding runs in threads behind one semaphore
shared by all requests, so a burst of uploads can't occupy every core with Pillow.
"""

from __future__ import annotations

import asyncio

from ..domain import InputVideo, VideoRequest
from ..media import encode
from ..media.storage import new_media_name
from ..net.errors import ImageFetchError
from ..net.fetch import fetch_image
from ..net.images import IMAGE_CHECKS_AT_ONCE, check_image_async
from ..net.policy import FetchPolicy
from ..settings import Settings
from .errors import InvalidRequest

__all__ = ["ImageInputs", "LoadedImage", "LoadedVideo", "load_source_video"]

# Stored under the extension of what they are: the name never lies about the bytes.
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif", "image/bmp": "bmp"}


class LoadedImage:
    """A checked input image and the fresh media name it will be stored under."""

    def __init__(self, data: bytes, content_type: str) -> None:
        self.data = data
        self.content_type = content_type
        self.name = new_media_name(_EXT.get(content_type, "png"))


class ImageInputs:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._checks = asyncio.Semaphore(IMAGE_CHECKS_AT_ONCE)  # Pillow decodes, all requests together

    @property
    def checks(self) -> asyncio.Semaphore:
        """The gate on decoding work from requests (images and uploaded videos share it)."""
        return self._checks

    async def load(self, req: VideoRequest) -> LoadedImage:
        """The request's image (uploaded, or fetched from its URL), checked; `InvalidRequest` if it isn't one."""
        max_bytes = self.settings.image_max_bytes
        policy = FetchPolicy(
            max_bytes=max_bytes,
            timeout_s=self.settings.image_fetch_timeout_s,
            allow_private=self.settings.allow_private_image_urls,
        )
        try:
            if req.image is not None:
                if len(req.image.data) > max_bytes:
                    raise InvalidRequest(
                        f"The input image is larger than {max_bytes} bytes.",
                        param="input_reference",
                        code="image_too_large",
                    )
                checked = await check_image_async(req.image.data, self._checks)
            else:
                assert req.image_url is not None  # noqa: S101  (narrows a type; never input validation)
                checked = await fetch_image(req.image_url, policy, gate=self._checks)
        except ImageFetchError as e:
            raise InvalidRequest(str(e), param="input_reference", code=e.code) from e
        if len(checked.data) > max_bytes:
            raise InvalidRequest("The input image is too large.", param="input_reference", code="image_too_large")
        return LoadedImage(checked.data, checked.content_type)


class LoadedVideo:
    """An uploaded video, probed: what an extension of it needs to plan, and its fresh media name."""

    def __init__(self, data: bytes, info: encode.VideoInfo) -> None:
        self.data = data
        self.info = info
        self.name = new_media_name("mp4")


async def load_source_video(video: InputVideo, *, max_pixels: int, gate: asyncio.Semaphore) -> LoadedVideo:
    """An uploaded video to extend, probed (in a thread, behind `gate`) and held to REELCHAT_MAX_VIDEO_PIXELS;
    `InvalidRequest` if it is not a video this server can decode."""
    try:
        async with gate:
            info = await asyncio.to_thread(encode.probe_mp4, video.data)
    except encode.MediaError as e:
        raise InvalidRequest(f"The uploaded video can't be read: {e}", param="video", code="invalid_video") from None
    except Exception as e:  # anything PyAV says about hostile bytes is the upload's fault, never a 500
        raise InvalidRequest(
            f"The uploaded video can't be read ({type(e).__name__}).", param="video", code="invalid_video"
        ) from None
    if info.width < 1 or info.height < 1 or info.frames < 1 or info.fps <= 0:
        raise InvalidRequest("The uploaded video has no frames.", param="video", code="invalid_video")
    if info.width * info.height * info.frames > max_pixels:
        raise InvalidRequest(
            f"The uploaded video is too large to process ({info.width}x{info.height}, {info.frames} frames; "
            "REELCHAT_MAX_VIDEO_PIXELS).",
            param="video",
            code="video_too_large",
        )
    return LoadedVideo(video.data, info)
