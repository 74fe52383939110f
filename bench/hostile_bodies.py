"""How long hostile chat bodies hold reelchat's event loop (a benchmark script, not a test).

    .venv/bin/python bench/hostile_bodies.py --rounds 5

Starts `reelchat serve` on 127.0.0.1 with the demo model, then a thread polls `GET /healthz` every
`--interval` seconds while the review's hostile bodies arrive one after another, `--rounds` times:
a history of `sid:` and 16,000 spaces, a 60,000-character turn, 200,000 small messages (17 MB), a
25 MB message, and 100,000 text parts. It prints each body's status and time, and `/healthz`
p50 / p99 / max during the attack against an idle baseline. Target: `/healthz` p99 under 50 ms,
so that no single request holds the loop for more than that.

Everything talks to 127.0.0.1 only; the server is killed at exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `bench`
from bench.chat_load import fmt_ms, free_port, kill_children, machine_info, pct, spawn, wait_healthy


def _msg(role: str, content: Any) -> dict[str, Any]:
    return {"role": role, "content": content}


def hostile_bodies() -> dict[str, bytes]:
    sid_spaces = "sid:" + " " * 16_000 + "s_zz"
    bodies: dict[str, Any] = {
        "history: sid + 16k spaces": [_msg("user", "a cat"), _msg("assistant", sid_spaces), _msg("user", "more")],
        "turn: 60k characters": [_msg("user", "sid:" + " " * 60_000 + "s_")],
        "200k small messages (17 MB)": [_msg("assistant", "x" * 50)] * 200_000,
        "one 25 MB message": [_msg("assistant", " " * 24_000_000), _msg("user", "x" * 40_000)],
        "100k text parts": [_msg("user", [{"type": "text", "text": "x"}] * 100_000)],
    }
    return {name: json.dumps({"model": "sora-2", "messages": m}).encode() for name, m in bodies.items()}


def wait_ready(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=5, trust_env=False) as c:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if c.get("/readyz").status_code == 200:
                    return
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready in {timeout_s:.0f} s")


class Poller(threading.Thread):
    def __init__(self, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.samples: list[tuple[float, float]] = []  # (when, latency)
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120, trust_env=False) as c:
            while not self.stop.is_set():
                started = time.perf_counter()
                c.get("/healthz")
                self.samples.append((started, time.perf_counter() - started))
                time.sleep(self.interval)

    def between(self, t0: float, t1: float) -> list[float]:
        return [lat * 1000 for when, lat in self.samples if t0 <= when <= t1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--interval", type=float, default=0.005, help="seconds between /healthz polls")
    ap.add_argument("--url", help="an already running server (else one is started)")
    args = ap.parse_args()

    info = machine_info()
    print(f"machine: {info['cpu_count']} CPUs, {info['cpu_model']}, {info['mem_total_mb']} MB RAM")
    work = Path(tempfile.mkdtemp(prefix="reelchat-hostile-"))
    try:
        url = args.url
        if url is None:
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("REELCHAT_")}
            env.update(REELCHAT_HOME=str(work / "home"), PYTHONUNBUFFERED="1")
            cmd = [sys.executable, "-m", "reelchat.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
            proc = spawn(cmd, env, work / "server.log")
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc, 600, work / "server.log")
        wait_ready(url, 600)  # the models load after /healthz answers: measure a server at rest
        bodies = hostile_bodies()
        poller = Poller(url, args.interval)
        poller.start()
        time.sleep(2.0)
        t_idle = time.perf_counter()
        idle = poller.between(0, t_idle)
        print(f"/healthz idle: p50 {fmt_ms(pct(idle, 50))} ms, p99 {fmt_ms(pct(idle, 99))} ms ({len(idle)} polls)")
        print(f"{'body':32} {'MB':>6} {'status':>6} {'p50 s':>7} {'max s':>7}")
        t_attack = time.perf_counter()
        with httpx.Client(base_url=url, timeout=600, trust_env=False) as c:
            for name, raw in bodies.items():
                times: list[float] = []
                statuses: set[int] = set()
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    r = c.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
                    times.append(time.perf_counter() - started)
                    statuses.add(r.status_code)
                status = ",".join(str(s) for s in sorted(statuses))
                print(f"{name:32} {len(raw) / 1e6:6.1f} {status:>6} {pct(times, 50) or 0:7.2f} {max(times):7.2f}")
        t_end = time.perf_counter()
        poller.stop.set()
        poller.join()
        attack = poller.between(t_attack, t_end)
        print(
            f"/healthz during the attack: p50 {fmt_ms(pct(attack, 50))} ms, p99 {fmt_ms(pct(attack, 99))} ms, "
            f"max {fmt_ms(max(attack) if attack else None)} ms ({len(attack)} polls); target p99 < 50 ms"
        )
        return 0
    finally:
        kill_children()


if __name__ == "__main__":
    raise SystemExit(main())
