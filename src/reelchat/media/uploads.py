"""Videos uploaded to be edited or to make a character: probed, decoded whole (never held), and kept as mp4.

An upload is untrusted bytes. Before anything is stored it must open as a container with a video stream,
within the limits (bytes, sides, duration, frames), and every frame must decode. The limits are checked
from the header first and again while decoding (a header can lie), so no upload costs more than the
limits allow. A container of the mp4 family is kept as sent; any other (WebM, Matroska, AVI, ...) is
transcoded to H.264 mp4 once, so the rest of the server reads one format.

Blocking and CPU-bound: callers run it in a thread.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import av.error
import numpy as np

from .encode import MediaError

__all__ = ["CheckedVideo", "VideoLimits", "check_video_upload"]


@dataclass(frozen=True)
class VideoLimits:
    max_bytes: int
    max_seconds: float
    max_frames: int
    max_side: int


@dataclass(frozen=True)
class CheckedVideo:
    mp4: bytes  # the upload itself when it was an mp4-family file, else its H.264 transcode
    width: int
    height: int
    frames: int
    duration: float  # seconds
    fps: float  # the stream's frame rate (frames / duration when it declares none)
    middle: np.ndarray  # (H, W, 3) uint8 RGB: the middle frame, a character's reference


def check_video_upload(data: bytes, limits: VideoLimits) -> CheckedVideo:
    """The upload as a checked mp4; `MediaError` with a message fit for the client otherwise."""
    if len(data) > limits.max_bytes:
        raise MediaError(f"The video is {len(data)} bytes; at most {limits.max_bytes} bytes are accepted.")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, OSError, ValueError):
        raise MediaError("The file is not a video this server can read.") from None
    try:
        with container:
            if not container.streams.video:
                raise MediaError("The file has no video stream.")
            stream = container.streams.video[0]
            if stream.codec_context is None:  # e.g. a file cut off before its first frame
                raise MediaError("The video could not be decoded: its stream has no decoder.")
            width, height = stream.codec_context.width, stream.codec_context.height
            _check_sides(width, height, limits)
            declared = float(container.duration / av.time_base) if container.duration else 0.0
            if declared > limits.max_seconds:
                raise MediaError(f"The video lasts {declared:.1f} s; at most {limits.max_seconds:g} s are accepted.")
            rate = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
            frames, last_time, middle = _decode_all(container, stream, limits)
            family = "mp4" in container.format.name.split(",")
    except MediaError:
        raise
    except av.error.FFmpegError as e:
        raise MediaError(f"The video could not be decoded: {e}") from None
    except Exception as e:  # PyAV on hostile bytes: anything it raises means the same to the client
        raise MediaError(f"The video could not be decoded ({type(e).__name__}).") from None
    duration = max(declared, last_time + (1.0 / rate if rate else 0.0))
    if duration > limits.max_seconds:
        raise MediaError(f"The video lasts {duration:.1f} s; at most {limits.max_seconds:g} s are accepted.")
    mp4 = data if family else _transcode(data, rate)
    fps = rate or (frames / duration if duration > 0 else 0.0)
    return CheckedVideo(mp4=mp4, width=width, height=height, frames=frames, duration=duration, fps=fps, middle=middle)


def _check_sides(width: int, height: int, limits: VideoLimits) -> None:
    if width <= 0 or height <= 0:
        raise MediaError("The video has no picture size.")
    if max(width, height) > limits.max_side:
        raise MediaError(f"The video is {width}x{height}; its sides may be at most {limits.max_side} pixels.")
    if min(width, height) < 16:
        raise MediaError(f"The video is {width}x{height}; its sides must be at least 16 pixels.")


def _decode_all(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, limits: VideoLimits
) -> tuple[int, float, np.ndarray]:
    """Decode every frame (none kept but the middle one's candidates); returns the count, the last
    frame's time and the middle frame."""
    count = 0
    last_time = 0.0
    kept: list[np.ndarray] = []  # every 2^k-th frame, so the middle one is near at hand at the end
    step = 1
    for frame in container.decode(stream):
        count += 1
        if count > limits.max_frames:
            raise MediaError(f"The video has more than {limits.max_frames} frames, the most accepted.")
        if (frame.width, frame.height) != (stream.codec_context.width, stream.codec_context.height):
            _check_sides(frame.width, frame.height, limits)  # a stream that changes size mid-way
        if frame.time is not None:
            last_time = max(last_time, float(frame.time))
            if last_time > limits.max_seconds:
                raise MediaError(f"The video lasts more than {limits.max_seconds:g} s, the most accepted.")
        if (count - 1) % step == 0:
            kept.append(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8))
            if len(kept) > 64:
                kept, step = kept[::2], step * 2
    if count == 0:
        raise MediaError("The video has no frames that decode.")
    middle_index = (count - 1) // 2
    return count, last_time, kept[min(len(kept) - 1, middle_index // step)]


def _transcode(data: bytes, rate: float) -> bytes:
    """Re-encode an already-checked video to H.264 mp4, frame by frame (nothing held)."""
    fps = max(1, min(120, round(rate))) if rate else 24
    with tempfile.TemporaryDirectory(prefix="reelchat-upload-") as tmp:
        path = Path(tmp) / "source.mp4"
        try:
            with (
                av.open(io.BytesIO(data), mode="r") as src,
                av.open(str(path), mode="w", format="mp4") as out,
            ):
                in_stream = src.streams.video[0]
                width = in_stream.codec_context.width // 2 * 2
                height = in_stream.codec_context.height // 2 * 2
                stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "18"})
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                for index, frame in enumerate(src.decode(in_stream)):
                    yuv = frame.reformat(width=width, height=height, format="yuv420p")
                    yuv.pts = index
                    out.mux(stream.encode(yuv))
                out.mux(stream.encode(None))
        except av.error.FFmpegError as e:
            raise MediaError(f"The video could not be converted to mp4: {e}") from None
        return path.read_bytes()
