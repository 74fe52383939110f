"""Several `reelchat serve` replicas on one PostgreSQL: a stream on one replica sees every progress
step of a job another runs (LISTEN/NOTIFY), and a replica SIGKILLed mid-job loses nothing: another
replica requeues the task when its lease runs out and makes the video, once."""

from __future__ import annotations

import asyncio
import functools
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from helpers import ServerProcess, probe_video
from pg import fresh_database
from server_util import models_json

pytestmark = pytest.mark.slow

# long enough in the denoising loop (several seconds on a 2-core CPU) to be watched and interrupted
SLOW = {"sora-2": {"steps": 20, "fps": 4, "seconds": [15], "default_seconds": 15}}


class Database:
    """The test's PostgreSQL database, and queries on it from a synchronous test."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._cm = fresh_database("reelchat_replicas")
        self.url, _admin = self._loop.run_until_complete(self._cm.__aenter__())

    def row(self, sql: str, *args: object) -> Any:
        async def query() -> Any:
            import asyncpg

            from reelchat.service.pg_events import asyncpg_dsn

            conn = await asyncpg.connect(asyncpg_dsn(self.url), timeout=5)
            try:
                return await conn.fetchrow(sql, *args)
            finally:
                await conn.close()

        return self._loop.run_until_complete(query())

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._cm.__aexit__(None, None, None))
        finally:
            self._loop.close()


@pytest.fixture
def database() -> Iterator[Database]:
    db = Database()
    try:
        yield db
    finally:
        db.close()


def replica(
    make_home: Callable[[str], Path], demo_models: Path, db: Database, media: Path, name: str, **more: str
) -> ServerProcess:
    env = {
        "REELCHAT_DATABASE_URL": db.url,
        "REELCHAT_MEDIA_DIR": str(media),  # shared, as a network volume (or S3) would be
        "REELCHAT_NODE_ID": name,
        "REELCHAT_MODELS_JSON": models_json(demo_models, SLOW),
        "REELCHAT_LEASE_S": "4",
        "REELCHAT_CRASH_BACKOFF_S": "0.2",
        "REELCHAT_KEEPALIVE_S": "0.5",
        "TOKENIZERS_PARALLELISM": "false",
        **more,
    }
    return ServerProcess(make_home(name), env)


@dataclass
class Follower:
    """GET /source/<task>/events on a replica, read in a thread: every frame, with its arrival time."""

    url: str
    frames: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    error: BaseException | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Follower:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        try:
            with httpx.stream("GET", self.url, timeout=httpx.Timeout(10.0, read=30.0)) as r:
                assert r.status_code == 200, r.read()
                assert r.headers["content-type"].startswith("text/event-stream")
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        self.frames.append((time.monotonic(), json.loads(line[6:])))
        except BaseException as e:  # reported by join()
            self.error = e

    def join(self, timeout: float) -> list[dict[str, Any]]:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the stream at {self.url} did not end: {self.frames[-3:]}"
        assert self.error is None, self.error
        return [frame for _, frame in self.frames]


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def is_ready(proc: ServerProcess) -> bool:
    return httpx.get(f"{proc.base_url}/readyz").status_code == 200


def progress_values(frames: list[dict[str, Any]]) -> list[int]:
    return [f["progress"] for f in frames if f["status"] == "in_progress" and f["progress"] > 0]


def test_a_stream_on_one_replica_sees_every_step_of_a_job_another_runs(
    make_home: Callable[[str], Path], demo_models: Path, database: Database, tmp_path: Path
) -> None:
    media = tmp_path / "media"
    # no lease sweep during the test (it looks at the queue every half lease): work moves by notices
    names = ("replica-a", "replica-b")
    both = [replica(make_home, demo_models, database, media, n, REELCHAT_LEASE_S="300") for n in names]
    with ThreadPoolExecutor(2) as pool:  # started together: one migrates the database, the other waits for it
        a, b = pool.map(ServerProcess.start, both)
    try:
        for proc in (a, b):  # both take work: either may claim the job
            wait_until("the workers are ready", functools.partial(is_ready, proc))
        client = openai.OpenAI(base_url=f"{a.base_url}/v1", api_key="unused", max_retries=0, timeout=60)
        video = client.videos.create(model="sora-2", prompt="a lighthouse in a storm")
        task_id = str((video.model_extra or {})["task_id"])
        on_a = Follower(f"{a.base_url}/source/{task_id}/events").start()
        on_b = Follower(f"{b.base_url}/source/{task_id}/events").start()
        # a second job, also accepted by A: the replica whose worker is free takes it, told by A's notice
        second = client.videos.create(model="sora-2", prompt="a paper boat on a river")
        frames = {"replica-a": on_a.join(120), "replica-b": on_b.join(120)}

        row = database.row("SELECT owner, attempt, status, progress FROM tasks WHERE id = $1", task_id)
        assert row["status"] == "completed", dict(row)
        assert row["attempt"] == 1, dict(row)  # dispatched once
        runner = str(row["owner"]).split("/")[0]
        other = "replica-b" if runner == "replica-a" else "replica-a"
        # the replica that did not run the job heard its steps live, over PostgreSQL, in order
        seen = frames[other]
        assert seen[-1] == {"status": "completed", "progress": 100}, seen
        steps = progress_values(seen)
        assert len(set(steps)) >= 5, seen
        assert steps == sorted(steps), seen
        # ... the same steps the runner's own subscribers heard (from the first one both were following)
        local = [p for p in progress_values(frames[runner]) if p >= steps[0]]
        assert set(local) <= set(steps), (local, steps)
        # live: the steps arrived spread over the run, not all at once at the end
        times = [t for t, f in (on_a if other == "replica-a" else on_b).frames if f["status"] == "in_progress"]
        assert times[-1] - times[0] > 0.5, times

        # the video, made once, is served by both replicas
        done = openai.OpenAI(base_url=f"{b.base_url}/v1", api_key="unused", max_retries=0).videos.retrieve(video.id)
        assert done.status == "completed"
        assert done.progress == 100
        for proc in (a, b):
            mp4 = httpx.get(f"{proc.base_url}/v1/videos/{video.id}/content", timeout=30)
            assert mp4.status_code == 200
            assert probe_video(mp4.content).decoded_frames > 1
        second_task = str((second.model_extra or {})["task_id"])
        wait_until("the second job is made", lambda: client.videos.retrieve(second.id).status == "completed", 120)
        row2 = database.row("SELECT owner, attempt FROM tasks WHERE id = $1", second_task)
        assert row2["attempt"] == 1, dict(row2)
        assert str(row2["owner"]).split("/")[0] == other, (dict(row), dict(row2))  # the two ran side by side
        assert len(list(media.rglob("*.mp4"))) == 2
    finally:
        a.stop()
        b.stop()


def test_a_replica_killed_mid_job_loses_nothing(
    make_home: Callable[[str], Path], demo_models: Path, database: Database, tmp_path: Path
) -> None:
    media = tmp_path / "media"
    a = replica(make_home, demo_models, database, media, "replica-a").start()
    b: ServerProcess | None = None
    try:
        wait_until("replica A is ready", functools.partial(is_ready, a))
        # B answers, but its worker is still loading its model: the job A accepts now is A's to run
        b = replica(make_home, demo_models, database, media, "replica-b").start()
        client = openai.OpenAI(base_url=f"{a.base_url}/v1", api_key="unused", max_retries=0, timeout=60)
        video = client.videos.create(model="sora-2", prompt="a paper boat on a river")
        task_id = str((video.model_extra or {})["task_id"])
        on_b = Follower(f"{b.base_url}/source/{task_id}/events").start()
        wait_until("B hears A denoise the job", lambda: bool(progress_values([f for _, f in on_b.frames])))
        row = database.row("SELECT owner, attempt FROM tasks WHERE id = $1", task_id)
        assert str(row["owner"]).startswith("replica-a/"), dict(row)
        assert a.kill() == -signal.SIGKILL  # its worker process dies with it
        killed_at = time.monotonic()
        # B requeues the task once A's lease runs out, claims it, and makes the video
        frames = on_b.join(120)
        assert frames[-1] == {"status": "completed", "progress": 100}, frames
        # B's stream followed the task across the takeover: steps of B's own run came after the kill
        after = [f for t, f in on_b.frames if t > killed_at]
        assert progress_values(after), on_b.frames
        row = database.row("SELECT owner, attempt, crashes, status, video_name FROM tasks WHERE id = $1", task_id)
        assert row["status"] == "completed", dict(row)
        assert str(row["owner"]).startswith("replica-b/"), dict(row)
        assert row["attempt"] == 2, dict(row)  # A's run, then B's: no third, no parallel one

        done = openai.OpenAI(base_url=f"{b.base_url}/v1", api_key="unused", max_retries=0).videos.retrieve(video.id)
        assert done.status == "completed"
        assert done.error is None
        mp4 = httpx.get(f"{b.base_url}/v1/videos/{video.id}/content", timeout=30)
        assert mp4.status_code == 200
        probed = probe_video(mp4.content)
        assert probed.decoded_frames == probed.info.frames > 1
        assert [p.name for p in media.rglob("*.mp4")] == [row["video_name"]]  # one video, A left no half of one
    finally:
        a.kill()
        if b is not None:
            b.stop()
