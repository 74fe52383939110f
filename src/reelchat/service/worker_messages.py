"""What an executor and the process running its engines say to each other: one small protocol
(job = task id, progress = `TaskEvent`, cancel / stop), whatever carries it (a pipe, Ray)."""

from __future__ import annotations

from dataclasses import dataclass

from ..domain import TaskEvent

# ---- to the worker


@dataclass(frozen=True)
class Run:
    """Claim and run this task (the worker claims it in the store, so a stale id is harmless)."""

    task_id: str


@dataclass(frozen=True)
class Cancel:
    """The task was deleted: its engine stops at its next step."""

    task_id: str


@dataclass(frozen=True)
class Stop:
    """Shutting down: engines stop at their next step, their tasks go back to the queue, then exit."""


# ---- from the worker


@dataclass(frozen=True)
class Ready:
    """The models are loaded: the worker takes jobs."""


@dataclass(frozen=True)
class Progress:
    """A task event, for the API process to publish on its bus."""

    event: TaskEvent


@dataclass(frozen=True)
class Done:
    """The worker is finished with this task (completed, failed, released, or not claimable)."""

    task_id: str


ToWorker = Run | Cancel | Stop
FromWorker = Ready | Progress | Done
