"""Chaos benchmark: SIGKILL a real reelchat server at random moments while a client keeps submitting.

    .venv/bin/python bench/chaos.py --kills 100

It starts `reelchat serve` in a fresh REELCHAT_HOME (the demo model, made small and fast), submits
videos through `POST /v1/videos` at a bounded rate, and SIGKILLs the server 0.5-6 s after each
(re)start became ready (/readyz: models loaded, workers taking tasks), N times, restarting it each
time. Between kills it watches the videos through the list endpoint (`GET /v1/videos`, paged) and
hashes each mp4 the first time it is seen completed. Then it lets the last server drain the queue,
stops it gracefully, and reports:

- acked: videos the server answered 200 for; completed; failed (by error code);
- lost: acked but missing from the list; regenerated: an mp4 whose bytes changed after it was first
  seen completed; orphan media: files in the media directory no task refers to (and completed tasks
  whose files are missing).

Targets: 0 failed, 0 lost, 0 regenerated, 0 orphans; the exit status is 1 when one is missed.
Everything talks to 127.0.0.1 only; the server is killed at exit.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import json
import os
import platform
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"
# Small and fast on a CPU: 10 s at 1 fps is 10 frames of 96x160 (Wan makes 13), two denoising steps.
FAST_CATALOG: dict[str, Any] = {"sora-2": {"steps": 2, "fps": 1}}
TEMP_PREFIX = ".tmp-"  # LocalStorage's in-flight writes; swept by the server once stale


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """`reelchat serve` on one port and home, started again after each kill."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / "server.log"
        atexit.register(self.kill)

    def start(self, timeout_s: float = 120.0) -> float:
        """Start and wait for /readyz (models loaded, workers taking tasks); returns the seconds it took."""
        started = time.monotonic()
        cmd = [sys.executable, "-m", "reelchat.cli", "serve", "--host", HOST, "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603  (fixed argv: this interpreter and our own CLI)
                cmd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with httpx.Client(trust_env=False, timeout=1.0) as c:
            while time.monotonic() - started < timeout_s:
                if self.proc.poll() is not None:
                    tail = self.log_path.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"reelchat exited with {self.proc.returncode}:\n{tail}")
                with contextlib.suppress(httpx.HTTPError):
                    if c.get(self.url + "/readyz").status_code == 200:
                        return time.monotonic() - started
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"reelchat not ready after {timeout_s:.0f} s")

    def kill(self) -> None:
        """SIGKILL: the process dies at once, mid-write if it must."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM, as a deploy does; SIGKILL after 30 s."""
        assert self.proc is not None  # noqa: S101  (narrows a type; never input validation)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode)


@dataclass
class Ledger:
    """What the client saw: its acks, and each completed mp4's hash the first time it was seen."""

    submitted: int = 0
    acked: list[str] = field(default_factory=list)
    first_hash: dict[str, str] = field(default_factory=dict)
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)  # video id -> last listed object

    def unfinished(self) -> int:
        return sum(1 for v in self.acked if self.latest.get(v, {}).get("status") in (None, "queued", "in_progress"))


def list_all(client: httpx.Client) -> dict[str, dict[str, Any]]:
    """Every video, through the list endpoint, a page of 100 at a time."""
    videos: dict[str, dict[str, Any]] = {}
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100, "order": "asc"}
        if after is not None:
            params["after"] = after
        r = client.get("/v1/videos", params=params)
        r.raise_for_status()
        page = r.json()
        for video in page["data"]:
            videos[video["id"]] = video
        if not page["has_more"] or not page["data"]:
            return videos
        after = page["last_id"]


def content_hash(client: httpx.Client, video_id: str) -> str:
    r = client.get(f"/v1/videos/{video_id}/content")
    r.raise_for_status()
    return hashlib.sha256(r.content).hexdigest()


def observe(client: httpx.Client, ledger: Ledger) -> None:
    """List every video and hash the mp4s completed since the last look."""
    ledger.latest = list_all(client)
    for video_id, video in ledger.latest.items():
        if video["status"] == "completed" and video_id not in ledger.first_hash:
            ledger.first_hash[video_id] = content_hash(client, video_id)


@dataclass
class ChaosResult:
    kills: int
    seconds: float
    submitted: int
    acked: int
    completed: int
    failed: dict[str, int]
    unfinished: int
    lost: int
    regenerated: int
    orphans: int
    missing_media: int
    temp_files: int
    unacked_listed: int  # accepted by a server killed before it could answer: in the list, never acked
    restarts_s: list[float]

    @property
    def ok(self) -> bool:
        misses = (self.unfinished, self.lost, self.regenerated, self.orphans, self.missing_media)
        return sum(self.failed.values()) == 0 and not any(misses)

    def report(self) -> str:
        failed = ", ".join(f"{code}={n}" for code, n in sorted(self.failed.items())) or "none"
        start = sorted(self.restarts_s)
        return "\n".join(
            [
                f"kills:        {self.kills} in {self.seconds:.0f} s "
                f"(restart to ready: median {start[len(start) // 2]:.1f} s)",
                f"submitted:    {self.submitted}",
                f"acked:        {self.acked} (+{self.unacked_listed} accepted but never acked: the server died first)",
                f"completed:    {self.completed}",
                f"failed:       {sum(self.failed.values())} ({failed})",
                f"unfinished:   {self.unfinished}",
                f"lost:         {self.lost}",
                f"regenerated:  {self.regenerated}",
                f"orphans:      {self.orphans} media files no task refers to; "
                f"{self.missing_media} files of completed videos missing; {self.temp_files} temp files",
                "targets:      " + ("met" if self.ok else "MISSED") + " (0 failed, 0 lost, 0 regenerated, 0 orphans)",
            ]
        )


