"""Load benchmark for reelchat's streaming chat endpoint (a benchmark script, not a test).

    .venv/bin/python bench/chat_load.py --n 1 10 100

For each N it fires N concurrent streaming `POST /v1/chat/completions` requests (distinct prompts) at a
reelchat server and measures, per request, the time to the first SSE `data:` line; it then waits for every
video to finish (the server renders one at a time). Meanwhile a separate process polls GET /healthz every
50 ms and a thread samples the server's RSS (with children) every 100 ms. The same N requests also go to a
bare Starlette SSE endpoint under uvicorn with the same settings: the HTTP stack's own limit.

With `--backlog K`, K videos are queued first (and rendering) before each N: the busy case. Its
streams are closed after their first chunk, since the videos behind the backlog would take long.
Set REELCHAT_EXECUTOR=inprocess in the environment to compare engines in the API process.

Targets (from the issue): first-chunk p99 within 2x of the bare endpoint at N=100; /healthz p99 < 50 ms.

Everything talks to 127.0.0.1 only; subprocesses are killed at exit (try/finally and atexit).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

HOST = "127.0.0.1"
CHAT_PATH = "/v1/chat/completions"

# --------------------------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100); None for no data."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def machine_info() -> dict[str, Any]:
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu_model": model,
        "mem_total_mb": round(psutil.virtual_memory().total / 2**20),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def other_busy_processes(exclude: set[int], window_s: float = 1.0, threshold: float = 20.0) -> list[str]:
    """Processes (not ours) using more than `threshold` % of a core over `window_s`: a shared machine."""
    procs = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
            procs.append(p)
    time.sleep(window_s)
    busy = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            if p.pid not in exclude and p.cpu_percent(None) > threshold:
                busy.append(f"pid {p.pid}: {' '.join(p.info['cmdline'] or [])[:80]}")
    return busy


# ------------------------------------------------------------------------------------ subprocesses

_CHILDREN: list[subprocess.Popen[bytes]] = []


def _kill(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop one child we started (and its own process group, which it leads)."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)


def kill_children() -> None:
    while _CHILDREN:
        _kill(_CHILDREN.pop())


atexit.register(kill_children)


def _on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "wb")  # noqa: SIM115  (lives as long as the child)
    proc = subprocess.Popen(  # noqa: S603  (argv built by this script)
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    log.close()
    _CHILDREN.append(proc)
    return proc


def wait_healthy(url: str, proc: subprocess.Popen[bytes] | None, timeout_s: float, log_path: Path | None) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(trust_env=False, timeout=2.0) as c:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:] if log_path else ""
                raise RuntimeError(f"server exited with {proc.returncode} before becoming healthy:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if c.get(url + "/healthz").status_code == 200:
                    return
            time.sleep(0.2)
    raise RuntimeError(f"{url} not healthy after {timeout_s:.0f} s")


BARE_APP = textwrap.dedent(
    '''
    """The HTTP stack's floor: one Starlette SSE route, served like `reelchat serve` serves its app."""
    import json, sys, time

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def chat(request: Request) -> StreamingResponse:
        await request.body()
        chunk = {"id": "chatcmpl-bare", "object": "chat.completion.chunk", "created": int(time.time()),
                 "model": "bare", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                 "finish_reason": None}]}

        async def stream():
            yield b"data: " + json.dumps(chunk).encode() + b"\\n\\n"
            yield b"data: [DONE]\\n\\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/healthz", healthz)])

    if __name__ == "__main__":
        # the same uvicorn.run() arguments as reelchat/cli.py serve()
        uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), proxy_headers=False, log_level=sys.argv[2],
                    timeout_graceful_shutdown=5)
    '''
)


# ----------------------------------------------------------------------------------- the pollers


def healthz_poller_main(url: str, out: str, interval: float) -> int:
    """Child-process mode: GET url/healthz every `interval` s (one keep-alive connection), append
    `<unix time> <latency ms> <status>` lines to `out` until killed. A separate process so the load
    generator's own event loop never delays a probe."""
    signal.signal(signal.SIGTERM, _on_signal)
    parent = os.getppid()
    with open(out, "a", buffering=1) as f, httpx.Client(trust_env=False, timeout=10.0) as c:
        nxt = time.monotonic()
        while os.getppid() == parent:  # never outlive the benchmark
            t_wall = time.time()
            t0 = time.perf_counter()
            try:
                status = c.get(url + "/healthz").status_code
            except httpx.HTTPError:
                status = 0
            lat = (time.perf_counter() - t0) * 1000.0
            f.write(f"{t_wall:.6f} {lat:.3f} {status}\n")
            nxt += interval
            delay = nxt - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                nxt = time.monotonic()
    return 0


def read_healthz(path: Path, t_from: float, t_to: float) -> tuple[list[float], int]:
    lat: list[float] = []
    errors = 0
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 3:
                continue
            t, ms, status = float(parts[0]), float(parts[1]), int(parts[2])
            if t_from <= t <= t_to:
                lat.append(ms)
                errors += status != 200
    return lat, errors


class RssSampler(threading.Thread):
    """Samples RSS of a pid plus its children every `interval` s; peak() over a time window.

    Also records the server's CPU seconds and the host's 1-minute load average, so a run on a busy
    (shared) machine shows it: the server's CPU share and the load tell contention from slowness."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.cpu: list[tuple[float, float, float]] = []  # (time, server cpu s, load avg 1m)
        self._stop_evt = threading.Event()

    def run(self) -> None:
        tick = 0
        while not self._stop_evt.is_set():
            try:
                total = self.proc.memory_info().rss
                children = self.proc.children(recursive=True)
                for ch in children:
                    with contextlib.suppress(psutil.Error):
                        total += ch.memory_info().rss
                now = time.time()
                if tick % 10 == 0:  # once a second is plenty for CPU time and load
                    ct = self.proc.cpu_times()
                    cpu_s = ct.user + ct.system
                    for ch in children:
                        with contextlib.suppress(psutil.Error):
                            cct = ch.cpu_times()
                            cpu_s += cct.user + cct.system
                    self.cpu.append((now, cpu_s, os.getloadavg()[0]))
            except psutil.Error:
                return
            self.samples.append((now, total))
            tick += 1
            self._stop_evt.wait(self.interval)

    def cpu_share(self, t_from: float, t_to: float) -> tuple[float | None, float | None]:
        """(server CPU in cores, mean host load average) over a window."""
        window = [c for c in self.cpu if t_from <= c[0] <= t_to]
        if len(window) < 2:
            return None, None
        cores = (window[-1][1] - window[0][1]) / max(1e-9, window[-1][0] - window[0][0])
        return cores, sum(c[2] for c in window) / len(window)

    def stop(self) -> None:
        self._stop_evt.set()

    def peak_mb(self, t_from: float, t_to: float) -> float | None:
        window = [rss for t, rss in self.samples if t_from <= t <= t_to]
        return max(window) / 2**20 if window else None


# ---------------------------------------------------------------------------------- the load runs


@dataclass
class ReqResult:
    i: int
    t_send: float  # unix time
    ttfc_ms: float | None = None  # first `data:` line
    ttid_ms: float | None = None  # first chunk carrying the `> ID:` line (the task row is stored)
    t_end: float | None = None  # unix time the stream ended
    completed: bool = False
    failed_text: str | None = None
    error: str | None = None
    keepalives: int = 0
    chunks: int = 0


def _chat_body(model: str, prompt: str) -> dict[str, Any]:
    return {"model": model, "stream": True, "messages": [{"role": "user", "content": prompt}]}


async def one_stream(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    i: int,
    headers: dict[str, str],
    first_chunk_only: bool = False,
) -> ReqResult:
    t0 = time.perf_counter()
    r = ReqResult(i=i, t_send=time.time())
    content: list[str] = []
    try:
        async with client.stream("POST", url + CHAT_PATH, json=body, headers=headers) as resp:
            if resp.status_code != 200:
                r.error = f"HTTP {resp.status_code}: {(await resp.aread())[:300]!r}"
                return r
            async for line in resp.aiter_lines():
                if line.startswith(":"):
                    r.keepalives += 1
                    continue
                if not line.startswith("data:"):
                    continue
                if r.ttfc_ms is None:
                    r.ttfc_ms = (time.perf_counter() - t0) * 1000.0
                    if first_chunk_only:  # busy runs: the videos behind the backlog would take hours
                        r.completed = True
                        break
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                r.chunks += 1
                with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
                    piece = json.loads(data)["choices"][0]["delta"].get("content") or ""
                    if piece:
                        content.append(piece)
                        if r.ttid_ms is None and "ID:" in piece:
                            r.ttid_ms = (time.perf_counter() - t0) * 1000.0
    except (httpx.HTTPError, OSError) as e:
        r.error = f"{type(e).__name__}: {e}"[:300]
    except asyncio.CancelledError:
        r.error = "cancelled (max wait reached)"
    except Exception as e:  # anything else (e.g. httpx.StreamError): record it, never lose the wave
        r.error = f"{type(e).__name__}: {e}"[:300]
    finally:
        r.t_end = time.time()
    text = "".join(content)
    r.completed = r.completed or ("/media/" in text and ".mp4" in text)
    if not r.completed:
        m = re.search(r"\n> [^\n]*\n> ([^\n]*)$", text)
        r.failed_text = (m.group(1) if m else text[-200:]) or None
    return r


async def queue_backlog(url: str, k: int, model: str, prompt_tag: str, headers: dict[str, str]) -> int:
    """Queue `k` videos through /v1/videos (no stream held); returns how many were accepted."""
    async with httpx.AsyncClient(timeout=60.0, trust_env=False) as client:
        replies = await asyncio.gather(
            *(
                client.post(
                    url + "/v1/videos",
                    json={"model": model, "prompt": f"backlog {prompt_tag} #{i}: a lighthouse in a storm"},
                    headers=headers,
                )
                for i in range(k)
            )
        )
    return sum(1 for r in replies if r.status_code == 200)


async def wait_rendering(url: str, headers: dict[str, str], timeout_s: float = 120.0) -> None:
    """Until some video shows progress: the model is busy rendering."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=30.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            page = (await client.get(url + "/v1/videos?limit=100", headers=headers)).json()
            if any(v.get("status") == "in_progress" and v.get("progress", 0) > 0 for v in page.get("data", [])):
                return
            await asyncio.sleep(0.2)


async def run_wave(
    url: str,
    n: int,
    model: str,
    prompt_tag: str,
    max_wait_s: float,
    headers: dict[str, str],
    first_chunk_only: bool = False,
) -> tuple[list[ReqResult], float, float]:
    """N concurrent streams; returns results and the wave's (start, end) unix times."""
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    timeout = httpx.Timeout(connect=60.0, read=120.0, write=60.0, pool=60.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as client:
        tasks = [
            asyncio.create_task(
                one_stream(
                    client,
                    url,
                    _chat_body(model, f"bench {prompt_tag} #{i}: a paper boat drifting on a rainy street, take {i}"),
                    i,
                    headers,
                    first_chunk_only,
                )
            )
            for i in range(n)
        ]
        t_start = time.time()
        _done, pending = await asyncio.wait(tasks, timeout=max_wait_s)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=30)
        results = [t.result() for t in tasks if t.done() and not t.cancelled()]
        for t in tasks:  # a task cancelled before it started has no result: count it as not completed
            if t.cancelled():
                results.append(ReqResult(i=-1, t_send=t_start, error="cancelled before start", t_end=time.time()))
    return results, t_start, time.time()


# --------------------------------------------------------------------------------------- reporting


@dataclass
class NResult:
    n: int
    reelchat: list[ReqResult] = field(default_factory=list)
    bare: list[ReqResult] = field(default_factory=list)
    wave_start: float = 0.0
    wave_end: float = 0.0
    healthz_ms: list[float] = field(default_factory=list)
    healthz_errors: int = 0
    peak_rss_mb: float | None = None
    server_cpu_cores: float | None = None
    host_load: float | None = None
    timed_out: bool = False

    def summary(self) -> dict[str, Any]:
        rc = [r.ttfc_ms for r in self.reelchat if r.ttfc_ms is not None]
        ids = [r.ttid_ms for r in self.reelchat if r.ttid_ms is not None]
        bare = [r.ttfc_ms for r in self.bare if r.ttfc_ms is not None]
        done = [r for r in self.reelchat if r.completed]
        last_done = max((r.t_end or 0.0) for r in done) if done else None
        span = (last_done - self.wave_start) if last_done else None
        rc_p99, bare_p99 = pct(rc, 99), pct(bare, 99)
        return {
            "n": self.n,
            "ttfc_p50_ms": pct(rc, 50),
            "ttfc_p99_ms": rc_p99,
            "ttfc_max_ms": max(rc) if rc else None,
            "ttid_p50_ms": pct(ids, 50),
            "ttid_p99_ms": pct(ids, 99),
            "bare_ttfc_p50_ms": pct(bare, 50),
            "bare_ttfc_p99_ms": bare_p99,
            "ratio_p99": (rc_p99 / bare_p99) if rc_p99 and bare_p99 else None,
            "completed": len(done),
            "errors": sum(1 for r in self.reelchat if r.error),
            "failed": sum(1 for r in self.reelchat if not r.completed and not r.error),
            "videos_per_min": (len(done) / span * 60.0) if span else None,
            "wall_s": span,
            "peak_rss_mb": self.peak_rss_mb,
            "server_cpu_cores": self.server_cpu_cores,
            "host_load_avg": self.host_load,
            "healthz_n": len(self.healthz_ms),
            "healthz_errors": self.healthz_errors,
            "healthz_p50_ms": pct(self.healthz_ms, 50),
            "healthz_p99_ms": pct(self.healthz_ms, 99),
            "healthz_max_ms": max(self.healthz_ms) if self.healthz_ms else None,
            "timed_out": self.timed_out,
        }


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'N':>4} | {'1st chunk p50/p99 ms':>21} | {'bare p50/p99 ms':>16} | {'p99 ratio':>9} | "
        f"{'done':>7} | {'videos/min':>10} | {'peak RSS MB':>11} | {'/healthz p50/p99/max ms (samples)':>34}"
    )
    print(head)
    print("-" * len(head))
    for s in rows:
        ttfc = f"{fmt_ms(s['ttfc_p50_ms'])} / {fmt_ms(s['ttfc_p99_ms'])}"
        bare = f"{fmt_ms(s['bare_ttfc_p50_ms'])} / {fmt_ms(s['bare_ttfc_p99_ms'])}"
        ratio = "-" if s["ratio_p99"] is None else f"{s['ratio_p99']:.2f}x"
        done = f"{s['completed']}/{s['n']}"
        vpm = "-" if s["videos_per_min"] is None else f"{s['videos_per_min']:.2f}"
        rss = "-" if s["peak_rss_mb"] is None else f"{s['peak_rss_mb']:.0f}"
        hz = (
            f"{fmt_ms(s['healthz_p50_ms'])} / {fmt_ms(s['healthz_p99_ms'])} / {fmt_ms(s['healthz_max_ms'])}"
            f" ({s['healthz_n']})"
        )
        print(f"{s['n']:>4} | {ttfc:>21} | {bare:>16} | {ratio:>9} | {done:>7} | {vpm:>10} | {rss:>11} | {hz:>34}")
    print()
    for s in rows:
        ids = f"{fmt_ms(s['ttid_p50_ms'])}/{fmt_ms(s['ttid_p99_ms'])}"
        extra = [f"N={s['n']}: `> ID:` line (task stored) p50/p99 {ids} ms"]
        extra.append(f"wall {s['wall_s']:.1f} s" if s["wall_s"] else "wall -")
        if s["server_cpu_cores"] is not None:
            extra.append(f"server CPU {s['server_cpu_cores']:.2f} cores, host load avg {s['host_load_avg']:.2f}")
        if s["errors"] or s["failed"]:
            extra.append(f"errors {s['errors']}, failed {s['failed']}")
        if s["healthz_errors"]:
            extra.append(f"/healthz non-200 {s['healthz_errors']}")
        if s["timed_out"]:
            extra.append("MAX WAIT REACHED")
        print("  " + "; ".join(extra))
    print()


def print_targets(rows: list[dict[str, Any]]) -> None:
    big = max(rows, key=lambda s: s["n"])
    if big["ratio_p99"] is not None:
        ok = big["ratio_p99"] <= 2.0
        print(
            f"target: first-chunk p99 within 2x of bare at N={big['n']}: "
            f"{fmt_ms(big['ttfc_p99_ms'])} vs {fmt_ms(big['bare_ttfc_p99_ms'])} ms = {big['ratio_p99']:.2f}x "
            f"-> {'PASS' if ok else 'FAIL'}"
        )
    worst = max(rows, key=lambda s: s["healthz_p99_ms"] or 0.0)
    if worst["healthz_p99_ms"] is not None:
        ok = all((s["healthz_p99_ms"] or 0.0) < 50.0 for s in rows)
        print(
            f"target: /healthz p99 < 50 ms throughout: worst N={worst['n']} p99 {fmt_ms(worst['healthz_p99_ms'])} ms "
            f"-> {'PASS' if ok else 'FAIL'}"
        )


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[1, 10, 100], help="concurrency levels (default 1 10 100)")
    p.add_argument("--model", default="sora-2")
    p.add_argument(
        "--steps",
        type=int,
        default=2,
        help="denoising steps for --model, via REELCHAT_MODELS_JSON (own server only; 0 = catalog default)",
    )
    p.add_argument("--url", help="use this running server (http://127.0.0.1:PORT) instead of starting one")
    p.add_argument("--api-key", help="bearer token for --url servers with keys")
    p.add_argument("--skip-bare", action="store_true", help="don't run the bare Starlette endpoint")
    p.add_argument("--json", metavar="PATH", help="also write raw numbers as JSON here")
    p.add_argument(
        "--max-videos-wait",
        type=float,
        default=None,
        help="seconds to wait for one N's videos to finish (default 180 + 45*N)",
    )
    p.add_argument("--healthz-interval", type=float, default=0.05, help="seconds between /healthz probes")
    p.add_argument("--rss-interval", type=float, default=0.1, help="seconds between RSS samples")
    p.add_argument("--no-warmup", action="store_true", help="skip the one warm-up video (loads the model)")
    p.add_argument(
        "--first-chunk-only",
        action="store_true",
        help="close each stream after its first chunk (implied by --backlog): first-chunk latency without the wait",
    )
    p.add_argument(
        "--backlog",
        type=int,
        default=0,
        metavar="K",
        help="queue K videos first and measure each N's first chunk while they render (the busy case); "
        "streams are closed after their first chunk",
    )
    p.add_argument("--log-level", default="info", help="uvicorn log level of both servers (reelchat's default: info)")
    p.add_argument("--server-start-timeout", type=float, default=600.0)
    p.add_argument("--keep-home", action="store_true", help="keep the temp REELCHAT_HOME (path printed)")
    p.add_argument(
        "--models-json", default=None, help="extra REELCHAT_MODELS_JSON overrides merged under --steps (own server)"
    )
    # internal: the /healthz poller child process
    p.add_argument("--_poll", help=argparse.SUPPRESS)
    p.add_argument("--_out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args._poll:
        if any(n < 1 or n > 2000 for n in args.n):
            p.error("--n values must be within 1..2000")
        if args.url and not re.match(r"^https?://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/?$", args.url):
            p.error("--url must point at 127.0.0.1 / localhost (this benchmark only talks to loopback)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._poll:
        return healthz_poller_main(args._poll, args._out, args.healthz_interval)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    work = Path(tempfile.mkdtemp(prefix="reelchat-bench-"))
    home = work / "home"
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    run_id = uuid.uuid4().hex[:8]
    results: list[NResult] = []
    info = machine_info()
    catalog_lines: list[str] = []
    server_proc: subprocess.Popen[bytes] | None = None
    poller: subprocess.Popen[bytes] | None = None
    sampler: RssSampler | None = None
    server_log = work / "reelchat.log"

    def start_server() -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        overrides: dict[str, Any] = json.loads(args.models_json) if args.models_json else {}
        if args.steps > 0:
            overrides.setdefault(args.model, {})["steps"] = args.steps
        # REELCHAT_EXECUTOR passes through: the same run with engines in or out of the API process
        env = {k: v for k, v in os.environ.items() if not k.startswith("REELCHAT_") or k == "REELCHAT_EXECUTOR"}
        env.update(REELCHAT_HOME=str(home), PYTHONUNBUFFERED="1")
        # the backlog and the streams come from one (open) tenant: its caps must not answer 429
        env.update(REELCHAT_MAX_QUEUED_PER_KEY="100000", REELCHAT_MAX_STREAMS_PER_KEY="100000")
        if overrides:
            env["REELCHAT_MODELS_JSON"] = json.dumps(overrides)
        cmd = [sys.executable, "-m", "reelchat.cli", "serve", "--host", HOST, "--port", str(port)]
        cmd += ["--log-level", args.log_level]
        proc = spawn(cmd, env, server_log)
        url = f"http://{HOST}:{port}"
        wait_healthy(url, proc, args.server_start_timeout, server_log)
        return url, proc

    try:
        # ---- servers
        if args.url:
            url = args.url.rstrip("/")
            wait_healthy(url, None, 30, None)
            server_pid = None
            with contextlib.suppress(Exception):  # find the listening process to sample its RSS (same host)
                port = int(url.rsplit(":", 1)[1])
                for conn in psutil.net_connections("tcp"):
                    if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                        server_pid = conn.pid
                        break
            with httpx.Client(trust_env=False, timeout=10) as c:
                models = c.get(url + "/v1/models", headers=headers).json().get("data", [])
            catalog_lines = [
                f"{m['id']}: {'/'.join(m.get('seconds', []))}s, {'/'.join(m.get('sizes', []))}, {m.get('fps')} fps "
                f"(steps not exposed by /v1/models)"
                for m in models
            ]
        else:
            print(f"starting reelchat (REELCHAT_HOME={home}; the first start builds the demo model)...", flush=True)
            url, server_proc = start_server()
            server_pid = server_proc.pid
            catalog_lines = [
                ln.split("reelchat: model ", 1)[1]
                for ln in server_log.read_text(errors="replace").splitlines()
                if ln.startswith("reelchat: model ")
            ]

        bare_url = None
        if not args.skip_bare:
            app_file = work / "bare_sse.py"
            app_file.write_text(BARE_APP)
            bare_port = free_port()
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            bare_proc = spawn([sys.executable, str(app_file), str(bare_port), args.log_level], env, work / "bare.log")
            bare_url = f"http://{HOST}:{bare_port}"
            wait_healthy(bare_url, bare_proc, 60, work / "bare.log")
            asyncio.run(run_wave(bare_url, 2, "bare", f"{run_id} bare warmup", 30.0, {}))  # first-request costs

        print()
        print(
            f"machine: {info['cpu_count']} CPUs (affinity {info['cpu_affinity']}, physical {info['physical_cores']}), "
            f"{info['cpu_model']}, {info['mem_total_mb']} MB RAM; Python {info['python']}; {info['platform']}"
        )
        print(f"server: {url}{' (external)' if args.url else ''}; pid {server_pid}; bare endpoint: {bare_url or '-'}")
        print("catalog:")
        for ln in catalog_lines:
            print(f"  {ln}")
        print(f"benchmark model: {args.model}", flush=True)
        busy = other_busy_processes({os.getpid(), server_pid or -1})
        if busy:
            print(f"WARNING: other busy processes share this machine (numbers will be noisy): {busy}", flush=True)

        # ---- samplers
        if server_pid is not None:
            sampler = RssSampler(server_pid, args.rss_interval)
            sampler.start()
        hz_file = work / "healthz.txt"

        def start_poller(url: str) -> subprocess.Popen[bytes]:
            """The /healthz poller, in its own process so the load generator can't delay it."""
            argv = [sys.executable, str(Path(__file__).resolve()), "--_poll", url, "--_out", str(hz_file)]
            argv += ["--healthz-interval", str(args.healthz_interval)]
            return spawn(argv, dict(os.environ), work / "poller.log")

        poller = start_poller(url)

        if not args.no_warmup:
            print("warm-up: one video (loads the engine)...", flush=True)
            t0 = time.time()
            warm, _, _ = asyncio.run(run_wave(url, 1, args.model, f"{run_id} warmup", 900.0, headers))
            w = warm[0] if warm else None
            print(
                f"warm-up: {'ok' if w and w.completed else 'NOT completed: ' + str(w and (w.error or w.failed_text))}"
                f" in {time.time() - t0:.1f} s",
                flush=True,
            )
        # idle /healthz baseline
        t_idle = time.time()
        time.sleep(2.0)
        idle, _ = read_healthz(hz_file, t_idle, time.time())
        print(
            f"/healthz idle baseline: p50 {fmt_ms(pct(idle, 50))} ms, p99 {fmt_ms(pct(idle, 99))} ms "
            f"({len(idle)} samples)",
            flush=True,
        )

        for n in args.n:
            res = NResult(n=n)
            max_wait = args.max_videos_wait if args.max_videos_wait is not None else 180.0 + 45.0 * n
            if bare_url:
                res.bare, _, _ = asyncio.run(run_wave(bare_url, n, "bare", f"{run_id} bare n{n}", 120.0, {}))
                time.sleep(0.5)
            if args.backlog:
                accepted = asyncio.run(queue_backlog(url, args.backlog, args.model, f"{run_id} n{n}", headers))
                asyncio.run(wait_rendering(url, headers))
                print(f"N={n}: {accepted} videos queued first; the model is rendering", flush=True)
            print(f"N={n}: {n} concurrent streams (max wait {max_wait:.0f} s)...", flush=True)
            res.reelchat, res.wave_start, res.wave_end = asyncio.run(
                run_wave(
                    url,
                    n,
                    args.model,
                    f"{run_id} n{n}",
                    max_wait,
                    headers,
                    first_chunk_only=args.backlog > 0 or args.first_chunk_only,
                )
            )
            res.timed_out = any(r.error and "cancelled" in r.error for r in res.reelchat)
            res.healthz_ms, res.healthz_errors = read_healthz(hz_file, res.wave_start, res.wave_end)
            if sampler is not None:
                res.peak_rss_mb = sampler.peak_mb(res.wave_start, res.wave_end)
                res.server_cpu_cores, res.host_load = sampler.cpu_share(res.wave_start, res.wave_end)
            results.append(res)
            s = res.summary()
            print(
                f"N={n}: done {s['completed']}/{n}, 1st chunk p99 {fmt_ms(s['ttfc_p99_ms'])} ms "
                f"(bare {fmt_ms(s['bare_ttfc_p99_ms'])}), /healthz p99 {fmt_ms(s['healthz_p99_ms'])} ms",
                flush=True,
            )
            if res.timed_out and server_proc is not None and n != args.n[-1]:
                # queued leftovers would pollute the next N: start over on a fresh process
                print("  (max wait reached: restarting the server so the next N starts idle)", flush=True)
                if sampler is not None:
                    sampler.stop()
                _kill(server_proc)
                url, server_proc = start_server()
                server_pid = server_proc.pid
                sampler = RssSampler(server_pid, args.rss_interval)
                sampler.start()
                _kill(poller)
                poller = start_poller(url)

        # ---- report
        rows = [r.summary() for r in results]
        print()
        print(
            f"machine: {info['cpu_count']} CPUs, {info['cpu_model']}; model {args.model}"
            f"{'' if args.url or args.steps <= 0 else f', steps={args.steps}'}"
        )
        print_table(rows)
        print_targets(rows)
        if args.json:
            dump = {
                "machine": info,
                "catalog": catalog_lines,
                "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                "healthz_idle_ms": idle,
                "summary": rows,
                "raw": [
                    {
                        "n": r.n,
                        "wave_start": r.wave_start,
                        "wave_end": r.wave_end,
                        "reelchat": [asdict(x) for x in r.reelchat],
                        "bare": [asdict(x) for x in r.bare],
                        "healthz_ms": r.healthz_ms,
                    }
                    for r in results
                ],
                "rss_samples": sampler.samples if sampler else [],
            }
            Path(args.json).write_text(json.dumps(dump, indent=1))
            print(f"raw numbers: {args.json}")
        return 0
    finally:
        if sampler is not None:
            sampler.stop()
        kill_children()
        if args.keep_home:
            print(f"kept {work}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
