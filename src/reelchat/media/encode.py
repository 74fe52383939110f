"""Encode generated frames to browser-playable media, and read videos back.

Everything here is blocking and CPU-bound: callers run it in a thread (``asyncio.to_thread``).

Frames are numpy arrays of RGB uint8: a clip is ``(F, H, W, 3)``, a single frame ``(H, W, 3)``.
MP4s are H.264 (libx264), yuv420p, High profile, tagged BT.709 limited range, with the moov
atom at the front (``+faststart``) so browsers can start playing before the download ends.
"""

from __future__ import annotations

import io
import math
import operator
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
import numpy.typing as npt
from av.container import InputContainer
from av.video.reformatter import ColorRange, Colorspace
from av.video.stream import VideoStream
from PIL import Image

__all__ = [
    "MediaError",
    "VideoInfo",
    "VideoTooLarge",
    "decode_mp4",
    "encode_mp4",
    "encode_spritesheet",
    "encode_webp",
    "fit_aspect",
    "pick_thumbnail_frame",
    "probe_mp4",
    "scale_clip",
]

Frames = npt.NDArray[np.uint8]

THUMBNAIL_MIN_SHORT_SIDE = 128

# AVCOL_* values (libavutil/pixfmt.h): BT.709 primaries/transfer/matrix (1), MPEG (limited) range (1).
_AVCOL_BT709 = 1
_AVCOL_RANGE_MPEG = 1


class MediaError(ValueError):
    """Frames or bytes that cannot be encoded or decoded."""


class VideoTooLarge(MediaError):
    """A video whose frames, decoded whole, would pass the caller's cap (width x height x frames)."""


@dataclass(frozen=True)
class VideoInfo:
    codec: str  # "h264"
    width: int
    height: int
    frames: int
    fps: float
    duration: float  # seconds
    pix_fmt: str  # "yuv420p"


# --------------------------------------------------------------------------- checks


def _check_clip(frames: npt.NDArray[np.uint8]) -> Frames:
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise MediaError(f"expected frames shaped (F, H, W, 3), got {arr.shape}")
    if arr.shape[0] == 0:
        raise MediaError("no frames to encode")
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise MediaError(f"frames have an empty side: {arr.shape}")
    if arr.dtype != np.uint8:
        raise MediaError(f"expected uint8 frames, got {arr.dtype}")
    return arr


def _check_frame(frame: npt.NDArray[np.uint8]) -> Frames:
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise MediaError(f"expected a frame shaped (H, W, 3), got {arr.shape}")
    if arr.dtype != np.uint8:
        raise MediaError(f"expected a uint8 frame, got {arr.dtype}")
    return arr


def _check_size(size: tuple[int, int], *, even: bool = False) -> tuple[int, int]:
    width, height = size
    if width <= 0 or height <= 0 or (even and (width % 2 or height % 2)):
        raise MediaError(f"an output size must be positive{' and even' if even else ''}, got {width}x{height}")
    return width, height


def fit_aspect(frames: npt.NDArray[np.uint8], width: int, height: int) -> Frames:
    """The centre of frames shaped (..., H, W, 3) with the aspect ratio of width x height (a view, no copy).

    A model renders a public size at its own size of the closest aspect ratio (96x160 for 720x1280); the
    few rows or columns that don't fit are cropped, so scaling up never stretches the picture.
    """
    h, w = int(frames.shape[-3]), int(frames.shape[-2])
    if w * height > h * width:  # too wide: crop columns
        keep = max(1, round(h * width / height))
        left = (w - keep) // 2
        return frames[..., :, left : left + keep, :]
    keep = max(1, round(w * height / width))
    top = (h - keep) // 2
    return frames[..., top : top + keep, :, :]


