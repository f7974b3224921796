"""Where a webhook may go: never, unless allowed, to this machine or a private
network (SSRF). The API checks at submit, the dispatcher again before each try
(the name may resolve elsewhere by then)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


def _refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_loopback: bool,
             allow_private: bool) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if allow_loopback else f"{ip} is a loopback address"
    if ip.is_link_local:
        return None if allow_private else f"{ip} is a link-local address"
    if ip.is_private or ip.is_unspecified or ip.is_reserved or ip.is_multicast:
        return None if allow_private else f"{ip} is a private or reserved address"
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
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    for ip in addresses:
        reason = _refusal(ip, allow_loopback, allow_private)
        if reason is not None:
            return (f"{host} resolves to {reason}" if str(ip) != host else reason), []
    return None, list(dict.fromkeys(str(ip) for ip in addresses))
