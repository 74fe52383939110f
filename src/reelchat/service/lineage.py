"""A video's lineage: the chain of videos it was remixed from (what `/source` and `/web` show)."""

from __future__ import annotations

from ..domain import Task
from ..store.tasks import Store


async def lineage(store: Store, task: Task, limit: int = 200) -> list[Task]:
    """The chain of videos this one was remixed from, root first, ending with the task itself."""
    chain = [task]
    seen = {task.id}
    current = task
    while current.remixed_from and len(chain) < limit:
        parent = await store.get_task(current.remixed_from)
        if parent is None or parent.id in seen:
            break
        chain.append(parent)
        seen.add(parent.id)
        current = parent
    return list(reversed(chain))
