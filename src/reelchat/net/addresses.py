"""Which addresses and host names the image fetcher may never connect to.

Loopback, RFC 1918, link-local and cloud metadata, CGNAT, multicast, reserved and documentation
ranges, and IPv4-mapped / 6to4 / NAT64 / Teredo embeddings of those. Pure predicates: no DNS, no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Final

__all__ = [
    "AddressPredicate",
    "forbidden_even_if_private_allowed",
    "is_forbidden_address",
    "is_forbidden_host_name",
    "parse_ip",
]

AddressPredicate = Callable[[str], bool]
"""``ip -> True if the fetcher must refuse to connect to it``."""

# Names refused before any DNS lookup (the resolved-address check would catch most of them anyway).
_FORBIDDEN_NAMES: Final = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
        "metadata",
        "metadata.google.internal",
        "instance-data",
        "instance-data.ec2.internal",
    }
)

_V4_DENY: Final = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches localhost on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT (also Alibaba's metadata 100.100.100.200)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata 169.254.169.254
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. 255.255.255.255
    )
)
_V6_DENY: Final = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # unspecified, loopback, deprecated IPv4-compatible ::a.b.c.d
        "::ffff:0:0/96",  # IPv4-mapped: always refused, whatever it embeds
        "::ffff:0:0:0/96",  # SIIT IPv4-translated
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, incl. Teredo 2001::/32
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local, incl. AWS metadata fd00:ec2::254
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64_WKP: Final = ipaddress.IPv6Network("64:ff9b::/96")


def parse_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``ip`` as an address, or None when it is not one (or is scoped, like ``fe80::1%eth0``)."""
    if "%" in ip:  # scoped IPv6 (fe80::1%eth0): only meaningful for non-global addresses
        return None
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


def _v4_forbidden(addr: ipaddress.IPv4Address) -> bool:
    if any(addr in net for net in _V4_DENY):
        return True
    return (
        not addr.is_global
        or addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )


def _v6_forbidden(addr: ipaddress.IPv6Address) -> bool:
    if addr.ipv4_mapped is not None:
        return True
    if addr in _NAT64_WKP:
        # Well-known NAT64 prefix (DNS64 synthesizes these on IPv6-only hosts): the verdict is the
        # embedded IPv4 address's. (Python files 64:ff9b::/96 under the reserved ::/8, hence the early return.)
        return _v4_forbidden(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    if addr.sixtofour is not None and _v4_forbidden(addr.sixtofour):
        return True
    if addr.teredo is not None:
        return True
    if any(addr in net for net in _V6_DENY):
        return True
    return (
        not addr.is_global
        or addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_site_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )


def is_forbidden_address(ip: str) -> bool:
    """True unless ``ip`` is a plain, globally routable unicast address. Unparseable input is forbidden."""
    addr = parse_ip(ip)
    if addr is None:
        return True
    if isinstance(addr, ipaddress.IPv4Address):
        return _v4_forbidden(addr)
    return _v6_forbidden(addr)


def forbidden_even_if_private_allowed(ip: str) -> bool:
    """The predicate used under ``allow_private``: still refuses what can never be a real server."""
    if "%" in ip:
        ip = ip.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return True
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_unspecified or addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255")


def is_forbidden_host_name(host: str) -> bool:
    """True for a canonical (lower-case, no trailing dot) name that is local or a cloud metadata service."""
    return host in _FORBIDDEN_NAMES or host.endswith(".localhost") or host.endswith(".internal")
