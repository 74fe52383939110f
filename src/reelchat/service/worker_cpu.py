"""How a worker process shares the CPU with the API process: lower priority, fewer torch threads.

On a small CPU box a rendering worker would otherwise take every core (torch's intra-op threads
default to one per core, and the encoder adds its own), and the API process's event loop, which
serves every open stream, page and `/healthz`, would wait for the scheduler behind it. So:

- the worker runs `REELCHAT_WORKER_NICE` steps nicer (default 10: under contention the kernel then
  gives the API process about ten times the worker's share; an idle API leaves it every core);
- on a CPU device, torch's threads are capped to the cores left after one for the API process,
  shared among the workers (`REELCHAT_WORKER_THREADS` overrides; at least one). On CUDA the kernels
  run on the GPU and torch keeps its own default: the cap would only slow the CPU-side ops.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from ..settings import Settings

log = logging.getLogger("reelchat.worker")

__all__ = ["CpuShare", "apply_cpu_share", "available_cores", "plan_cpu_share"]


@dataclass(frozen=True)
class CpuShare:
    nice: int
    threads: int | None  # None: torch's default


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def plan_cpu_share(settings: Settings, *, cores: int, cuda: bool) -> CpuShare:
    """The niceness and torch threads of one of `settings.workers` worker processes."""
    threads = settings.worker_threads
    if threads is None and not cuda:
        threads = max(1, (cores - 1) // settings.workers)
    return CpuShare(nice=settings.worker_nice, threads=threads)


def _uses_cuda(settings: Settings) -> bool:
    if settings.device is not None:
        return settings.device.startswith("cuda")
    import torch  # the worker imports it to load its models anyway

    return bool(torch.cuda.is_available())


def apply_cpu_share(settings: Settings) -> CpuShare:
    """Applied first thing in a worker process (before it loads a model); returns what it applied."""
    share = plan_cpu_share(settings, cores=available_cores(), cuda=_uses_cuda(settings))
    if share.nice:
        os.nice(share.nice)  # an increment: the worker is spawned at the API process's own niceness
    if share.threads is not None:
        import torch

        torch.set_num_threads(share.threads)
    log.info("worker cpu share: nice +%d, torch threads %s", share.nice, share.threads or "default")
    return share
