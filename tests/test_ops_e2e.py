"""Operating a real server: webhooks, /metrics, JSON logs, and the people's CLI, against one
`reelchat serve` subprocess (worker processes, SQLite), driven over HTTP.

- Webhooks: a receiver on loopback verifies each signature with its own implementation of the
  Standard Webhooks spec, answers 500 to the first delivery to the server-wide endpoint and sees the
  retry (same `webhook-id`); a key's own endpoint gets its videos' events signed with its secret;
  a failed video sends `video.failed`; `/source/{id}` lists the deliveries.
- /metrics parses with prometheus-client's own parser, and its series move when a video is made.
- `--log-format json`: every line is a JSON object; a task's lines carry its id; one start and one
  end line per run, with the phase durations.
- `reelchat generate` saves an mp4 that decodes; `reelchat tasks list|show` find it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from helpers import ServerProcess, clean_env, probe_video, run_cli
from prometheus_client.parser import text_string_to_metric_families
from server_util import FAST_SORA2, models_json, wait_video
from webhook_receiver import Receiver

pytestmark = pytest.mark.slow

SERVER_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
# sora-2-pro on an upstream nobody listens on: its videos fail at once (video.failed)
BROKEN = {
    "engine": "upstream",
    "upstream": {"base_url": "http://127.0.0.1:9/v1", "model": "x", "max_retries": 0, "request_timeout_s": 2},
}


@dataclass
class Ops:
    server: ServerProcess
    receiver: Receiver
    key: str

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.server.base_url}/v1", api_key=self.key, max_retries=0, timeout=120.0)

    def make_video(self, prompt: str, model: str = "sora-2") -> Any:
        client = self.client()
        video = wait_video(client, client.videos.create(model=model, prompt=prompt).id)
        return video


@pytest.fixture(scope="module")
def ops(make_home: Callable[[str], Path], demo_models: Path) -> Iterator[Ops]:
    home = make_home("ops")
    with Receiver({"/server": SERVER_SECRET}, script={"/server": [500]}) as receiver:
        created = run_cli(home, "keys", "create", "--name", "alice", "--webhook-url", receiver.url("/alice"))
        assert created.returncode == 0, created.stderr
        lines = [line.strip() for line in created.stdout.splitlines()]
        receiver.secrets["/alice"] = next(line for line in lines if line.startswith("whsec_"))
        env = {
            "REELCHAT_MODELS_JSON": models_json(demo_models, {"sora-2": FAST_SORA2, "sora-2-pro": BROKEN}),
            "TOKENIZERS_PARALLELISM": "false",
            "REELCHAT_WEBHOOK_URL": receiver.url("/server"),
            "REELCHAT_WEBHOOK_SECRET": SERVER_SECRET,
            "REELCHAT_WEBHOOK_RETRY_BASE_S": "0.3",
            "REELCHAT_WEBHOOK_POLL_S": "0.2",
            "REELCHAT_LOG_FORMAT": "json",
        }
        server = ServerProcess(home, env).start()
        try:
            yield Ops(server, receiver, lines[-1])
        finally:
            server.stop()


def _source(ops: Ops, task_id: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{ops.server.base_url}/source/{task_id}").json()
    return body


def test_webhooks_are_signed_retried_after_a_500_and_logged(ops: Ops) -> None:
    video = ops.make_video("a lighthouse in a storm")
    assert video.status == "completed"
    first, retry = ops.receiver.wait_for(2, "/server")
    assert first.answered == 500
    assert retry.answered == 204
    for delivery in (first, retry):
        assert delivery.verified, delivery.headers
        assert delivery.event["type"] == "video.completed"
        assert delivery.event["object"] == "event"
        assert delivery.event["data"] == {"id": video.id}
        assert delivery.event["id"] == delivery.headers["webhook-id"]
    assert retry.headers["webhook-id"] == first.headers["webhook-id"]  # the same message, tried again
    assert retry.body == first.body
    (mine,) = ops.receiver.wait_for(1, "/alice")
    assert mine.verified
    assert mine.event["data"] == {"id": video.id}
    assert not _tampered_passes(mine, ops.receiver.secrets["/alice"])

    task_id = ops.client().videos.retrieve(video.id).model_extra["task_id"]  # type: ignore[index]
    deadline = time.monotonic() + 10
    while True:  # the receiver answered; the sender records it right after
        log = {d["endpoint"]: d for d in _source(ops, task_id)["webhooks"]}
        if all(d["status"] == "delivered" for d in log.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert log["server"]["status"] == "delivered", log
    assert log["server"]["attempts"] == 2, log
    assert log["server"]["last_response_status"] == 204
    assert log["key"]["status"] == "delivered", log
    assert log["key"]["attempts"] == 1, log
    assert "url" not in json.dumps(log)  # the endpoints' addresses stay the operator's


def _tampered_passes(delivery: Any, secret: str) -> bool:
    from webhook_receiver import verify

    return verify(secret, delivery.headers, delivery.body.replace(b"video.completed", b"video.failed"))


def test_a_failed_video_sends_video_failed(ops: Ops) -> None:
    before = len(ops.receiver.received)
    video = ops.make_video("never rendered", model="sora-2-pro")
    assert video.status == "failed"
    deadline = time.monotonic() + 30
    while not any(r.event["data"]["id"] == video.id for r in ops.receiver.received[before:] if r.path == "/alice"):
        assert time.monotonic() < deadline, ops.receiver.received[before:]
        time.sleep(0.05)
    got = [r for r in ops.receiver.received[before:] if r.event["data"]["id"] == video.id]
    assert {r.event["type"] for r in got} == {"video.failed"}
    assert all(r.verified for r in got)


def _scrape(ops: Ops, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(f"{ops.server.base_url}/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):  # prometheus-client's own parser
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_move_when_a_video_is_made(ops: Ops) -> None:
    before = _scrape(ops)
    video = ops.make_video("metrics, please")
    assert video.status == "completed"
    httpx.get(f"{ops.server.base_url}/v1/videos/video_nope", headers={"Authorization": f"Bearer {ops.key}"})
    after = _scrape(ops)

    def moved(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert moved("reelchat_jobs_finished_total", model="sora-2", status="completed") == 1
    for phase in ("queued", "denoise", "encode", "upload"):
        assert moved("reelchat_job_phase_seconds_count", model="sora-2", phase=phase) == 1, phase
    assert moved("reelchat_job_phase_seconds_sum", model="sora-2", phase="denoise") > 0
    assert moved("reelchat_device_busy_seconds_total") > 0
    assert moved("reelchat_http_requests_total", method="POST", route="/v1/videos", code="200") == 1
    assert moved("reelchat_http_requests_total", method="GET", route="/v1/videos/{video_id}", code="200") >= 1
    assert moved("reelchat_http_errors_total", route="/v1/videos/{video_id}", code="404", error="video_not_found") == 1
    assert _value(after, "reelchat_workers") == 1
    assert 0 <= _value(after, "reelchat_device_busy_ratio") <= 1
    assert _value(after, "reelchat_tasks", model="sora-2", state="queued") == 0
    assert ("reelchat_open_streams", (("kind", "chat"),)) in after
    assert _value(after, "reelchat_webhook_deliveries_total", event="video.completed", outcome="delivered") >= 1
    # the raw path never becomes a label: an unknown path is `unmatched`
    httpx.get(f"{ops.server.base_url}/no/such/{os.urandom(4).hex()}")
    assert _value(_scrape(ops), "reelchat_http_requests_total", method="GET", route="unmatched", code="404") >= 1


def test_metrics_refuses_callers_behind_a_proxy(ops: Ops) -> None:
    r = httpx.get(f"{ops.server.base_url}/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "metrics_forbidden"
    assert "REELCHAT_METRICS_TOKEN" in r.json()["error"]["message"]


def test_json_logs_carry_the_task_id_and_one_start_and_end_line(ops: Ops) -> None:
    video = ops.make_video("log me")
    task_id = ops.client().videos.retrieve(video.id).model_extra["task_id"]  # type: ignore[index]
    deadline = time.monotonic() + 10
    while True:
        records = [json.loads(line) for line in ops.server.log().splitlines() if line.startswith("{")]
        about = [r for r in records if task_id in r["message"] or r.get("task_id") == task_id]
        ends = [r for r in about if r.get("event") == "task_finished"]
        if ends or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert all(r.get("task_id") == task_id for r in about), about
    starts = [r for r in about if r.get("event") == "task_started"]
    assert len(starts) == 1, about
    assert len(ends) == 1, about
    end = ends[0]
    assert end["status"] == "completed"
    assert end["model"] == "sora-2"
    for field in ("queued_s", "denoise_s", "encode_s", "upload_s", "run_s"):
        assert isinstance(end[field], float), (field, end)
    assert end["process"].startswith("worker-")  # it ran in a worker process, and said so
    access = [r for r in records if r["logger"] == "uvicorn.access"]
    assert access, "uvicorn's access lines are JSON too"
    for line in ops.server.log().splitlines():
        assert line.startswith(("{", "reelchat: ")), line  # nothing else: no progress bars, no raw warnings


def _cli(ops: Ops, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = clean_env(ops.server.home, {"REELCHAT_BASE_URL": ops.server.base_url, "REELCHAT_API_KEY": ops.key})
    return subprocess.run(  # noqa: S603  (fixed argv: this interpreter and our own CLI)
        [sys.executable, "-m", "reelchat.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_generate_saves_an_mp4_that_decodes(ops: Ops, tmp_path: Path) -> None:
    out = tmp_path / "cow.mp4"
    done = _cli(ops, "generate", "a cow dancing", "--seconds", "10", "--size", "160x96", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    probed = probe_video(out.read_bytes())
    assert probed.decoded_shape[1:] == (96, 160, 3), probed
    assert probed.decoded_shape[0] > 1
    video_id = next(w for w in done.stdout.split() if w.startswith("video_"))
    listed = _cli(ops, "tasks", "list")
    assert listed.returncode == 0, listed.stderr
    assert video_id in listed.stdout
    shown = _cli(ops, "tasks", "show", video_id)
    assert shown.returncode == 0, shown.stderr
    assert "completed" in shown.stdout
    assert "a cow dancing" in shown.stdout
    remixed = _cli(ops, "generate", "now at night", "--remix", video_id, "--out", str(tmp_path / "night.mp4"))
    assert remixed.returncode == 0, remixed.stdout + remixed.stderr
    assert probe_video((tmp_path / "night.mp4").read_bytes()).decoded_shape[1:] == (96, 160, 3)


def test_generate_reports_a_bad_request_without_a_traceback(ops: Ops, tmp_path: Path) -> None:
    done = _cli(ops, "generate", "x", "--model", "nope", "--out", str(tmp_path / "x.mp4"))
    assert done.returncode != 0
    assert "nope" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.mp4").exists()
