"""`bench/engine_gpu.py --tiny`: the GPU benchmark's code, run on the CPU as CI's smoke test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_tiny_benchmark_prints_the_table() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(  # noqa: S603  (our own script, under this interpreter)
        [sys.executable, str(ROOT / "bench" / "engine_gpu.py"), "--tiny"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "| model | variant | steps | s/video | s/step | peak GiB | MFU | vs stock | note |" in out
    rows = [line for line in out.splitlines() if line.startswith(("| wan-tiny |", "| ltx-tiny |"))]
    variants = {line.split("|")[2].strip() for line in rows}
    for expected in (
        "diffusers (stock)",
        "reelchat, no switches",
        "+ cfg_batch",
        "+ compile",
        "+ first_block cache 0.05",
        "all of the above",
        "4-step distilled LoRA + above",
        "+ vae_tiling",
    ):
        assert expected in variants, f"no {expected!r} row in:\n{out}"
    for line in rows:
        seconds = float(line.split("|")[4])
        assert seconds > 0, line
    assert any(line.split("|")[2].strip() == "diffusers (stock)" for line in rows if "ltx-tiny" in line)
