"""application/problem+json for every error, naming the field at fault."""

from __future__ import annotations

import re
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import ProblemDetailsException
from nats.errors import Error as NatsError

from mochi_contracts.jobs import FieldError

log = structlog.get_logger()
PROBLEM_BASE = "https://mochi-serve.dev/problems/"


def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> ProblemDetailsException:
    return ProblemDetailsException(status_code=status, title=title, detail=detail,
                                   type_=PROBLEM_BASE + kind, extra=extra or None)


def invalid_fields(errors: list[FieldError], status: int = 422) -> ProblemDetailsException:
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return problem(status, "invalid-request", "The request has invalid fields", detail,
                   errors=[{"field": e.field, "message": e.message} for e in errors])


def not_found(what: str) -> ProblemDetailsException:
    return problem(404, "not-found", "Not found", what)


def unavailable(detail: str, retry_after_s: int = 5) -> ProblemDetailsException:
    exc = problem(503, "unavailable", "Service unavailable", detail)
    exc.headers = {"Retry-After": str(retry_after_s)}
    return exc


_FIELD_IN_MESSAGE = re.compile(r"field `([^`]+)`")


def _field_of(item: dict[str, Any]) -> str:
    # Litestar names the handler parameter ("data") when msgspec's error is
    # about the object itself; the field is then only in the message.
    key = str(item.get("key") or "")
    if key and item.get("source") == "header":
        # The parameter's Python name; the client knows the header's.
        return "-".join(part.capitalize() for part in key.split("_"))
    if key and key != "data":
        return key.split(".")[0].split("[")[0]
    match = _FIELD_IN_MESSAGE.search(str(item.get("message", "")))
    return match.group(1) if match else "body"


def on_bad_request(request: Request, exc: HTTPException) -> Response:
    """Litestar's own 400s (bad JSON, validation of body and query) in our shape."""
    if isinstance(exc, ProblemDetailsException):
        return exc.to_response(request)  # ours, already complete
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        errors = [FieldError(_field_of(i), str(i.get("message", ""))) for i in exc.extra
                  if isinstance(i, dict)]
        if all(e.message.strip("'") == "data" for e in errors):
            errors = [FieldError("body", "a JSON object with at least `prompt` is required")]
        return invalid_fields(errors, 422).to_response(request)
    return invalid_fields([FieldError("body", exc.detail)], 400).to_response(request)


def on_too_many(request: Request, exc: HTTPException) -> Response:
    """429 as a problem, with Retry-After (Litestar's limiter sets only RateLimit-*)."""
    if isinstance(exc, ProblemDetailsException):
        return exc.to_response(request)  # ours, already complete
    headers = dict(exc.headers or {})
    retry_after = headers.get("RateLimit-Reset") or headers.get("Retry-After") or "30"
    headers["Retry-After"] = str(retry_after)
    response = problem(429, "rate-limited", "Too many requests",
                       exc.detail if exc.detail and exc.detail != "Too Many Requests"
                       else "too many submissions for this key; retry after the given seconds"
                       ).to_response(request)
    response.headers.update(headers)
    return response


# Litestar's own refusals before any route runs: no route (404, also for a
# path that decodes to more segments), another method (405), a body past
# request_max_body_size (413). Their bodies otherwise have no problem type.
ROUTER_KINDS = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}


def on_router_error(request: Request, exc: HTTPException) -> Response:
    if isinstance(exc, ProblemDetailsException):
        return exc.to_response(request)  # ours, already complete
    kind = ROUTER_KINDS.get(exc.status_code, "http-error")
    response = problem(exc.status_code, kind, exc.detail, exc.detail).to_response(request)
    response.headers.update(dict(exc.headers or {}))  # 405's Allow
    return response


def on_nats_down(request: Request, exc: Exception) -> Response:
    log.warning("api.nats_unavailable", error=repr(exc), path=request.url.path)
    return unavailable("the job system is not reachable right now; retry shortly").to_response(request)


def on_unexpected(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return problem(exc.status_code, "http-error", exc.detail, exc.detail).to_response(request)
    log.exception("api.unexpected", path=request.url.path, exc_info=exc)
    return problem(500, "internal", "Internal error", "an unexpected error; it has been logged").to_response(request)


# Every NATS failure (no servers, no stream leader, no responders, timeouts)
# means the job system cannot answer now: a 503 the client may retry.
NATS_DOWN_ERRORS = (NatsError,)
