"""`FetchPolicy`: the operator's limits on getting a user-supplied image (bytes, time, redirects).

Shared by `data_urls` (the byte cap) and `fetch` (all of it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .errors import ImageFetchError

__all__ = ["DEFAULT_POLICY", "FetchPolicy", "too_large"]


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 10 * 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 3
    allow_private: bool = False
    """Operator opt-in only: when True, loopback/private/link-local targets and the forbidden host names
    are allowed (unspecified and multicast addresses are still refused). Never set this from user input."""

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")


DEFAULT_POLICY: Final = FetchPolicy()


def too_large(policy: FetchPolicy) -> ImageFetchError:
    """The refusal for an image over ``policy.max_bytes``."""
    return ImageFetchError("image_too_large", f"image is larger than {policy.max_bytes} bytes")
