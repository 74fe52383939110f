"""Is an address this machine's own? One answer for `serve --host` and for a request's peer."""

from __future__ import annotations

import functools
import ipaddress
import socket

__all__ = ["is_loopback"]


def is_loopback(host: str | None, *, resolve: bool = False) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1, an IPv4-mapped loopback) or "localhost".

    With `resolve`, a host name counts when every address it resolves to is loopback (for a name
    an operator typed); without it (a peer's address, already numeric) names are never loopback.
    """
    if not host:
        return False
    if host == "localhost":
        return True
    if not resolve:
        return _is_loopback_address(host)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(infos) and all(is_loopback(str(info[4][0])) for info in infos)
    return _loopback(address)


@functools.lru_cache(maxsize=4096)
def _is_loopback_address(host: str) -> bool:
    """A peer's numeric address (asked for every request: one parse per address)."""
    try:
        return _loopback(ipaddress.ip_address(host))
    except ValueError:
        return False


def _loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
