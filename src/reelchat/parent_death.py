"""A child process that dies with its parent, even a SIGKILLed one (Linux's parent-death signal).

Worker processes and the body parser's process call `die_with_parent` first thing: no orphan may
finish a job behind the next server's back, or linger idle after its server is gone.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["die_with_parent"]

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel for SIGKILL when the thread that spawned this process ends (Linux only)."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # it died before the line above took effect
        os._exit(1)
