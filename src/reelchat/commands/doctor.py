"""`reelchat doctor`: checks what a server here would need, and says what to fix.

Device (torch, CUDA, memory against the catalog's models), models (built, pulled or present), the
database (answers, migrations), storage (writable, free space), webhooks, Ray (when configured), and
a server already running at the base URL. Exit status 1 when a check fails (warnings don't count).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from ..catalog import DEMO_I2V_PIPELINE, DEMO_LTX_PIPELINE, DEMO_PIPELINE, CatalogError, DiffusersSpec, load_catalog
from ..settings import Settings

Level = Literal["ok", "warn", "fail", "info"]
STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "info": "cyan"}
LOW_DISK_BYTES = 5 * 1024**3


@dataclass(frozen=True)
class Check:
    area: str
    level: Level
    detail: str
    fix: str = ""


def _device(settings: Settings, need_gb: dict[str, int]) -> list[Check]:
    try:
        import torch
    except ImportError as e:
        return [Check("device", "fail", f"torch does not import: {e}", "reinstall: bash scripts/install.sh")]
    wanted = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    checks = [Check("device", "info", f"torch {torch.__version__}; models run on {wanted}")]
    if not torch.cuda.is_available():
        level: Level = "fail" if wanted.startswith("cuda") else "warn"
        fix = "unset REELCHAT_DEVICE, or install a CUDA build of torch and an NVIDIA driver"
        detail = "no CUDA device: only the demo models are practical on a CPU"
        if torch.version.cuda is None:
            detail += " (this torch is a CPU build)"
        checks.append(Check("device", level, detail, fix if level == "fail" else ""))
        return checks
    biggest = max(need_gb.values(), default=0)
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        name = torch.cuda.get_device_name(i)
        detail = f"cuda:{i} {name}: {free / 1024**3:.1f} GiB free of {total / 1024**3:.1f} GiB"
        if biggest and total / 1024**3 < biggest:
            models = ", ".join(m for m, gb in need_gb.items() if gb > total / 1024**3)
            checks.append(
                Check("device", "warn", f"{detail}; {models} need about {biggest} GB", "pick a smaller preset")
            )
        else:
            checks.append(Check("device", "ok", detail))
    return checks


def _models(settings: Settings) -> tuple[list[Check], dict[str, int]]:
    try:
        catalog = load_catalog(settings.models_file, settings.models_json)
    except CatalogError as e:
        return [Check("models", "fail", str(e), "fix REELCHAT_MODELS_FILE / REELCHAT_MODELS_JSON")], {}
    from ..engines import hub
    from ..engines.demo_model import needs_build
    from ..engines.presets import PRESETS

    checks: list[Check] = []
    need_gb: dict[str, int] = {}
    demo_kinds = {DEMO_PIPELINE: "t2v", DEMO_I2V_PIPELINE: "i2v", DEMO_LTX_PIPELINE: "ltx"}
    seen: set[str] = set()  # entries sharing a checkpoint: checked once
    for spec in catalog.values():
        if not isinstance(spec, DiffusersSpec):
            checks.append(Check("models", "info", f"{spec.name}: upstream {spec.upstream.base_url}"))
            continue
        if spec.preset and spec.preset in PRESETS:
            need_gb[spec.name] = PRESETS[spec.preset].vram_gb
        for value in filter(None, (spec.pipeline, spec.i2v_pipeline)):
            if value in seen:
                continue
            seen.add(value)
            if value in demo_kinds:
                kind = demo_kinds[value]
                built = not needs_build(settings.models_dir / "demo", kind)  # type: ignore[arg-type]
                where = settings.models_dir / "demo" / kind
                state = f"built in {where}" if built else f"built at the next start into {where} (about 30 s)"
                checks.append(Check("models", "ok", f"{spec.name}: demo model {value!r} (random weights), {state}"))
            elif hub.is_repo_id(value):
                snapshot = hub.cached_snapshot(value)
                if snapshot is None:
                    checks.append(
                        Check("models", "fail", f"{spec.name}: {value} is not downloaded", hub.pull_command(value))
                    )
                else:
                    checks.append(Check("models", "ok", f"{spec.name}: {value} in {snapshot}"))
            elif (Path(value).expanduser() / "model_index.json").is_file():
                checks.append(Check("models", "ok", f"{spec.name}: {value}"))
            else:
                checks.append(
                    Check(
                        "models",
                        "fail",
                        f"{spec.name}: {value} is not a diffusers pipeline directory (no model_index.json)",
                        "point `pipeline` at a checkpoint directory, a preset, or a pulled repo id",
                    )
                )
    writable = _writable(settings.models_dir)
    if writable:
        checks.append(
            Check("models", "fail", f"{settings.models_dir} is not writable: {writable}", "fix its ownership")
        )
    return checks, need_gb


def _writable(directory: Path) -> str:
    """'' when a file can be written (and removed) in `directory` (made if missing), else why not."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".doctor-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        return e.strerror or str(e)
    return ""


