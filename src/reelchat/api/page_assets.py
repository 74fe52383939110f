"""The pages' style sheets and scripts, served from /static/ so no page runs inline code.

The task page's (/web) are written here; the playground's (/) are files shipped in `api/static/`.

The page's Content-Security-Policy allows scripts and styles from this server only ('self'): an
injected <script> or style attribute would not run even if escaping ever failed. The names carry
a hash of the content, so browsers may cache them for good and still see every change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Asset:
    name: str
    media_type: str
    body: bytes

    @property
    def url(self) -> str:
        return f"/static/{self.name}"


def _asset(stem: str, ext: str, media_type: str, text: str) -> Asset:
    body = text.encode()
    return Asset(f"{stem}.{hashlib.sha256(body).hexdigest()[:12]}.{ext}", media_type, body)


PAGE_CSS = _asset(
    "page",
    "css",
    "text/css; charset=utf-8",
    """body{font-family:system-ui,sans-serif;margin:0;background:#0f1115;color:#e6e6e6}
main{max-width:960px;margin:0 auto;padding:1.5rem}
h1{font-size:1.1rem;font-weight:600;word-break:break-all}
.status{display:inline-block;padding:.2rem .6rem;border-radius:1rem;background:#2a2f3a}
.status.completed{background:#1f5130} .status.failed,.status.cancelled{background:#5a1f1f}
.bar{height:8px;background:#2a2f3a;border-radius:4px;overflow:hidden;margin:.8rem 0}
.bar>div{height:100%;width:0;background:#4c8dff;transition:width .3s}
.prompt{white-space:pre-wrap;background:#181b22;padding:1rem;border-radius:8px}
video{max-width:100%;max-height:60vh;background:#000;border-radius:8px}
#thumb{max-width:200px;border-radius:6px}
#preview{display:block;width:100%;max-width:640px;max-height:60vh;object-fit:contain;background:#000;border-radius:8px}
#preview[hidden]{display:none}
table{border-collapse:collapse;margin:1rem 0} th{text-align:left;color:#999;padding:.2rem 1rem .2rem 0}
.error{color:#ff8080;white-space:pre-wrap}
.lineage{display:flex;gap:.5rem;overflow-x:auto;align-items:center;padding:.5rem 0}
.step{display:flex;flex-direction:column;width:120px;color:#ccc;text-decoration:none;font-size:.75rem}
.step img{width:120px;border-radius:4px;border:2px solid transparent}
.step.current img{border-color:#4c8dff}
.arrow .how{display:block;font-size:.65rem;color:#999}
.step[data-kind=extension] img{border-left:4px solid #3c9}
.cap{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.nothumb{display:block;height:60px;background:#2a2f3a;border-radius:4px;padding:4px}
a{color:#8ab4ff}
body.plain{margin:2rem}
""",
)

# The task comes from the page's data-* attributes (HTML-escaped on the server); updates set
# textContent and attributes, never innerHTML.
PAGE_JS = _asset(
    "page",
    "js",
    "text/javascript; charset=utf-8",
    """"use strict";
const boot = document.body.dataset;
const FINISHED = ["completed", "failed", "cancelled"];
function setProgress(percent) {
  document.getElementById("progress-text").textContent = percent + "%";
  document.getElementById("progress-bar").style.width = percent + "%";
}
async function tick() {
  let data;
  try { const r = await fetch("/source/" + boot.taskId, {cache: "no-store"}); data = await r.json(); }
  catch (e) { setTimeout(tick, 2000); return; }
  const s = document.getElementById("status");
  s.textContent = data.status; s.className = "status " + data.status;
  setProgress(data.progress);
  document.getElementById("error").textContent = data.error ? data.error.message : "";
  document.getElementById("completed").textContent = data.completed_at || "";
  document.getElementById("p-sid").textContent = data.sid || "";
  const p = document.getElementById("preview");
  if (data.preview_url && !data.url) {
    if (p.getAttribute("src") !== data.preview_url) p.src = data.preview_url;
    p.hidden = false;
  } else if (!p.hidden) {
    p.hidden = true; p.removeAttribute("src");
  }
  if (data.url) {
    const v = document.getElementById("player");
    if (v.getAttribute("src") !== data.url) { v.src = data.url; v.poster = data.thumbnail_url || ""; }
    v.hidden = false;
    const t = document.getElementById("thumb"); t.src = data.thumbnail_url; t.hidden = false;
  }
  if (!FINISHED.includes(data.status)) setTimeout(tick, 1000);
}
if (boot.taskId) {
  setProgress(Number(boot.progress) || 0);
  if (!FINISHED.includes(boot.status)) setTimeout(tick, 1000);
}
""",
)


def _packaged(stem: str, ext: str, media_type: str) -> Asset:
    text = (resources.files("reelchat.api") / "static" / f"{stem}.{ext}").read_text(encoding="utf-8")
    return _asset(stem, ext, media_type, text)


PLAYGROUND_CSS = _packaged("playground", "css", "text/css; charset=utf-8")
PLAYGROUND_JS = _packaged("playground", "js", "text/javascript; charset=utf-8")

ASSETS = {asset.name: asset for asset in (PAGE_CSS, PAGE_JS, PLAYGROUND_CSS, PLAYGROUND_JS)}
