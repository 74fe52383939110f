"""Engines run in worker processes the server supervises (the default executor): a video made there
streams its progress through the API process; a worker killed mid-video is replaced and the video
still arrives; deleting a video stops its worker's engine; SIGTERM hands the video back for later."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from helpers import ServerProcess, parse_reply, probe_video, user
from server_util import models_json
from test_crashes import submit, wait_denoising, wait_finished

pytestmark = pytest.mark.slow

# long enough in the denoising loop (several seconds on a 2-core CPU) to be interrupted in it
SLOW = {"sora-2": {"steps": 40, "fps": 4, "seconds": [15], "default_seconds": 15}}
READY = re.compile(r"worker 0 \(pid (\d+)\) ready")


def server(home: Path, demo_models: Path, **env: str) -> ServerProcess:
    extra = {"REELCHAT_MODELS_JSON": models_json(demo_models, SLOW), "TOKENIZERS_PARALLELISM": "false"}
    return ServerProcess(home, {**extra, **env})


def worker_pids(proc: ServerProcess) -> list[int]:
    """The worker processes the server reported ready, oldest first."""
    return [int(pid) for pid in READY.findall(proc.log())]


def wait_worker(proc: ServerProcess, count: int, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while len(pids := worker_pids(proc)) < count:
        assert time.monotonic() < deadline, f"no worker #{count} became ready:\n{proc.log()[-3000:]}"
        time.sleep(0.1)
    return pids[count - 1]


def test_a_video_made_in_a_worker_streams_progress_and_decodes(
    make_home: Callable[[str], Path], demo_models: Path
) -> None:
    with server(make_home("worker-video"), demo_models) as proc:
        pid = wait_worker(proc, 1)
        assert proc.proc is not None
        assert pid != proc.proc.pid
        body = {"model": "sora-2", "messages": [user("a lighthouse in a storm")], "stream": True}
        content = ""
        with httpx.stream("POST", f"{proc.base_url}/v1/chat/completions", json=body, timeout=120) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    content += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        reply = parse_reply(content)
        assert reply.succeeded, reply.reason
        assert len(reply.progress) >= 3, reply.progress  # live progress, relayed from the worker
        assert reply.video_url is not None
        probed = probe_video(httpx.get(reply.video_url, timeout=30).content)
        assert probed.decoded_frames > 1
        log = proc.log()
        # the model is loaded in the worker, never in the API process
        assert re.search(r"\[worker-0\]: model sora-2 loaded", log), log[-3000:]
        assert httpx.get(f"{proc.base_url}/readyz").json() == {"status": "ready"}


def test_a_worker_killed_mid_video_is_replaced_and_the_video_still_arrives(
    make_home: Callable[[str], Path], demo_models: Path
) -> None:
    # one crash counted would fail it at REELCHAT_MAX_ATTEMPTS=1... so allow 2, and a short backoff
    with server(
        make_home("worker-kill"), demo_models, REELCHAT_MAX_ATTEMPTS="2", REELCHAT_CRASH_BACKOFF_S="0.2"
    ) as proc:
        first = wait_worker(proc, 1)
        video_id = submit(proc)
        wait_denoising(proc, video_id)
        os.kill(first, signal.SIGKILL)
        second = wait_worker(proc, 2)
        assert second != first
        done = wait_finished(proc, video_id)
        assert done["status"] == "completed", done
        assert done["error"] is None, done
        mp4 = httpx.get(f"{proc.base_url}/v1/videos/{video_id}/content", timeout=30)
        assert mp4.status_code == 200
        assert probe_video(mp4.content).decoded_frames > 1
        assert httpx.get(f"{proc.base_url}/healthz").json() == {"status": "ok"}


def test_deleting_a_video_stops_its_engine_in_the_worker(make_home: Callable[[str], Path], demo_models: Path) -> None:
    with server(make_home("worker-delete"), demo_models) as proc:
        wait_worker(proc, 1)
        video_id = submit(proc)
        wait_denoising(proc, video_id)
        assert httpx.delete(f"{proc.base_url}/v1/videos/{video_id}", timeout=30).status_code == 200
        deadline = time.monotonic() + 30
        while "cancelled" not in proc.log():
            assert time.monotonic() < deadline, proc.log()[-3000:]
            time.sleep(0.1)
        # the worker is free again at once: the next video doesn't wait for the deleted one's steps
        other = submit(proc)
        assert wait_finished(proc, other)["status"] == "completed"
        assert worker_pids(proc) == worker_pids(proc)[:1], "the worker was not restarted"


def test_sigterm_hands_the_video_back_and_a_restart_makes_it(
    make_home: Callable[[str], Path], demo_models: Path
) -> None:
    home = make_home("worker-sigterm")
    proc = server(home, demo_models, REELCHAT_MAX_ATTEMPTS="1").start()
    video_id = submit(proc)
    wait_denoising(proc, video_id)
    proc.stop()
    assert "goes back to the queue (server stopping)" in proc.log()
    with server(home, demo_models, REELCHAT_MAX_ATTEMPTS="1") as again:
        done = wait_finished(again, video_id)
        assert done["status"] == "completed", done
        assert done["error"] is None, done


def test_worker_processes_run_nicer_than_the_api_process_with_their_torch_threads_capped(
    make_home: Callable[[str], Path], demo_models: Path
) -> None:
    """On a small CPU box a rendering worker must not starve the event loop that serves every stream."""
    with server(make_home("worker-nice"), demo_models, REELCHAT_WORKER_NICE="5", REELCHAT_WORKER_THREADS="1") as proc:
        pid = wait_worker(proc, 1)
        assert proc.proc is not None
        api = os.getpriority(os.PRIO_PROCESS, proc.proc.pid)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, api + 5)
        assert "worker cpu share: nice +5, torch threads 1" in proc.log()
