"""The Standard Webhooks wire format (https://www.standardwebhooks.com/): secrets and signatures.

A secret is `whsec_` + base64 of 16 to 64 random bytes; the HMAC key is those bytes. A signature
header is `v1,` + base64 of HMAC-SHA256 over `"{webhook-id}.{webhook-timestamp}.{body}"`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"  # noqa: S105  (the format's marker, not a secret)


def new_secret() -> str:
    """A `whsec_` secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret; ValueError for anything else."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_' followed by base64")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except ValueError:
        raise ValueError("the part of a webhook secret after 'whsec_' must be base64") from None
    if not 16 <= len(key) <= 64:
        raise ValueError(f"a webhook secret must hold 16 to 64 bytes (it holds {len(key)})")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The `webhook-signature` header value for one attempt."""
    digest = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def check_endpoint(url: str) -> str:
    """An operator's endpoint URL: http(s) with a host. ValueError says what is wrong."""
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"a webhook URL must be http:// or https:// with a host, not {url!r}")
    return url
