"""Poison-pill protection: a video that kills the server is not made again and again.

Only a death while the engine was making the video counts (the store's `in_engine` flag, written
durably right before the engine starts). Claiming a task, loading a model, encoding, a graceful
stop (SIGTERM) and a kill from outside while nothing ran (a deploy, a preemption) count nothing.
After each crash the task waits a little longer before it runs again, so a random kill rarely
lands on the same video twice in a row; after `max_crashes` in a row it fails as `crash_loop`.
"""

from __future__ import annotations

from dataclasses import dataclass

CRASH_LOOP = "crash_loop"


@dataclass(frozen=True)
class CrashPolicy:
    max_crashes: int = 5
    backoff_s: float = 5.0  # after the first crash; doubling after each one, up to backoff_max_s
    backoff_max_s: float = 300.0

    def backoff(self, crashes: int) -> float:
        """Seconds a task waits before it runs again after its `crashes`-th crash in a row."""
        return min(self.backoff_max_s, self.backoff_s * 2.0 ** max(0, crashes - 1))

    def gives_up(self, crashes: int) -> bool:
        return crashes >= self.max_crashes

    @staticmethod
    def message(crashes: int) -> str:
        times = "once" if crashes == 1 else f"{crashes} times in a row"
        return f"The server stopped {times} while making this video, so it was not tried again, to protect the server."
