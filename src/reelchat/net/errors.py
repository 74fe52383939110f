"""`ImageFetchError`: why a user-supplied image could not be used, as a machine-readable code.

Raised by every step of getting an image (`data_urls`, `fetch`, `images`); the codes::

    invalid_image_url    the URL itself is unusable (scheme, syntax, userinfo, bad base64)
    image_url_forbidden  it points to a private or reserved address or name
    image_too_large      more bytes than the policy allows
    image_fetch_timeout  the whole exchange took longer than the policy allows
    invalid_image        the bytes are not a supported image within the pixel cap
    image_fetch_failed   DNS, connection, HTTP status or transport failure
"""

from __future__ import annotations

from typing import Literal

__all__ = ["ImageFetchError", "ImageFetchErrorCode"]

ImageFetchErrorCode = Literal[
    "invalid_image_url",
    "image_url_forbidden",
    "image_too_large",
    "image_fetch_timeout",
    "invalid_image",
    "image_fetch_failed",
]


class ImageFetchError(ValueError):
    """A user-supplied image could not be used. ``code`` is machine-readable, ``message`` user-facing."""

    def __init__(self, code: ImageFetchErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ImageFetchErrorCode = code
        self.message = message

    def __reduce__(self) -> tuple[type[ImageFetchError], tuple[ImageFetchErrorCode, str]]:
        return (type(self), (self.code, self.message))

    def __repr__(self) -> str:
        return f"ImageFetchError({self.code!r}, {self.message!r})"
