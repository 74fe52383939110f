"""Input images for image-to-video: uploaded bytes or a URL, checked and decoded with limits.

Fetching goes through the SSRF-checked fetcher; decoding runs in threads behind one semaphore
shared by all requests, so a burst of uploads can't occupy every core with Pillow.
"""

from __future__ import annotations

import asyncio

from ..domain import VideoRequest
from ..media.storage import new_media_name
from ..net.errors import ImageFetchError
from ..net.fetch import fetch_image
from ..net.images import IMAGE_CHECKS_AT_ONCE, check_image_async
from ..net.policy import FetchPolicy
from ..settings import Settings
from .errors import InvalidRequest

__all__ = ["ImageInputs", "LoadedImage"]

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
