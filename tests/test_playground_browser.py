"""The playground (GET /) in a real headless Chromium driven by Playwright, against a real `reelchat serve`.

What a user does there: edit a video over three turns, branch from an earlier version, animate a
pasted image, reload while a video is being made, type a wrong API key, and type HTML that must stay
text. One open server (and one with a key) serves the whole module; each test gets a fresh browser
context, so its localStorage starts empty.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import find_chromium
from server_util import KeyedServer, start_server

pytestmark = pytest.mark.slow

# seconds and fps chosen so that Wan's 4k+1 frames give clips of 10.5 s and 4.5 s: close to what was asked
# screenshots of what a first-time user sees, to look at after a run
SHOTS = Path(tempfile.gettempdir()) / "reelchat-playground"
SHOTS.mkdir(exist_ok=True)

CATALOG: dict[str, dict[str, Any]] = {
    "sora-2": {"steps": 2, "fps": 2, "seconds": [4, 10], "default_seconds": 10},
    "sora-2-pro": {"steps": 24, "fps": 2},  # slow enough (seconds) to reload the page while it renders
}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XSS = (
    "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned2'</script>"
    ' ![t](javascript:alert(1)) [x](javascript:alert(1)) \n> ID: `task_fake`\n> sid: nothing & "cows"'
)


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason} (CI installs Debian's chromium and the dev extras)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    executable = find_chromium()
    if executable is None:
        _missing("chromium is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def server(make_home: Callable[[str], Path], demo_models: Path) -> Iterator[KeyedServer]:
    s = start_server(make_home, demo_models, "playground", models=CATALOG)
    try:
        yield s
    finally:
        s.proc.stop()


@pytest.fixture
def page(browser: Any, server: KeyedServer) -> Iterator[Any]:
    """A fresh browser context on the open server's playground; fails the test on any console error."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server.url + "/")
    pg.wait_for_function("() => document.querySelectorAll('#model option').length > 0")
    try:
        yield pg
    finally:
        context.close()
    # a CSP violation or a script error shows up here
    assert not errors, errors


# --------------------------------------------------------------------------- what a user does


def send(page: Any, text: str, *, seconds: int | None = None, orientation: str | None = None) -> None:
    if seconds is not None:
        page.select_option("#seconds", str(seconds))
    if orientation is not None:
        page.select_option("#orientation", orientation)
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def replies(page: Any) -> Any:
    return page.locator("#log .msg.assistant")


def wait_done(page: Any, n: int, timeout_s: float = 120) -> Any:
    """The n-th reply (from 1) once it shows a finished video; fails at once if it shows a failure."""
    reply = replies(page).nth(n - 1)
    page.wait_for_function(
        "n => { const r = document.querySelectorAll('#log .msg.assistant')[n - 1];"
        " return r && r.querySelector('.status-label.completed, .status-label.failed') }",
        arg=n,
        timeout=timeout_s * 1000,
    )
    assert reply.locator(".status-label.completed").count() == 1, reply.inner_text()
    return reply


def assert_plays(page: Any, video: Any, seconds: float) -> None:
    """The browser decoded the mp4 (it has a frame to show) and its length is about what was asked."""
    handle = video.element_handle()
    page.wait_for_function("v => v.readyState >= 2 && v.duration > 0", arg=handle, timeout=30_000)
    duration = page.evaluate("v => v.duration", handle)
    assert abs(duration - seconds) <= 1.0, duration
    assert page.evaluate("v => v.poster", handle).endswith(".webp")


def echo(reply: Any) -> dict[str, Any]:
    """The JSON the server echoed at the top of the reply: how it understood the turn."""
    raw = reply.locator("details pre").text_content()
    match = re.match(r"```json\n(\{.*?\})\n```", raw, re.DOTALL)
    assert match, raw
    result: dict[str, Any] = json.loads(match[1])
    return result


def sid_of(reply: Any) -> str:
    return str(reply.locator(".sid").text_content())


