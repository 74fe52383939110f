"""`reelchat tasks list|show|watch`: a running server's videos for this key, as tables and a live bar."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console
from rich.table import Table

from .progress import err, task_bar
from .server_client import ClientError, Server

out = Console()


def _when(ts: Any) -> str:
    return dt.datetime.fromtimestamp(int(ts)).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def list_tasks(server: Server, limit: int) -> int:
    try:
        page = server.json("GET", "/v1/videos", params={"limit": limit})
    except ClientError as e:
        err.print(f"[red]reelchat: {e}[/red]")
        return 1
    if not out.is_terminal:  # piped: one tab-separated line per video, whole ids, for scripts
        for v in page["data"]:
            print(
                "\t".join([v["id"], v.get("task_id") or "", v["status"], str(v["progress"]), v["model"], v["prompt"]])
            )
        return 0
    table = Table(title=f"videos on {server.base_url} (newest first)")
    for column in ("video", "task", "status", "progress", "model", "seconds", "size", "created", "prompt"):
        table.add_column(column, overflow="fold" if column in ("video", "task") else "ellipsis")
    for v in page["data"]:
        prompt = v["prompt"] if len(v["prompt"]) <= 40 else v["prompt"][:39] + "…"
        table.add_row(
            v["id"],
            v.get("task_id") or "",
            v["status"],
            f"{v['progress']}%",
            v["model"],
            v["seconds"],
            v["size"],
            _when(v["created_at"]),
            prompt,
        )
    if not page["data"]:
        out.print('No videos yet for this key: make one with `reelchat generate "a prompt"`.')
        return 0
    out.print(table)
    return 0


def show_task(server: Server, ref: str) -> int:
    try:
        task_id = server.task_id_of(ref)
        view = server.json("GET", f"/source/{task_id}")
        video = server.json("GET", f"/v1/videos/{view['video_id']}")
    except ClientError as e:
        err.print(f"[red]reelchat: {e}[/red]")
        return 1
    table = Table(show_header=False, title=f"{view['video_id']}")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("task", view["id"]),
        ("status", f"{view['status']} ({view['progress']}%)"),
        ("model", view["model"]),
        ("prompt", view["prompt"]),
        ("seconds · size · fps", f"{view['seconds']} s · {view['size']} · {view['fps']} fps"),
        ("sid", view["sid"] or ""),
        ("remixed from", (view["remixed_from"] or {}).get("video_id") or ""),
        ("created", view["created_at"]),
        ("completed", view["completed_at"] or ""),
        ("error", (video.get("error") or {}).get("message") or ""),
        ("timings", ", ".join(f"{k} {v:.2f} s" for k, v in (view.get("timings") or {}).items())),
        ("page", view["web_url"]),
        ("mp4", view["url"] or ""),
    ]
    for d in view.get("webhooks") or []:
        rows.append((f"webhook {d['type']}", f"{d['endpoint']}: {d['status']} after {d['attempts']} attempt(s)"))
    for name, value in rows:
        if value == "":
            continue
        if out.is_terminal:
            table.add_row(name, str(value))
        else:  # piped: `name<TAB>value` lines
            print(f"{name}\t{value}")
    if out.is_terminal:
        out.print(table)
    return 0


def watch_task(server: Server, ref: str) -> int:
    try:
        task_id = server.task_id_of(ref)
        with task_bar(ref) as update:
            view = server.follow(task_id, update)
    except ClientError as e:
        err.print(f"[red]reelchat: {e}[/red]")
        return 1
    print(f"{view['video_id']} {view['status']}" + (f": {view['url']}" if view["url"] else ""))
    return 0 if view["status"] == "completed" else 1
