"""`REELCHAT_STORAGE_URL`: where media lives, read without importing any S3 library.

Unset is the local media directory; ``s3://bucket/prefix`` is a bucket (any S3-compatible server,
reached as the standard ``AWS_*`` variables say). Media keys are ``<prefix>/<name>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .storage import StorageConfigError

__all__ = ["S3Location", "parse_storage_url"]

# S3's rules for new buckets: 3-63 lowercase letters, digits, dots and hyphens, a letter or digit at each end
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
# keys are ours to choose: plain characters only, so no prefix needs escaping anywhere (links, logs)
# a search may only start where a run of prefix characters starts: linear (tests/test_redos.py)
_PREFIX = re.compile(r"(?<![A-Za-z0-9._/-])[A-Za-z0-9._/-]{0,512}+\Z")
_FIX = "Set it to s3://BUCKET or s3://BUCKET/PREFIX, or unset it to keep media in the local directory."


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ending in "/"

    def key(self, name: str) -> str:
        return self.prefix + name

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_storage_url(url: str) -> S3Location:
    """``s3://bucket[/prefix]`` → its bucket and key prefix; StorageConfigError naming the variable otherwise."""
    shown = f"REELCHAT_STORAGE_URL={url!r}"
    parts = urlsplit(url.strip())
    if parts.scheme != "s3":
        raise StorageConfigError(f"{shown} is not an s3:// URL. {_FIX}")
    if parts.query or parts.fragment or "@" in parts.netloc or ":" in parts.netloc:
        raise StorageConfigError(
            f"{shown}: only a bucket and a prefix may be given (endpoint and credentials come from "
            f"AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). {_FIX}"
        )
    if not _BUCKET.match(parts.netloc) or ".." in parts.netloc:
        raise StorageConfigError(f"{shown}: {parts.netloc!r} is not a valid S3 bucket name. {_FIX}")
    segments = [s for s in parts.path.split("/") if s]
    prefix = "/".join(segments)
    if not _PREFIX.match(prefix) or any(s in (".", "..") for s in segments):
        raise StorageConfigError(
            f"{shown}: the prefix may hold only letters, digits and . _ - / (no . or .. segments). {_FIX}"
        )
    return S3Location(parts.netloc, f"{prefix}/" if prefix else "")
