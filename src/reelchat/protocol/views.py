"""JSON views of a task: the raw-data page (/source) and the OpenAI Video object (/v1/videos)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..domain import Task, TaskStatus

MediaUrl = Callable[[str], str]

# The Videos API has no "cancelled": a deleted task is gone (404), so this only shows on pages.
_VIDEO_STATUS = {
    TaskStatus.QUEUED: "queued",
    TaskStatus.IN_PROGRESS: "in_progress",
    TaskStatus.COMPLETED: "completed",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELLED: "failed",
}


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt is not None else None


def _unix(dt: datetime | None) -> int | None:
    return int(dt.timestamp()) if dt is not None else None


def error_of(task: Task) -> dict[str, str] | None:
    if task.status is TaskStatus.CANCELLED:
        return {"code": "cancelled", "message": task.error_message or "The video was deleted."}
    if task.error_code is None and task.error_message is None:
        return None
    return {"code": task.error_code or "generation_failed", "message": task.error_message or ""}


def kind_of(task: Task) -> str:
    """How the video came to be: "generation", "remix" (a changed copy of its source) or "extension"
    (its source followed by a continuation)."""
    if task.params.get("extend") is True:
        return "extension"
    return "generation" if task.remixed_from is None else "remix"


def windows_of(task: Task) -> int:
    """How many passes of the model made the clip (more than one: clips longer than its window)."""
    windows = task.params.get("windows", 1)
    return windows if isinstance(windows, int) else 1


def lineage_entry(task: Task, base: str, media_url: MediaUrl) -> dict[str, Any]:
    if task.deleted:  # its owner deleted it: the history keeps its place, not its words or pictures
        return {
            "id": task.id,
            "sid": None,
            "video_id": task.video_id,
            "prompt": "(deleted)",
            "status": "deleted",
            "kind": kind_of(task),
            "web_url": f"{base}/web/{task.id}",
            "thumbnail_url": None,
        }
    return {
        "id": task.id,
        "sid": task.sid if task.status is TaskStatus.COMPLETED else None,
        "video_id": task.video_id,
        "prompt": task.prompt,
        "status": task.status.value,
        "kind": kind_of(task),
        "web_url": f"{base}/web/{task.id}",
        "thumbnail_url": media_url(task.thumbnail_name) if task.thumbnail_name else None,
    }


def preview_url(task: Task, media_url: MediaUrl, *, deleted: bool = False) -> str | None:
    """The running task's latest preview picture; None once it finishes (or before its first).

    The picture is overwritten under one name, so reelchat's own link carries its count (`?v=3`): a
    browser fetches each new one. A presigned S3 link is signed as it is (an added parameter would
    break the signature) and differs from one /source read to the next anyway.
    """
    if task.status is not TaskStatus.IN_PROGRESS or deleted or not task.preview:
        return None
    url = media_url(task.preview_name)
    return url if "?" in url else f"{url}?v={task.preview}"


def source_view(
    task: Task, lineage: list[Task], base: str, media_url: MediaUrl, *, deleted: bool = False
) -> dict[str, Any]:
    done = task.status is TaskStatus.COMPLETED and not deleted
    parent = lineage[-2] if len(lineage) > 1 else None
    return {
        "id": task.id,
        "object": "task",
        "video_id": task.video_id,
        "status": task.status.value,
        "progress": task.progress,
        "model": task.model,
        "prompt": "(deleted)" if deleted else task.prompt,
        "engine_prompt": "(deleted)" if deleted else task.engine_prompt,
        "orientation": task.orientation.value,
        "seconds": task.seconds,
        "size": task.size,
        "fps": task.fps,
        "frames": task.frames,
        "steps": task.steps,
        "seed": task.seed,
        "windows": windows_of(task),
        "kind": kind_of(task),
        "has_image": task.has_image,
        "origin": task.origin,
        "attempt": task.attempt,
        "sid": task.sid if done else None,
        "url": media_url(task.video_name) if done and task.video_name else None,
        "thumbnail_url": media_url(task.thumbnail_name) if done and task.thumbnail_name else None,
        "spritesheet_url": media_url(task.spritesheet_name) if done and task.spritesheet_name else None,
        "preview_url": preview_url(task, media_url, deleted=deleted),
        "web_url": f"{base}/web/{task.id}",
        "created_at": _iso(task.created_at),
        "started_at": _iso(task.started_at),
        "completed_at": _iso(task.completed_at),
        "error": error_of(task),
        "deleted": deleted,
        "remixed_from": (
            {"id": parent.id, "sid": parent.sid, "video_id": parent.video_id}
            if parent is not None and kind_of(task) == "remix"
            else None
        ),
        "extended_from": (
            {"id": parent.id, "sid": parent.sid, "video_id": parent.video_id, "seconds": parent.seconds}
            if parent is not None and kind_of(task) == "extension"
            else None
        ),
        "lineage": [lineage_entry(t, base, media_url) for t in lineage],
    }


def video_object(task: Task, *, source_video_id: str | None, ttl_s: int | None = None) -> dict[str, Any]:
    """The OpenAI `Video` shape."""
    completed = _unix(task.completed_at) if task.status.finished else None
    expires = completed + ttl_s if completed is not None and ttl_s and task.status is TaskStatus.COMPLETED else None
    return {
        "id": task.video_id,
        "object": "video",
        "created_at": _unix(task.created_at) or 0,
        "completed_at": completed,
        "expires_at": expires,
        "status": _VIDEO_STATUS[task.status],
        "progress": task.progress,
        "model": task.model,
        "prompt": task.prompt,
        "seconds": str(task.seconds),
        "size": task.size,
        "remixed_from_video_id": source_video_id,
        "error": error_of(task),
    }
