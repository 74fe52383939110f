"""GET /source/<task id>/events: a task's state, live, as server-sent events (what /source polls for).

Public by link like /source. Each frame is `{"status", "progress"}`; the stream ends once the task
finishes (its details are then at /source). It follows the task whichever replica runs it: the
service's bus carries events between replicas, and no stream polls the store.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from ...ids import TASK_ID_RE
from ..contract import documented
from ..deps import StateDep
from ..errors import ApiError
from ..stream_slots import LightStreamingResponse

router = APIRouter()

# each event: the task's state as JSON (keep-alive comments between them carry no data)
EVENTS = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {
                        "type": "object",
                        "required": ["status", "progress"],
                        "properties": {
                            "status": {"enum": ["queued", "in_progress", "completed", "failed", "cancelled"]},
                            "progress": {"type": "integer", "minimum": 0, "maximum": 100},
                        },
                    },
                }
            },
        }
    }
}


@router.get("/source/{task_id}/events", operation_id="task_events", **documented(ok_content=EVENTS, errors=[404]))
async def task_events(task_id: str, state: StateDep) -> StreamingResponse:
    task = await state.service.get(task_id) if TASK_ID_RE.fullmatch(task_id) else None
    if task is None:
        raise ApiError(404, f"No task found with id '{task_id}'.", param="task_id", code="task_not_found")

    async def frames() -> AsyncIterator[bytes]:
        gauge = state.ops.metrics.open_streams.labels("events")
        gauge.inc()
        try:
            async for event in state.service.follow(task_id, idle_s=state.settings.keepalive_s):
                if event is None:
                    yield b": keep-alive\n\n"
                else:
                    body = {"status": event.status.value, "progress": event.progress}
                    yield f"data: {json.dumps(body)}\n\n".encode()
        finally:
            gauge.dec()

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return LightStreamingResponse(frames(), media_type="text/event-stream", headers=headers)
