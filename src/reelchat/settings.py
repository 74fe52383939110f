"""One typed Settings object, built by the CLI or create_app() and passed down. Nothing reads os.environ deeper."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .standard_webhooks import check_endpoint, secret_key


def default_home() -> Path:
    return Path.home() / ".reelchat"


class Settings(BaseSettings):
    """Every knob, from REELCHAT_* environment variables (or constructor arguments in tests)."""

    model_config = SettingsConfigDict(env_prefix="REELCHAT_", extra="ignore")

    home: Path = Field(default_factory=default_home, description="data directory: database, media, demo model")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default sqlite+aiosqlite:///<home>/reelchat.db"
    )
    media_dir: Path | None = Field(default=None, description="where mp4/webp files live; default <home>/media")
    storage_url: str | None = Field(
        default=None, description="unset: the local media directory; s3://bucket/prefix: S3 (standard AWS_* variables)"
    )
    s3_links: Literal["proxy", "presigned"] = Field(
        default="proxy",
        description="with S3 storage, media links: proxy = reelchat URLs streamed from S3; presigned = S3 URLs",
    )
    s3_presign_expires_s: int = Field(
        default=3600, ge=1, le=604800, description="lifetime of a presigned media link (SigV4 allows 7 days at most)"
    )
    public_base_url: str | None = Field(default=None, description="absolute base for links, e.g. https://v.example")
    trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"],
        description="peers whose X-Forwarded-Proto/Host are believed",
    )
    locale: Literal["zh", "en"] = Field(default="zh", description="reply wording when Accept-Language says nothing")
    previews: bool = Field(
        default=True, description="live preview pictures while a local model denoises (/source preview_url)"
    )
    keepalive_s: float = Field(default=3.0, gt=0, description="seconds between keep-alive dots while waiting")
    max_body_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    models_file: Path | None = Field(default=None, description="JSON or TOML file with model catalog entries")
    models_json: str | None = Field(default=None, description="JSON object of catalog overrides (REELCHAT_MODELS_JSON)")
    max_queued: int = Field(default=1000, ge=1, description="tasks waiting at once before new ones get 429")
    max_queued_per_key: int = Field(
        default=100, ge=1, description="unfinished (queued or running) tasks one tenant may have before 429"
    )
    max_streams_per_key: int = Field(
        default=100, ge=1, description="chat replies one tenant may have open at once (per API process) before 429"
    )
    max_video_seconds: int = Field(
        default=60, gt=0, description="the longest video an extension may make (a model's max_seconds wins)"
    )
    max_video_pixels: int = Field(
        default=2_000_000_000, gt=0, description="width x height x frames of a video decoded whole, at most"
    )
    executor: Literal["local", "inprocess", "ray"] = Field(
        default="local",
        description="where engines run: local = worker processes the server supervises; inprocess = the API "
        "process; ray = actors on a Ray cluster (pip install 'reelchat[ray]')",
    )
    ray_address: str = Field(
        default="auto",
        description="the Ray cluster (REELCHAT_EXECUTOR=ray): auto = the running one; host:port; local = a private one",
    )
    workers: int = Field(default=1, ge=1, description="jobs run at once: worker processes (or in-process workers)")
    worker_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="niceness added to worker processes, so the API process gets the CPU first when both want it",
    )
    worker_threads: int | None = Field(
        default=None,
        ge=1,
        description="torch CPU threads per worker process; default on a CPU device: the cores left after one for "
        "the API process, shared among the workers (at least 1); on CUDA, torch's own default",
    )
    device: str | None = Field(default=None, description="torch device; default cuda when present, else cpu")
    dtype: str | None = Field(default=None, description="torch dtype; default bfloat16 on cuda, float32 on cpu")
    device_memory_gb: float | None = Field(
        default=None,
        gt=0,
        description="memory a local model may use on its device (GB), instead of the free memory the device reports",
    )
    poll_after_ms: int = Field(default=1000, ge=100)
    image_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    image_fetch_timeout_s: float = Field(default=10.0, gt=0)
    allow_private_image_urls: bool = False
    video_upload_max_bytes: int = Field(default=25 * 1024 * 1024, gt=0, description="an uploaded video's size cap")
    video_upload_max_seconds: float = Field(default=60.0, gt=0, description="an uploaded video's duration cap")
    video_upload_max_frames: int = Field(default=1800, gt=0, description="an uploaded video's frame count cap")
    video_upload_max_side: int = Field(default=1920, ge=16, description="an uploaded video's longest side, in pixels")
    node_id: str | None = Field(
        default=None, description="this server process's name in task leases; default <hostname>:<home>"
    )
    lease_s: float = Field(default=120.0, gt=0, description="a running task whose server is silent this long is re-run")
    max_attempts: int = Field(
        default=5,
        ge=1,
        description="times in a row the server may die while a video is being made before it fails as crash_loop",
    )
    crash_backoff_s: float = Field(
        default=5.0, ge=0, description="wait before re-running a video the server died making; doubles each time"
    )
    events_catch_up_s: float = Field(
        default=3.0,
        gt=0,
        description="seconds between the store re-reads that catch every followed task up (one query per process)",
    )
    job_deadline_s: float = Field(default=3600.0, gt=0, description="a job running longer than this fails")
    fair_window_s: float = Field(
        default=600.0,
        gt=0,
        description="the fair queue weighs each key's tasks running now and started within this many seconds",
    )
    idempotency_ttl_s: float = Field(
        default=86400.0, gt=0, description="how long an Idempotency-Key keeps returning the video it made"
    )
    log_format: Literal["text", "json"] = Field(default="text", description="server log lines: text, or JSON lines")
    metrics_token: str | None = Field(
        default=None, description="bearer token /metrics requires; unset: /metrics answers loopback callers only"
    )
    webhook_url: str | None = Field(default=None, description="server-wide endpoint for video.completed/failed")
    webhook_secret: str | None = Field(default=None, description="its Standard Webhooks secret, whsec_<base64>")
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="seconds an endpoint has to answer")
    webhook_poll_s: float = Field(default=1.0, gt=0, description="seconds between looks at the delivery outbox")
    webhook_retry_base_s: float = Field(default=5.0, gt=0, description="first retry wait; x4 per attempt, 10 h max")
    webhook_max_attempts: int = Field(default=10, ge=1, description="attempts before a delivery is given up")

    @field_validator("public_base_url")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, v: str | None) -> str | None:
        if not v:
            return None
        return check_endpoint(v)

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, v: str | None) -> str | None:
        if not v:
            return None
        try:
            secret_key(v)
        except ValueError as e:
            raise ValueError(f"{e}; make one with `reelchat webhook-secret`") from None
        return v

    @model_validator(mode="after")
    def _webhook_pair(self) -> Settings:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError(
                "REELCHAT_WEBHOOK_URL is set but REELCHAT_WEBHOOK_SECRET is not: set it to a whsec_ secret "
                "(make one with `reelchat webhook-secret`)"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'reelchat.db'}"

    @property
    def resolved_media_dir(self) -> Path:
        return self.media_dir or self.home / "media"

    @property
    def resolved_node_id(self) -> str:
        import socket

        return self.node_id or f"{socket.gethostname()}:{self.home.resolve()}"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"
