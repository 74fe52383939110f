"""Joining the Ray cluster of `REELCHAT_EXECUTOR=ray`, or saying clearly why not.

Imports no Ray at module level: the CLI checks the configuration with it before anything starts,
and a missing Ray must be a message (`RayUnavailable`), not an ImportError.

`ray.init` must run on a thread that lives as long as the process (the main thread, or the event
loop's): with `REELCHAT_RAY_ADDRESS=local` the head processes it starts die with the thread that
started them. And it can wait a long time on an address where nothing answers, so the address is
resolved and probed first.
"""

from __future__ import annotations

import logging
import socket

from ..settings import Settings

PROBE_TIMEOUT_S = 3.0
FIX = (
    "set REELCHAT_RAY_ADDRESS to the head's host:port, to auto (the cluster `ray start` runs on this machine), "
    "or to local (a private cluster in this process)"
)


class RayUnavailable(Exception):
    """`REELCHAT_EXECUTOR=ray` cannot work: the message names the variable and the fix."""


def require_ray() -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise RayUnavailable(
            "REELCHAT_EXECUTOR=ray, but Ray is not installed. Install it with `pip install 'reelchat[ray]'` "
            "(on every machine of the cluster), or set REELCHAT_EXECUTOR=local."
        ) from None


def connect(settings: Settings) -> bool:
    """Join (or, for `local`, start) the cluster unless this process already has; True when this
    call initialised Ray (the caller then shuts it down)."""
    require_ray()
    import ray

    if ray.is_initialized():
        return False
    address = settings.ray_address.strip()
    if address == "local":
        target = "local"
    else:
        target = _resolve(address)
        _probe(address, target)
    try:
        ray.init(address=target, include_dashboard=False, namespace="reelchat", logging_level=logging.WARNING)
    except Exception as e:  # ConnectionError, a token the cluster refuses, a version mismatch
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RayUnavailable(
            f"REELCHAT_RAY_ADDRESS={address}: could not join the Ray cluster at {target}: {first}. "
            "Check that the head runs the same Ray and Python versions (and, with token authentication, "
            f"that RAY_AUTH_TOKEN or ~/.ray/auth_token holds its token); or {FIX}."
        ) from None
    return True


def _resolve(address: str) -> str:
    """host:port of the cluster's head (for `auto`: RAY_ADDRESS, else the cluster started here)."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        resolved = canonicalize_bootstrap_address(address)
    except (ConnectionError, ValueError) as e:
        if address == "auto":
            raise RayUnavailable(
                "REELCHAT_RAY_ADDRESS=auto, but no Ray cluster runs on this machine. Start one with "
                f"`ray start --head`, or {FIX}."
            ) from None
        raise RayUnavailable(f"REELCHAT_RAY_ADDRESS={address} is not an address ({e}); {FIX}.") from None
    if resolved is None:
        raise RayUnavailable(f"REELCHAT_RAY_ADDRESS={address}: no cluster found; {FIX}.")
    return resolved


def _probe(address: str, target: str) -> None:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except (OSError, ValueError) as e:
        raise RayUnavailable(
            f"REELCHAT_RAY_ADDRESS={address}: the Ray cluster at {target} does not answer ({e}). Start its head "
            f"(`ray start --head --port={port or 6379}`), or {FIX}."
        ) from None
