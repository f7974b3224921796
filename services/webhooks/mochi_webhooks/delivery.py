"""One webhook: its body, its signature, one try and what the answer means."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Annotated
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec
from standardwebhooks import Webhook

from mochi_contracts.events import JobEvent, JobId, Time, event_type, utcnow
from mochi_contracts.resources import job_links


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """A webhook to deliver, as stored in the dispatch stream. The body is made
    once, so every retry sends the same bytes under the same webhook-id."""

    # Typed as strictly as the job events: only the dispatcher publishes here,
    # but a body it cannot use (a naive time, an id no subject can hold) is
    # then termed at decoding, not retried until the runtime's failure cap.
    id: str
    job_id: JobId
    seq: Annotated[int, msgspec.Meta(ge=1)]  # stream sequence of the job event it tells of
    event_type: str
    url: str
    event_time: Time
    created_at: Time
    body: str


class DeadlineTimer(msgspec.Struct, frozen=True, kw_only=True):
    job_id: JobId
    deadline: Time


_STATUS = {"started": "running", "progress": "running"}


def delivery_id(job_id: str, seq: int) -> str:
    return f"msg_{job_id}_{seq}"


def make_delivery(event: JobEvent, seq: int, url: str, public_url: str) -> Delivery:
    kind = event_type(event)
    body = {
        "type": f"job.{kind}",
        "timestamp": event.time,
        "data": {
            "job_id": event.job_id,
            "status": _STATUS.get(kind, kind),
            "event": event,
            "links": job_links(public_url, event.job_id),
        },
    }
    return Delivery(id=delivery_id(event.job_id, seq), job_id=event.job_id, seq=seq, event_type=kind,
                    url=url, event_time=event.time, created_at=utcnow(),
                    body=msgspec.json.encode(body).decode())


@dataclass(frozen=True)
class TryResult:
    outcome: str  # delivered | retry | failed
    status_code: int | None
    error: str | None
    duration_ms: int
    retry_after_s: float | None = None


def signed_headers(signer: Webhook, delivery: Delivery, now: datetime) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": "mochi-serve-webhooks/0.1",
        "webhook-id": delivery.id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signer.sign(delivery.id, now, delivery.body),
    }


def _retry_after(resp: httpx.Response) -> float | None:
    """A receiver's Retry-After in seconds; an HTTP date or anything else is
    ignored. ASCII digits only: str.isdigit() takes "²" (a byte 0xB2 read as
    Latin-1), which float() refuses, and the try would raise instead of retry."""
    value = resp.headers.get("retry-after", "").strip()
    return float(value) if value.isascii() and value.isdigit() and len(value) <= 10 else None


def pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """`url` with its host replaced by `address` (already checked), the Host
    header and TLS server name of the original host."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host.strip("[]") == address:
        return url, {}, {}
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    netloc = userinfo + (f"[{address}]" if ":" in address else address) + (f":{parts.port}" if parts.port else "")
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return urlunsplit(parts._replace(netloc=netloc)), {"host": parts.netloc.rsplit("@", 1)[-1]}, extensions


async def _read_at_most(resp: httpx.Response, max_bytes: int) -> None:
    """Read up to `max_bytes` of the body, raw (a compressed body is not
    inflated). A short answer is read to its end so the connection can serve
    the next try; a longer one is cut and its connection closed."""
    read = 0
    async for chunk in resp.aiter_raw():
        read += len(chunk)
        if read >= max_bytes:
            break


async def _post(http: httpx.AsyncClient, delivery: Delivery, headers: dict[str, str],
                addresses: list[str], max_bytes: int) -> httpx.Response:
    targets = [pinned(delivery.url, a) for a in addresses] or [(delivery.url, {}, {})]
    for i, (url, host, extensions) in enumerate(targets):
        try:
            async with http.stream("POST", url, content=delivery.body.encode(), headers={**headers, **host},
                                   extensions=extensions) as resp:
                await _read_at_most(resp, max_bytes)
                return resp
        except httpx.ConnectError:
            if i == len(targets) - 1:
                raise
    raise AssertionError("unreachable")


async def try_once(http: httpx.AsyncClient, signer: Webhook, delivery: Delivery,
                   addresses: list[str] | None = None, *, deadline_s: float,
                   max_response_bytes: int) -> TryResult:
    """One POST, to the checked addresses when given (tried in turn while the
    connection is refused). The client's timeout bounds each read; `deadline_s`
    bounds the whole try, connect to the last byte read, so a receiver that
    trickles its answer gives its sender slot back like one that says nothing."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(deadline_s):
            resp = await _post(http, delivery, signed_headers(signer, delivery, utcnow()), addresses or [],
                               max_response_bytes)
    except TimeoutError:
        return TryResult("retry", None, f"timeout: no whole answer within {deadline_s:g}s", _ms(started))
    except httpx.TimeoutException as err:
        return TryResult("retry", None, f"timeout: {type(err).__name__}", _ms(started))
    except httpx.TransportError as err:
        return TryResult("retry", None, f"connection error: {type(err).__name__}: {err}", _ms(started))
    code = resp.status_code
    if 200 <= code < 300:
        return TryResult("delivered", code, None, _ms(started))
    if code in (408, 429) or code >= 500:
        return TryResult("retry", code, f"HTTP {code}", _ms(started), _retry_after(resp))
    if 300 <= code < 400:
        return TryResult("failed", code, f"HTTP {code}: redirects are not followed", _ms(started))
    return TryResult("failed", code, f"HTTP {code}: not retried", _ms(started))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def backoff_s(attempt: int, first_s: float, max_s: float, retry_after_s: float | None = None) -> float:
    """Exponential, capped, with jitter (half fixed, half random) so a fleet of
    failed deliveries does not come back at one instant; a receiver's
    Retry-After is honoured up to the cap."""
    base = min(first_s * 2.0 ** (attempt - 1), max_s)
    delay = base / 2 + random.uniform(0, base / 2)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, max_s))
    return delay
