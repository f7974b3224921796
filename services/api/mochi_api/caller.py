"""Who is calling: the dependency every job route takes, and the per-key
submission rate limit keyed the same way."""

from __future__ import annotations

from collections.abc import Callable

from litestar import Request
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address

from mochi_api.api_keys import ApiKeys, hash_token
from mochi_api.context import Caller
from mochi_api.problems import problem


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


def submit_rate_limit(keys: ApiKeys, per_minute: int) -> RateLimitConfig:
    def identify(request: Request) -> str:
        token = keys.token_of(request)
        # Never the token itself: the limiter's store keys are not secrets.
        return hash_token(token)[:32] if token else f"addr:{get_remote_address(request)}"

    # async on purpose: Litestar runs a sync check in a worker thread, a
    # thread hop on every request for a string comparison.
    async def only_submits(request: Request) -> bool:
        return request.method == "POST" and request.scope["path"].rstrip("/") == "/v1/jobs"

    # Litestar's limiter keeps its counts in the replica's memory: the limit
    # is per key per replica (documented), which bounds a client well enough
    # while the queued-jobs cap bounds it across replicas.
    return RateLimitConfig(rate_limit=("minute", per_minute), identifier_for_request=identify,
                           check_throttle_handler=only_submits)
