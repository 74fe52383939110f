"""Task events across API replicas over PostgreSQL `LISTEN/NOTIFY` (when the store is PostgreSQL).

Each API process holds ONE listen connection, whatever the number of streams, and fans what it hears
out to its own subscribers (`LocalEventBus`). A publish reaches the local subscribers at once and
goes out as one `NOTIFY` (sent in batches on a second connection); each replica skips its own
notices, so no subscriber hears an event twice. Notices are small JSON, well under PostgreSQL's
8000-byte payload limit (a long error message is cut; subscribers re-read the store on a finished
task anyway).

Two kinds of notice share the channel: a task event, and "a task was queued" (so that idle replicas'
executors take work another replica accepted; the store's claim makes sure only one runs it).

A dropped listen connection is reopened with backoff; the time in between is a gap, so the local
notifier re-reads the store for every followed task, and the service looks at the queue again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from contextlib import suppress
from typing import Any

from sqlalchemy.engine import make_url

from ..domain import TaskEvent, TaskStatus
from .events import LocalEventBus, ReadStates, WorkListener

log = logging.getLogger("reelchat.events")

CHANNEL = "reelchat_events"
MAX_PAYLOAD_BYTES = 7900  # PostgreSQL refuses a NOTIFY payload of 8000 bytes or more
MAX_OUTBOX = 20_000  # notices waiting while the database is away; past that they are dropped (the store has it all)
PING_S = 5.0  # a listen connection that does not answer a query in time is reopened
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 5.0


def asyncpg_dsn(database_url: str) -> str:
    """The plain `postgresql://` form asyncpg takes, of the store's SQLAlchemy URL."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def encode_notice(origin: str, kind: str, event: TaskEvent) -> str:
    body: dict[str, Any] = {"o": origin, "k": kind, "t": event.task_id}
    if kind == "e":
        body.update(s=event.status.value, p=event.progress, c=event.error_code, m=event.error_message)
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode()) > MAX_PAYLOAD_BYTES and event.error_message:
        body["m"] = event.error_message[:500] + "…"
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        if len(text.encode()) > MAX_PAYLOAD_BYTES:
            body["m"] = None
            text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return text


def decode_notice(payload: str) -> tuple[str, str, TaskEvent]:
    """(origin, kind, event) of a notice; raises ValueError (or KeyError, TypeError) on a malformed one."""
    body = json.loads(payload)
    task_id = str(body["t"])
    if body["k"] == "q":
        return str(body["o"]), "q", TaskEvent(task_id, TaskStatus.QUEUED, 0)
    if body["k"] != "e":
        raise ValueError(f"unknown notice kind {body['k']!r}")
    code, message = body.get("c"), body.get("m")
    event = TaskEvent(
        task_id,
        TaskStatus(body["s"]),
        int(body["p"]),
        str(code) if code is not None else None,
        str(message) if message is not None else None,
    )
    return str(body["o"]), "e", event


class PgEventBus(LocalEventBus):
    def __init__(self, database_url: str, catch_up_s: float = 3.0) -> None:
        super().__init__(catch_up_s)
        self.dsn = asyncpg_dsn(database_url)
        self.origin = secrets.token_hex(8)  # this process: its own notices come back to it, and are skipped
        self.reconnects = 0  # listen connections opened after the first
        self._opened = 0
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = asyncio.Event()
        self._work: WorkListener | None = None

    # ---- EventBus / EventHub -----------------------------------------------------------------------

    def publish(self, event: TaskEvent) -> None:
        self.deliver(event)  # here at once; other replicas through the database
        self._send(encode_notice(self.origin, "e", event))

    def announce(self, task_id: str) -> None:
        self._send(encode_notice(self.origin, "q", TaskEvent(task_id, TaskStatus.QUEUED, 0)))

    async def start(self, read_states: ReadStates, work: WorkListener) -> None:
        """Open the listen connection (waiting up to a few seconds for it) and the sender."""
        await super().start(read_states, work)
        if self._tasks:
            return
        self._work = work
        self._tasks = [
            asyncio.create_task(self._listen_loop(), name="reelchat-events-listen"),
            asyncio.create_task(self._send_loop(), name="reelchat-events-notify"),
        ]
        try:
            async with asyncio.timeout(10.0):
                await self.wait_listening()
        except TimeoutError:  # it keeps trying; the store's re-reads cover the meantime
            log.warning("the PostgreSQL listen connection is not open yet; retrying in the background")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await super().close()

    async def wait_listening(self) -> None:
        """Until the listen connection is open."""
        await self._listening.wait()

    # ---- sending ------------------------------------------------------------------------------------

    def _send(self, payload: str) -> None:
        if self._outbox.qsize() >= MAX_OUTBOX:
            log.warning("the database is away and %d notices wait: dropping one", MAX_OUTBOX)
            return
        self._outbox.put_nowait(payload)

    async def _send_loop(self) -> None:
        import asyncpg

        conn: asyncpg.Connection | None = None
        batch: list[str] = []
        delay = RECONNECT_MIN_S
        try:
            while True:
                if not batch:
                    batch = [await self._outbox.get()]
                    while not self._outbox.empty() and len(batch) < 500:
                        batch.append(self._outbox.get_nowait())
                try:
                    if conn is None or conn.is_closed():
                        conn = await asyncpg.connect(
                            self.dsn, timeout=5, server_settings={"application_name": "reelchat-notify"}
                        )
                    # one transaction: the notices go out together, in order, on commit
                    await conn.executemany("SELECT pg_notify($1, $2)", [(CHANNEL, p) for p in batch])
                    batch, delay = [], RECONNECT_MIN_S
                except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                    # the batch is sent again once the database answers (a duplicate event is harmless)
                    log.warning("could not send %d task notice(s): %s; retrying in %.1f s", len(batch), e, delay)
                    if conn is not None:
                        conn.terminate()
                        conn = None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_S)
        finally:
            if conn is not None:
                conn.terminate()

    # ---- listening ----------------------------------------------------------------------------------

    def _on_notice(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            origin, kind, event = decode_notice(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed task notice: %.200r", payload)
            return
        if origin == self.origin:
            return  # ours: delivered here when it was published
        if kind == "q":
            if self._work is not None:
                self._work.queued(event.task_id)
        else:
            self.deliver(event)

    async def _listen_loop(self) -> None:
        import asyncpg

        delay = RECONNECT_MIN_S
        while True:
            try:
                await self._listen_once()
                log.warning("the task events listen connection closed; reopening it")
                delay = RECONNECT_MIN_S
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
                log.warning("task events listen connection: %s; retrying in %.1f s", e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _listen_once(self) -> None:
        """One listen connection's life: until the server closes it, or it stops answering."""
        import asyncpg

        settings = {"application_name": "reelchat-listen"}
        conn = await asyncpg.connect(self.dsn, timeout=5, server_settings=settings)
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(CHANNEL, self._on_notice)
            self._opened += 1
            if self._opened > 1:
                self.reconnects += 1
                log.info("listening for task events again (reconnect %d)", self.reconnects)
            # whatever happened before this connection listened went unheard: catch up from the store
            self.gap()
            if self._work is not None:
                self._work.may_have_missed()
            self._listening.set()
            while not lost.is_set():
                with suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), timeout=PING_S)
                if not lost.is_set():  # a half-open connection would stay silent forever: ask it
                    await asyncio.wait_for(conn.execute("SELECT 1"), timeout=PING_S)
        finally:
            self._listening.clear()
            conn.terminate()
