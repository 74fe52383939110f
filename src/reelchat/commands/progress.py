"""A live progress bar (rich) for one task, on stderr: stdout keeps only the results."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

err = Console(stderr=True)


class Update(Protocol):
    def __call__(self, status: str, progress: int) -> None: ...


@contextmanager
def task_bar(label: str) -> Iterator[Update]:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        row = bar.add_task(label, total=100, status="queued")

        def update(status: str, progress: int) -> None:
            done = 100 if status == "completed" else progress
            bar.update(row, completed=done, status=status.replace("_", " "))

        yield update
