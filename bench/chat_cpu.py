"""The API's CPU per chat request up to its first chunk, against the bare Starlette endpoint of
`bench/chat_load.py`, with no network in between (a benchmark script, not a test).

    PYTHONPATH=src .venv/bin/python bench/chat_cpu.py               # 2,000 requests, one at a time
    PYTHONPATH=src .venv/bin/python bench/chat_cpu.py --n 5000 --burst 1000

Both apps are called in this process as uvicorn calls them (the same ASGI scope, the body at once),
one request at a time: the main thread's CPU time per request, until the reply's first body bytes
(the client then leaves, as `http.disconnect`). `--burst K` also starts K at once and reports the
wall time until the last first chunk. What `chat_load.py` measures end to end over sockets, this
isolates: the part of a first-chunk time that is the app's own work. A fresh home is made in a
temporary directory (the demo model is built there once); the videos queue and the worker renders
them in its own process.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `bench`
from bench.chat_load import BARE_APP

Scope = dict[str, Any]
App = ASGIApp


def _scope(body: bytes) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"accept", b"text/event-stream"),
        ],
        "state": {},
    }


def _client(body: bytes, leaves: asyncio.Event) -> Callable[[], Awaitable[dict[str, Any]]]:
    """A client's ASGI receive: the whole body at once, then `http.disconnect` once `leaves` is set."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await leaves.wait()
        return {"type": "http.disconnect"}

    return receive


async def one(app: App, body: bytes) -> float:
    """Main-thread CPU seconds until the first body bytes; the client leaves right after."""
    first = asyncio.Event()
    receive = _client(body, first)

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            first.set()

    t0 = time.thread_time()
    task = asyncio.ensure_future(app(_scope(body), receive, send))
    await first.wait()
    spent = time.thread_time() - t0
    await task
    return spent


async def held(app: App, bodies: list[bytes], top: int) -> float:
    """Bytes traced per held stream: the replies are opened, their echoes sent, then held open."""
    gone = asyncio.Event()
    echoed = 0
    all_echoed = asyncio.Event()

    def opened(body: bytes) -> Any:
        chunks = 0

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal chunks, echoed
            if message["type"] == "http.response.body" and message.get("body"):
                chunks += 1
                if chunks == 2:  # the role chunk, then the echo
                    echoed += 1
                    if echoed == len(bodies):
                        all_echoed.set()

        return app(_scope(body), _client(body, gone), send)

    gc.collect()
    tracemalloc.start(25)
    before = tracemalloc.take_snapshot()
    tasks = [asyncio.ensure_future(opened(b)) for b in bodies]
    await all_echoed.wait()
    await asyncio.sleep(1.0)  # the stores behind the replies
    gc.collect()
    after = tracemalloc.take_snapshot()
    per_stream = sum(d.size_diff for d in after.compare_to(before, "filename")) / len(bodies)
    if top:
        for stat in after.compare_to(before, "traceback")[:top]:
            print(f"{stat.size_diff / len(bodies):8.0f} B/stream  {stat.count_diff / len(bodies):5.1f} objects")
            for line in stat.traceback.format()[-6:]:
                print("      " + line.strip())
    tracemalloc.stop()
    gone.set()
    await asyncio.gather(*tasks)
    return per_stream


async def burst(app: App, bodies: list[bytes]) -> float:
    t0 = time.perf_counter()
    await asyncio.gather(*(one(app, b) for b in bodies))
    return time.perf_counter() - t0


def _body(i: int, tag: str) -> bytes:
    prompt = f"bench {tag} #{i}: a paper boat, take {i}"
    return json.dumps({"model": "sora-2", "stream": True, "messages": [{"role": "user", "content": prompt}]}).encode()


async def measure(name: str, app: App, n: int, burst_n: int) -> dict[str, float]:
    for i in range(50):  # warm: imports, caches, the first statements
        await one(app, _body(i, f"{name}-warm"))
    times = []
    total = time.thread_time()
    for i in range(n):
        times.append(await one(app, _body(i, name)))
        await asyncio.sleep(0.002)  # its store, which the first bytes never wait for, outside the next one's time
    total = time.thread_time() - total
    row = {"mean_us": statistics.fmean(times) * 1e6, "p50_us": statistics.median(times) * 1e6}
    row["all_us"] = total / n * 1e6
    if burst_n:
        row["burst_ms"] = await burst(app, [_body(i, f"{name}-burst") for i in range(burst_n)]) * 1000
    await asyncio.sleep(0.5)  # the stores behind the replies
    return row


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="requests, one at a time (2,000)")
    p.add_argument("--burst", type=int, default=0, metavar="K", help="then K at once: wall time to the last")
    p.add_argument("--profile", type=int, default=0, metavar="K", help="print reelchat's K costliest functions")
    p.add_argument("--sort", default="tottime", help="the profile's order: tottime or cumulative")
    p.add_argument("--held", type=int, default=0, metavar="K", help="hold K streams: traced bytes per stream")
    p.add_argument("--top", type=int, default=0, help="with --held: where the K largest allocations come from")
    args = p.parse_args(argv)

    bare_ns: dict[str, Any] = {"__name__": "bare"}
    exec(compile(BARE_APP, "bare_app", "exec"), bare_ns)  # noqa: S102  (this script's own constant)
    rows = {"bare": await measure("bare", bare_ns["app"], args.n, args.burst)}

    from reelchat.api.app import create_app
    from reelchat.settings import Settings

    with tempfile.TemporaryDirectory(prefix="reelchat-cpu-") as home:
        settings = Settings(
            home=Path(home),
            models_json=json.dumps({"sora-2": {"steps": 2}}),
            max_queued=1_000_000,
            max_queued_per_key=1_000_000,
            max_streams_per_key=1_000_000,
        )
        app = create_app(settings)
        gc.set_threshold(20_000, 20, 20)  # as `reelchat serve` runs
        gc.freeze()
        async with app.router.lifespan_context(app):
            profiler = cProfile.Profile() if args.profile else None
            if profiler is not None:
                profiler.enable()
            rows["reelchat"] = await measure("ours", app, args.n, args.burst)
            if profiler is not None:
                profiler.disable()
                pstats.Stats(profiler).sort_stats(args.sort).print_stats(args.profile)
            if args.held:
                bodies = [_body(i, "held") for i in range(args.held)]
                print(
                    f"reelchat: {await held(app, bodies, args.top):.0f} bytes traced per held stream "
                    f"({args.held} held; uvicorn's connection objects not included)"
                )

    print(
        f"{'app':>9} | {'CPU to 1st chunk mean':>21} | {'p50':>8} | {'all CPU/request':>15} | "
        f"burst of {args.burst} to the last first chunk"
    )
    for name, row in rows.items():
        burst_text = f"{row['burst_ms']:.0f} ms" if "burst_ms" in row else "-"
        print(
            f"{name:>9} | {row['mean_us']:18.0f} us | {row['p50_us']:5.0f} us | {row['all_us']:12.0f} us | {burst_text}"
        )
    ratio = rows["reelchat"]["mean_us"] / rows["bare"]["mean_us"]
    print(f"reelchat / bare: {ratio:.2f}x CPU per request to the first chunk")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
