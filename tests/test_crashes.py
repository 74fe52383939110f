"""Poison-pill protection counts only deaths while a video was being made, and only in a row.

A server killed while it loads its model, or stopped gracefully (SIGTERM) mid-video, never fails a
video; one that dies while making the same video five times in a row fails it as `crash_loop`.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import ServerProcess
from server_util import models_json

pytestmark = pytest.mark.slow

# long enough in the denoising loop (about 5 s on a 2-core CPU) to be stopped in the middle of it
SLOW = {"sora-2": {"steps": 60, "fps": 4, "seconds": [15], "default_seconds": 15}}
FAST = {"sora-2": {"steps": 2, "fps": 1}}


def server(home: Path, demo_models: Path, models: dict[str, Any], **env: str) -> ServerProcess:
    extra = {"REELCHAT_MODELS_JSON": models_json(demo_models, models), "TOKENIZERS_PARALLELISM": "false"}
    return ServerProcess(home, {**extra, **env})


def submit(proc: ServerProcess) -> str:
    r = httpx.post(f"{proc.base_url}/v1/videos", json={"prompt": "a lighthouse in a storm"}, timeout=30)
    assert r.status_code == 200, r.text
    video_id: str = r.json()["id"]
    return video_id


def video(proc: ServerProcess, video_id: str) -> dict[str, Any]:
    r = httpx.get(f"{proc.base_url}/v1/videos/{video_id}", timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def wait_denoising(proc: ServerProcess, video_id: str, timeout: float = 60) -> None:
    """Until the video shows progress: its engine is in the denoising loop."""
    deadline = time.monotonic() + timeout
    while (v := video(proc, video_id))["progress"] == 0 or v["status"] != "in_progress":
        assert v["status"] in ("queued", "in_progress"), v
        assert time.monotonic() < deadline, f"{video_id} never started denoising: {v}"
        time.sleep(0.05)


def wait_finished(proc: ServerProcess, video_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (v := video(proc, video_id))["status"] in ("queued", "in_progress"):
        assert time.monotonic() < deadline, f"{video_id} still {v['status']}"
        time.sleep(0.1)
    return v


def test_kills_while_the_model_loads_never_fail_a_video(make_home: Callable[[str], Path], demo_models: Path) -> None:
    # one death in the engine would be enough to fail it: none of these may count
    home = make_home("kill-loading")
    video_id = ""
    for _ in range(3):
        proc = server(home, demo_models, FAST, REELCHAT_MAX_ATTEMPTS="1").start()
        video_id = video_id or submit(proc)
        assert video(proc, video_id)["status"] == "queued"  # not claimed while the model loads
        assert httpx.get(f"{proc.base_url}/readyz").json()["error"]["code"] == "loading"
        assert proc.kill() == -signal.SIGKILL
        assert "workers started" not in proc.log(), "killed too late"
    with server(home, demo_models, FAST, REELCHAT_MAX_ATTEMPTS="1") as proc:
        done = wait_finished(proc, video_id)
        assert done["status"] == "completed", done
        assert done["error"] is None, done
        assert httpx.get(f"{proc.base_url}/readyz").json() == {"status": "ready"}
        log = proc.log()
        # the model is loaded before the workers take the waiting video
        assert log.index("model sora-2 loaded") < log.index("workers started: 1 task(s) waiting")


def test_sigterm_mid_video_puts_it_back_without_counting_a_crash(
    make_home: Callable[[str], Path], demo_models: Path
) -> None:
    home = make_home("sigterm")
    video_id = ""
    for _ in range(2):
        proc = server(home, demo_models, SLOW, REELCHAT_MAX_ATTEMPTS="1").start()
        video_id = video_id or submit(proc)
        wait_denoising(proc, video_id)
        proc.stop()
        assert "goes back to the queue (server stopping)" in proc.log()
    with server(home, demo_models, SLOW, REELCHAT_MAX_ATTEMPTS="1") as proc:
        assert video(proc, video_id)["status"] == "queued"
        done = wait_finished(proc, video_id)
        assert done["status"] == "completed", done
        assert done["error"] is None, done


def test_five_deaths_in_a_row_while_making_a_video_fail_it_as_crash_loop(
    make_home: Callable[[str], Path], demo_models: Path
) -> None:
    home = make_home("crash-loop")
    env = {"REELCHAT_CRASH_BACKOFF_S": "0.2"}  # REELCHAT_MAX_ATTEMPTS: the default, 5
    video_id = ""
    for _ in range(5):
        proc = server(home, demo_models, SLOW, **env).start()
        video_id = video_id or submit(proc)
        wait_denoising(proc, video_id)
        proc.kill()
    with server(home, demo_models, SLOW, **env) as proc:
        other = submit(proc)  # an innocent video behind it is made as usual
        failed = wait_finished(proc, video_id)
        assert failed["status"] == "failed", failed
        assert failed["error"]["code"] == "crash_loop"
        assert failed["error"]["message"] == (
            "The server stopped 5 times in a row while making this video, so it was not tried again, "
            "to protect the server."
        )
        assert wait_finished(proc, other)["status"] == "completed"
        source = httpx.get(f"{proc.base_url}/source/{video(proc, video_id)['task_id']}").json()
        # the public page names the kind of failure, never the details
        assert source["error"] == {
            "code": "crash_loop",
            "message": "The video could not be made: the server stopped while making it.",
        }
