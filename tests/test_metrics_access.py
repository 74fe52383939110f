"""Who may read /metrics: loopback callers by default (not through a proxy), or whoever holds
REELCHAT_METRICS_TOKEN when it is set (then everyone else gets 401, loopback included)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from reelchat.api.app import create_app
from reelchat.settings import Settings


def _client(app: object, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 1234))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def test_loopback_only_by_default(make_home: Callable[[str], Path]) -> None:
    app = create_app(Settings(home=make_home("metrics-open")))
    async with app.router.lifespan_context(app):
        async with _client(app, "127.0.0.1") as local:
            r = await local.get("/metrics")
            assert r.status_code == 200
            names = {f.name for f in text_string_to_metric_families(r.text)}
            assert {"reelchat_tasks", "reelchat_http_requests", "reelchat_job_phase_seconds"} <= names
            proxied = await local.get("/metrics", headers={"X-Real-IP": "198.51.100.4"})
            assert proxied.status_code == 403
        async with _client(app, "203.0.113.5") as remote:
            r = await remote.get("/metrics")
            assert r.status_code == 403
            assert r.json()["error"]["code"] == "metrics_forbidden"


async def test_a_token_opens_it_to_its_holder_only(make_home: Callable[[str], Path]) -> None:
    token = "s3cret-scrape"  # noqa: S105  (a test's token)
    app = create_app(Settings(home=make_home("metrics-token"), metrics_token=token))
    async with (
        app.router.lifespan_context(app),
        _client(app, "203.0.113.5") as remote,
        _client(app, "127.0.0.1") as local,
    ):
        assert (await remote.get("/metrics", headers={"Authorization": f"Bearer {token}"})).status_code == 200
        for client, headers in ((remote, {}), (remote, {"Authorization": "Bearer nope"}), (local, {})):
            r = await client.get("/metrics", headers=headers)
            assert r.status_code == 401, (client, headers)
            assert r.json()["error"]["code"] == "invalid_metrics_token"
