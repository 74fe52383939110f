"""What does the Ray executor cost? Dispatch latency and throughput over a fleet of actors, the idle
gap a device sees between two jobs, and the Ray path against the in-process executor on the demo model.

    PYTHONPATH=src .venv/bin/python bench/ray_dispatch.py [--fleet 10 100] [--jobs 200] [--overhead-runs 3]

It starts a private local Ray cluster (`ray.init(num_cpus=...)`) and drives the real `RayExecutor`
(its queue, its actor pool, a real SQLite store it reads each task from, Ray streaming generators)
with `SleepActor`s: actors that take no CPU (`num_cpus=0`) and sleep instead of denoising, stamping
when each job starts and ends (same machine, same clock).

1. Fleet of N actors (each `--fleet` size): first N concurrent jobs warm N actors, then
   - dispatch latency: `--jobs` jobs submitted one at a time, each when the previous has started,
     to a fleet of idle actors: submit() -> the actor starts the job (p50/p99);
   - jobs per second: 10 x N zero-length jobs submitted at once, until the last one's Done.
2. Idle gap: one device (a custom Ray resource the cluster has one of, so one actor), a backlog
   of 50 jobs of 100 ms each: the time between one job's end and the next one's start (p50/p99).
3. Overhead: the demo model through the Ray executor (one `EngineActor`) and the in-process one
   (one OpenMP thread each, and the actor at nice 0, as the API process: see `main`),
   the same request and seed both ways, `--overhead-runs` each after a warm-up, alternating;
   wall time submit -> completed (p50), and whether the mp4 bytes are identical.

Each actor is a process: on a small machine the largest fleet that fits is limited by memory and by
how long Ray takes to start that many workers; the script prints what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import ray

from reelchat.catalog import ModelSpec, load_catalog
from reelchat.domain import TaskEvent, TaskStatus, VideoRequest
from reelchat.engines.registry import EngineRegistry
from reelchat.service.crashes import CrashPolicy
from reelchat.service.events import LocalEventBus
from reelchat.service.factory import build_service, build_storage
from reelchat.service.planning import plan_task
from reelchat.service.ray_executor import RayExecutor
from reelchat.service.ray_pool import Demand
from reelchat.service.runner import TaskRunner
from reelchat.service.videos import VideoService
from reelchat.service.worker_messages import Done, FromWorker, Progress, Ready
from reelchat.settings import Settings
from reelchat.store.tasks import Store

STEP = "step"
DEVICE = "bench_device"  # a custom Ray resource: the cluster has one, as a machine with one GPU


class SleepActor:
    """An `EngineActor` stand-in: same methods, same messages; `run` sleeps `sleep_s` (from the task
    id's suffix) and stamps its start and end (time.time()) into the events' messages."""

    def __init__(self, settings: Settings, models: list[str]) -> None:
        self.models = models
        self.cancelled: dict[str, asyncio.Event] = {}

    async def ping(self) -> str:
        return str(ray.get_runtime_context().get_node_id())

    async def load(self) -> Ready:
        return Ready()

    async def run(self, task_id: str) -> AsyncIterator[FromWorker]:
        started = time.time()
        yield Progress(TaskEvent(task_id, TaskStatus.IN_PROGRESS, 0, STEP, repr(started)))
        sleep_s = float(task_id.rsplit("-", 1)[1])
        if sleep_s:
            cancelled = self.cancelled.setdefault(task_id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cancelled.wait(), sleep_s)
        yield Progress(TaskEvent(task_id, TaskStatus.COMPLETED, 100, STEP, repr(time.time())))
        yield Done(task_id)

    async def cancel(self, task_id: str) -> None:
        self.cancelled.setdefault(task_id, asyncio.Event()).set()

    async def stop(self) -> None:
        pass

    async def close(self) -> None:
        pass


class FleetExecutor(RayExecutor):
    """The real executor, its actors asking for `demand` (none: sleeping needs no CPU)."""

    demand: Demand = {"CPU": 0.0}  # noqa: RUF012  (set per instance before start)

    def placement(self, spec: ModelSpec) -> tuple[str, Demand]:
        key, _ = super().placement(spec)
        return key, self.demand


class Recorder(LocalEventBus):
    """The API process's bus: remembers when each job started and ended on its actor."""

    def __init__(self) -> None:
        super().__init__()
        self.started: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.done: dict[str, asyncio.Event] = {}

    def publish(self, event: TaskEvent) -> None:
        if event.error_code == STEP and event.error_message:
            stamp = float(event.error_message)
            if event.status is TaskStatus.COMPLETED:
                self.ended[event.task_id] = stamp
                self.done.setdefault(event.task_id, asyncio.Event()).set()
            else:
                self.started[event.task_id] = stamp
        super().publish(event)

    async def wait(self, task_id: str) -> None:
        await self.done.setdefault(task_id, asyncio.Event()).wait()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def ms(values: list[float]) -> str:
    return f"p50 {pct(values, 50) * 1000:7.2f} ms  p99 {pct(values, 99) * 1000:7.2f} ms  (n={len(values)})"


class Fleet:
    """A `FleetExecutor` over a real store whose tasks are named `<task id>-<sleep s>`."""

    def __init__(self, home: Path, demand: Demand | None = None) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.settings = Settings(home=home, executor="ray")
        self.store = Store(self.settings.resolved_database_url)
        self.catalog = load_catalog()
        self.bus = Recorder()
        self.executor = FleetExecutor(self.settings, SleepActor)
        if demand is not None:
            self.executor.demand = demand
        self.spec = self.catalog["sora-2"]
        self.count = 0

    async def start(self) -> None:
        await self.store.migrate()
        engines = EngineRegistry(self.settings.models_dir)
        runner = TaskRunner(
            self.settings, self.store, build_storage(self.settings), self.catalog, engines, self.bus, CrashPolicy()
        )
        await self.executor.start(runner)

    async def tasks(self, n: int, sleep_s: float) -> list[str]:
        ids = []
        for _ in range(n):
            self.count += 1
            task = plan_task(
                self.spec, "bench", VideoRequest("sora-2", f"job {self.count}"), source=None, origin="videos"
            )
            task.id = f"{task.id}-{sleep_s:g}"
            await self.store.insert_task(task)
            ids.append(task.id)
        return ids

    def actors(self) -> int:
        """Actors placed (an actor Ray cannot place yet waits unplaced, and is not counted)."""
        return sum(1 for slot in self.executor._started()[1].slots() if slot.node is not None)

    async def stop(self) -> None:
        await self.executor.stop()
        await self.store.close()


async def fleet_figures(home: Path, size: int, jobs: int) -> None:
    fleet = Fleet(home)
    await fleet.start()
    try:
        started = time.monotonic()
        warm = await fleet.tasks(size, 3600.0)  # each needs its own actor; cancelled once all run
        for task_id in warm:
            fleet.executor.submit(task_id)
        while True:
            if len(fleet.bus.started.keys() & set(warm)) == size:
                break
            await asyncio.sleep(0.05)
        print(f"  fleet of {fleet.actors()} actors started in {time.monotonic() - started:.1f} s")
        for task_id in warm:
            fleet.executor.cancel(task_id)
        await asyncio.gather(*(fleet.bus.wait(t) for t in warm))

        latencies = []
        for task_id in await fleet.tasks(jobs, 0.0):
            submitted = time.time()
            fleet.executor.submit(task_id)
            await fleet.bus.wait(task_id)
            latencies.append(fleet.bus.started[task_id] - submitted)
        print(f"  dispatch latency, idle fleet:   {ms(latencies)}")

        burst = await fleet.tasks(10 * size, 0.0)
        began = time.monotonic()
        for task_id in burst:
            fleet.executor.submit(task_id)
        await asyncio.gather(*(fleet.bus.wait(t) for t in burst))
        elapsed = time.monotonic() - began
        print(f"  throughput: {len(burst)} zero-length jobs in {elapsed:.2f} s = {len(burst) / elapsed:7.1f} jobs/s")
    finally:
        await fleet.stop()


async def idle_gap(home: Path) -> None:
    fleet = Fleet(home, {DEVICE: 1.0})  # the cluster has one: a second actor stays unplaced
    await fleet.start()
    try:
        ids = await fleet.tasks(51, 0.1)
        fleet.executor.submit(ids[0])  # starts the one actor
        await fleet.bus.wait(ids[0])
        for task_id in ids[1:]:
            fleet.executor.submit(task_id)
        await asyncio.gather(*(fleet.bus.wait(t) for t in ids[1:]))
        assert fleet.actors() == 1, fleet.actors()  # noqa: S101
        gaps = [fleet.bus.started[b] - fleet.bus.ended[a] for a, b in itertools.pairwise(ids[1:])]
        print(f"  idle gap between two jobs on one actor: {ms(gaps)}")
    finally:
        await fleet.stop()


async def made(service: VideoService, prompt: str) -> tuple[float, str]:
    started = time.monotonic()
    task = await service.submit("bench", VideoRequest("sora-2", prompt, seed=7))
    while True:
        t = await service.get(task.id)
        if t is not None and t.status not in (TaskStatus.QUEUED, TaskStatus.IN_PROGRESS):
            break
        await asyncio.sleep(0.02)
    elapsed = time.monotonic() - started
    if t.status is not TaskStatus.COMPLETED or t.video_name is None:
        raise RuntimeError(f"{t.id} {t.status}: {t.error_message}")
    return elapsed, hashlib.sha256(await service.storage.load(t.video_name)).hexdigest()[:16]


async def overhead(root: Path, runs: int, models_json: str | None) -> None:
    services = {}
    for executor in ("ray", "inprocess"):
        settings = Settings(home=root / executor, executor=executor, models_json=models_json)
        services[executor] = build_service(settings)
        await services[executor].open()
        while True:
            if services[executor].ready:
                break
            await asyncio.sleep(0.05)
    try:
        times: dict[str, list[float]] = {name: [] for name in services}
        digests: dict[str, list[str]] = {name: [] for name in services}
        for name, service in services.items():
            warm, _ = await made(service, "warm-up")  # the Ray path starts its actor and loads the model
            print(f"  warm-up {name:9s} {warm:6.2f} s")
        for i in range(runs):
            for name, service in services.items():
                elapsed, digest = await made(service, "a lighthouse in a storm")
                times[name].append(elapsed)
                digests[name].append(digest)
                print(f"  run {i + 1} {name:9s} {elapsed:6.2f} s  mp4 {digest}")
        ray_s, local_s = statistics.median(times["ray"]), statistics.median(times["inprocess"])
        print(
            f"  p50: ray {ray_s:.2f} s, in-process {local_s:.2f} s: the Ray path costs "
            f"{(ray_s - local_s) * 1000:+.0f} ms ({(ray_s / local_s - 1) * 100:+.1f}%)"
        )
        same = sum(a == b for a, b in zip(digests["ray"], digests["inprocess"], strict=True))
        print(f"  the same video both ways (identical mp4 bytes): {same} of {runs} runs")
        print(f"  fastest: ray {min(times['ray']):.2f} s, in-process {min(times['inprocess']):.2f} s")
    finally:
        for service in services.values():
            await service.close()


async def main_async(args: argparse.Namespace, root: Path) -> None:
    for size in args.fleet:
        print(f"fleet of {size} sleeping actors (num_cpus=0):")
        await fleet_figures(root / f"fleet-{size}", size, args.jobs)
    print("idle gap:")
    await idle_gap(root / "gap")
    if args.overhead_runs:
        print("overhead on the demo model (Ray actor vs in-process):")
        await overhead(root, args.overhead_runs, args.models_json)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fleet", type=int, nargs="*", default=[10, 100], help="fleet sizes (none: skip)")
    parser.add_argument("--jobs", type=int, default=200, help="jobs timed one by one for the dispatch latency")
    parser.add_argument("--overhead-runs", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs the private Ray cluster declares")
    parser.add_argument(
        "--models-json",
        default='{"sora-2": {"steps": 12, "fps": 4, "seconds": [10], "default_seconds": 10}}',
        help="catalog for the overhead run (a job of seconds on a CPU)",
    )
    args = parser.parse_args()
    # The same compute both ways: Ray gives an actor of num_cpus=1 one OpenMP thread, so the
    # in-process path gets one too (two threads per process oversubscribe 2 cores: both get slower).
    # Ray starts its workers at nice 15; on a shared machine that alone makes the actor lose.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("RAY_worker_niceness", "0")
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ray.init(
        num_cpus=args.cpus,
        resources={DEVICE: 1},
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    print(f"Ray {ray.__version__}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    try:
        with tempfile.TemporaryDirectory(prefix="reelchat-ray-bench-") as tmp:
            root = Path(tmp)
            if args.overhead_runs:  # both paths share one build of the demo model
                (root / "models").mkdir()
                for name in ("ray", "inprocess"):
                    (root / name).mkdir()
                    (root / name / "models").symlink_to(root / "models", target_is_directory=True)
            asyncio.run(main_async(args, root))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
