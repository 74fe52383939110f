"""A webhook receiver on loopback for the tests: it records every request, verifies its Standard
Webhooks signature with its own implementation of the spec (not reelchat's), and answers from a script.

Verification, per https://www.standardwebhooks.com/ (spec section "Verifying webhook authenticity"):
the key is the base64 part of the `whsec_` secret; the signed content is `{webhook-id}.{webhook-timestamp}.{body}`;
`webhook-signature` is a space-separated list of `v1,<base64 HMAC-SHA256>`; one must match (in constant
time), and the timestamp must be within five minutes of now.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_S = 300


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """True when the request is signed with `secret` and fresh; False for anything else."""
    try:
        msg_id = headers["webhook-id"]
        timestamp = headers["webhook-timestamp"]
        signatures = headers["webhook-signature"]
        if abs(time.time() - int(timestamp)) > TOLERANCE_S:
            return False
        key = base64.b64decode(secret.removeprefix("whsec_"))
    except (KeyError, ValueError):
        return False
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return True
    return False


class Receiver:
    """Answers `script` statuses in order (then `default`), per path; verifies with `secrets[path]`."""

    def __init__(self, secrets: dict[str, str], script: dict[str, list[int]] | None = None, default: int = 204) -> None:
        self.secrets = secrets
        self.script = {path: list(codes) for path, codes in (script or {}).items()}
        self.default = default
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    codes = receiver.script.get(self.path, [])
                    status = codes.pop(0) if codes else receiver.default
                    ok = verify(receiver.secrets.get(self.path, ""), headers, body)
                    receiver.received.append(Received(self.path, headers, body, ok, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, path: str, timeout_s: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                got = [r for r in self.received if r.path == path]
            if len(got) >= count:
                return got
            assert time.monotonic() < deadline, f"{len(got)} of {count} deliveries to {path} after {timeout_s} s"
            time.sleep(0.05)
