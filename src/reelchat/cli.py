"""The `reelchat` command: serve, keys (create, update, list, revoke), models, pull."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from .catalog import (
    DEMO_I2V_PIPELINE,
    DEMO_LTX_PIPELINE,
    DEMO_PIPELINE,
    CatalogError,
    ModelSpec,
    UpstreamSpec,
    load_catalog,
)
from .commands import keys as keys_cmd
from .commands import models as models_cmd
from .media.storage import StorageConfigError
from .net.loopback import is_loopback
from .settings import Settings
from .standard_webhooks import new_secret as new_webhook_secret


def describe_model(spec: ModelSpec) -> str:
    if isinstance(spec, UpstreamSpec):
        return f"{spec.name} -> upstream {spec.upstream.base_url} model {spec.upstream.model}"
    if spec.pipeline == DEMO_PIPELINE:
        where = "built-in demo Wan model (tiny, RANDOM WEIGHTS: renders coloured mosaics, not scenes)"
    elif spec.pipeline == DEMO_LTX_PIPELINE:
        where = "built-in demo LTX-Video model (tiny, RANDOM WEIGHTS: renders noise, not scenes)"
    else:
        where = f"diffusers pipeline {spec.pipeline}" + (f" (preset {spec.preset})" if spec.preset else "")
    image = ""
    if spec.i2v_pipeline:
        demo = spec.i2v_pipeline in (DEMO_I2V_PIPELINE, DEMO_LTX_PIPELINE)
        same = spec.i2v_pipeline == spec.pipeline
        image = ", image-to-video: " + ("demo" if demo else "same checkpoint" if same else spec.i2v_pipeline)
    sizes = "/".join(spec.public_sizes)
    secs = "/".join(f"{s}s" for s in spec.allowed_seconds)
    return f"{spec.name} -> {where}{image}; {secs}, {sizes}, {spec.fps} fps, {spec.steps} steps"


def _media_place(settings: Settings) -> str:
    if not settings.storage_url:
        return str(settings.resolved_media_dir)
    links = f"presigned links, {settings.s3_presign_expires_s} s" if settings.s3_links == "presigned" else "proxied"
    return f"{settings.storage_url} ({links})"


RAY_CONNECT_TIMEOUT_S = 120.0


def _join_ray(settings: Settings) -> str | None:
    """REELCHAT_EXECUTOR=ray: join the cluster now, on the main thread, so a missing Ray or an
    unreachable cluster is a message and an exit status, before anything listens. None when joined."""
    import os
    import threading

    from .service.ray_connect import RayUnavailable, connect

    def give_up() -> None:  # ray.init can wait a long time on a head that accepts but never answers
        print(
            f"reelchat: REELCHAT_RAY_ADDRESS={settings.ray_address}: the Ray cluster did not let us join within "
            f"{RAY_CONNECT_TIMEOUT_S:.0f} s. Check the head and its version, or set REELCHAT_RAY_ADDRESS=local.",
            file=sys.stderr,
            flush=True,
        )
        os._exit(2)

    watchdog = threading.Timer(RAY_CONNECT_TIMEOUT_S, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        connect(settings)
    except RayUnavailable as e:
        return str(e)
    finally:
        watchdog.cancel()
    return None


LISTEN_BACKLOG = 8192


def raise_open_file_limit() -> int:
    """Every open stream is a socket: lift the soft limit on open files to the hard one (often 1024
    soft against 500,000 hard); returns the limit in effect."""
    try:
        import resource
    except ImportError:  # not POSIX
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # keep what we have: the limit only caps how many streams one process holds
    return soft


def serve(settings: Settings, host: str, port: int, log_level: str) -> int:
    import uvicorn

    from .api.app import create_app
    from .logs import configure_logging, uvicorn_log_config
    from .service.collector import PACED, THRESHOLDS
    from .service.factory import build_storage

    configure_logging(settings.log_format, getattr(logging, log_level.upper(), logging.INFO))
    try:
        catalog = load_catalog(settings.models_file, settings.models_json)
    except CatalogError as e:
        print(f"reelchat: {e}", file=sys.stderr)
        return 2
    missing = models_cmd.missing_models(catalog)
    for message in missing:
        print(f"reelchat: {message}", file=sys.stderr)
    if missing:
        return 2
    try:  # a bucket that doesn't exist or can't be reached is said now, not as a traceback later
        storage = build_storage(settings, check=True)
    except StorageConfigError as e:
        print(f"reelchat: {e}", file=sys.stderr)
        return 2
    settings.home.mkdir(parents=True, exist_ok=True)
    key_count = asyncio.run(keys_cmd.with_store(settings, keys_cmd.count_keys))
    if key_count == 0 and not is_loopback(host, resolve=True):
        print(
            f"reelchat: refusing to listen on {host}: no API keys exist, so the server would be open to anyone.\n"
            "Create one with `reelchat keys create --name NAME`, or listen on 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    if settings.executor == "ray":
        problem = _join_ray(settings)
        if problem is not None:
            print(f"reelchat: {problem}", file=sys.stderr)
            return 2
        print(f"reelchat: engines run on the Ray cluster (REELCHAT_RAY_ADDRESS={settings.ray_address})")
    print(
        f"reelchat: data in {settings.home} (database {settings.resolved_database_url.split('://')[0]}, "
        f"media {_media_place(settings)})"
    )
    for spec in catalog.values():
        print(f"reelchat: model {describe_model(spec)}")
    if key_count == 0:
        print("reelchat: no API keys exist: running OPEN (any bearer token is accepted) on a loopback address")
    else:
        print(f"reelchat: {key_count} API key(s); requests need 'Authorization: Bearer <key>'")
    open_files = raise_open_file_limit()
    # Thousands of open streams are thousands of long-lived objects: with CPython's default thresholds
    # the cyclic collector walks them again and again, a pause each time in the one event loop every
    # stream shares. Young collections every 5,000 allocations, full ones only when the server is
    # quiet (`service/collector.py`), and what startup allocated (modules, the app, the catalog) frozen
    # so that no collection walks it again.
    if PACED:
        gc.set_threshold(*THRESHOLDS)
    app = create_app(settings, storage, pace_collector=PACED)
    gc.freeze()
    if settings.webhook_url:
        print(f"reelchat: webhooks for video.completed and video.failed go to {settings.webhook_url}")
    metrics_access = "bearer REELCHAT_METRICS_TOKEN" if settings.metrics_token else "loopback callers only"
    print(
        f"reelchat: listening on http://{host}:{port} (API docs at /docs, metrics at /metrics for {metrics_access}; "
        f"up to {open_files} open files)"
    )
    print(
        "reelchat: the models load in the worker process(es) now; /readyz answers 200 once they take work", flush=True
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=False,
        log_level=log_level,
        timeout_graceful_shutdown=5,
        backlog=LISTEN_BACKLOG,
        log_config=uvicorn_log_config(settings.log_format),
    )
    return 0


def _configuration_problems(e: ValidationError) -> list[str]:
    """Each problem named by its variable, without the values (pydantic's text would print them all,
    secrets included)."""
    problems = []
    for error in e.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        names = [str(part) for part in error["loc"]]
        problems.append(f"REELCHAT_{'_'.join(names).upper()}: {message}" if names else message)
    return problems


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url",
        default=None,
        help="the server (default: REELCHAT_BASE_URL, else OPENAI_BASE_URL, else http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--api-key", default=None, help="an API key (default: REELCHAT_API_KEY, else OPENAI_API_KEY; none in open mode)"
    )


def _client_command(args: argparse.Namespace) -> int:
    """`generate` and `tasks`: talk to a running server, need no local configuration."""
    from .commands.server_client import Server, resolve_api_key, resolve_base_url

    server = Server(resolve_base_url(args.base_url), resolve_api_key(args.api_key))
    if args.command == "generate":
        from .commands.generate import generate

        return generate(
            server,
            args.prompt,
            model=args.model,
            image=args.image,
            remix=args.remix,
            seconds=args.seconds,
            size=args.size,
            out=args.out,
        )
    from .commands import tasks

    if args.tasks_command == "list":
        return tasks.list_tasks(server, max(1, min(100, args.limit)))
    if args.tasks_command == "show":
        return tasks.show_task(server, args.id)
    return tasks.watch_task(server, args.id)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reelchat", description="Self-hosted sora-2 style video generation server")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser(
        "serve",
        help="start the HTTP server",
        description="Start the HTTP server. Everything else is configured by REELCHAT_* environment variables "
        "(see the README's Configuration table).",
    )
    p_serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; any other address needs an API key to exist first)",
    )
    p_serve.add_argument("--port", type=int, default=8000, help="TCP port to listen on (default 8000)")
    p_serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="least severe log lines shown (default info)",
    )
    p_serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=None,
        help="log lines as text or as JSON objects, one per line (default: REELCHAT_LOG_FORMAT, else text)",
    )
    p_keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = p_keys.add_subparsers(dest="keys_command", required=True)
    p_create = keys_sub.add_parser("create", help="create a key (printed once)")
    p_create.add_argument("--name", required=True, help="unique among active keys")
    p_create.add_argument("--tenant", default="", help="owner of the videos made with this key (default: name)")
    keys_cmd.add_limit_arguments(p_create)
    p_create.add_argument(
        "--webhook-url",
        default=None,
        help="send video.completed / video.failed events of this key's videos here (prints a signing secret once)",
    )
    p_update = keys_sub.add_parser("update", help="change a key's limits, webhook, or adopt the open-mode videos")
    p_update.add_argument("key", help="the key's name or id")
    keys_cmd.add_limit_arguments(p_update)
    p_update.add_argument(
        "--webhook-url",
        default=None,
        help='where its videos\' events go ("" removes it; a key without a secret gets one, printed once)',
    )
    keys_sub.add_parser("list", help="list keys (never the secrets)")
    p_revoke = keys_sub.add_parser("revoke", help="revoke a key by id or name")
    p_revoke.add_argument("key")
    p_models = sub.add_parser("models", help="show the model catalog (or, with `presets`, the known models)")
    p_models.add_argument("what", nargs="?", choices=["presets"], help="list the presets instead")
    p_gen = sub.add_parser(
        "generate",
        help="make a video on a running server, with a progress bar, and save the mp4",
        description="Make a video on a running reelchat server (see --base-url), show its progress, save the mp4.",
    )
    p_gen.add_argument("prompt", help="what the video shows (with --remix: what to change)")
    p_gen.add_argument("--model", default=None, help="catalog model (default: the server's, sora-2)")
    p_gen.add_argument("--image", default=None, help="animate this image: a file, or an http(s) URL the server fetches")
    p_gen.add_argument(
        "--remix", default=None, metavar="SID", help="modify this video: an s_… sid, video_… or task_… id"
    )
    p_gen.add_argument("--seconds", type=int, default=None, help="length (one the model allows; default: its own)")
    p_gen.add_argument("--size", default=None, help="WIDTHxHEIGHT (one the model allows; default: its portrait size)")
    p_gen.add_argument("--out", type=Path, default=None, help="where to save the mp4 (default: <video id>.mp4)")
    _server_flags(p_gen)
    p_tasks = sub.add_parser("tasks", help="list, show or watch this key's videos on a running server")
    tasks_sub = p_tasks.add_subparsers(dest="tasks_command", required=True)
    p_list = tasks_sub.add_parser("list", help="the newest videos, as a table")
    p_list.add_argument("--limit", type=int, default=20, help="how many (1-100, default 20)")
    _server_flags(p_list)
    for name, text in (("show", "one video's details, timings and webhook deliveries"), ("watch", "follow one live")):
        p_one = tasks_sub.add_parser(name, help=text)
        p_one.add_argument("id", help="a video_… or task_… id")
        _server_flags(p_one)
    p_doctor = sub.add_parser("doctor", help="check the device, models, database, storage and Ray, and say what to fix")
    _server_flags(p_doctor)
    sub.add_parser("webhook-secret", help="print a new Standard Webhooks secret (for REELCHAT_WEBHOOK_SECRET)")
    p_pull = sub.add_parser("pull", help="download a preset's or a Hugging Face repo's checkpoint")
    p_pull.add_argument("target", help="a preset name (`reelchat models presets`) or a repo id (owner/name)")
    args = parser.parse_args(argv)

    if args.command == "webhook-secret":
        print(new_webhook_secret())
        return 0
    if args.command in ("generate", "tasks"):
        return _client_command(args)
    try:
        settings = Settings()
    except ValidationError as e:
        for problem in _configuration_problems(e):
            print(f"reelchat: bad configuration: {problem}", file=sys.stderr)
        return 2
    if args.command == "serve":
        if args.log_format:
            settings = settings.model_copy(update={"log_format": args.log_format})  # worker processes get it too
        return serve(settings, args.host, args.port, args.log_level)
    if args.command == "doctor":
        from .commands.doctor import doctor, ray_address_from_env
        from .commands.server_client import resolve_base_url

        return doctor(settings, resolve_base_url(args.base_url), ray_address_from_env())
    if args.command == "models" and args.what == "presets":
        return models_cmd.print_presets()
    if args.command == "pull":
        return models_cmd.pull(args.target)
    if args.command == "models":
        try:
            catalog = load_catalog(settings.models_file, settings.models_json)
        except CatalogError as e:
            print(f"reelchat: {e}", file=sys.stderr)
            return 2
        for spec in catalog.values():
            print(describe_model(spec))
        return 0
    settings.home.mkdir(parents=True, exist_ok=True)
    if args.keys_command == "create":
        try:
            return asyncio.run(keys_cmd.with_store(settings, keys_cmd.create_key(args.name, args.tenant, args)))
        except ValueError as e:
            print(f"reelchat: {e}", file=sys.stderr)
            return 2
    if args.keys_command == "update":
        try:
            return asyncio.run(keys_cmd.with_store(settings, keys_cmd.update_key(args.key, args)))
        except ValueError as e:
            print(f"reelchat: {e}", file=sys.stderr)
            return 2
    if args.keys_command == "list":
        return asyncio.run(keys_cmd.with_store(settings, keys_cmd.list_keys))
    return asyncio.run(keys_cmd.with_store(settings, keys_cmd.revoke_key(args.key)))


if __name__ == "__main__":
    raise SystemExit(main())
