"""Checks every request passes before any route reads it: that its Host is
one well-formed authority, the size of its headers, that a body is JSON, and
(on the anonymous stack) the Host it names.

Each refusal is raised as a problem, so it reaches the client as
application/problem+json like every other error."""

from __future__ import annotations

import re

from litestar.config.app import AppConfig
from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.plugins import InitPluginProtocol
from litestar.types import ASGIApp, Receive, Scope, Send

from mochi_api.bounds import MAX_HEADER_BYTES
from mochi_api.problems import problem

_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# Names of this machine that a DNS-rebinding page cannot take: its own loopback names.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
# Bind addresses, not names a client addresses the API by.
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


# RFC 3986's authority without userinfo: an IP literal or a registered name (or
# IPv4 address), then an optional port of at most five ASCII digits.
_AUTHORITY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(:[0-9]{0,5})?")


def well_formed_host(host: bytes) -> bool:
    try:
        text = host.decode("ascii")
    except UnicodeDecodeError:
        return False
    match = _AUTHORITY.fullmatch(text)
    return match is not None and int((match.group(2) or ":")[1:] or 0) <= 65535


class WellFormedHost(ASGIMiddleware):
    """400 for a request with more than one Host line or a Host that is no
    authority (`localhost:abc`, a port past 65535, a bare `::1`), as RFC 9112
    3.2 asks. Litestar parses Host into `request.url` (the request metrics read
    it first), and `urllib` raises on such a port: a 500 on every deployment."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        hosts = [value for name, value in scope["headers"] if name == b"host"]
        if len(hosts) > 1 or (hosts and not well_formed_host(hosts[0])):
            # Routed on a Host Litestar can read (the problem response reads the
            # URL too); the one the client sent is not looked at again.
            scope["headers"] = [(n, v) for n, v in scope["headers"] if n != b"host"]
            raise problem(400, "bad-host", "Bad Host header",
                          "a request has one Host header: a host name or address, and a port of ASCII digits")
        await next_app(scope, receive, send)


class HostCheckedFirst(InitPluginProtocol):
    """Puts WellFormedHost outside every other middleware, the request metrics
    included (ApiMetricsPlugin inserts those first; list this plugin after it)."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware.insert(0, WellFormedHost())
        return app_config


class BoundedHeaders(ASGIMiddleware):
    """431 for a request whose header lines add up to more than MAX_HEADER_BYTES.
    The server has read them by then; this keeps any route from parsing them."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        size = sum(len(name) + len(value) for name, value in scope["headers"])
        if size > MAX_HEADER_BYTES:
            raise problem(431, "headers-too-large", "Request headers too large",
                          f"the request's headers add up to {size} bytes; at most {MAX_HEADER_BYTES}")
        await next_app(scope, receive, send)


def is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


class JsonBodiesOnly(ASGIMiddleware):
    """415 for a request body that is not declared application/json.

    A browser sends text/plain, form and multipart bodies cross-site without a
    CORS preflight; refusing them means no other web page can submit to an
    API it reaches (the anonymous stack above all)."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        # `scopes` lets only HTTP through; the type check tells mypy so.
        if scope["type"] == ScopeType.HTTP and scope["method"] in _BODY_METHODS:
            headers = Headers.from_scope(scope)
            has_body = headers.get("content-length", "0").strip() != "0" or "transfer-encoding" in headers
            # Two Content-Type lines say nothing certain (this check would read
            # the first, another reader the last): not JSON either.
            types = headers.getall("content-type", [])
            if has_body and not (len(types) == 1 and is_json(types[0])):
                exc = problem(415, "unsupported-media-type", "Unsupported media type",
                              "request bodies must be JSON, sent with 'Content-Type: application/json'")
                exc.headers = {"Accept-Post": "application/json"}
                raise exc
        await next_app(scope, receive, send)


def host_name(host: str) -> str:
    """The name part of a Host header: 'localhost:8000' -> 'localhost', '[::1]:80' -> '[::1]'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.partition(":")[0]


def allowed_host_names(own_host: str, listed: list[str]) -> frozenset[str]:
    own = own_host.strip().lower()
    if ":" in own and not own.startswith("["):
        own = f"[{own}]"  # an IPv6 bind address, as a Host header writes it
    names = {*LOOPBACK_HOSTS, own, *(host_name(h) for h in listed)}
    return frozenset(names - _WILDCARDS)


class KnownHostsOnly(ASGIMiddleware):
    """421 for a Host that is not one of this API's names (DNS-rebinding guard).

    A page on evil.example whose name is made to resolve to 127.0.0.1 talks to
    the API as its own origin, so the browser's same-origin rule lets it read
    every answer; the Host header still says evil.example, and that is refused.
    Ports are not compared: the rebinding page's name is what gives it away."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        host = Headers.from_scope(scope).get("host", "")
        if host_name(host) not in self.allowed:
            raise problem(421, "unknown-host", "Unknown host",
                          f"this API does not answer to the name {host_name(host)[:100]!r}: only to "
                          "localhost, its loopback addresses, its MOCHI_HOST and MOCHI_ALLOWED_HOSTS")
        await next_app(scope, receive, send)
