"""A typed Python client for the Mochi Serve API, used by the CLI and the tests.
Answers are decoded into the API's own resources (mochi_contracts.resources):
typed objects with attributes, times as datetimes.

    from mochi_cli.client import MochiClient

    with MochiClient("http://127.0.0.1:8000") as mochi:
        job = mochi.submit("a cat walks on the grass", width=256, height=144, num_frames=13)
        done = mochi.wait(job.id, on_update=lambda j: print(j.status, j.progress.phase, j.progress.step))
        mochi.download(done.id, "cat.mp4")

While it renders, `mochi.events(job.id)` yields its events: `event.phase` names
each new phase, `event.preview` each new live preview, whose bytes
`mochi.preview(job.id)` (an animated WebP; `still=True`: a PNG) fetches.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec

from mochi_contracts.events import FINAL_TYPES
from mochi_contracts.resources import Job, JobList, LogLine, LogList

FINAL: frozenset[str] = FINAL_TYPES
T = TypeVar("T")


@dataclass(frozen=True)
class Preview:
    """A live preview the job's stream told of: after `step` of `total_steps`,
    at `url` (links.preview with ?step=, relative unless the API has a public URL)."""

    step: int
    total_steps: int
    url: str


@dataclass(frozen=True)
class Event:
    """One server-sent event of a job's stream: `id` is its stream sequence."""

    id: int
    type: str
    data: dict[str, Any]

    @property
    def phase(self) -> str | None:
        """The phase a `phase` event says the job began (mochi_contracts.phases), else None."""
        return str(self.data["phase"]) if self.type == "phase" else None

    @property
    def preview(self) -> Preview | None:
        """What a `preview` event tells of, else None."""
        if self.type != "preview":
            return None
        return Preview(step=int(self.data["step"]), total_steps=int(self.data["total_steps"]),
                       url=str(self.data["url"]))


class ApiError(Exception):
    """An answer >= 400, with its application/problem+json body."""

    def __init__(self, status: int, problem: dict[str, Any]):
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title')}")
        self.status = status
        self.problem = problem

    @property
    def field_errors(self) -> dict[str, str]:
        return {e["field"]: e["message"] for e in self.problem.get("errors") or []}


class MochiClient:
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> MochiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, resp: httpx.Response) -> None:
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = {"detail": resp.text}
            raise ApiError(resp.status_code, body)

    def _decode(self, resp: httpx.Response, shape: type[T]) -> T:
        """The answer as the resource the API says it is (mochi_contracts.resources)."""
        self._check(resp)
        return msgspec.json.decode(resp.content, type=shape)

    # ---- jobs ------------------------------------------------------------

    def submit(self, prompt: str, *, webhook_url: str | None = None, webhook_events: list[str] | None = None,
               deadline: datetime | str | None = None, cancel_after: str | None = None,
               idempotency_key: str | None = None, **params: Any) -> Job:
        """Queue a job. `params` are the request's other fields (width, height,
        num_frames, num_inference_steps, guidance_scale, seed, fps, negative_prompt)."""
        body: dict[str, Any] = {"prompt": prompt, **params}
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        if webhook_events is not None:
            body["webhook_events"] = webhook_events
        if deadline is not None:
            body["deadline"] = deadline.isoformat() if isinstance(deadline, datetime) else deadline
        headers = {}
        if cancel_after is not None:
            headers["Cancel-After"] = cancel_after
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return self._decode(self.http.post("/v1/jobs", json=body, headers=headers), Job)

    def get(self, job_id: str) -> Job:
        return self._decode(self.http.get(f"/v1/jobs/{job_id}"), Job)

    def list(self, status: list[str] | None = None, limit: int = 20, cursor: str | None = None) -> JobList:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        return self._decode(self.http.get("/v1/jobs", params=params), JobList)

    def iter_jobs(self, status: builtins.list[str] | None = None, page_size: int = 50) -> Iterator[Job]:
        cursor = None
        while True:
            page = self.list(status, page_size, cursor)
            yield from page.jobs
            cursor = page.next_cursor
            if not cursor:
                return

    def cancel(self, job_id: str) -> Job:
        return self._decode(self.http.post(f"/v1/jobs/{job_id}/cancel"), Job)

    def logs(self, job_id: str) -> builtins.list[LogLine]:  # `list` here is the method above
        return self._decode(self.http.get(f"/v1/jobs/{job_id}/logs"), LogList).logs

    def wait(self, job_id: str, timeout: float = 3600.0, poll: float = 0.5,
             on_update: Callable[[Job], None] | None = None) -> Job:
        """Poll until the job is final; `on_update` sees every poll (for a progress bar).
        A 503 (NATS electing a leader, or restarting) is waited out, not raised."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                job = self.get(job_id)
            except ApiError as err:
                if err.status != 503 or time.monotonic() > deadline:
                    raise
                time.sleep(max(poll, 1.0))
                continue
            if on_update:
                on_update(job)
            if job.status in FINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout}s")
            time.sleep(poll)

    def events(self, job_id: str, last_event_id: int | None = None, reconnects: int = 5,
               timeout: float = 60.0) -> Iterator[Event]:
        """The job's events (history, then live) until its final event. A dropped
        connection is resumed from the last event seen (Last-Event-ID), so no
        event is missed or repeated; pass `last_event_id` to resume yourself."""
        last = last_event_id
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            try:
                with self.http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers,
                                      timeout=httpx.Timeout(timeout, connect=10.0)) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        self._check(resp)
                    for event in _parse_sse(resp.iter_lines()):
                        failures = 0
                        last = event.id
                        yield event
                        if event.type in FINAL:
                            return
                return  # the server ended the stream after the final event
            except (httpx.TransportError, httpx.RemoteProtocolError):
                failures += 1
                if failures > reconnects:
                    raise
                time.sleep(min(0.5 * 2 ** failures, 10.0))

    def preview(self, job_id: str, still: bool = False) -> bytes:
        """The running job's newest live preview: an animated WebP, or with
        `still` a PNG. ApiError 409 before its first, 404 once it is final."""
        resp = self.http.get(f"/v1/jobs/{job_id}/preview", params={"still": "true"} if still else None)
        self._check(resp)
        return resp.content

    def download(self, job_id: str, dest: Path | str) -> Path:
        """Save the MP4 (follows the redirect to a presigned URL); ApiError 410 once it expired."""
        dest = Path(dest)
        with self.http.stream("GET", f"/v1/jobs/{job_id}/video", follow_redirects=True) as resp:
            if resp.status_code >= 400:
                resp.read()
                self._check(resp)
            with dest.open("wb") as f:
                for chunk in resp.iter_bytes():
                    f.write(chunk)
        return dest


def _parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in lines:
        if line == "":
            if data and fields.get("id", "").isdigit():
                yield Event(int(fields["id"]), fields.get("event", ""), json.loads("\n".join(data)))
            fields, data = {}, []
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            else:
                fields[name] = value


def verify_webhook(secret: str, body: bytes | str, headers: Mapping[str, str]) -> dict[str, Any]:
    """Check a webhook's Standard Webhooks signature (webhook-id, webhook-timestamp,
    webhook-signature; at most five minutes old) and return its JSON body. Raises
    standardwebhooks.WebhookVerificationError if it was not signed with `secret`."""
    from standardwebhooks import Webhook as Verifier

    return Verifier(secret).verify(body, dict(headers))
