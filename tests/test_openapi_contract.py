"""The OpenAPI document is the contract: schemathesis `--checks all` over every operation of a real server.

`st run` (the CLI a user runs, `bench/fuzz_openapi.sh` runs it longer) generates requests from
/openapi.json, valid and invalid, and checks every answer against the document: status codes,
content types, response schemas, refused invalid data, accepted valid data, `Allow` on 405, auth.
Real images come from `bench/openapi_fuzz_hooks.py` where the schema can only say "a string".
The other tests here pin what the fuzzer would take long to stumble on.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import assert_openai_error, missing_dependency
from server_util import FAST_SORA2, KeyedServer, start_server

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parent.parent / "bench"
EXAMPLES = 5  # per operation and phase: about a minute here; bench/fuzz_openapi.sh runs many more


@pytest.fixture(scope="module")
def server(make_home: Callable[[str], Path], demo_models: Path) -> Iterator[KeyedServer]:
    # a small queue per key: the fuzzer's valid requests start renders, and the rest get 429 (documented)
    srv = start_server(
        make_home,
        demo_models,
        "openapi",
        models={"sora-2": FAST_SORA2, "sora-2-pro": FAST_SORA2},
        keys=("fuzz",),
        env={"REELCHAT_MAX_QUEUED_PER_KEY": "3"},
    )
    try:
        yield srv
    finally:
        srv.proc.stop()


@pytest.fixture(scope="module")
def document(server: KeyedServer) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{server.url}/openapi.json").json()
    return doc


def test_every_body_and_error_is_documented(document: dict[str, Any]) -> None:
    error_ref = "#/components/schemas/ErrorResponse"
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            responses = op["responses"]
            assert "422" not in responses, where  # validation errors are 400s
            if method in ("post", "put", "patch"):
                content = op["requestBody"]["content"]
                assert "application/json" in content, where
            for status, response in responses.items():
                if status.startswith("4") and "application/json" in response.get("content", {}):
                    assert response["content"]["application/json"]["schema"] == {"$ref": error_ref}, where
            if op.get("security"):
                assert {"401", "403"} <= responses.keys(), where
    chat = document["components"]["schemas"]["ChatCompletionRequest"]
    assert {"model", "messages", "stream"} <= chat["properties"].keys()
    create = document["paths"]["/v1/videos"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= create.keys()


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/videos", "GET, POST"),
        ("PATCH", "/v1/videos/video_x", "DELETE, GET"),
        ("GET", "/v1/videos/video_x/remix", "POST"),
        ("DELETE", "/v1/chat/completions", "POST"),
        ("POST", "/media/x.mp4", "GET, HEAD"),
    ],
)
def test_405_names_every_method_of_the_path(server: KeyedServer, method: str, path: str, allow: str) -> None:
    with server.http("fuzz") as http:
        r = http.request(method, path)
    body = assert_openai_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == allow
    assert allow in body["message"]


def test_schemathesis_finds_nothing(server: KeyedServer, document: dict[str, Any]) -> None:
    if importlib.util.find_spec("schemathesis") is None:
        missing_dependency("schemathesis is not installed (the dev extra: pip install '.[dev]')")
    operations = sum(len(ops) for ops in document["paths"].values())
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "openapi_fuzz_hooks", "PYTHONPATH": str(BENCH)}
    cmd = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json"),
        *("--checks", "all", "--max-examples", str(EXAMPLES), "--workers", "1", "--request-timeout", "120"),
        *("--header", f"Authorization: Bearer {server.keys['fuzz']}", "--seed", "1"),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
    report = out.stdout + out.stderr
    assert out.returncode == 0, report[-8000:]
    assert f"Selected: {operations}/{operations}" in report, report[-2000:]
    assert f"Tested: {operations}" in report, report[-2000:]
