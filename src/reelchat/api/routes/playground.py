"""GET /: the playground, a chat page where each message makes or edits a video.

The page is a shell: `api/static/playground.js` builds everything else in the browser and talks to
the public API only (`/v1/models`, `/v1/chat/completions` streamed, `/source/<task id>` to re-attach
after a reload), exactly as any other client would. Nothing here depends on the caller's key: the
page asks for one when `/v1/models` answers 401. Its script and style come from /static/ and it runs
nothing inline; pictures may also be data:/blob: URLs (the image a user attaches, shown before sending).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ..deps import StateDep
from ..page_assets import PLAYGROUND_CSS, PLAYGROUND_JS
from .pages import page_policy

router = APIRouter()

# Labels are filled in by the script in the chosen language; the English here is what a browser
# without JavaScript shows.
SHELL = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>reelchat playground</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{PLAYGROUND_CSS.url}">
</head>
<body>
<header class="top">
  <button type="button" id="chats-toggle" class="ghost" aria-controls="sidebar" aria-expanded="false"
    data-i18n="chats">Chats</button>
  <h1>reelchat</h1>
  <span class="spacer"></span>
  <button type="button" id="key-button" class="ghost" hidden data-i18n="apiKey">API key</button>
  <button type="button" id="locale-toggle" class="ghost" aria-label="Language">中文 (zh)</button>
</header>
<div class="layout">
  <nav id="sidebar" aria-label="Conversations">
    <button type="button" id="new-chat" data-i18n="newChat">New chat</button>
    <ul id="conversations"></ul>
  </nav>
  <main id="main">
   <div id="scroll">
    <p id="notice" role="alert" hidden></p>
    <section id="rail-section" hidden>
      <h2 data-i18n="versions">Versions</h2>
      <ol id="rail"></ol>
    </section>
    <section id="viewer" hidden aria-live="polite"></section>
    <div id="log" aria-live="polite"></div>
    <section id="empty">
      <h2 data-i18n="welcomeTitle">Describe a video</h2>
      <p data-i18n="welcomeBody">Each message makes a video; the next message edits it.</p>
    </section>
   </div>
    <form id="composer" autocomplete="off">
      <p id="branch-note" hidden></p>
      <div class="pickers">
        <label><span data-i18n="model">Model</span> <select id="model"></select></label>
        <label><span data-i18n="orientation">Orientation</span> <select id="orientation"></select></label>
        <label><span data-i18n="duration">Duration</span> <select id="seconds"></select></label>
      </div>
      <div id="attachment" hidden></div>
      <div class="row">
        <input type="file" id="file" class="visually-hidden" accept="image/*">
        <label class="attach ghost" for="file" data-i18n="attach">Image</label>
        <textarea id="prompt" rows="2" aria-label="Prompt"></textarea>
        <button type="submit" id="send" data-i18n="send">Send</button>
      </div>
    </form>
  </main>
</div>
<dialog id="key-dialog">
  <form id="key-form" method="dialog">
    <h2 data-i18n="keyTitle">API key</h2>
    <p id="key-message"></p>
    <input type="password" id="key-input" autocomplete="off" aria-label="API key">
    <div class="row"><button type="submit" id="key-save" data-i18n="save">Save</button></div>
  </form>
</dialog>
<script src="{PLAYGROUND_JS.url}"></script>
</body></html>"""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def playground(request: Request, state: StateDep) -> HTMLResponse:
    links = state.links
    csp = page_policy(links.for_request(request).base, media_origin=links.media_origin, local_images=True)
    return HTMLResponse(SHELL, headers={"Cache-Control": "no-cache", "Content-Security-Policy": csp})
