"""Checking that bytes are a real image: Pillow decodes them, under a pixel cap, a few at a time.

Only PNG, JPEG, WEBP, GIF (first frame) and BMP decoders are ever tried, and the content type
comes from the decoded format, never from what a server claimed.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from typing import Final

from PIL import Image

from .errors import ImageFetchError

__all__ = ["IMAGE_CHECKS_AT_ONCE", "MAX_IMAGE_PIXELS", "FetchedImage", "check_image", "check_image_async"]

MAX_IMAGE_PIXELS: Final = 16_000_000
"""Images larger than this many pixels are refused before decoding (decompression-bomb guard): a
16M-pixel RGBA image already decodes to 64 MB, and no video model here takes more than a few megapixels."""

IMAGE_CHECKS_AT_ONCE: Final = 2
"""Pillow decodes at most this many images at once per server (see :func:`check_image_async`)."""

# Pillow format name -> MIME type. Only these decoders are ever tried.
_FORMATS: Final[dict[str, str]] = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # multi-picture JPEG; Pillow's JPEG opener may report it as MPO
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}
_OPEN_FORMATS: Final = ("PNG", "JPEG", "WEBP", "GIF", "BMP")


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    content_type: str
    width: int
    height: int


def check_image(data: bytes) -> FetchedImage:
    """Accept only bytes that fully decode as PNG/JPEG/WEBP/GIF(first frame)/BMP within the pixel cap.

    The returned ``content_type`` comes from the decoded format, never from what a server claimed.
    """
    if not data:
        raise ImageFetchError("invalid_image", "image is empty")
    pixel_cap = MAX_IMAGE_PIXELS
    if Image.MAX_IMAGE_PIXELS:  # never exceed Pillow's own bomb threshold, so its warning can't pass
        pixel_cap = min(pixel_cap, int(Image.MAX_IMAGE_PIXELS))
    try:
        with Image.open(io.BytesIO(data), formats=_OPEN_FORMATS) as img:
            fmt = img.format or ""
            width, height = img.size
            if fmt not in _FORMATS:
                raise ImageFetchError("invalid_image", "unsupported image format")
            if width <= 0 or height <= 0:
                raise ImageFetchError("invalid_image", "image has no pixels")
            if width * height > pixel_cap:
                raise ImageFetchError(
                    "invalid_image",
                    f"image is too large ({width}x{height}; at most {pixel_cap} pixels are allowed)",
                )
            img.load()  # full decode of the (first) frame: truncated/corrupt data fails here
    except ImageFetchError:
        raise
    except Image.DecompressionBombError:
        raise ImageFetchError("invalid_image", "image dimensions are too large") from None
    except Exception:  # Pillow raises many types (OSError, SyntaxError, ValueError, struct.error...)
        raise ImageFetchError(
            "invalid_image", "image could not be decoded (supported: PNG, JPEG, WEBP, GIF, BMP)"
        ) from None
    return FetchedImage(data=data, content_type=_FORMATS[fmt], width=width, height=height)


async def check_image_async(data: bytes, gate: asyncio.Semaphore | None = None) -> FetchedImage:
    """:func:`check_image` in a worker thread; with a gate, only as many at once as it allows.

    Each decode takes a core and up to 64 MB for a few hundred milliseconds: a burst of requests with
    images must queue here rather than take every thread and all the memory at once.
    """
    if gate is None:
        return await asyncio.to_thread(check_image, data)
    await gate.acquire()
    decoding = asyncio.ensure_future(asyncio.to_thread(check_image, data))

    def done(f: asyncio.Future[FetchedImage]) -> None:
        # the slot frees when the thread ends, not when a caller gives up waiting (its thread runs on)
        gate.release()
        if not f.cancelled():
            f.exception()  # retrieved, so an abandoned decode's refusal isn't logged as never retrieved

    decoding.add_done_callback(done)
    return await asyncio.shield(decoding)
