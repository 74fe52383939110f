"""Presets, `reelchat pull` against a local server speaking the Hub's download protocol (HF_ENDPOINT), and
serving what was pulled: the README's path from `reelchat models presets` to a rendered video, on the
tiny LTX demo checkpoint published under a preset's repo id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from helpers import ServerProcess, probe_video, run_cli
from hub_server import HubServer, repo_from_dir
from test_engine import png

from reelchat.catalog import CatalogError, DiffusersSpec, load_catalog
from reelchat.engines.hub import needed_files
from reelchat.engines.presets import PRESETS

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

REPO = PRESETS["ltx-video-2b"].repo_id
# what a real diffusers repo also holds, that from_pretrained never reads
JUNK = {
    "ltxv-2b-0.9.6-distilled-04-25.safetensors": b"s" * 4096,  # a single-file (non-diffusers) checkpoint
    "transformer/diffusion_pytorch_model.fp16.safetensors": b"h" * 512,  # a half-precision variant
    "text_encoder/pytorch_model.bin": b"p" * 512,  # a pickle copy of safetensors weights
    "README.md": b"# tiny",
}
# A file in a component folder, over huggingface_hub's 10 MiB read chunk: a connection cut half-way
# through it leaves whole chunks on disk to resume from (the demo's real weights are smaller).
BIG = "tokenizer/big-vocab.txt"
BIG_BYTES = bytes(range(256)) * (24 * 4096)  # 24 MiB
# the preset, shrunk to what the tiny checkpoint renders in seconds on a CPU
TINY = {"portrait_sizes": ["64x96"], "landscape_sizes": ["96x64"], "seconds": [2], "default_seconds": 2, "fps": 4}


def test_needed_files_skip_what_the_pipeline_does_not_load() -> None:
    index = {"_class_name": "LTXPipeline", "vae": ["diffusers", "AutoencoderKLLTXVideo"], "extra": [None, None]}
    files = [
        "model_index.json",
        "ltxv-13b.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",
        "vae/diffusion_pytorch_model.bin",
        "extra/weights.safetensors",
    ]
    assert needed_files(index, files) == [
        "model_index.json",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    # a folder with only a variant keeps it; with only .bin keeps that
    only = ["vae/config.json", "vae/diffusion_pytorch_model.fp16-00001-of-00002.safetensors"]
    assert needed_files(index, only)[1:] == only
    assert needed_files(index, ["vae/diffusion_pytorch_model.bin"])[1:] == ["vae/diffusion_pytorch_model.bin"]


def test_a_preset_entry_starts_over_and_overrides() -> None:
    catalog = load_catalog(models_json=json.dumps({"sora-2": {"preset": "wan2.2-ti2v-5b", "steps": 30}}))
    spec = catalog["sora-2"]
    assert isinstance(spec, DiffusersSpec)
    assert spec.pipeline == spec.i2v_pipeline == "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    assert spec.steps == 30  # overridden
    assert spec.portrait_sizes == ["704x1280"]  # the preset's, not the built-in sora-2's
    assert spec.frames_for(5) == 120  # 24 fps (the model makes 121: 4k+1)
    ltx = load_catalog(models_json=json.dumps({"x": {"preset": "ltx-video-13b-distilled"}}))["x"]
    assert ltx.frames_for(5) == 120
    assert ltx.frames_for(2) == 48
    with pytest.raises(CatalogError, match=r"unknown preset 'nope'.*reelchat models presets"):
        load_catalog(models_json=json.dumps({"x": {"preset": "nope"}}))


def test_models_presets_lists_the_known_models(tmp_path: Path) -> None:
    out = run_cli(tmp_path, "models", "presets")
    assert out.returncode == 0, out.stderr
    for repo in (
        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        "Wan-AI/Wan2.1-T2V-14B-Diffusers",
        "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        "Lightricks/LTX-Video-0.9.7-distilled",
    ):
        assert repo in out.stdout
    assert "832x480" in out.stdout
    assert "text,image,video" in out.stdout
    assert "GB" in out.stdout


@pytest.fixture
def hub(demo_models: Path) -> Iterator[HubServer]:
    server = HubServer({REPO: repo_from_dir(demo_models / "ltx", {**JUNK, BIG: BIG_BYTES})}).start()
    try:
        yield server
    finally:
        server.stop()


def hf_env(hub: HubServer, hf_home: Path) -> dict[str, str]:
    return {"HF_ENDPOINT": hub.url, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_TELEMETRY": "1"}


def test_a_model_not_pulled_refuses_to_start_with_the_command(tmp_path: Path) -> None:
    env = {"HF_HOME": str(tmp_path / "hf"), "REELCHAT_MODELS_JSON": json.dumps({"sora-2": {"preset": "ltx-video-2b"}})}
    out = run_cli(tmp_path, "serve", "--port", "1", env=env)
    assert out.returncode == 2
    assert "reelchat pull ltx-video-2b" in out.stderr
    assert "Traceback" not in out.stderr


def test_pull_unknown_things_fail_clearly(tmp_path: Path, hub: HubServer) -> None:
    out = run_cli(tmp_path, "pull", "not a repo", env=hf_env(hub, tmp_path / "hf"))
    assert out.returncode == 2
    assert "neither a preset" in out.stderr
    out = run_cli(tmp_path, "pull", "nobody/nothing", env=hf_env(hub, tmp_path / "hf"))
    assert out.returncode == 1
    assert "nobody/nothing" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_pull_resumes_a_cut_download_then_serves_every_mode(tmp_path: Path, hub: HubServer) -> None:
    env = hf_env(hub, tmp_path / "hf")
    repo = hub.repos[REPO]
    weights = "transformer/diffusion_pytorch_model.safetensors"
    hub.cut_once.add(BIG)  # the connection drops half-way through it

    out = run_cli(tmp_path, "pull", "ltx-video-2b", env=env)
    assert out.returncode == 0, out.stderr
    assert "Fetching" in out.stderr  # huggingface_hub's progress bar
    fetched = {p.split("/resolve/", 1)[1].split("/", 1)[1] for p in hub.fetched()}
    assert set(JUNK).isdisjoint(fetched)  # only what the pipeline loads
    assert weights in fetched
    assert "model_index.json" in fetched
    ranges = [r.range for r in hub.requests if r.method == "GET" and r.path.endswith(BIG)]
    assert len(ranges) == 2
    assert ranges[0] is None
    assert ranges[1] is not None
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 10 * 2**20 <= resumed_at <= len(BIG_BYTES) // 2
    snapshot = Path(out.stdout.split(" is in ")[1].split()[0])
    assert (snapshot / BIG).read_bytes() == BIG_BYTES  # resumed, whole
    assert (snapshot / weights).read_bytes() == repo.files[weights]

    hub.stop()  # serving reads the cache, never the network
    models = {"sora-2": {"preset": "ltx-video-2b", **TINY, "steps": 2}}
    (tmp_path / "home").mkdir()
    with ServerProcess(tmp_path / "home", {**env, "REELCHAT_MODELS_JSON": json.dumps(models)}) as server:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0, timeout=120.0)
        t2v = client.videos.create_and_poll(prompt="a cow in a field", model="sora-2", poll_interval_ms=100)
        assert t2v.status == "completed", t2v.error
        i2v = client.videos.create(
            prompt="a cow", model="sora-2", input_reference=("a.png", png((200, 30, 30)), "image/png")
        )
        i2v = client.videos.poll(i2v.id, poll_interval_ms=100)
        assert i2v.status == "completed", i2v.error
        v2v = client.videos.poll(client.videos.remix(t2v.id, prompt="at night").id, poll_interval_ms=100)
        assert v2v.status == "completed", v2v.error
        for video in (t2v, i2v, v2v):
            probed = probe_video(client.videos.download_content(video.id, variant="video").read())
            # OpenAI's default size (720x1280), rendered at the model's 64x96 and scaled; 2 s at 4 fps (of 8k+1 made)
            assert probed.decoded_shape == (8, 1280, 720, 3)
        log = server.log()
    assert f"diffusers pipeline {REPO} (preset ltx-video-2b)" in log
