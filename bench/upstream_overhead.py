"""What does going through an upstream cost? Direct reelchat vs reelchat -> upstream reelchat.

Starts two reelchat servers as subprocesses, each with its own REELCHAT_HOME:

- B: a plain reelchat serving the built-in demo model as `sora-2`;
- A: a reelchat whose catalog maps `sora-2` to engine "upstream" at B's /v1 (upstream model `sora-2`).

Then it makes K videos (default 5) one after another through the chat API, non-stream
(`client.chat.completions.create(model="sora-2", messages=[...], stream=False)`, which returns when
the video is done), alternating direct-to-B and through-A so drift (caches, thermals) hits both
alike, after one unmeasured warm-up of each path (B builds its demo model on first use). It prints
per-video wall time p50/mean for both paths and the overhead (through A minus direct) in ms.

The overhead is mostly polling: A polls B every `openai-poll-after-ms` (B's REELCHAT_POLL_AFTER_MS,
1000 ms unless --poll-after-ms says otherwise), so a finished video waits up to one interval before A
sees it; then A downloads the mp4 and thumbnail and makes its own spritesheet.

    .venv/bin/python bench/upstream_overhead.py [-k 5] [--poll-after-ms 100] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

ROOT = Path(__file__).resolve().parent.parent
REELCHAT = ROOT / ".venv" / "bin" / "reelchat"
PROMPTS = [
    "a red fox runs through fresh snow at dawn",
    "waves breaking on a black sand beach",
    "a paper boat drifting down a rainy street",
    "neon signs flickering in a night market",
    "a hot air balloon rising over green hills",
    "a cat watching goldfish in a bowl",
    "autumn leaves swirling in the wind",
    "a lighthouse beam sweeping through fog",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    home: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_server(name: str, workdir: Path, extra_env: dict[str, str]) -> Server:
    port = free_port()
    home = workdir / name
    home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REELCHAT_")}
    env.update({"REELCHAT_HOME": str(home), **extra_env})
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603  (fixed argv: our own CLI)
            [str(REELCHAT), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, port, home, proc, log_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {name} exited with {proc.returncode}:\n{server.tail()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server {name} did not become healthy:\n{server.tail()}")


def has_videos_api(server: Server) -> bool:
    """Whether B serves the OpenAI Videos API that A's upstream engine needs."""
    try:
        r = httpx.get(f"{server.base_url}/videos", headers={"Authorization": "Bearer bench"}, timeout=5)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


def make_video(client: openai.OpenAI, prompt: str) -> tuple[float, str]:
    """One chat turn, non-stream; returns (wall seconds, the reply) and raises if no video came back."""
    started = time.perf_counter()
    reply = client.chat.completions.create(
        model="sora-2",
        messages=[{"role": "user", "content": prompt}],
        stream=False,
    )
    elapsed = time.perf_counter() - started
    content = reply.choices[0].message.content or ""
    if "sid: s_" not in content:
        raise RuntimeError(f"no video in the reply:\n{content}")
    return elapsed, content


def summary(times: list[float]) -> tuple[float, float]:
    return statistics.median(times) * 1000, statistics.fmean(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", type=int, default=5, help="videos per path (default 5)")
    parser.add_argument(
        "--poll-after-ms", type=int, default=None, help="B's REELCHAT_POLL_AFTER_MS (min 100; B's default 1000)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the servers' homes and logs")
    parser.add_argument("--json", action="store_true", help="also print the raw timings as JSON")
    args = parser.parse_args()
    if not REELCHAT.exists():
        print(f"{REELCHAT} not found: install reelchat into .venv first", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="reelchat-bench-"))
    servers: list[Server] = []
    try:
        b_env = {} if args.poll_after_ms is None else {"REELCHAT_POLL_AFTER_MS": str(args.poll_after_ms)}
        b = start_server("B", workdir, b_env)
        servers.append(b)
        if not has_videos_api(b):
            print("B does not serve GET /v1/videos yet: the upstream path can't be measured.", file=sys.stderr)
            return 3
        catalog = {
            "sora-2": {
                "engine": "upstream",
                "upstream": {
                    "base_url": b.base_url,
                    "model": "sora-2",
                    "request_timeout_s": 60,
                    "deadline_s": 1800,
                },
            }
        }
        a = start_server("A", workdir, {"REELCHAT_MODELS_JSON": json.dumps(catalog)})
        servers.append(a)
        direct = openai.OpenAI(base_url=b.base_url, api_key="bench", max_retries=0, timeout=1800)
        via = openai.OpenAI(base_url=a.base_url, api_key="bench", max_retries=0, timeout=1800)

        print(f"B (direct)       {b.base_url}  home {b.home}")
        print(f"A (via upstream) {a.base_url}  home {a.home} -> B")
        print("warm-up (unmeasured): B builds the demo model on first use ...", flush=True)
        for client in (direct, via):
            make_video(client, "warm-up: a spinning top")

        times: dict[str, list[float]] = {"direct": [], "via upstream": []}
        for i in range(args.k):
            prompt = PROMPTS[i % len(PROMPTS)]
            for label, client in (("direct", direct), ("via upstream", via)):
                elapsed, _ = make_video(client, f"{prompt} (take {i + 1})")
                times[label].append(elapsed)
                print(f"  video {i + 1}/{args.k} {label:>12}: {elapsed * 1000:8.0f} ms", flush=True)

        poll = args.poll_after_ms if args.poll_after_ms is not None else 1000
        d_p50, d_mean = summary(times["direct"])
        v_p50, v_mean = summary(times["via upstream"])
        print()
        print(f"K={args.k} videos per path, sequential; B's openai-poll-after-ms = {poll}")
        print(f"{'path':>14} {'p50 ms':>10} {'mean ms':>10}")
        print(f"{'direct':>14} {d_p50:10.0f} {d_mean:10.0f}")
        print(f"{'via upstream':>14} {v_p50:10.0f} {v_mean:10.0f}")
        print(f"{'overhead':>14} {v_p50 - d_p50:10.0f} {v_mean - d_mean:10.0f}")
        if args.json:
            print(json.dumps({"poll_after_ms": poll, **{k: [round(t, 4) for t in v] for k, v in times.items()}}))
        return 0
    except Exception as e:
        print(f"bench failed: {e}", file=sys.stderr)
        for server in servers:
            print(f"--- {server.name} log tail ---\n{server.tail()}", file=sys.stderr)
        return 1
    finally:
        for server in reversed(servers):
            server.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
