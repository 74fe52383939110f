"""Load benchmark for reelchat's streaming chat endpoint (a benchmark script, not a test).

    PYTHONPATH=src .venv/bin/python bench/chat_load.py                 # N = 100 1000 5000, idle and busy
    PYTHONPATH=src .venv/bin/python bench/chat_load.py --n 100 --modes busy --backlog 100

For each N a fresh reelchat starts (a fresh home, the demo model shared; one warm-up video), then:

- idle: N streaming `POST /v1/chat/completions` open at once on the idle server; each one's time to
  its first SSE `data:` line. The streams are then held open (two keep-alives and a second) and the
  API process's RSS (workers excluded) is read: its growth over the wave, divided by N, is the
  memory per idle stream (each is waiting for its queued video);
- busy: `--backlog K` videos are queued through `/v1/videos` and the worker is rendering (its CPU
  time grows) before N more streams open; they close after their first chunk.

Right before each wave, in the same conditions, the same N streams go to a bare Starlette SSE
endpoint under uvicorn with the same settings, which sends one chunk at once: the HTTP stack's own
floor on this machine. Each N and mode runs `--repeat` rounds (bare wave, then ours) and reports the
medians over the rounds: one round's p99 of 100 streams is its slowest stream, and on a small shared
machine one hiccup. A separate process polls GET /healthz every 50 ms throughout. The client is a
bare asyncio socket per stream (httpx can't hold 5,000 streams in one process cheaply), and both
processes lift their open-file limit to the hard one.

Targets (issue 16): first-chunk p99 <= 1.3x bare at N=100 and 1,000, idle and busy; 5,000 streams
held; <= 20 KB RSS per idle stream; /healthz p99 < 50 ms throughout. REELCHAT_EXECUTOR, _WORKERS,
_WORKER_NICE, _WORKER_THREADS and _KEEPALIVE_S pass through to the server.

Everything talks to 127.0.0.1 only; subprocesses are killed at exit (try/finally and atexit).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import functools
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
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
                    timeout_graceful_shutdown=5, backlog=8192)
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


# ------------------------------------------------------------------------------- lean stream client


@dataclass
class StreamResult:
    ttfc_ms: float | None = None
    error: str | None = None


def _request_bytes(host: str, port: int, body: dict[str, Any], headers: dict[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    head = [f"POST {CHAT_PATH} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json"]
    head += [f"Content-Length: {len(payload)}", "Accept: text/event-stream"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


async def raw_stream(
    host: str, port: int, request: bytes, result: StreamResult, first: asyncio.Event, hold: bool
) -> None:
    """One streamed reply over a bare socket (5,000 of them fit in one client process): the time to
    its first `data:` line; with `hold`, the stream then stays open, its keep-alives read and dropped,
    until the task is cancelled."""
    t0 = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        writer.write(request)
        status = await reader.readline()
        if b" 200 " not in status:
            result.error = status.decode(errors="replace").strip()[:120] or "connection closed"
            return
        while (line := await reader.readline()) not in (b"\r\n", b""):
            pass
        while True:
            line = await reader.readline()
            if not line:
                result.error = "closed before the first chunk"
                return
            if line.startswith(b"data:"):
                result.ttfc_ms = (time.perf_counter() - t0) * 1000.0
                break
        first.set()
        while hold and await reader.read(65536):
            pass
    except (OSError, asyncio.IncompleteReadError, ValueError) as e:
        result.error = f"{type(e).__name__}: {e}"[:120]
    finally:
        first.set()
        if writer is not None:
            writer.close()


async def lean_wave(
    url: str, n: int, model: str, tag: str, headers: dict[str, str], *, hold_s: float = 0.0, on_held: Any = None
) -> tuple[list[StreamResult], float, float]:
    """N streams opened at once; the wave ends when each has its first chunk (or failed). With
    `hold_s`, they are then held open that long and `on_held()` is called before they close."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    results = [StreamResult() for _ in range(n)]
    firsts = [asyncio.Event() for _ in range(n)]
    t_start = time.time()
    tasks = [
        asyncio.create_task(
            raw_stream(
                host,
                int(port),
                _request_bytes(
                    host, int(port), _chat_body(model, f"bench {tag} #{i}: a paper boat, take {i}"), headers
                ),
                results[i],
                firsts[i],
                hold_s > 0,
            )
        )
        for i in range(n)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(f.wait() for f in firsts)), timeout=300)
    except TimeoutError:
        for r in results:
            if r.ttfc_ms is None and r.error is None:
                r.error = "no first chunk in 300 s"
    t_end = time.time()
    if hold_s > 0:
        await asyncio.sleep(hold_s)
        if on_held is not None:
            on_held()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return results, t_start, t_end


