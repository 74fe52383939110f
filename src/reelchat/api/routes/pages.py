"""/web/<task id> (a page that follows the task live) and /source/<task id> (its raw JSON).

Reachable by whoever holds the link (task ids are unguessable). Every user string on the page is
HTML-escaped on the server, and the live updates set textContent / attributes, never innerHTML.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from ...domain import Task
from ...ids import TASK_ID_RE
from ...protocol.views import source_view
from ..deps import AppState, StateDep
from ..errors import ApiError

router = APIRouter()


async def _source(state: AppState, request: Request, task_id: str) -> tuple[Task, dict[str, Any]]:
    task = await state.service.get(task_id) if TASK_ID_RE.fullmatch(task_id) else None
    if task is None:
        raise ApiError(404, f"No task found with id '{task_id}'.", param="task_id", code="task_not_found")
    links = state.links.for_request(request)
    lineage = await state.service.lineage(task)
    view = source_view(task, lineage, links.base, links.media, deleted=task.deleted)
    return task, view


@router.get("/source/{task_id}")
async def source(task_id: str, request: Request, state: StateDep) -> JSONResponse:
    _, view = await _source(state, request, task_id)
    return JSONResponse(view, headers={"Cache-Control": "no-store"})


@router.get("/web/{task_id}", response_class=HTMLResponse)
async def web(task_id: str, request: Request, state: StateDep) -> HTMLResponse:
    try:
        _, view = await _source(state, request, task_id)
    except ApiError as e:
        return HTMLResponse(_not_found(task_id, e.message), status_code=404)
    return HTMLResponse(render_page(view), headers={"Cache-Control": "no-store"})


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _not_found(task_id: str, message: str) -> str:
    return (
        f"<!doctype html><meta charset=utf-8><title>Not found</title>"
        f"<body style='font-family:system-ui;margin:2rem'><h1>Not found</h1><p>{_e(message)}</p></body>"
    )


def _lineage_strip(view: dict[str, Any]) -> str:
    items = []
    for entry in view["lineage"]:
        current = entry["id"] == view["id"]
        thumb = (
            f'<img src="{_e(entry["thumbnail_url"])}" alt="">'
            if entry["thumbnail_url"]
            else f'<span class="nothumb">{_e(entry["status"])}</span>'
        )
        items.append(
            f'<a class="step{" current" if current else ""}" href="{_e(entry["web_url"])}" '
            f'title="{_e(entry["prompt"])}">{thumb}<span class="cap">{_e(entry["prompt"])}</span></a>'
        )
    return '<div class="lineage" id="lineage">' + '<span class="arrow">→</span>'.join(items) + "</div>"


_PARAMS = ("model", "orientation", "seconds", "size", "fps", "frames", "steps", "seed", "video_id", "sid")


def render_page(view: dict[str, Any]) -> str:
    rows = "".join(f'<tr><th>{_e(k)}</th><td id="p-{_e(k)}">{_e(view.get(k))}</td></tr>' for k in _PARAMS)
    error = view["error"]["message"] if view["error"] else ""
    player = (
        f'<video id="player" controls playsinline loop src="{_e(view["url"])}" poster="{_e(view["thumbnail_url"])}">'
        "</video>"
        if view["url"]
        else '<video id="player" controls playsinline loop hidden></video>'
    )
    thumb = (
        f'<img id="thumb" src="{_e(view["thumbnail_url"])}" alt="thumbnail">'
        if view["thumbnail_url"]
        else '<img id="thumb" alt="thumbnail" hidden>'
    )
    # The JSON for the script is escaped for a <script> context: no "</" can close the tag early.
    boot = json.dumps({"id": view["id"], "status": view["status"]}).replace("<", "\\u003c")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{_e(view["id"])} · reelchat</title>
<style>
body{{font-family:system-ui,sans-serif;margin:0;background:#0f1115;color:#e6e6e6}}
main{{max-width:960px;margin:0 auto;padding:1.5rem}}
h1{{font-size:1.1rem;font-weight:600;word-break:break-all}}
.status{{display:inline-block;padding:.2rem .6rem;border-radius:1rem;background:#2a2f3a}}
.status.completed{{background:#1f5130}} .status.failed,.status.cancelled{{background:#5a1f1f}}
.bar{{height:8px;background:#2a2f3a;border-radius:4px;overflow:hidden;margin:.8rem 0}}
.bar>div{{height:100%;background:#4c8dff;transition:width .3s}}
.prompt{{white-space:pre-wrap;background:#181b22;padding:1rem;border-radius:8px}}
video{{max-width:100%;max-height:60vh;background:#000;border-radius:8px}}
#thumb{{max-width:200px;border-radius:6px}}
table{{border-collapse:collapse;margin:1rem 0}} th{{text-align:left;color:#999;padding:.2rem 1rem .2rem 0}}
.error{{color:#ff8080;white-space:pre-wrap}}
.lineage{{display:flex;gap:.5rem;overflow-x:auto;align-items:center;padding:.5rem 0}}
.step{{display:flex;flex-direction:column;width:120px;color:#ccc;text-decoration:none;font-size:.75rem}}
.step img{{width:120px;border-radius:4px;border:2px solid transparent}}
.step.current img{{border-color:#4c8dff}}
.cap{{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}}
.nothumb{{display:block;height:60px;background:#2a2f3a;border-radius:4px;padding:4px}}
a{{color:#8ab4ff}}
</style></head>
<body><main>
<h1>Task <code>{_e(view["id"])}</code></h1>
<p><span id="status" class="status {_e(view["status"])}">{_e(view["status"])}</span>
 <span id="progress-text">{_e(view["progress"])}%</span></p>
<div class="bar"><div id="progress-bar" style="width:{int(view["progress"])}%"></div></div>
<p id="error" class="error">{_e(error)}</p>
<h2>Prompt</h2><div class="prompt" id="prompt">{_e(view["prompt"])}</div>
<h2>Video</h2>{player}
<p>{thumb}</p>
<h2>History</h2>{_lineage_strip(view)}
<h2>Parameters</h2><table>{rows}
<tr><th>created</th><td id="created">{_e(view["created_at"])}</td></tr>
<tr><th>completed</th><td id="completed">{_e(view["completed_at"])}</td></tr></table>
<p><a href="/source/{_e(view["id"])}">raw data</a></p>
</main>
<script>
const boot = {boot};
const FINISHED = ["completed", "failed", "cancelled"];
async function tick() {{
  let data;
  try {{ const r = await fetch("/source/" + boot.id, {{cache: "no-store"}}); data = await r.json(); }}
  catch (e) {{ setTimeout(tick, 2000); return; }}
  const s = document.getElementById("status");
  s.textContent = data.status; s.className = "status " + data.status;
  document.getElementById("progress-text").textContent = data.progress + "%";
  document.getElementById("progress-bar").style.width = data.progress + "%";
  document.getElementById("error").textContent = data.error ? data.error.message : "";
  document.getElementById("completed").textContent = data.completed_at || "";
  document.getElementById("p-sid").textContent = data.sid || "";
  if (data.url) {{
    const v = document.getElementById("player");
    if (v.getAttribute("src") !== data.url) {{ v.src = data.url; v.poster = data.thumbnail_url || ""; }}
    v.hidden = false;
    const t = document.getElementById("thumb"); t.src = data.thumbnail_url; t.hidden = false;
  }}
  if (!FINISHED.includes(data.status)) setTimeout(tick, 1000);
}}
if (!FINISHED.includes(boot.status)) setTimeout(tick, 1000);
</script>
</body></html>"""
