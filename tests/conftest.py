"""Session fixtures: a clean environment and one shared build of the demo model.

The demo Wan model is built once (and cached between runs under pytest's cache dir, keyed by the
builder's source and library versions); every server home gets `models/demo` as a symlink to it,
so no test pays for building it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `import helpers` from every test module

if TYPE_CHECKING:
    from moto_s3 import MotoS3


@pytest.fixture(scope="session", autouse=True)
def _no_developer_env() -> Iterator[None]:
    """REELCHAT_* from the developer's shell must not leak into in-process Settings()."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("REELCHAT_"):
                mp.delenv(name)
        # in-process apps run their engines in-process (2 cores); `reelchat serve` subprocesses don't
        # inherit this (helpers.clean_env) and use worker processes, the default
        mp.setenv("REELCHAT_EXECUTOR", "inprocess")
        yield


def _demo_cache_key() -> str:
    from reelchat.engines import demo_model
    from reelchat.engines.families import ltx_demo

    h = hashlib.sha256(Path(demo_model.__file__).read_bytes() + Path(ltx_demo.__file__).read_bytes())
    for dist in ("torch", "diffusers", "transformers", "tokenizers"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            h.update(f"{dist}={metadata.version(dist)}".encode())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def demo_models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the demo pipelines `t2v/`, `i2v/` (Wan) and `ltx/`, built at most once."""
    from reelchat.engines.demo_model import ensure_demo_pipeline

    cache = getattr(request.config, "cache", None)
    key = _demo_cache_key()
    root = Path(cache.mkdir(f"reelchat-demo-{key}")) if cache is not None else tmp_path_factory.mktemp("demo")
    for kind in ("t2v", "i2v", "ltx"):
        ensure_demo_pipeline(root, kind)  # atomic: safe with parallel runs sharing the cache
    return root


@pytest.fixture(scope="session")
def make_home(tmp_path_factory: pytest.TempPathFactory, demo_models: Path) -> Callable[[str], Path]:
    """A fresh REELCHAT_HOME whose models/demo is the shared demo model build."""

    def make(name: str) -> Path:
        home = tmp_path_factory.mktemp(name)
        (home / "models").mkdir()
        (home / "models" / "demo").symlink_to(demo_models, target_is_directory=True)
        return home

    return make


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """A real S3-protocol server (moto's standalone server, a subprocess) for the whole session."""
    from moto_s3 import start_moto

    server = start_moto(str(tmp_path_factory.mktemp("moto") / "moto.log"))
    try:
        yield server
    finally:
        server.stop()
