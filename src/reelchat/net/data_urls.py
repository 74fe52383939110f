"""``data:`` URLs: decoding the image a user pasted inline, under the policy's byte cap.

Never touches the network. The cap applies to the decoded bytes and is checked before they are
allocated, from the encoded length.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_to_bytes

from .errors import ImageFetchError
from .images import FetchedImage, check_image
from .policy import DEFAULT_POLICY, FetchPolicy, too_large

__all__ = ["data_url_bytes", "decode_data_url"]


def decode_data_url(url: str, policy: FetchPolicy = DEFAULT_POLICY) -> FetchedImage:
    """Decode ``data:[image/...][;base64],...``; the size cap applies to the decoded bytes."""
    return check_image(data_url_bytes(url, policy))


def data_url_bytes(url: str, policy: FetchPolicy) -> bytes:
    """The bytes a ``data:`` URL holds, unchecked as an image. Raises :class:`ImageFetchError`."""
    if url[:5].lower() != "data:":
        raise ImageFetchError("invalid_image_url", "not a data: URL")
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise ImageFetchError("invalid_image_url", "malformed data: URL (missing ',')")
    params = [p.strip() for p in header.split(";")]
    media_type = params[0].lower()
    is_base64 = len(params) > 1 and params[-1].lower() == "base64"
    if media_type and not media_type.startswith("image/"):
        raise ImageFetchError("invalid_image", f"data: URL media type must be image/*, got {media_type[:64]!r}")

    if is_base64:
        text = "".join(payload.split())
        if "%" in text:
            try:
                text = unquote_to_bytes(text).decode("ascii")
            except UnicodeDecodeError:
                raise ImageFetchError("invalid_image_url", "data: URL is not valid base64") from None
            text = "".join(text.split())
        # Cheap bound before allocating the decoded bytes.
        if len(text) // 4 * 3 > policy.max_bytes + 3:
            raise too_large(policy)
        if len(text) % 4:
            text += "=" * (-len(text) % 4)
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ImageFetchError("invalid_image_url", "data: URL is not valid base64") from None
    else:
        if len(payload) > 3 * policy.max_bytes:  # a percent-escape is at most 3 chars per byte
            raise too_large(policy)
        data = unquote_to_bytes(payload)

    if len(data) > policy.max_bytes:
        raise too_large(policy)
    return data
