"""Who is calling: the dependency every job route takes, and the per-owner
submission rate limit."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

from litestar import Request
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address
from litestar.stores.memory import MemoryStore
from prometheus_client import Gauge

from mochi_api.api_keys import ApiKeys
from mochi_api.context import Caller
from mochi_api.problems import problem

RATE_LIMIT_STORE = "rate_limit"
# One per owner and per client address that submitted within about two windows.
RATE_LIMIT_ENTRIES = Gauge("mochi_api_rate_limit_entries", "Identities the submission rate limiter holds counts for")


def caller_dependency(keys: ApiKeys) -> Callable[[Request], Caller]:
    def caller(request: Request) -> Caller:
        found = keys.caller_for(request)
        if found is None:
            exc = problem(401, "unauthorized", "API key required",
                          "send 'Authorization: Bearer <key>' with a key this deployment knows")
            exc.headers = {"WWW-Authenticate": 'Bearer realm="mochi-serve"'}
            raise exc
        return found

    return caller


class SweptMemoryStore(MemoryStore):
    """Litestar's MemoryStore drops an expired entry only when its key is read
    again, so identities seen once would stay for ever; this one sweeps the
    expired entries on a write at most every `sweep_every_s`."""

    def __init__(self, sweep_every_s: float) -> None:
        super().__init__()
        self._sweep_every_s = sweep_every_s
        self._swept_at = time.monotonic()

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        if time.monotonic() - self._swept_at >= self._sweep_every_s:
            self._swept_at = time.monotonic()
            await self.delete_expired()
        await super().set(key, value, expires_in)
        RATE_LIMIT_ENTRIES.set(len(self._store))


def submit_rate_limit(keys: ApiKeys, per_minute: int) -> RateLimitConfig:
    def identify(request: Request) -> str:
        # The owner a known key belongs to, however the header spells it and
        # whichever of the owner's keys it is. Anything else counts against
        # the client's address: one entry per made-up token would let anyone
        # grow the limiter's memory without a key.
        token = keys.token_of(request)
        found = keys.known(token) if token else None
        return f"owner:{found.owner}" if found else f"addr:{get_remote_address(request)}"

    # async on purpose: Litestar runs a sync check in a worker thread, a
    # thread hop on every request for a string comparison.
    async def only_submits(request: Request) -> bool:
        return request.method == "POST" and request.scope["path"].rstrip("/") == "/v1/jobs"

    # Litestar's limiter keeps its counts in the replica's memory: the limit
    # is per owner per replica (documented), which bounds a client well enough
    # while the queued-jobs cap bounds it across replicas.
    return RateLimitConfig(rate_limit=("minute", per_minute), identifier_for_request=identify,
                           check_throttle_handler=only_submits, store=RATE_LIMIT_STORE)


def rate_limit_store() -> SweptMemoryStore:
    # Entries live one window (a minute); sweeping each window keeps at most two windows' identities.
    return SweptMemoryStore(sweep_every_s=60.0)
