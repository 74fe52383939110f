"""/web/<task id> in a real headless Chromium: live progress, the mp4 plays, user text stays text."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from browser import Browser, find_chromium
from helpers import missing_dependency
from server_util import KeyedServer, start_server

pytestmark = pytest.mark.slow

XSS_PROMPT = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned2'</script> & \"cows\""


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        missing_dependency("chromium is not installed (.ci/run installs Debian's chromium)")
    return path


@pytest.fixture(scope="module")
def server(make_home: Callable[[str], Path], demo_models: Path) -> Iterator[KeyedServer]:
    s = start_server(
        make_home, demo_models, "pages", models={"sora-2": {"steps": 2, "fps": 1}, "sora-2-pro": {"steps": 20}}
    )
    try:
        yield s
    finally:
        s.proc.stop()


def test_page_follows_the_task_live_and_plays_the_video(server: KeyedServer, chromium: str) -> None:
    with server.http() as http:
        # a longer job first, so ours is still queued when the page opens
        busy = http.post("/v1/videos", json={"prompt": "keeps the worker busy", "model": "sora-2-pro"})
        assert busy.status_code == 200, busy.text
        created = http.post("/v1/videos", json={"prompt": XSS_PROMPT, "model": "sora-2", "size": "96x160"})
        assert created.status_code == 200, created.text
        task_id = created.json()["task_id"]
    with Browser(chromium) as browser:
        browser.open(f"{server.url}/web/{task_id}")
        first = browser.eval("document.getElementById('status').textContent")
        assert first in ("queued", "in_progress"), first
        # no reload from here on: the page updates itself
        browser.wait_for("document.getElementById('status').textContent === 'completed'", timeout=120)
        assert browser.eval("document.getElementById('progress-text').textContent") == "100%"
        assert browser.eval("document.getElementById('p-sid').textContent").startswith("s_")
        # the mp4 decodes in the browser: it knows the video's real size
        assert browser.eval("document.createElement('video').canPlayType('video/mp4; codecs=\"avc1.640028\"')")
        browser.wait_for("document.getElementById('player').readyState >= 1", timeout=30)
        assert browser.eval(
            "[document.getElementById('player').videoWidth, document.getElementById('player').videoHeight]"
        ) == [96, 160]
        assert browser.wait_for(
            "document.getElementById('thumb').complete && document.getElementById('thumb').naturalWidth"
        )
        # user text is text: no injected element ran or exists
        assert "pwned" not in browser.eval("document.title")
        assert browser.eval("document.querySelectorAll('img[src=\"x\"]').length") == 0
        assert browser.eval("document.getElementById('prompt').textContent") == XSS_PROMPT


def test_history_strip_links_every_version(server: KeyedServer, chromium: str) -> None:
    with server.http() as http:
        first = http.post("/v1/videos", json={"prompt": "a red barn", "model": "sora-2", "size": "96x160"}).json()
        video_id = first["id"]
        for _ in range(600):
            state = http.get(f"/v1/videos/{video_id}").json()
            if state["status"] == "completed":
                break
            time.sleep(0.2)
        remix = http.post(f"/v1/videos/{video_id}/remix", json={"prompt": "now at night"}).json()
    with Browser(chromium) as browser:
        browser.open(f"{server.url}/web/{remix['task_id']}")
        browser.wait_for("document.getElementById('status').textContent === 'completed'", timeout=120)
        hrefs = browser.eval("[...document.querySelectorAll('#lineage a')].map(a => a.href)")
        assert [h.rsplit("/", 1)[-1] for h in hrefs] == [first["task_id"], remix["task_id"]]
        captions = browser.eval("[...document.querySelectorAll('#lineage .cap')].map(c => c.textContent)")
        assert captions == ["a red barn", "now at night"]
        # the source's thumbnail shows (the page's own is drawn when it completes, on the next load)
        assert browser.wait_for(
            "(() => { const i = document.querySelector('#lineage img');"
            " return i && i.complete && i.naturalWidth > 0 })()"
        )
        # follow the strip back to the first version
        browser.open(hrefs[0])
        assert browser.eval("document.getElementById('prompt').textContent") == "a red barn"
        assert json.loads(json.dumps(browser.eval("document.querySelectorAll('#lineage a').length"))) == 1


def test_media_links_open_and_play_on_their_own(server: KeyedServer, chromium: str) -> None:
    """What a chat reply links to (the mp4, the webp) still shows when opened directly, under its CSP."""
    with server.http() as http:
        body = {"prompt": "a media link opened on its own", "model": "sora-2", "size": "96x160"}
        created = http.post("/v1/videos", json=body)
        task_id = created.json()["task_id"]
        for _ in range(600):
            done = http.get(f"/source/{task_id}").json()
            if done["status"] == "completed":
                break
            time.sleep(0.2)
        assert "default-src 'none'" in http.get(done["url"]).headers["content-security-policy"]
    with Browser(chromium) as browser:
        browser.open(done["url"])
        browser.wait_for("document.querySelector('video') && document.querySelector('video').readyState >= 1")
        assert browser.eval("document.querySelector('video').videoWidth") == 96
        browser.open(done["thumbnail_url"])
        assert browser.wait_for(
            "document.images.length && document.images[0].complete && document.images[0].naturalWidth"
        )
