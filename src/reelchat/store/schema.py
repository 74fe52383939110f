"""Tables and the ordered list of migrations that build them (recorded in `schema_migrations`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("video_id", sa.String(40), nullable=False, unique=True),
    sa.Column("sid", sa.String(40), nullable=False, unique=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("engine_prompt", sa.Text, nullable=False),
    sa.Column("orientation", sa.String(16), nullable=False),
    sa.Column("seconds", sa.Integer, nullable=False),
    sa.Column("size", sa.String(32), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("fps", sa.Integer, nullable=False),
    sa.Column("frames", sa.Integer, nullable=False),
    sa.Column("steps", sa.Integer, nullable=False),
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("progress", sa.Integer, nullable=False, server_default="0"),
    # the fencing token: +1 on every claim, so only the run that claimed a task can finish it
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("remixed_from", sa.String(40), nullable=True),
    sa.Column("has_image", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("image_name", sa.String(200), nullable=True),
    sa.Column("video_name", sa.String(200), nullable=True),
    sa.Column("thumbnail_name", sa.String(200), nullable=True),
    sa.Column("spritesheet_name", sa.String(200), nullable=True),
    sa.Column("upstream_job_id", sa.String(200), nullable=True),
    # which server process runs it, and when that process last said it was alive (its lease)
    sa.Column("owner", sa.String(300), nullable=True),
    sa.Column("heartbeat_at", sa.Float, nullable=True),
    # poison-pill accounting: `in_engine` is set (durably) right before the engine starts and cleared
    # when it returns; a claim that finds it still set means the process died mid-run, which adds to
    # `crashes` (times in a row) and holds the task back until `not_before` (unix seconds)
    sa.Column("in_engine", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("crashes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("not_before", sa.Float, nullable=True),
    # media names a run is about to write, recorded first: a run that dies mid-write leaves no orphans
    sa.Column("media_pending", sa.JSON, nullable=True),
    sa.Column("error_code", sa.String(100), nullable=True),
    sa.Column("error_message", sa.Text, nullable=True),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    # unix seconds (float): portable across SQLite and PostgreSQL, and what the OpenAI shapes want
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("completed_at", sa.Float, nullable=True),
    # seconds the last run spent in each phase (queued, denoise, encode, upload), written with its outcome
    sa.Column("phases", sa.JSON, nullable=True),
    sa.Index("ix_tasks_tenant_created", "tenant", "created_at"),
    sa.Index("ix_tasks_status", "status"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(32), nullable=False),
    sa.Column("key_hash", sa.String(128), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    # the operator's endpoint for this key's videos' events, and its Standard Webhooks secret (whsec_...)
    sa.Column("webhook_url", sa.Text, nullable=True),
    sa.Column("webhook_secret", sa.String(200), nullable=True),
)

# One row per (event, endpoint), written in the transaction that records the task's outcome, before
# anything is sent; senders claim due rows (`claimed_by` / `claimed_until`) so replicas never share one.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("event_id", sa.String(40), nullable=False),  # the `webhook-id` header: the same on every retry
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("task_id", sa.String(40), nullable=False),
    sa.Column("target", sa.String(64), nullable=False),  # "server" (REELCHAT_WEBHOOK_URL) or an api key id
    sa.Column("payload", sa.Text, nullable=False),  # the exact body that is signed and sent
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_at", sa.Float, nullable=False),
    sa.Column("claimed_by", sa.String(300), nullable=True),
    sa.Column("claimed_until", sa.Float, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),  # the receiver's HTTP status, if it answered
    sa.Column("last_error", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("delivered_at", sa.Float, nullable=True),
    sa.Index("ix_webhook_deliveries_due", "status", "next_at"),
    sa.Index("ix_webhook_deliveries_task", "task_id"),
)

characters = sa.Table(
    "characters",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("frame_name", sa.String(200), nullable=False),
    sa.Column("source_video_id", sa.String(40), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_characters_tenant_created", "tenant", "created_at"),
)

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)


def _m001_initial(conn: sa.Connection) -> None:
    for table in (tasks, api_keys):
        table.create(conn, checkfirst=True)


def _add_missing_columns(conn: sa.Connection, table: sa.Table, columns: list[sa.Column[Any]]) -> None:
    """ALTER TABLE ADD COLUMN for the nullable `columns` a database made by an older m001 lacks."""
    have = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
    for column in columns:
        if column.name not in have:
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))


def _m002_crash_accounting(conn: sa.Connection) -> None:
    # a fresh database got these columns from m001 (it creates the current table); add what is missing
    have = {c["name"] for c in sa.inspect(conn).get_columns("tasks")}
    for column in (tasks.c.in_engine, tasks.c.crashes, tasks.c.not_before, tasks.c.media_pending):
        if column.name not in have:
            kind = column.type.compile(dialect=conn.dialect)
            default = f" DEFAULT {'0' if column.name == 'crashes' else 'FALSE'} NOT NULL" if not column.nullable else ""
            conn.execute(sa.text(f"ALTER TABLE tasks ADD COLUMN {column.name} {kind}{default}"))


def _m005_ops(conn: sa.Connection) -> None:
    _add_missing_columns(conn, tasks, [tasks.c.phases])
    _add_missing_columns(conn, api_keys, [api_keys.c.webhook_url, api_keys.c.webhook_secret])
    webhook_deliveries.create(conn, checkfirst=True)


def _m006_characters(conn: sa.Connection) -> None:
    characters.create(conn, checkfirst=True)


# Append only: each entry runs once, in order, inside a transaction, and is recorded.
MIGRATIONS: list[tuple[int, str, Callable[[sa.Connection], None]]] = [
    (1, "initial tasks and api_keys", _m001_initial),
    (2, "tasks: crashes while in the engine, backoff, pending media", _m002_crash_accounting),
    # 3 and 4: the per-key limits and idempotency (the quotas branch)
    (5, "tasks.phases; api_keys webhook endpoint; webhook_deliveries", _m005_ops),
    (6, "characters: named reference frames per tenant", _m006_characters),
]