# --------------------------------------------------------------------------------------- reporting


@dataclass
class Row:
    n: int
    mode: str  # idle | busy
    ours: list[StreamResult] = field(default_factory=list)
    bare: list[StreamResult] = field(default_factory=list)
    healthz_ms: list[float] = field(default_factory=list)
    healthz_errors: int = 0
    rss_per_stream_kb: float | None = None
    server_cpu_cores: float | None = None
    host_load: float | None = None
    rounds: list[dict[str, float | None]] = field(default_factory=list)  # each round's percentiles

    def add_round(self, ours: list[StreamResult], bare: list[StreamResult]) -> None:
        """One round: the bare wave, then ours, back to back."""
        self.ours += ours
        self.bare += bare
        o = [r.ttfc_ms for r in ours if r.ttfc_ms is not None]
        b = [r.ttfc_ms for r in bare if r.ttfc_ms is not None]
        p99, bare_p99 = pct(o, 99), pct(b, 99)
        ratio = p99 / bare_p99 if p99 and bare_p99 else None
        self.rounds.append(
            {"p50": pct(o, 50), "p99": p99, "bare_p50": pct(b, 50), "bare_p99": bare_p99, "ratio": ratio}
        )

    def _median(self, key: str) -> float | None:
        values = [r[key] for r in self.rounds if r[key] is not None]
        return statistics.median(values) if values else None  # type: ignore[type-var]

    def summary(self) -> dict[str, Any]:
        ours = [r.ttfc_ms for r in self.ours if r.ttfc_ms is not None]
        errors = [r.error for r in self.ours if r.error]
        return {
            "n": self.n,
            "mode": self.mode,
            "rounds": len(self.rounds),
            # each the median over the rounds: one round's p99 of 100 streams is its slowest stream
            "ttfc_p50_ms": self._median("p50"),
            "ttfc_p99_ms": self._median("p99"),
            "bare_ttfc_p50_ms": self._median("bare_p50"),
            "bare_ttfc_p99_ms": self._median("bare_p99"),
            "ratio_p99": self._median("ratio"),
            "ratio_p99_rounds": [r["ratio"] for r in self.rounds],
            "streams_ok": len(ours),
            "errors": len(errors),
            "first_error": errors[0] if errors else None,
            "bare_errors": sum(1 for r in self.bare if r.error),
            "rss_per_stream_kb": self.rss_per_stream_kb,
            "server_cpu_cores": self.server_cpu_cores,
            "host_load_avg": self.host_load,
            "healthz_n": len(self.healthz_ms),
            "healthz_errors": self.healthz_errors,
            "healthz_p50_ms": pct(self.healthz_ms, 50),
            "healthz_p99_ms": pct(self.healthz_ms, 99),
            "healthz_max_ms": max(self.healthz_ms) if self.healthz_ms else None,
        }


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'N':>5} | {'mode':>4} | {'1st chunk p50/p99 ms':>21} | {'bare p50/p99 ms':>17} | {'p99 ratio':>9} | "
        f"{'ok/errors':>10} | {'KB/idle stream':>14} | {'/healthz p50/p99/max ms (n)':>30}"
    )
    print(head)
    print("-" * len(head))
    for s in rows:
        ttfc = f"{fmt_ms(s['ttfc_p50_ms'])} / {fmt_ms(s['ttfc_p99_ms'])}"
        bare = f"{fmt_ms(s['bare_ttfc_p50_ms'])} / {fmt_ms(s['bare_ttfc_p99_ms'])}"
        ratio = "-" if s["ratio_p99"] is None else f"{s['ratio_p99']:.2f}x"
        ok = f"{s['streams_ok']}/{s['errors']}"
        rss = "-" if s["rss_per_stream_kb"] is None else f"{s['rss_per_stream_kb']:.1f}"
        hz = f"{fmt_ms(s['healthz_p50_ms'])} / {fmt_ms(s['healthz_p99_ms'])} / {fmt_ms(s['healthz_max_ms'])}"
        hz += f" ({s['healthz_n']})"
        print(f"{s['n']:>5} | {s['mode']:>4} | {ttfc:>21} | {bare:>17} | {ratio:>9} | {ok:>10} | {rss:>14} | {hz:>30}")
    print()
    for s in rows:
        notes = []
        if s["server_cpu_cores"] is not None:
            notes.append(
                f"server+workers CPU {s['server_cpu_cores']:.2f} cores, host load avg {s['host_load_avg']:.2f}"
            )
        if s["first_error"]:
            notes.append(f"first error: {s['first_error']}")
        if s["rounds"] > 1:
            notes.append("p99 ratio by round " + ", ".join(f"{r:.2f}x" for r in s["ratio_p99_rounds"] if r))
        if s["bare_errors"]:
            notes.append(f"bare errors {s['bare_errors']}")
        if s["healthz_errors"]:
            notes.append(f"/healthz non-200 {s['healthz_errors']}")
        print(f"  N={s['n']} {s['mode']}: " + ("; ".join(notes) or "-"))
    print()


