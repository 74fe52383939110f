"""Where a run's time goes: queued (created to claimed), then denoise (the engine: denoising steps,
or an upstream's job), encode (mp4, thumbnail, spritesheet) and upload (writing them to storage).

The runner moves a `PhaseClock` from phase to phase; the seconds are written with the run's outcome
(the task's `phases`, in the same UPDATE), logged on its end line, and observed by /metrics in the
API process, which reads them from the store: the clock runs wherever the engine does (a worker
process, a Ray actor), so the store is what carries them back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..domain import Task

PHASES = ("queued", "denoise", "encode", "upload")


@dataclass
class PhaseClock:
    phases: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)  # claimed
    _phase: str | None = None  # the phase running now (None: preparing, not timed)
    _since: float = 0.0

    @classmethod
    def claimed(cls, task: Task) -> PhaseClock:
        """A run that just claimed `task`: its time in the queue is known (created to now)."""
        created = task.created_at.timestamp() if task.created_at else time.time()
        claimed = task.started_at.timestamp() if task.started_at else time.time()
        return cls(phases={"queued": max(0.0, claimed - created)})

    def enter(self, phase: str) -> None:
        now = time.monotonic()
        self._close(now)
        self._phase, self._since = phase, now

    def _close(self, now: float) -> None:
        if self._phase is not None:
            self.phases[self._phase] = self.phases.get(self._phase, 0.0) + (now - self._since)
            self._phase = None

    def done(self) -> dict[str, float]:
        """Stop the running phase; the seconds per phase, rounded to milliseconds."""
        self._close(time.monotonic())
        return {k: round(v, 3) for k, v in self.phases.items()}

    def fields(self) -> dict[str, float]:
        """The figures so far, for a log line's fields: `<phase>_s`, and `run_s` since the claim."""
        out = {f"{k}_s": round(v, 3) for k, v in self.phases.items()}
        out["run_s"] = round(time.monotonic() - self.started, 3)
        return out

    def describe(self) -> str:
        """` in 3.2 s (queued 0.1 s, denoise 2.0 s, encode 0.8 s, upload 0.3 s)` for a text log line."""
        self._close(time.monotonic())
        parts = ", ".join(f"{k} {self.phases[k]:.2f} s" for k in PHASES if k in self.phases)
        return f" in {time.monotonic() - self.started:.2f} s ({parts})"
