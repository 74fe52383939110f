"""/web/<task id> (a page that follows the task live) and /source/<task id> (its raw JSON).

Reachable by whoever holds the link (task ids are unguessable). Every user string on the page is
HTML-escaped on the server, and the live updates set textContent / attributes, never innerHTML. The
page runs no inline code (its Content-Security-Policy allows only /static/ from this server), and a
failed task shows a generic reason: the details are the owner's (Videos API, chat) and the log's.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ...domain import Task
from ...ids import TASK_ID_RE, VIDEO_ID_RE
from ...protocol.response_schema import TaskSource
from ...protocol.views import source_view
from ..contract import documented
from ..deps import AppState, StateDep
from ..errors import ApiError
from ..page_assets import ASSETS, PAGE_CSS, PAGE_JS

router = APIRouter()


async def _source(state: AppState, request: Request, task_id: str) -> tuple[Task, dict[str, Any]]:
    # a task id or the video id of the same record (both name one task)
    task = await state.service.get(task_id) if TASK_ID_RE.fullmatch(task_id) else None
    if task is None and VIDEO_ID_RE.fullmatch(task_id):
        task = await state.service.get_public_by_video_id(task_id)
    if task is None:
        raise ApiError(404, f"No task found with id '{task_id}'.", param="task_id", code="task_not_found")
    links = state.links.for_request(request)
    lineage = await state.service.lineage(task)
    view = source_view(task, lineage, links.base, links.media, deleted=task.deleted)
    if view["error"]:
        view["error"]["message"] = public_failure(view["error"]["code"])
    return task, view


def public_failure(code: str) -> str:
    """What a page says about a failure: its kind, never the details (upstream text, paths, exceptions)."""
    if code == "cancelled":
        return "The video was deleted."
    if code.endswith("timeout"):
        return "The video could not be made in time."
    if code in ("interrupted", "crash_loop"):
        return "The video could not be made: the server stopped while making it."
    if code.startswith("upstream_"):
        return "The video could not be made: the server that renders it had a problem."
    return "The video could not be made."


@router.get("/source/{task_id}", **documented(ok=TaskSource, errors=[404]))
async def source(task_id: str, request: Request, state: StateDep) -> JSONResponse:
    task, view = await _source(state, request, task_id)
    # the delivery log: where each event went (the server's endpoint or a key's, never its URL) and how it went
    view["timings"] = task.phases  # seconds per phase of its last run: queued, denoise, encode, upload
    view["webhooks"] = [
        {
            "event_id": d.event_id,
            "type": d.event_type,
            "endpoint": d.target,
            "status": d.status,
            "attempts": d.attempts,
            "last_response_status": d.last_status,
            "last_error": d.last_error,
            "next_attempt_at": int(d.next_at) if d.next_at is not None else None,
            "created_at": int(d.created_at),
            "delivered_at": int(d.delivered_at) if d.delivered_at is not None else None,
        }
        for d in await state.service.webhook_deliveries(task.id)
    ]
    return JSONResponse(view, headers={"Cache-Control": "no-store"})


@router.get(
    "/web/{task_id}",
    response_class=HTMLResponse,
    **documented(
        ok_content={"text/html": {"schema": {"type": "string"}}},
        extra={404: {"description": "No such task (a page)", "content": {"text/html": {"schema": {"type": "string"}}}}},
    ),
)
async def web(task_id: str, request: Request, state: StateDep) -> HTMLResponse:
    try:
        _, view = await _source(state, request, task_id)
    except ApiError as e:
        csp = page_policy(state.links.for_request(request).base, media_origin=state.links.media_origin)
        return HTMLResponse(_not_found(e.message), status_code=404, headers={"Content-Security-Policy": csp})
    csp = page_policy(state.links.for_request(request).base, media_origin=state.links.media_origin)
    return HTMLResponse(render_page(view), headers={"Cache-Control": "no-store", "Content-Security-Policy": csp})


@router.get(
    "/static/{name}",
    **documented(
        ok_content={t: {"schema": {"type": "string"}} for t in sorted({a.media_type for a in ASSETS.values()})},
        errors=[404],
    ),
)
async def static(name: str) -> Response:
    asset = ASSETS.get(name)
    if asset is None:
        raise ApiError(404, "Not found.", code="not_found")
    cache = "public, max-age=31536000, immutable"  # the name changes with the content
    return Response(asset.body, media_type=asset.media_type, headers={"Cache-Control": cache})


def page_policy(base: str, *, media_origin: str = "", local_images: bool = False) -> str:
    """Scripts, styles and fetches from this server only; pictures and video also from the links' origin
    (REELCHAT_PUBLIC_BASE_URL or the proxy's host, when it differs from the address the browser used)
    and from `media_origin` (the bucket's endpoint, when media links are presigned S3 URLs).
    `local_images`: pictures also from data: and blob: URLs (the playground previews images the user attaches)."""
    media = " ".join(["'self'", *filter(None, (_origin(base), _origin(media_origin)))])
    images = f"{media} data: blob:" if local_images else media
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self'; img-src {images}; media-src {media}; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not all(c.isalnum() or c in ".-:[]" for c in parts.netloc):
        return ""  # nothing that could end a directive or add a source
    return f"{parts.scheme}://{parts.netloc}"


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _not_found(message: str) -> str:
    return (
        f'<!doctype html><meta charset=utf-8><title>Not found</title><link rel="stylesheet" href="{PAGE_CSS.url}">'
        f'<body class="plain"><h1>Not found</h1><p>{_e(message)}</p></body>'
    )


def _lineage_strip(view: dict[str, Any]) -> str:
    items = []
    for i, entry in enumerate(view["lineage"]):
        current = entry["id"] == view["id"]
        # the arrow into a step says how it came from the one before: remixed or extended
        if i:
            label = "+ extended" if entry["kind"] == "extension" else "remixed"
            items.append(f'<span class="arrow" title="{label}">→ <small class="how">{label}</small></span>')
        thumb = (
            f'<img src="{_e(entry["thumbnail_url"])}" alt="">'
            if entry["thumbnail_url"]
            else f'<span class="nothumb">{_e(entry["status"])}</span>'
        )
        items.append(
            f'<a class="step{" current" if current else ""}" data-kind="{_e(entry["kind"])}" '
            f'href="{_e(entry["web_url"])}" title="{_e(entry["prompt"])}">{thumb}'
            f'<span class="cap">{_e(entry["prompt"])}</span></a>'
        )
    return '<div class="lineage" id="lineage">' + "".join(items) + "</div>"


_PARAMS = (
    "model",
    "kind",
    "orientation",
    "seconds",
    "size",
    "fps",
    "frames",
    "windows",
    "steps",
    "seed",
    "video_id",
    "sid",
)


def render_page(view: dict[str, Any]) -> str:
    rows = "".join(f'<tr><th>{_e(k)}</th><td id="p-{_e(k)}">{_e(view.get(k))}</td></tr>' for k in _PARAMS)
    error = view["error"]["message"] if view["error"] else ""
    player = (
        f'<video id="player" controls playsinline loop src="{_e(view["url"])}" poster="{_e(view["thumbnail_url"])}">'
        "</video>"
        if view["url"]
        else '<video id="player" controls playsinline loop hidden></video>'
    )
    # while it runs: the latest preview picture, which the page's script replaces in place
    preview = (
        f'<img id="preview" src="{_e(view["preview_url"])}" alt="preview of the video so far">'
        if view["preview_url"]
        else '<img id="preview" alt="preview of the video so far" hidden>'
    )
    thumb = (
        f'<img id="thumb" src="{_e(view["thumbnail_url"])}" alt="thumbnail">'
        if view["thumbnail_url"]
        else '<img id="thumb" alt="thumbnail" hidden>'
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{_e(view["id"])} · reelchat</title>
<link rel="stylesheet" href="{PAGE_CSS.url}">
</head>
<body data-task-id="{_e(view["id"])}" data-status="{_e(view["status"])}" data-progress="{int(view["progress"])}"><main>
<h1>Task <code>{_e(view["id"])}</code></h1>
<p><span id="status" class="status {_e(view["status"])}">{_e(view["status"])}</span>
 <span id="progress-text">{_e(view["progress"])}%</span></p>
<div class="bar"><div id="progress-bar"></div></div>
<p id="error" class="error">{_e(error)}</p>
<h2>Prompt</h2><div class="prompt" id="prompt">{_e(view["prompt"])}</div>
<h2>Video</h2>{preview}{player}
<p>{thumb}</p>
<h2>History</h2>{_lineage_strip(view)}
<h2>Parameters</h2><table>{rows}
<tr><th>created</th><td id="created">{_e(view["created_at"])}</td></tr>
<tr><th>completed</th><td id="completed">{_e(view["completed_at"])}</td></tr></table>
<p><a href="/source/{_e(view["id"])}">raw data</a></p>
</main>
<script src="{PAGE_JS.url}"></script>
</body></html>"""
