"""A fresh PostgreSQL database per test, on the server at REELCHAT_TEST_PG_URL, dropped afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from helpers import missing_dependency
from sqlalchemy.engine import URL, make_url

PG_URL = os.environ.get("REELCHAT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


def _connect_args(url: URL, database: str) -> dict[str, Any]:
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "password": url.password,
        "database": database,
        "timeout": 5,
    }


@asynccontextmanager
async def fresh_database(prefix: str) -> AsyncIterator[tuple[str, Any]]:
    """(its SQLAlchemy URL, an admin asyncpg connection to the server); skips (fails under CI=true)
    when PostgreSQL is unreachable."""
    import asyncpg

    server = make_url(PG_URL)
    try:
        admin = await asyncpg.connect(**_connect_args(server, "postgres"))
    except (OSError, asyncpg.PostgresError, TimeoutError) as e:
        missing_dependency(f"PostgreSQL at {server.render_as_string(hide_password=True)} is unreachable: {e!r}")
    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield server.set(database=name).render_as_string(hide_password=False), admin
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
