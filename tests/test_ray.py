"""`REELCHAT_EXECUTOR=ray` on a real local Ray cluster (`ray.cluster_utils.Cluster`): a head that runs
no actors and two worker nodes of one CPU each, shared by the whole module (Ray is slow to start on
a small machine).

A `reelchat serve` joins the cluster and makes a video the SDK downloads and PyAV decodes, its
progress relayed live from the actor; the node running a job is removed and the job finishes on the
other one; deleting a video stops its actor's engine at the next step; a model that asks for more
GPUs than any node has fails at once; and a missing Ray or an unreachable cluster stops
`reelchat serve` with a message naming the variable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from helpers import ServerProcess, free_port, missing_dependency, parse_reply, probe_video, run_cli, user
from server_util import models_json

from reelchat.domain import TaskStatus, VideoRequest
from reelchat.service.factory import build_service
from reelchat.service.videos import VideoService
from reelchat.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")]

# long enough in the denoising loop (seconds on a 2-core CPU) to be interrupted in it
SLOW = {"sora-2": {"steps": 30, "fps": 4, "seconds": [15], "default_seconds": 15}}
FAST = {"sora-2": {"steps": 2, "fps": 1}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    try:
        import ray
        from ray.cluster_utils import Cluster
    except ImportError:
        missing_dependency("Ray is not installed (pip install 'reelchat[ray]')")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}, connect=False)
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level=logging.WARNING)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]


def ray_settings(home: Path, demo_models: Path, overrides: dict[str, Any], **more: Any) -> Settings:
    return Settings(
        home=home,
        executor="ray",
        models_json=models_json(demo_models, overrides),
        crash_backoff_s=0.1,
        **more,
    )


@pytest.fixture
async def open_service(make_home: Callable[[str], Path], demo_models: Path) -> AsyncIterator[Callable[..., Any]]:
    services: list[VideoService] = []

    async def open_(name: str, overrides: dict[str, Any], **more: Any) -> VideoService:
        service = build_service(ray_settings(make_home(name), demo_models, overrides, **more))
        services.append(service)
        await service.open()
        deadline = time.monotonic() + 60
        while not service.ready:
            assert time.monotonic() < deadline, "the Ray executor never started"
            await asyncio.sleep(0.05)
        return service

    yield open_
    for service in services:
        await service.close()


async def wait_task(service: VideoService, task_id: str, done: Callable[[Any], bool], within_s: float = 120) -> Any:
    deadline = time.monotonic() + within_s
    while not done(task := await service.get(task_id)):
        assert time.monotonic() < deadline, f"{task_id}: {task}"
        await asyncio.sleep(0.05)
    return task


def running_slot(service: VideoService, task_id: str) -> Any:
    from reelchat.service.ray_executor import RayExecutor

    executor = service.executor
    assert isinstance(executor, RayExecutor)
    return next(slot for slot in executor._started()[1].slots() if slot.current == task_id)


# --------------------------------------------------------------------------- through `reelchat serve`


def test_a_server_on_the_cluster_makes_a_video_the_sdk_downloads(
    cluster: Any, make_home: Callable[[str], Path], demo_models: Path
) -> None:
    home = make_home("ray-serve")
    env = {
        "REELCHAT_EXECUTOR": "ray",
        "REELCHAT_RAY_ADDRESS": cluster.address,
        "REELCHAT_MODELS_JSON": models_json(demo_models, {"sora-2": {"steps": 6, "fps": 1}}),
        "TOKENIZERS_PARALLELISM": "false",
    }
    with ServerProcess(home, env) as proc:
        client = openai.OpenAI(base_url=f"{proc.base_url}/v1", api_key="any", max_retries=0, timeout=180.0)
        content = ""
        for chunk in client.chat.completions.create(
            model="sora-2", stream=True, messages=[user("a lighthouse in a storm")]
        ):
            content += chunk.choices[0].delta.content or "" if chunk.choices else ""
        reply = parse_reply(content)
        assert reply.succeeded, reply.reason
        assert len(reply.progress) >= 3, reply.progress  # live progress, relayed from the actor
        assert reply.video_url is not None
        probed = probe_video(httpx.get(reply.video_url, timeout=30).content)
        assert probed.decoded_frames > 1

        video = client.videos.create_and_poll(model="sora-2", prompt="a cat surfing", poll_interval_ms=200)
        assert video.status == "completed", video
        mp4 = client.videos.download_content(video.id, variant="video").read()
        assert probe_video(mp4).decoded_frames > 1
        log = proc.log()
    # the model was loaded in an actor (its log comes back prefixed by Ray), never in the API process
    assert "joined the Ray cluster" in log, log[-3000:]
    assert any("EngineActor" in line and "model sora-2 loaded" in line for line in log.splitlines()), log[-3000:]
    assert not any("model sora-2 loaded" in line and "EngineActor" not in line for line in log.splitlines())


# --------------------------------------------------------------------------- the service on the cluster


async def test_a_model_no_node_can_host_fails_at_once(cluster: Any, open_service: Callable[..., Any]) -> None:
    service = await open_service("ray-unhostable", {"sora-2-pro": {"gpus": 2}})
    task = await service.submit("t", VideoRequest(model="sora-2-pro", prompt="a whale"))
    done = await wait_task(service, task.id, lambda t: t.status is not TaskStatus.QUEUED, within_s=30)
    assert done.status is TaskStatus.FAILED, done
    assert done.error_code == "model_unhostable"
    assert "2 GPU" in (done.error_message or ""), done.error_message
    assert "`gpus`" in (done.error_message or "")
    assert set(done.phases) == {"queued"}  # recorded with the outcome, as the runner's failures are


async def test_deleting_a_video_stops_its_actor_at_the_next_step(
    cluster: Any, open_service: Callable[..., Any]
) -> None:
    service = await open_service("ray-cancel", SLOW)
    task = await service.submit("t", VideoRequest(model="sora-2", prompt="a lighthouse in a storm"))
    async with service.watch(task.id) as events:
        running = await wait_task(service, task.id, lambda t: t.status is TaskStatus.IN_PROGRESS and t.progress > 0)
        slot = running_slot(service, task.id)
        # at most this long per step so far (the time since the claim includes preparing the job)
        assert running.started_at is not None
        elapsed = time.time() - running.started_at.timestamp()
        step_s = elapsed / max(1.0, running.progress / 100 * 30)
        await service.delete("t", task.video_id)
        deleted_at = time.monotonic()
        while slot.current is not None:  # the actor reports Done when its engine stopped
            assert time.monotonic() - deleted_at < 30
            await asyncio.sleep(0.02)
        stopped_in = time.monotonic() - deleted_at
        seen = [events.get_nowait() for _ in range(events.qsize())]
    final = await service.get(task.id)
    assert final is not None
    assert final.status is TaskStatus.CANCELLED
    assert final.video_name is None
    assert not list(service.settings.resolved_media_dir.glob("*.mp4"))
    assert final.progress < 100
    # it stopped far sooner than the rest of the video would have taken (30 steps)
    assert stopped_in < max(5.0, 10 * step_s), (stopped_in, step_s)
    assert not any(e.status is TaskStatus.COMPLETED for e in seen)
    # and the actor stays warm: the next video runs on it
    second = await service.submit("t", VideoRequest(model="sora-2", prompt="a quiet harbour", seconds=15))
    await wait_task(service, second.id, lambda t: t.status is TaskStatus.IN_PROGRESS)
    assert running_slot(service, second.id) is slot


async def test_removing_the_node_running_a_job_finishes_it_on_the_other(
    cluster: Any, open_service: Callable[..., Any]
) -> None:
    service = await open_service("ray-node-death", SLOW, max_attempts=3)
    task = await service.submit("t", VideoRequest(model="sora-2", prompt="a lighthouse in a storm"))
    await wait_task(service, task.id, lambda t: t.status is TaskStatus.IN_PROGRESS and t.progress > 0)
    slot = running_slot(service, task.id)
    node = next(n for n in cluster.worker_nodes if n.node_id == slot.node)
    cluster.remove_node(node)
    finished = await wait_task(service, task.id, lambda t: t.status not in (TaskStatus.QUEUED, TaskStatus.IN_PROGRESS))
    assert finished.status is TaskStatus.COMPLETED, finished
    assert finished.attempt == 2  # the second run made it; the first one's writes were fenced out
    assert finished.crashes == 0  # the engine came back on the second run: the streak ended
    survivors = {n.node_id for n in cluster.worker_nodes}
    assert slot.node not in survivors
    mp4 = await service.storage.load(finished.video_name)
    assert probe_video(mp4).decoded_frames > 1
    media = sorted(p.name for p in service.settings.resolved_media_dir.iterdir())
    assert media == sorted([finished.video_name, finished.thumbnail_name, finished.spritesheet_name])
    cluster.add_node(num_cpus=1)  # for whatever runs after this


# --------------------------------------------------------------------------- startup errors


def test_an_unreachable_cluster_stops_serve_with_the_variable_and_the_fix(make_home: Callable[[str], Path]) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        missing_dependency("Ray is not installed (pip install 'reelchat[ray]')")
    home = make_home("ray-unreachable")
    address = f"127.0.0.1:{free_port()}"
    out = run_cli(home, "serve", env={"REELCHAT_EXECUTOR": "ray", "REELCHAT_RAY_ADDRESS": address}, timeout=60)
    assert out.returncode == 2, out
    assert f"REELCHAT_RAY_ADDRESS={address}" in out.stderr, out.stderr
    assert "ray start --head" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_serve_without_ray_installed_says_how_to_install_it(make_home: Callable[[str], Path], tmp_path: Path) -> None:
    home = make_home("ray-missing")
    shadow = tmp_path / "no-ray" / "ray"  # an interpreter where `import ray` fails, as without the extra
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'ray'\", name='ray')\n")
    path = os.pathsep.join(p for p in (str(shadow.parent), os.environ.get("PYTHONPATH", "")) if p)
    out = run_cli(home, "serve", env={"REELCHAT_EXECUTOR": "ray", "PYTHONPATH": path}, timeout=60)
    assert out.returncode == 2, out
    assert "REELCHAT_EXECUTOR=ray" in out.stderr, out.stderr
    assert "pip install 'reelchat[ray]'" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
