"""Where a webhook may go: only to globally routable addresses, unless the
settings allow this machine (loopback) or a private network (SSRF). The API
checks at submit, the dispatcher again before each try (the name may resolve
elsewhere by then).

What each setting opens, and why:
- allow_loopback: 127.0.0.0/8 and ::1 (the embedded stack's own receivers).
- allow_private: RFC 1918 (10/8, 172.16/12, 192.168/16), IPv6 unique local
  (fc00::/7) and shared address space 100.64.0.0/10. CGNAT space is counted as
  private rather than always refused: besides carriers, overlay networks and
  clusters number their internal hosts from it, which is exactly the "receivers
  on our own network" a deployment opens allow_private for.
- Nothing opens the rest: link-local (169.254.0.0/16 holds cloud metadata
  services, fe80::/10), unspecified (0.0.0.0 reaches this machine), multicast,
  broadcast, reserved, benchmarking (198.18.0.0/15), IETF protocol assignments
  (192.0.0.0/24), documentation and every other range `ipaddress` does not call
  global.
- An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 socket itself, so it
  is judged as that address. One that a translator or relay turns into IPv4
  (NAT64 64:ff9b::/96, 6to4 2002::/16) must carry a global IPv4 address: what it
  reaches is the translator's loopback or private network, never this one's."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _translated(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a NAT64 translator or 6to4 relay sends `ip` to."""
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)
    return ip.sixtofour


def _not_global(ip: Address) -> bool:
    # Multicast and some reserved ranges count as global in some Python versions.
    return ip.is_multicast or ip.is_reserved or not ip.is_global


def refusal(ip: Address, allow_loopback: bool, allow_private: bool) -> str | None:
    """Why a webhook may not go to `ip`, or None if it may."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif (inner := _translated(ip)) is not None:
            if _not_global(inner) or any(inner in net for net in _PRIVATE if net.version == 4):
                return f"{ip} is translated to {inner}, which is not a globally routable address"
            return None
    if ip.is_loopback:
        return None if allow_loopback else f"{ip} is a loopback address"
    if any(ip in net for net in _PRIVATE if net.version == ip.version):
        return None if allow_private else f"{ip} is a private address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if _not_global(ip):
        return f"{ip} is not a globally routable address"
    return None


async def refused_target(url: str, allow_loopback: bool, allow_private: bool,
                         timeout_s: float = 3.0) -> str | None:
    """Why `url` may not receive webhooks, or None if it may. Every address the
    host resolves to must be allowed."""
    reason, _ = await checked_addresses(url, allow_loopback, allow_private, timeout_s)
    return reason


async def checked_addresses(url: str, allow_loopback: bool, allow_private: bool,
                            timeout_s: float = 3.0) -> tuple[str | None, list[str]]:
    """(why refused, or None; the addresses the host resolves to now). A sender
    connects to these very addresses, so a name that resolves elsewhere a
    moment later (DNS rebinding) cannot reach a refused one."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(
                host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM),
                timeout_s)
        except (OSError, TimeoutError, UnicodeError, ValueError) as err:
            return f"{host} does not resolve ({type(err).__name__})", []
        # An IP family's sockaddr starts with the address as text (typeshed allows an int for others).
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for ip in addresses:
        reason = refusal(ip, allow_loopback, allow_private)
        if reason is not None:
            return (f"{host} resolves to {reason}" if str(ip) != host else reason), []
    return None, list(dict.fromkeys(str(ip) for ip in addresses))