def media_check(home: Path) -> tuple[int, int, int]:
    """(orphans, missing, temp files): the media directory against the tasks table, server stopped."""
    media = home / "media"
    files = {p.name for p in media.iterdir() if p.is_file()} if media.is_dir() else set()
    temps = {n for n in files if n.startswith(TEMP_PREFIX)}
    db = sqlite3.connect(f"file:{home / 'reelchat.db'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT status, deleted, video_name, thumbnail_name, spritesheet_name, image_name FROM tasks"
        ).fetchall()
    finally:
        db.close()
    referenced: set[str] = set()
    missing = 0
    for status, deleted, *names in rows:
        referenced.update(n for n in names if n)
        if status == "completed" and not deleted:
            missing += sum(1 for n in names[:3] if n and n not in files)
    return len(files - temps - referenced), missing, len(temps)


def run_chaos(
    kills: int,
    *,
    rate: float = 2.0,
    up_s: tuple[float, float] = (0.5, 6.0),
    max_backlog: int = 30,
    drain_timeout_s: float = 600.0,
    seed: int | None = None,
    home: Path | None = None,
    demo_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
    say: Callable[[str], None] = print,
) -> ChaosResult:
    """The benchmark's core: `kills` SIGKILLs under load, then a drain; returns the figures.

    `demo_dir`: an already built demo model to link in (tests share one); else the first start builds it.
    """
    rng = random.Random(seed)  # noqa: S311  (reproducible kill times, not a secret)
    home = home or Path(tempfile.mkdtemp(prefix="reelchat-chaos-"))
    home.mkdir(parents=True, exist_ok=True)
    if demo_dir is not None:
        (home / "models").mkdir(parents=True, exist_ok=True)
        (home / "models" / "demo").symlink_to(demo_dir, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELCHAT_")}
    env.update(
        REELCHAT_HOME=str(home),
        REELCHAT_MODELS_JSON=json.dumps(FAST_CATALOG),
        PYTHONUNBUFFERED="1",
        TOKENIZERS_PARALLELISM="false",
        **(extra_env or {}),
    )
    server = Server(home, env)
    ledger = Ledger()
    restarts: list[float] = []
    began = time.monotonic()
    client = httpx.Client(base_url=server.url, trust_env=False, timeout=10.0)
    try:
        for k in range(kills):
            restarts.append(server.start())
            kill_at = time.monotonic() + rng.uniform(*up_s)
            next_submit = next_look = time.monotonic()
            while (now := time.monotonic()) < kill_at:
                with contextlib.suppress(httpx.HTTPError):
                    if now >= next_submit and ledger.unfinished() < max_backlog:
                        ledger.submitted += 1
                        r = client.post("/v1/videos", json={"prompt": f"chaos {ledger.submitted}: a paper boat"})
                        if r.status_code == 200:
                            ledger.acked.append(r.json()["id"])
                        next_submit = now + 1.0 / rate
                    if now >= next_look:
                        observe(client, ledger)
                        next_look = time.monotonic() + 1.0
                time.sleep(max(0.0, min(next_submit, next_look, kill_at) - time.monotonic()))
            server.kill()
            say(
                f"kill {k + 1}/{kills}: {len(ledger.acked)} acked, {len(ledger.first_hash)} completed, "
                f"{ledger.unfinished()} waiting"
            )

        restarts.append(server.start())
        deadline = time.monotonic() + drain_timeout_s
        while True:
            observe(client, ledger)
            if ledger.unfinished() == 0 or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        regenerated = sum(1 for v, h in ledger.first_hash.items() if content_hash(client, v) != h)
        say(f"drained; graceful stop exit status {server.stop()}")
    finally:
        client.close()
        server.kill()
    orphans, missing, temps = media_check(home)
    statuses = Counter(v["status"] for v in ledger.latest.values())
    failed = Counter((v.get("error") or {}).get("code", "?") for v in ledger.latest.values() if v["status"] == "failed")
    return ChaosResult(
        kills=kills,
        seconds=time.monotonic() - began,
        submitted=ledger.submitted,
        acked=len(ledger.acked),
        completed=statuses["completed"],
        failed=dict(failed),
        unfinished=ledger.unfinished(),
        lost=sum(1 for v in ledger.acked if v not in ledger.latest),
        regenerated=regenerated,
        orphans=orphans,
        missing_media=missing,
        temp_files=temps,
        unacked_listed=len(set(ledger.latest) - set(ledger.acked)),
        restarts_s=restarts,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=10, help="SIGKILLs to deliver (default 10)")
    p.add_argument("--rate", type=float, default=2.0, help="submissions per second while the server is up")
    p.add_argument("--max-backlog", type=int, default=30, help="pause submitting while this many wait")
    p.add_argument("--min-up", type=float, default=0.5, help="earliest kill, seconds after ready")
    p.add_argument("--max-up", type=float, default=6.0, help="latest kill, seconds after ready")
    p.add_argument("--drain-timeout", type=float, default=600.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--home", type=Path, default=None, help="REELCHAT_HOME to use (default: a new temp dir)")
    args = p.parse_args(argv)
    if not 1 <= args.kills <= 1000 or not 0 < args.rate <= 50:
        p.error("--kills must be 1..1000 and --rate 0..50")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cpus, python {platform.python_version()}", flush=True)
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    result = run_chaos(
        args.kills,
        rate=args.rate,
        up_s=(args.min_up, args.max_up),
        max_backlog=args.max_backlog,
        drain_timeout_s=args.drain_timeout,
        seed=args.seed,
        home=args.home,
        say=lambda line: print(line, flush=True),
    )
    print(result.report())
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
