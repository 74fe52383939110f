"""Images as engines use them: an input image fitted to a job's size (both engines), a video's first
frame as a reference image, and a thumbnail made webp (upstream engine).

Fitting is the same everywhere: turned upright by its EXIF orientation (phone photos are stored
sideways with a tag saying so), cropped about the centre to the job's aspect ratio, then scaled:
never stretched.
"""

from __future__ import annotations

import io

import av
import av.error
from PIL import Image, ImageOps

from ..net.images import MAX_IMAGE_PIXELS


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """`image` as RGB, cropped about the centre to width:height and scaled to exactly that size."""
    return ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)


def fit_image(data: bytes, width: int, height: int) -> Image.Image:
    """An encoded image (png/jpeg/webp/...), upright and fitted; OSError or ValueError when unreadable."""
    with Image.open(io.BytesIO(data)) as image:
        return fit(ImageOps.exif_transpose(image), width, height)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def first_frame(mp4: bytes, width: int, height: int) -> Image.Image | None:
    """A video's first frame, fitted; None when it has none. av/OS errors when it can't be read.

    Only that frame is decoded: decoding the whole clip would hold it all in memory (about a
    gigabyte for 15 s of 720p) to keep one frame.
    """
    with av.open(io.BytesIO(mp4), mode="r") as container:
        for frame in container.decode(video=0):
            return fit(Image.fromarray(frame.to_ndarray(format="rgb24")), width, height)
    return None


FRAME_ERRORS = (av.error.FFmpegError, OSError, ValueError, IndexError)  # what first_frame may raise


def as_webp(data: bytes) -> bytes | None:
    """webp bytes as they are; another image format converted; anything unreadable (or a
    decompression bomb) dropped."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return data
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                return None
            out = io.BytesIO()
            image.convert("RGB").save(out, format="WEBP", quality=80)
            return out.getvalue()
    except (OSError, ValueError):
        return None
