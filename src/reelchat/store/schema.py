"""Tables and the ordered list of migrations that build them (recorded in `schema_migrations`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

log = logging.getLogger("reelchat.store")

metadata = sa.MetaData()
MIGRATION_LOCK_KEY = 0x7265656C63686174  # "reelchat": the advisory lock that serialises migrations

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
    # the API key that asked for it (None in open mode): what its per-key limits count
    sa.Column("key_id", sa.String(40), nullable=True),
    # seconds the last run spent in each phase (queued, denoise, encode, upload), written with its outcome
    sa.Column("phases", sa.JSON, nullable=True),
    # the running attempt's live previews so far (None: none): /source links the picture while it runs
    sa.Column("preview", sa.Integer, nullable=True),
    sa.Index("ix_tasks_tenant_created", "tenant", "created_at"),
    sa.Index("ix_tasks_status", "status"),
    sa.Index("ix_tasks_key_created", "key_id", "created_at"),
    sa.Index("ix_tasks_started", "started_at"),  # the fair queue's "served recently"
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
    # per-key limits (None: no limit) and the fair queue's weight (`store.fair_queue`)
    sa.Column("rpm", sa.Integer, nullable=True),
    sa.Column("max_concurrent", sa.Integer, nullable=True),
    sa.Column("daily_seconds", sa.Integer, nullable=True),
    sa.Column("priority", sa.Float, nullable=False, server_default="1"),
    # the operator's endpoint for this key's videos' events, and its Standard Webhooks secret (whsec_...)
    sa.Column("webhook_url", sa.Text, nullable=True),
    sa.Column("webhook_secret", sa.String(200), nullable=True),
    # names are unique among active keys: a revoked key's name may be used again
    sa.Index(
        "ux_api_keys_active_name",
        "name",
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    ),
)

# `Idempotency-Key`s (and chat conversations re-sent while their task runs): which task a request made
idempotency = sa.Table(
    "idempotency",
    metadata,
    sa.Column("tenant", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("task_id", sa.String(40), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_idempotency_created", "created_at"),
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


def _add_missing_columns(conn: sa.Connection, table: sa.Table, columns: Sequence[sa.Column[Any]]) -> None:
    """ALTER TABLE ADD COLUMN for the `columns` a database made by an older m001 lacks (a NOT NULL one
    takes its server default)."""
    have = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
    for column in columns:
        if column.name in have:
            continue
        kind = column.type.compile(dialect=conn.dialect)
        default = f" DEFAULT {column.server_default.arg} NOT NULL" if not column.nullable else ""  # type: ignore[union-attr]
        conn.execute(sa.text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}{default}"))


def _m002_crash_accounting(conn: sa.Connection) -> None:
    # a fresh database got these columns from m001 (it creates the current table); add what is missing
    have = {c["name"] for c in sa.inspect(conn).get_columns("tasks")}
    for column in (tasks.c.in_engine, tasks.c.crashes, tasks.c.not_before, tasks.c.media_pending):
        if column.name not in have:
            kind = column.type.compile(dialect=conn.dialect)
            default = f" DEFAULT {'0' if column.name == 'crashes' else 'FALSE'} NOT NULL" if not column.nullable else ""
            conn.execute(sa.text(f"ALTER TABLE tasks ADD COLUMN {column.name} {kind}{default}"))


def _rename_duplicate_key_names(conn: sa.Connection) -> None:
    """Active keys sharing a name (allowed before): the oldest keeps it, the others become `name-2`, `name-3`…
    Their secrets, tenants and videos are unchanged; only `keys revoke/update NAME` sees the new names."""
    rows = conn.execute(
        sa.select(api_keys.c.id, api_keys.c.name).where(api_keys.c.revoked_at.is_(None)).order_by(api_keys.c.created_at)
    ).fetchall()
    taken = set(conn.execute(sa.select(api_keys.c.name)).scalars())
    seen: set[str] = set()
    for key_id, name in rows:
        if name not in seen:
            seen.add(name)
            continue
        n = 2
        while f"{name}-{n}" in taken:
            n += 1
        new = f"{name}-{n}"
        taken.add(new)
        conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(name=new))
        log.warning("migration: two API keys were named %r; key %s is now named %r", name, key_id, new)


def _m003_key_limits(conn: sa.Connection) -> None:
    _add_missing_columns(
        conn, api_keys, [api_keys.c.rpm, api_keys.c.max_concurrent, api_keys.c.daily_seconds, api_keys.c.priority]
    )
    _add_missing_columns(conn, tasks, [tasks.c.key_id])
    _rename_duplicate_key_names(conn)
    for index in (*api_keys.indexes, *tasks.indexes):
        index.create(conn, checkfirst=True)


def _m004_idempotency(conn: sa.Connection) -> None:
    idempotency.create(conn, checkfirst=True)


def _m005_ops(conn: sa.Connection) -> None:
    _add_missing_columns(conn, tasks, [tasks.c.phases])
    _add_missing_columns(conn, api_keys, [api_keys.c.webhook_url, api_keys.c.webhook_secret])
    webhook_deliveries.create(conn, checkfirst=True)


def _m006_characters(conn: sa.Connection) -> None:
    characters.create(conn, checkfirst=True)


def _m007_previews(conn: sa.Connection) -> None:
    _add_missing_columns(conn, tasks, [tasks.c.preview])


# Append only: each entry runs once, in order, inside a transaction, and is recorded.
MIGRATIONS: list[tuple[int, str, Callable[[sa.Connection], None]]] = [
    (1, "initial tasks and api_keys", _m001_initial),
    (2, "tasks: crashes while in the engine, backoff, pending media", _m002_crash_accounting),
    (3, "api_keys: limits, priority, unique active names; tasks.key_id", _m003_key_limits),
    (4, "idempotency keys", _m004_idempotency),
    (5, "tasks.phases; api_keys webhook endpoint; webhook_deliveries", _m005_ops),
    (6, "characters: named reference frames per tenant", _m006_characters),
    (7, "tasks.preview: live preview pictures while a task runs", _m007_previews),
]
