"""A plain SSE reader over httpx, so tests see exactly what a browser gets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from mochi_contracts.events import FINAL_TYPES


@dataclass
class Sse:
    id: str | None
    event: str | None
    data: str
    comment: str | None = None

    @property
    def json(self) -> dict:
        return json.loads(self.data)


def read_sse(url: str, headers: dict[str, str] | None = None, timeout: float = 60.0,
             with_comments: bool = False) -> Iterator[Sse]:
    with httpx.stream("GET", url, headers=headers or {}, timeout=timeout) as resp:
        resp.raise_for_status()
        assert resp.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in resp.iter_lines():
            if line == "":
                if data or fields:
                    yield Sse(fields.get("id"), fields.get("event"), "\n".join(data))
                fields, data = {}, []
                continue
            if line.startswith(":"):
                if with_comments:
                    yield Sse(None, None, "", comment=line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            else:
                fields[name] = value


def follow_job(api_url: str, job_id: str, timeout: float = 300.0) -> list[Sse]:
    """Read a job's events to the end, reconnecting with Last-Event-ID after
    any dropped connection, as a browser's EventSource does."""
    import time

    got: list[Sse] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        headers = {"Last-Event-ID": got[-1].id} if got and got[-1].id else {}
        try:
            for event in read_sse(f"{api_url}/v1/jobs/{job_id}/events", headers=headers, timeout=30):
                got.append(event)
                if event.event in FINAL_TYPES:
                    return got
            if got and got[-1].event in FINAL_TYPES:
                return got
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} did not finish within {timeout}s; got {len(got)} events")