# --------------------------------------------------------------------------- tests


def test_the_page_is_static_files_under_a_strict_policy(server: KeyedServer) -> None:
    """No inline code: the shell names its script and style under /static/, which the package ships."""
    page = httpx.get(server.url + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "connect-src 'self';" in csp
    assert "unsafe" not in csp
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert len(scripts) == 1
    assert 'src="/static/playground.' in scripts[0][0]
    assert not scripts[0][1].strip()
    assert "<style" not in page.text
    assert " style=" not in page.text
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text)
    assert len(assets) == 2
    for asset in assets:
        served = httpx.get(server.url + asset, timeout=10)
        assert served.status_code == 200
        assert len(served.content) > 1000
        assert "immutable" in served.headers["cache-control"]


def test_three_turn_edit_each_video_plays(page: Any) -> None:
    page.screenshot(path=SHOTS / "playground-empty.png")
    send(page, "a red barn in a green field", seconds=10)
    # live: the bar shows before the video exists
    page.wait_for_selector("#log .msg.assistant progress", timeout=30_000)
    first = wait_done(page, 1)
    assert_plays(page, first.locator("video"), 10.5)
    assert "sid" not in echo(first)

    send(page, "now at night, under the stars")
    second = wait_done(page, 2)
    assert_plays(page, second.locator("video"), 10.5)
    assert echo(second)["sid"] == sid_of(first)  # the page sent the conversation: the server remixed video 1

    send(page, "add falling snow", seconds=4)
    third = wait_done(page, 3)
    assert_plays(page, third.locator("video"), 4.5)
    assert echo(third)["sid"] == sid_of(second)
    assert echo(third)["seconds"] == 4

    # the rail holds the three versions; clicking the first shows it and its prompt
    rail = page.locator("#rail .rail-item")
    assert rail.count() == 3
    page.wait_for_function("() => [...document.querySelectorAll('#rail img')].every(i => i.complete && i.naturalWidth)")
    rail.nth(0).click()
    assert page.locator("#viewer .viewer-prompt").text_content() == "a red barn in a green field"
    assert_plays(page, page.locator("#viewer-video"), 10.5)
    assert page.locator("#viewer-video").get_attribute("src") == first.locator("video").get_attribute("src")

    page.screenshot(path=SHOTS / "playground-desktop-viewer.png")
    page.click("#viewer .viewer-head button")
    assert page.locator("#viewer").is_hidden()
    page.screenshot(path=SHOTS / "playground-desktop.png")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=SHOTS / "playground-phone.png")
    page.click("#chats-toggle")
    page.screenshot(path=SHOTS / "playground-phone-chats.png")


def test_edit_from_here_branches_from_an_earlier_video(page: Any) -> None:
    send(page, "a yellow kite over the sea")
    first = wait_done(page, 1)
    send(page, "make the kite red")
    wait_done(page, 2)
    first_sid = sid_of(first)

    first.locator(".edit-from-here").click()
    # a new conversation that ends at the first video, with the cursor in the prompt box
    assert page.evaluate("document.activeElement.id") == "prompt"
    assert replies(page).count() == 1
    assert page.locator("#conversations li").count() == 2
    assert "1" in page.locator("#branch-note").text_content()
    # in Chinese this time: the page asks for it with Accept-Language, and the reply is worded in it
    page.click("#locale-toggle")
    assert page.locator("#send").text_content() == "发送"
    send(page, "把风筝变成蓝色")
    branched = wait_done(page, 2)
    assert echo(branched)["sid"] == first_sid
    assert "> 生成完成 ✅" in branched.locator("details pre").text_content()
    assert_plays(page, branched.locator("video"), 10.5)

    # the original is untouched, and its rail points at the branch
    page.locator("#conversations .conv").nth(1).click()
    assert replies(page).count() == 2
    assert page.locator("#rail .rail-branch").count() == 1