def print_targets(rows: list[dict[str, Any]]) -> None:
    for s in rows:
        if s["n"] <= 1000 and s["ratio_p99"] is not None:
            verdict = "PASS" if s["ratio_p99"] <= 1.3 else "FAIL"
            print(f"target: N={s['n']} {s['mode']}: first-chunk p99 <= 1.3x bare: {s['ratio_p99']:.2f}x -> {verdict}")
    for s in rows:
        if s["rss_per_stream_kb"] is not None:
            verdict = "PASS" if s["rss_per_stream_kb"] <= 20.0 else "FAIL"
            print(f"target: N={s['n']} idle: <= 20 KB RSS per stream: {s['rss_per_stream_kb']:.1f} KB -> {verdict}")
    held = [s for s in rows if s["n"] >= 5000]
    for s in held:
        verdict = "PASS" if s["errors"] == 0 else "FAIL"
        print(f"target: {s['n']} streams held ({s['mode']}): {s['streams_ok']} ok, {s['errors']} errors -> {verdict}")
    worst = max(rows, key=lambda s: s["healthz_p99_ms"] or 0.0)
    if worst["healthz_p99_ms"] is not None:
        ok = all((s["healthz_p99_ms"] or 0.0) < 50.0 for s in rows)
        print(
            f"target: /healthz p99 < 50 ms throughout: worst N={worst['n']} {worst['mode']} "
            f"p99 {fmt_ms(worst['healthz_p99_ms'])} ms -> {'PASS' if ok else 'FAIL'}"
        )


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--n", type=int, nargs="+", default=[100, 1000, 5000], help="streams at once (default 100 1000 5000)"
    )
    p.add_argument("--modes", nargs="+", choices=["idle", "busy"], default=["idle", "busy"])
    p.add_argument("--backlog", type=int, default=100, metavar="K", help="videos queued before a busy wave (100)")
    p.add_argument("--hold", type=float, default=None, help="seconds idle streams stay open (default 2 keep-alives)")
    p.add_argument("--repeat", type=int, default=3, metavar="R", help="rounds per N and mode; medians reported (3)")
    p.add_argument("--model", default="sora-2")
    p.add_argument("--steps", type=int, default=2, help="denoising steps for --model (own server; 0 = catalog's)")
    p.add_argument("--url", help="use this running server (http://127.0.0.1:PORT) instead of starting one per N")
    p.add_argument("--api-key", help="bearer token for --url servers with keys")
    p.add_argument("--json", metavar="PATH", help="also write the numbers as JSON here")
    p.add_argument("--healthz-interval", type=float, default=0.05, help="seconds between /healthz probes")
    p.add_argument("--log-level", default="info", help="uvicorn log level of both servers (reelchat's default: info)")
    p.add_argument("--server-start-timeout", type=float, default=600.0)
    p.add_argument("--keep-home", action="store_true", help="keep the temp directory (path printed)")
    p.add_argument("--models-json", default=None, help="extra REELCHAT_MODELS_JSON merged under --steps (own server)")
    # internal: the /healthz poller child process
    p.add_argument("--_poll", help=argparse.SUPPRESS)
    p.add_argument("--_out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args._poll:
        if any(n < 1 or n > 20000 for n in args.n):
            p.error("--n values must be within 1..20000")
        if args.url and not re.match(r"^https?://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/?$", args.url):
            p.error("--url must point at 127.0.0.1 / localhost (this benchmark only talks to loopback)")
    return args


PASSED_THROUGH = ("REELCHAT_EXECUTOR", "REELCHAT_WORKERS", "REELCHAT_WORKER_NICE", "REELCHAT_WORKER_THREADS")


def raise_open_files() -> None:
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def api_rss(pid: int | None) -> int | None:
    """The API process's own RSS (its worker processes are not stream memory)."""
    if pid is None:
        return None
    with contextlib.suppress(psutil.Error):
        return int(psutil.Process(pid).memory_info().rss)
    return None


def wait_busy(pid: int | None, url: str, headers: dict[str, str], timeout_s: float = 120.0) -> None:
    """Until the server's worker processes burn CPU (the model renders); by the videos list if remote."""
    if pid is None:
        asyncio.run(wait_rendering(url, headers, timeout_s))
        return
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(psutil.Error):
        server = psutil.Process(pid)
        while time.monotonic() < deadline:
            kids = server.children(recursive=True)
            before = sum(k.cpu_times().user for k in kids)
            time.sleep(1.0)
            if sum(k.cpu_times().user for k in kids) - before > 0.3:
                return


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._poll:
        return healthz_poller_main(args._poll, args._out, args.healthz_interval)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    raise_open_files()
    work = Path(tempfile.mkdtemp(prefix="reelchat-bench-"))
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    run_id = uuid.uuid4().hex[:8]
    info = machine_info()
    rows: list[Row] = []
    sampler: RssSampler | None = None
    poller: subprocess.Popen[bytes] | None = None
    hz_file = work / "healthz.txt"
    keepalive_s = float(os.environ.get("REELCHAT_KEEPALIVE_S", "3"))
    hold_s = args.hold if args.hold is not None else 2 * keepalive_s + 1

    def start_server(index: int) -> tuple[str, subprocess.Popen[bytes]]:
        """A fresh server on a fresh home (the demo model built once, shared): no leftover queue."""
        home = work / f"home-{index}"
        home.mkdir()
        if index > 0:
            (home / "models").symlink_to(work / "home-0" / "models")
        overrides: dict[str, Any] = json.loads(args.models_json) if args.models_json else {}
        if args.steps > 0:
            overrides.setdefault(args.model, {})["steps"] = args.steps
        env = {k: v for k, v in os.environ.items() if not k.startswith("REELCHAT_") or k in PASSED_THROUGH}
        env.update(REELCHAT_HOME=str(home), PYTHONUNBUFFERED="1", REELCHAT_KEEPALIVE_S=str(keepalive_s))
        # every stream and backlog video comes from one (open) tenant: no cap may answer 429
        env.update(REELCHAT_MAX_QUEUED="1000000", REELCHAT_MAX_QUEUED_PER_KEY="1000000")
        env.update(REELCHAT_MAX_STREAMS_PER_KEY="1000000")
        if overrides:
            env["REELCHAT_MODELS_JSON"] = json.dumps(overrides)
        cmd = [sys.executable, "-m", "reelchat.cli", "serve", "--host", HOST, "--port", str(free_port())]
        cmd += ["--log-level", args.log_level]
        log_path = work / f"reelchat-{index}.log"
        proc = spawn(cmd, env, log_path)
        url = f"http://{HOST}:{cmd[cmd.index('--port') + 1]}"
        wait_healthy(url, proc, args.server_start_timeout, log_path)
        return url, proc

    def start_poller(url: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, str(Path(__file__).resolve()), "--_poll", url, "--_out", str(hz_file)]
        argv += ["--healthz-interval", str(args.healthz_interval)]
        return spawn(argv, dict(os.environ), work / "poller.log")

    try:
        app_file = work / "bare_sse.py"
        app_file.write_text(BARE_APP)
        bare_port = free_port()
        bare_env = dict(os.environ, PYTHONUNBUFFERED="1")
        bare_proc = spawn([sys.executable, str(app_file), str(bare_port), args.log_level], bare_env, work / "bare.log")
        bare_url = f"http://{HOST}:{bare_port}"
        wait_healthy(bare_url, bare_proc, 60, work / "bare.log")
        asyncio.run(lean_wave(bare_url, 10, "bare", f"{run_id} warm", {}))
        print(
            f"machine: {info['cpu_count']} CPUs (affinity {info['cpu_affinity']}), {info['cpu_model']}, "
            f"{info['mem_total_mb']} MB RAM; Python {info['python']}; model {args.model}, steps {args.steps}; "
            f"backlog {args.backlog}; keep-alive {keepalive_s} s",
            flush=True,
        )
        busy = other_busy_processes({os.getpid()})
        if busy:
            print(f"WARNING: other busy processes share this machine (numbers will be noisy): {busy}", flush=True)

        for index, n in enumerate(args.n):
            if args.url:
                url, server_pid = args.url.rstrip("/"), None
            else:
                print(f"N={n}: starting a fresh reelchat...", flush=True)
                url, server = start_server(index)
                server_pid = server.pid
                # one video first: the worker's first render pays for its warm-up, not the wave
                warm, _, _ = asyncio.run(run_wave(url, 1, args.model, f"{run_id} warm {n}", 900.0, headers))
                if not (warm and warm[0].completed):
                    print(f"  warm-up video did not complete: {warm and (warm[0].error or warm[0].failed_text)}")
            if sampler is not None:
                sampler.stop()
            sampler = RssSampler(server_pid, 0.5) if server_pid else None
            if sampler is not None:
                sampler.start()
            if poller is not None:
                _kill(poller)
            poller = start_poller(url)
            time.sleep(1.0)
            for mode in args.modes:
                row = Row(n, mode)
                if mode == "busy":
                    asyncio.run(queue_backlog(url, args.backlog, args.model, f"{run_id} n{n}", headers))
                    wait_busy(server_pid, url, headers)
                t0 = t1 = time.time()
                for round_no in range(args.repeat):
                    tag = f"{run_id} {mode} {n} r{round_no}"
                    bare, _, _ = asyncio.run(lean_wave(bare_url, n, "bare", f"{tag} bare", {}))
                    time.sleep(1.0)
                    before = api_rss(server_pid)
                    held: list[int | None] = []
                    print(f"N={n} {mode}: {n} streams at once (round {round_no + 1} of {args.repeat})...", flush=True)
                    hold = hold_s if mode == "idle" and round_no == 0 else 0.0  # memory: the first round
                    ours, t_start, t1 = asyncio.run(
                        lean_wave(
                            url,
                            n,
                            args.model,
                            tag,
                            headers,
                            hold_s=hold,
                            on_held=functools.partial(lambda out, pid: out.append(api_rss(pid)), held, server_pid),
                        )
                    )
                    t0 = t_start if round_no == 0 else t0
                    t1 += hold
                    row.add_round(ours, bare)
                    if held and held[0] is not None and before is not None:
                        row.rss_per_stream_kb = (held[0] - before) / 1024 / n
                    if round_no + 1 < args.repeat:
                        time.sleep(2.0)  # the closed streams' tasks unwind
                t_hz = t1
                row.healthz_ms, row.healthz_errors = read_healthz(hz_file, t0, t_hz)
                if sampler is not None:
                    row.server_cpu_cores, row.host_load = sampler.cpu_share(t0, t_hz)
                rows.append(row)
                s = row.summary()
                print(
                    f"N={n} {mode}: 1st chunk p99 {fmt_ms(s['ttfc_p99_ms'])} ms (bare {fmt_ms(s['bare_ttfc_p99_ms'])}),"
                    f" {s['errors']} errors, /healthz p99 {fmt_ms(s['healthz_p99_ms'])} ms",
                    flush=True,
                )
                time.sleep(2.0)  # the closed streams' tasks unwind
            if not args.url:
                _kill(server)

        summary = [r.summary() for r in rows]
        print()
        print_table(summary)
        print_targets(summary)
        if args.json:
            Path(args.json).write_text(json.dumps({"machine": info, "summary": summary}, indent=1))
            print(f"numbers: {args.json}")
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
