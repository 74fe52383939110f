"""A real S3-protocol server for the tests: moto's standalone server (`python -m moto.server`), in a subprocess.

No AWS account and nothing mocked in-process: reelchat's boto3 client talks HTTP to it, as it would to
AWS or MinIO. One server per test session (conftest's `moto_s3`); each test makes its own bucket.
"""

from __future__ import annotations

import importlib.util
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from helpers import free_port, missing_dependency

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

START_TIMEOUT_S = 60.0
# moto accepts any credentials; these make sure nothing from the developer's shell (a real AWS key) is used
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "reelchat-test", "AWS_SECRET_ACCESS_KEY": "reelchat-test-secret"}
REGION = "us-east-1"


def require_s3_tools() -> None:
    """boto3 and moto[server] (the dev extra): skip without them, or fail under CI=true."""
    for module, what in (("boto3", "boto3 (pip install 'reelchat[s3]')"), ("moto.server", "moto[server]")):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            missing_dependency(f"{what} is not installed: the S3 tests need it (the dev extra)")
    for module in ("flask", "flask_cors", "werkzeug"):  # what moto's server runs on
        if importlib.util.find_spec(module) is None:
            missing_dependency(f"{module} is not installed: moto's standalone server needs it (moto[server])")


@dataclass
class MotoS3:
    """A running moto server: its endpoint, the environment pointing reelchat at it, buckets."""

    endpoint: str
    proc: subprocess.Popen[bytes]
    buckets: list[str] = field(default_factory=list)

    def aws_env(self) -> dict[str, str]:
        """The standard AWS variables for this server (what an operator sets)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION, **CREDENTIALS}

    def env(self, bucket: str, prefix: str = "media", **reelchat: str) -> dict[str, str]:
        """A server's environment: REELCHAT_STORAGE_URL on `bucket`/`prefix`, the AWS variables, and more REELCHAT_*."""
        url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return {**self.aws_env(), "REELCHAT_STORAGE_URL": url, **reelchat}

    def client(self) -> S3Client:
        import boto3

        c: S3Client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        return c

    def new_bucket(self, stem: str = "reelchat") -> str:
        name = f"{stem}-{secrets.token_hex(4)}"
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def keys(self, bucket: str) -> list[str]:
        """Every key in the bucket, sorted."""
        found: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket):
            found.extend(obj["Key"] for obj in page.get("Contents", []) if "Key" in obj)
        return sorted(found)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_moto(log_path: str) -> MotoS3:
    require_s3_tools()
    port = free_port()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603  (fixed argv: this interpreter and moto's server module)
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = MotoS3(f"http://127.0.0.1:{port}", proc)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto's server exited with {proc.returncode}; see {log_path}")
        try:
            httpx.get(f"{server.endpoint}/moto-api/", timeout=1.0)
            return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"moto's server did not answer within {START_TIMEOUT_S} s; see {log_path}")
