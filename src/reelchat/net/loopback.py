"""Is an address this machine's own? One answer for `serve --host` and for a request's peer."""

from __future__ import annotations

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
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not resolve:
            return False
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(infos) and all(is_loopback(str(info[4][0])) for info in infos)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
