"""`reelchat keys create|update|list` as an operator runs them: limits, unique names, and what
happens to the videos made in open mode when the first key is created."""

from __future__ import annotations

import asyncio
from pathlib import Path

from helpers import run_cli
from test_store import make_task

from reelchat.domain import OPEN_TENANT
from reelchat.store.tasks import Store


def _store(home: Path) -> Store:
    return Store(f"sqlite+aiosqlite:///{home / 'reelchat.db'}")


def _open_mode_videos(home: Path, n: int) -> None:
    async def make() -> None:
        store = _store(home)
        try:
            await store.migrate()
            for _ in range(n):
                await store.insert_task(make_task(OPEN_TENANT))
        finally:
            await store.close()

    asyncio.run(make())


def _count(home: Path, tenant: str) -> int:
    async def count() -> int:
        store = _store(home)
        try:
            return await store.counts.count_videos(tenant)
        finally:
            await store.close()

    return asyncio.run(count())


def test_create_with_limits_update_and_list(tmp_path: Path) -> None:
    out = run_cli(tmp_path, "keys", "create", "--name", "alice", "--rpm", "30", "--daily-seconds", "600")
    assert out.returncode == 0, out.stderr
    assert "rpm=30 max-concurrent=unlimited daily-seconds=600 s priority=1" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith("rc-")
    out = run_cli(tmp_path, "keys", "update", "alice", "--max-concurrent", "2", "--priority", "2.5", "--rpm", "0")
    assert out.returncode == 0, out.stderr
    assert "rpm=unlimited max-concurrent=2 daily-seconds=600 s priority=2.5" in out.stdout
    listed = run_cli(tmp_path, "keys", "list").stdout
    assert "alice" in listed
    assert "max-concurrent=2" in listed
    assert "priority=2.5" in listed


def test_names_are_unique_and_bad_values_are_refused(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "keys", "create", "--name", "alice").returncode == 0
    again = run_cli(tmp_path, "keys", "create", "--name", "alice")
    assert again.returncode == 1
    assert "already named 'alice'" in again.stderr
    assert "Traceback" not in again.stderr
    bad = run_cli(tmp_path, "keys", "create", "--name", "bob", "--priority", "0")
    assert bad.returncode == 2
    assert "must be more than 0" in bad.stderr
    bad = run_cli(tmp_path, "keys", "update", "alice", "--rpm", "-1")
    assert bad.returncode == 2
    assert "0 (no limit) or more" in bad.stderr
    missing = run_cli(tmp_path, "keys", "update", "nobody", "--rpm", "5")
    assert missing.returncode == 1
    assert "no active key" in missing.stderr
    assert run_cli(tmp_path, "keys", "revoke", "alice").returncode == 0
    assert run_cli(tmp_path, "keys", "create", "--name", "alice").returncode == 0  # a revoked name is free


def test_the_first_key_says_what_happens_to_open_mode_videos(tmp_path: Path) -> None:
    _open_mode_videos(tmp_path, 3)
    out = run_cli(tmp_path, "keys", "create", "--name", "alice")
    assert out.returncode == 0, out.stderr
    assert "This is the first API key" in out.stdout
    assert "The 3 video(s) made in open mode stay under tenant 'default'" in out.stdout
    assert "reelchat keys update alice --adopt-open-videos" in out.stdout
    assert _count(tmp_path, OPEN_TENANT) == 3
    out = run_cli(tmp_path, "keys", "update", "alice", "--adopt-open-videos")
    assert out.returncode == 0, out.stderr
    assert "Moved 3 video(s) made in open mode" in out.stdout
    assert (_count(tmp_path, OPEN_TENANT), _count(tmp_path, "alice")) == (0, 3)


def test_create_adopt_open_videos(tmp_path: Path) -> None:
    _open_mode_videos(tmp_path, 2)
    out = run_cli(tmp_path, "keys", "create", "--name", "bob", "--adopt-open-videos")
    assert out.returncode == 0, out.stderr
    assert "Moved 2 video(s) made in open mode (tenant 'default') to this key's tenant 'bob'" in out.stdout
    assert _count(tmp_path, "bob") == 2
    second = run_cli(tmp_path, "keys", "create", "--name", "carol")  # not the first: nothing to say
    assert "open mode" not in second.stdout


def test_one_update_sets_limits_webhook_and_adopts(tmp_path: Path) -> None:
    _open_mode_videos(tmp_path, 1)
    out = run_cli(tmp_path, "keys", "create", "--name", "dan", "--rpm", "10", "--webhook-url", "http://10.0.0.5/a")
    assert out.returncode == 0, out.stderr
    assert "rpm=10" in out.stdout
    assert "whsec_" in out.stdout
    assert "webhook=set" in run_cli(tmp_path, "keys", "list").stdout
    bad = run_cli(tmp_path, "keys", "update", "dan", "--rpm", "3", "--webhook-url", "ftp://x/y")
    assert bad.returncode == 2
    assert "http:// or https://" in bad.stderr
    assert "rpm=10" in run_cli(tmp_path, "keys", "list").stdout  # a bad URL changes nothing
    out = run_cli(
        tmp_path, "keys", "update", "dan", "--rpm", "3", "--webhook-url", "http://10.0.0.5/b", "--adopt-open-videos"
    )
    assert out.returncode == 0, out.stderr
    assert "rpm=3" in out.stdout
    assert "its videos' events go to http://10.0.0.5/b" in out.stdout
    assert "Signed with the secret it already had." in out.stdout
    assert "Moved 1 video(s) made in open mode" in out.stdout
    out = run_cli(tmp_path, "keys", "update", "dan", "--webhook-url", "")
    assert out.returncode == 0, out.stderr
    assert "no webhook any more" in out.stdout
    listed = run_cli(tmp_path, "keys", "list").stdout
    assert "webhook=none" in listed
    assert "rpm=3" in listed
