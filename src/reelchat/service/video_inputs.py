"""Uploaded videos (a source to edit, a character's video): checked with limits before anything is stored.

Decoding runs in threads behind one semaphore shared by all requests, so a burst of uploads can't
occupy every core with the decoder.
"""

from __future__ import annotations

import asyncio

from ..media.encode import MediaError
from ..media.uploads import CheckedVideo, VideoLimits, check_video_upload
from ..settings import Settings
from .errors import InvalidRequest

__all__ = ["VideoInputs"]

_CHECKS_AT_ONCE = 2


class VideoInputs:
    def __init__(self, settings: Settings) -> None:
        self.limits = VideoLimits(
            max_bytes=settings.video_upload_max_bytes,
            max_seconds=settings.video_upload_max_seconds,
            max_frames=settings.video_upload_max_frames,
            max_side=settings.video_upload_max_side,
        )
        self._checks = asyncio.Semaphore(_CHECKS_AT_ONCE)

    async def check(self, data: bytes, *, param: str = "video") -> CheckedVideo:
        """The upload probed and decoded within the limits; `InvalidRequest` naming what is wrong otherwise."""
        if len(data) > self.limits.max_bytes:  # before queueing for a decoder
            raise InvalidRequest(
                f"The video is {len(data)} bytes; at most {self.limits.max_bytes} bytes are accepted.",
                param=param,
                code="video_too_large",
            )
        async with self._checks:
            try:
                return await asyncio.to_thread(check_video_upload, data, self.limits)
            except MediaError as e:
                raise InvalidRequest(str(e), param=param, code="invalid_video") from None