def scale_clip(frames: npt.NDArray[np.uint8], size: tuple[int, int]) -> Frames:
    """(F, H, W, 3) frames at `size` (width, height): cropped to its aspect ratio (`fit_aspect`) and scaled,
    as `encode_mp4` would; the frames themselves when they are that size already."""
    width, height = size
    clip = _check_clip(frames)
    if (clip.shape[2], clip.shape[1]) == (width, height):
        return clip
    clip = fit_aspect(clip, width, height)
    out = np.empty((len(clip), height, width, 3), np.uint8)
    for i, rgb in enumerate(clip):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        out[i] = frame.reformat(width=width, height=height, interpolation="BICUBIC").to_ndarray()
    return out


# --------------------------------------------------------------------------- mp4


def _pad_even(frames: Frames) -> Frames:
    """Pad (F, H, W, 3) to even H and W by repeating the last row/column (yuv420p needs it)."""
    pad_h = frames.shape[1] % 2
    pad_w = frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(frames)


def encode_mp4(frames: npt.NDArray[np.uint8], fps: int, *, crf: int = 20, size: tuple[int, int] | None = None) -> bytes:
    """Encode an (F, H, W, 3) RGB uint8 clip as a faststart H.264 MP4.

    With `size` (even width, height) the video is that size: the frames are cropped to its aspect
    ratio (`fit_aspect`) and scaled by swscale while they are converted to YUV, which costs little
    beyond encoding the larger picture. Without it, odd widths/heights are padded to even by
    repeating the edge pixels.
    """
    clip = _check_clip(frames)
    preset = "medium"
    if size is not None and size != (clip.shape[2], clip.shape[1]):
        width, height = _check_size(size, even=True)  # yuv420p
        clip = fit_aspect(clip, width, height)
        if width * height > clip.shape[1] * clip.shape[2]:
            # scaled up, the picture holds no detail beyond the model's: "veryfast" encodes it in a third
            # of medium's time for ~10% more bytes (bench/encode_sizes.py)
            preset = "veryfast"
    else:
        clip = _pad_even(clip)
        height, width = int(clip.shape[1]), int(clip.shape[2])
    try:
        rate = operator.index(fps)
    except TypeError:
        rate = 0
    if isinstance(fps, bool) or rate <= 0:
        raise MediaError(f"fps must be a positive integer, got {fps!r}")
    if not 0 <= crf <= 51:
        raise MediaError(f"crf must be within 0..51, got {crf}")

    # +faststart does not work on a file object: after writing, the mp4 muxer re-opens its output
    # *by name* to move the moov atom to the front, and PyAV's BytesIO has no name ("<none>").
    # So encode to a private temp file and read it back.
    with tempfile.TemporaryDirectory(prefix="reelchat-enc-") as tmp:
        path = Path(tmp) / "out.mp4"
        try:
            with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
                stream = out.add_stream(
                    "libx264",
                    rate=rate,
                    options={"crf": str(crf), "preset": preset, "profile": "high"},
                )
                stream.width = width
                stream.height = height
                stream.pix_fmt = "yuv420p"
                ctx = stream.codec_context
                ctx.color_primaries = _AVCOL_BT709
                ctx.color_trc = _AVCOL_BT709
                ctx.colorspace = _AVCOL_BT709
                ctx.color_range = _AVCOL_RANGE_MPEG
                for index, rgb in enumerate(clip):
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                    frame = frame.reformat(
                        width=width,
                        height=height,
                        format="yuv420p",
                        interpolation="BICUBIC",
                        dst_colorspace=Colorspace.ITU709,
                        dst_color_range=ColorRange.MPEG,
                    )
                    frame.pts = index
                    out.mux(stream.encode(frame))
                out.mux(stream.encode(None))
        except av.error.FFmpegError as exc:
            raise MediaError(f"H.264 encoding failed: {exc}") from exc
        return path.read_bytes()