def _database(settings: Settings) -> list[Check]:
    from ..store.schema import MIGRATIONS, schema_migrations
    from ..store.tasks import Store

    url = settings.resolved_database_url
    shown = url.split("@")[-1] if "@" in url else url  # never print a password

    async def probe() -> list[Check]:
        import sqlalchemy as sa

        store = Store(url)
        try:
            await asyncio.wait_for(store.ping(), timeout=10)
            async with store.engine.connect() as conn:
                has = await conn.run_sync(lambda c: sa.inspect(c).has_table("schema_migrations"))
                done = set((await conn.execute(sa.select(schema_migrations.c.version))).scalars()) if has else set()
            keys = await store.keys.active_count() if has else 0
        finally:
            await store.close()
        pending = [v for v, _, _ in MIGRATIONS if v not in done]
        checks = [Check("database", "ok", f"{shown} answers")]
        if pending:
            checks.append(Check("database", "info", f"{len(pending)} migration(s) to apply at the next start"))
        opened = "no API keys: the server runs open, on loopback only" if not keys else f"{keys} active API key(s)"
        checks.append(Check("keys", "info", opened))
        return checks

    try:
        return asyncio.run(probe())
    except Exception as e:
        fix = (
            "start PostgreSQL, or fix REELCHAT_DATABASE_URL" if url.startswith("postgresql") else "check REELCHAT_HOME"
        )
        return [Check("database", "fail", f"{shown} does not answer: {type(e).__name__}: {e}", fix)]


def _storage(settings: Settings) -> list[Check]:
    media = settings.resolved_media_dir
    why = _writable(media)
    if why:
        return [Check("storage", "fail", f"{media} is not writable: {why}", "fix REELCHAT_MEDIA_DIR or its ownership")]
    free = shutil.disk_usage(media).free
    level: Level = "warn" if free < LOW_DISK_BYTES else "ok"
    fix = "free some disk space or move REELCHAT_MEDIA_DIR" if level == "warn" else ""
    return [Check("storage", level, f"{media}: writable, {free / 1024**3:.1f} GiB free", fix)]


def _webhooks(settings: Settings) -> list[Check]:
    if not settings.webhook_url:
        return [Check("webhooks", "info", "no server-wide endpoint (REELCHAT_WEBHOOK_URL)")]
    return [Check("webhooks", "ok", f"events go to {settings.webhook_url}, signed with REELCHAT_WEBHOOK_SECRET")]


def _ray(address: str | None) -> list[Check]:
    if not address:
        return []
    try:
        ray: Any = importlib.import_module("ray")  # an optional extra, typed or not
    except ImportError:
        return [Check("ray", "fail", "REELCHAT_EXECUTOR=ray but ray is not installed", "pip install 'reelchat[ray]'")]

    def connect() -> list[Check]:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        try:
            resources = ray.cluster_resources()
            nodes = [n for n in ray.nodes() if n.get("Alive")]
        finally:
            ray.shutdown()
        gpus = resources.get("GPU", 0)
        return [Check("ray", "ok", f"cluster at {address}: {len(nodes)} node(s), {gpus:g} GPU(s)")]

    try:
        return asyncio.run(asyncio.wait_for(asyncio.to_thread(connect), timeout=60))
    except Exception as e:
        return [Check("ray", "fail", f"cannot join the Ray cluster at {address}: {e}", "start it: ray start --head")]


def _server(base_url: str) -> list[Check]:
    import httpx

    try:
        health = httpx.get(f"{base_url}/healthz", timeout=3, trust_env=False)
        ready = httpx.get(f"{base_url}/readyz", timeout=3, trust_env=False)
    except httpx.HTTPError:
        return [Check("server", "info", f"no server answers at {base_url} (start one: reelchat serve)")]
    level: Level = "ok" if health.status_code == 200 else "fail"
    state = "ready" if ready.status_code == 200 else "loading its models"
    return [Check("server", level, f"{base_url}: /healthz {health.status_code}, {state}")]


def doctor(settings: Settings, base_url: str, ray_address: str | None, console: Console | None = None) -> int:
    console = console or Console()
    checks: list[Check] = []
    steps: list[Callable[[], list[Check]]] = [
        lambda: _database(settings),
        lambda: _storage(settings),
        lambda: _webhooks(settings),
        lambda: _ray(ray_address),
        lambda: _server(base_url),
    ]
    model_checks, need_gb = _models(settings)
    checks += _device(settings, need_gb) + model_checks
    for step in steps:
        checks += step()
    table = Table(title=f"reelchat doctor ({settings.home})")
    for column in ("check", "", "detail"):
        table.add_column(column, overflow="fold")
    for c in checks:
        table.add_row(c.area, f"[{STYLE[c.level]}]{c.level}[/]", c.detail + (f"\n→ {c.fix}" if c.fix else ""))
    console.print(table)
    failed = [c for c in checks if c.level == "fail"]
    if failed:
        console.print(f"[red]{len(failed)} problem(s) to fix:[/red]")
        for c in failed:
            console.print(f"  {c.area}: {c.fix or c.detail}")
        return 1
    console.print(
        "[green]Nothing to fix.[/green]"
        + (" (see the warnings above)" if any(c.level == "warn" for c in checks) else "")
    )
    return 0


def ray_address_from_env() -> str | None:
    """Ray is checked when configured: REELCHAT_EXECUTOR=ray (REELCHAT_RAY_ADDRESS, default `auto`)."""
    if os.environ.get("REELCHAT_EXECUTOR") == "ray" or os.environ.get("REELCHAT_RAY_ADDRESS"):
        return os.environ.get("REELCHAT_RAY_ADDRESS") or "auto"
    return None