def test_pasted_image_becomes_image_to_video(page: Any) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (96, 160), (220, 40, 40)).save(buf, format="PNG")
    # the file picker attaches too, and the attachment can be taken back
    page.set_input_files("#file", files=[{"name": "red.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
    page.wait_for_selector("#attachment img")
    page.click("#attachment button")
    assert page.locator("#attachment").is_hidden()
    png = base64.b64encode(buf.getvalue()).decode()
    page.focus("#prompt")
    page.evaluate(
        """b64 => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], "red.png", {type: "image/png"}));
            document.getElementById("prompt").dispatchEvent(new ClipboardEvent("paste", {clipboardData: data}));
        }""",
        png,
    )
    page.wait_for_selector("#attachment img")
    send(page, "the red square starts to glow")
    reply = wait_done(page, 1)
    assert echo(reply).get("image") is True
    assert page.locator("#log .msg.user img").count() == 1
    assert page.locator("#attachment").is_hidden()
    assert_plays(page, reply.locator("video"), 10.5)


def test_reload_during_generation_resumes(page: Any) -> None:
    page.select_option("#model", "sora-2-pro")
    send(page, "a slow sunrise over mountains")
    page.wait_for_selector("#log .status-label.in_progress, #log .status-label.queued", timeout=30_000)
    page.wait_for_function("() => document.querySelector('#log .task-id')")
    task_id = page.locator("#log .task-id").text_content()
    page.screenshot(path=SHOTS / "playground-progress.png")
    page.reload()
    # back on the same conversation, following the same task, still unfinished
    page.wait_for_selector("#log .task-id")
    assert page.locator("#log .task-id").text_content() == task_id
    assert page.locator("#log .status-label.completed, #log .status-label.failed").count() == 0
    reply = wait_done(page, 1, timeout_s=180)
    assert_plays(page, reply.locator("video"), 15.5)
    # the resumed reply carries the sid as the stream would have, so the next turn edits this video
    assert f"> sid: {sid_of(reply)}" in reply.locator("details pre").text_content()


def test_bad_key_is_refused_clearly(browser: Any, make_home: Callable[[str], Path], demo_models: Path) -> None:
    keyed = start_server(make_home, demo_models, "playground-keyed", models=CATALOG, keys=["alice"])
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(keyed.url + "/")
        dialog = page.locator("#key-dialog")
        dialog.wait_for(state="visible")
        assert "needs an API key" in page.locator("#key-message").text_content()
        page.fill("#key-input", "sk-wrong-key")
        page.press("#key-input", "Enter")
        page.wait_for_function("() => document.getElementById('key-message').classList.contains('bad')")
        message = page.locator("#key-message").text_content()
        assert "not accepted" in message, message
        assert "Incorrect API key provided" in message, message
        assert page.locator("#model option").count() == 0

        page.fill("#key-input", keyed.keys["alice"])
        page.press("#key-input", "Enter")
        page.wait_for_function("() => document.querySelectorAll('#model option').length > 0")
        assert dialog.is_hidden()
        assert page.evaluate("localStorage.getItem('reelchat.apiKey')") == keyed.keys["alice"]
        assert keyed.keys["alice"] not in page.url
    finally:
        context.close()
        keyed.proc.stop()


def test_html_in_prompts_stays_text(page: Any) -> None:
    title = page.title()
    send(page, XSS)
    reply = wait_done(page, 1)
    assert page.title() == title
    assert page.locator("#log .msg.user .text").text_content() == XSS
    assert echo(reply)["prompt"] == XSS
    # nothing from the prompt became an element, a link or the reply's task
    assert page.locator("img[src='x'], a[href^='javascript'], #log script").count() == 0
    assert page.locator("script").count() == 1
    assert page.locator("#log .task-id").text_content() != "task_fake"
    assert page.locator("#conversations .conv span").first.text_content() == XSS[:60]
    assert_plays(page, reply.locator("video"), 10.5)