def _open_mp4(data: bytes) -> tuple[InputContainer, VideoStream]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MediaError(f"expected mp4 bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise MediaError("empty video data")
    try:
        container = av.open(io.BytesIO(bytes(data)), mode="r")
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(f"not a readable video: {exc}") from exc
    if "mp4" not in container.format.name.split(","):
        name = container.format.name
        container.close()
        raise MediaError(f"not an mp4 (detected container {name!r})")
    if not container.streams.video:
        container.close()
        raise MediaError("the mp4 has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _rgb(frame: av.VideoFrame) -> Frames:
    return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)


def decode_mp4(data: bytes, *, max_pixels: int | None = None) -> npt.NDArray[np.uint8]:
    """Decode every frame of an MP4's first video stream to (F, H, W, 3) RGB uint8.

    With ``max_pixels``, a video whose width x height x frames is larger is refused (VideoTooLarge)
    before a single frame is decoded: it would take 3 bytes a pixel to hold.
    """
    container, stream = _open_mp4(data)
    try:
        with container:
            if max_pixels is not None:
                _check_decoded_size(data, stream, max_pixels)
            decoded = [_rgb(frame) for frame in container.decode(stream)]
    except av.error.FFmpegError as exc:
        raise MediaError(f"could not decode the video: {exc}") from exc
    if not decoded:
        raise MediaError("the video has no decodable frames")
    return np.stack(decoded)


def _check_decoded_size(data: bytes, stream: VideoStream, max_pixels: int) -> None:
    width, height = stream.codec_context.width, stream.codec_context.height
    if width * height > max_pixels:  # one frame is already too much: don't even count the rest
        raise VideoTooLarge(f"the video is {width}x{height}; at most {max_pixels} pixels are decoded")
    frames = int(stream.frames or 0) or _count_frames(data)
    if width * height * frames > max_pixels:
        raise VideoTooLarge(
            f"the video is {width}x{height} with {frames} frames; at most {max_pixels} pixels (all frames) are decoded"
        )


def _count_frames(data: bytes) -> int:
    """Frames of a container that doesn't say, by reading its packets: nothing is decoded."""
    container, stream = _open_mp4(data)
    try:
        with container:
            return sum(1 for packet in container.demux(stream) if packet.size)
    except av.error.FFmpegError as exc:
        raise MediaError(f"could not read the video: {exc}") from exc


def probe_mp4(data: bytes) -> VideoInfo:
    """Describe an MP4's first video stream; counts frames by decoding if the container doesn't say."""
    container, stream = _open_mp4(data)
    with container:
        ctx = stream.codec_context
        codec = ctx.name
        width, height = ctx.width, ctx.height
        pix_fmt = ctx.pix_fmt or ""
        frames = int(stream.frames or 0)
        rate: Fraction | None = stream.average_rate or stream.guessed_rate or stream.base_rate
        stream_duration = (
            float(stream.duration * stream.time_base)
            if stream.duration is not None and stream.time_base is not None
            else None
        )
        container_duration = container.duration / av.time_base if container.duration is not None else None
    if frames <= 0:
        frames = _count_frames(data)
    fps = float(rate) if rate else 0.0
    duration = stream_duration or container_duration or (frames / fps if fps else 0.0)
    return VideoInfo(
        codec=codec,
        width=width,
        height=height,
        frames=frames,
        fps=fps,
        duration=float(duration),
        pix_fmt=pix_fmt,
    )


def pick_thumbnail_frame(frames: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The frame to show for a clip: the middle one."""
    clip = _check_clip(frames)
    middle: Frames = clip[len(clip) // 2]
    return middle


def thumbnail_size(width: int, height: int, max_side: int = 512) -> tuple[int, int]:
    """The (width, height) encode_webp gives a width x height frame.

    Larger frames shrink so the long side is ``max_side``; tiny ones grow so the short side is
    at least 128 px — unless that would push the long side past ``max_side`` (extreme aspect
    ratios), where ``max_side`` wins.
    """
    if width <= 0 or height <= 0 or max_side <= 0:
        raise MediaError(f"bad sizes: {width}x{height}, max_side={max_side}")
    long_side, short_side = max(width, height), min(width, height)
    scale = min(1.0, max_side / long_side)
    if short_side * scale < THUMBNAIL_MIN_SHORT_SIDE:
        scale = min(THUMBNAIL_MIN_SHORT_SIDE / short_side, max_side / long_side)
    return max(1, round(width * scale)), max(1, round(height * scale))


def encode_webp(
    frame: npt.NDArray[np.uint8], *, max_side: int = 512, quality: int = 80, size: tuple[int, int] | None = None
) -> bytes:
    """A WebP thumbnail of one (H, W, 3) RGB frame: `size` (cropped to its aspect ratio and scaled, as
    `encode_mp4` does), else sized by :func:`thumbnail_size`."""
    arr = _check_frame(frame)
    if not 0 <= quality <= 100:
        raise MediaError(f"quality must be within 0..100, got {quality}")
    if size is not None:
        arr = fit_aspect(arr, *_check_size(size))
    height, width = int(arr.shape[0]), int(arr.shape[1])
    size = size or thumbnail_size(width, height, max_side)
    image = Image.fromarray(np.ascontiguousarray(arr))
    if size != (width, height):
        upscale = size[0] > width or size[1] > height
        image = image.resize(size, Image.Resampling.NEAREST if upscale else Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=quality, method=4)
    return out.getvalue()


def encode_preview(picture: npt.NDArray[np.uint8], size: tuple[int, int], *, quality: int = 70) -> bytes:
    """A live preview (a latent-grid-sized RGB picture) as a WebP of `size`, smoothly scaled: the picture
    is a coarse estimate, so a blur reads better than its blocks."""
    arr = fit_aspect(_check_frame(picture), *_check_size(size))
    image = Image.fromarray(np.ascontiguousarray(arr))
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=quality, method=0)  # method 0: the fastest encoder
    return out.getvalue()


def encode_spritesheet(
    frames: npt.NDArray[np.uint8],
    *,
    columns: int = 5,
    tiles: int = 25,
    tile_width: int = 160,
    tile_size: tuple[int, int] | None = None,
) -> bytes:
    """A JPEG grid of ``min(tiles, F)`` evenly spaced frames, ``columns`` per row, row-major.

    Each tile is ``tile_size`` (the frames cropped to its aspect ratio, as `encode_mp4` does), else
    ``tile_width`` wide keeping the frame's aspect ratio, so a viewer can recover the layout from the
    image: tile width = image width / min(columns, n), tile height = image height / rows. Unused
    cells of the last row are black.
    """
    clip = _check_clip(frames)
    if tile_size is not None:
        clip = fit_aspect(clip, *_check_size(tile_size))
        tile_width = tile_size[0]
    if columns <= 0 or tiles <= 0 or tile_width <= 0:
        raise MediaError(f"columns, tiles and tile_width must be positive: {columns}, {tiles}, {tile_width}")
    count = min(tiles, len(clip))
    indices = np.linspace(0, len(clip) - 1, count).round().astype(int)
    height, width = int(clip.shape[1]), int(clip.shape[2])
    tile_height = tile_size[1] if tile_size is not None else max(1, round(height * tile_width / width))
    cols = min(columns, count)
    rows = math.ceil(count / cols)
    sheet = Image.new("RGB", (cols * tile_width, rows * tile_height))
    for cell, index in enumerate(indices):
        tile = Image.fromarray(np.ascontiguousarray(clip[index]))
        tile = tile.resize((tile_width, tile_height), Image.Resampling.BILINEAR)
        sheet.paste(tile, ((cell % cols) * tile_width, (cell // cols) * tile_height))
    out = io.BytesIO()
    # optimized Huffman tables save a few percent but double the time of a sheet of full-size frames
    sheet.save(out, format="JPEG", quality=80, optimize=sheet.width * sheet.height <= 4_000_000)
    return out.getvalue()
