"""An API replica sent SIGTERM ends its open event streams at once and exits
within its grace period; the clients resume on another replica with
Last-Event-ID and miss nothing."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field

import httpx

from conftest import SMALL

GRACE_S = 5.0


@dataclass
class OpenStream:
    """An SSE stream read on its own thread until the server ends it."""

    url: str
    ids: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    opened: threading.Event = field(default_factory=threading.Event)
    ended_at: float | None = None
    error: BaseException | None = None

    def start(self) -> OpenStream:
        threading.Thread(target=self._read, daemon=True).start()
        assert self.opened.wait(15), f"{self.url} never opened"
        return self

    def _read(self) -> None:
        try:
            # No read timeout: only the server ending the stream stops this loop.
            with httpx.stream("GET", self.url, timeout=httpx.Timeout(10, read=None)) as resp:
                assert resp.status_code == 200, resp.status_code
                self.opened.set()
                for line in resp.iter_lines():
                    if line.startswith("id:"):
                        self.ids.append(line[3:].strip())
                    elif line.startswith("event:"):
                        self.types.append(line[6:].strip())
        except BaseException as err:  # reported by the test, not lost on this thread
            self.error = err
        finally:
            self.ended_at = time.monotonic()
            self.opened.set()


def test_sigterm_ends_open_streams_and_the_replica_exits_in_its_grace(system) -> None:
    system.start_catalog()
    other = system.start_api("api-b")  # no runner: jobs stay queued, streams stay idle
    other_url = system.api_url
    api = system.start_api("api-a", MOCHI_SHUTDOWN_GRACE_S=str(GRACE_S))
    job = system.client().submit("a stream that outlives its replica", **SMALL)
    job_url = f"{system.api_url}/v1/jobs/{job.id}/events"
    streams = [OpenStream(f"{system.api_url}/v1/events").start() for _ in range(3)]
    streams += [OpenStream(job_url).start() for _ in range(2)]
    deadline = time.monotonic() + 10
    while not all(s.ids for s in streams[3:]):
        assert time.monotonic() < deadline, "the job streams never replayed the submitted event"
        time.sleep(0.05)
    assert all(s.ended_at is None for s in streams)

    sent = time.monotonic()
    api.popen.send_signal(signal.SIGTERM)
    deadline = sent + 3
    while any(s.ended_at is None for s in streams):
        assert time.monotonic() < deadline, "open streams were not ended at SIGTERM"
        time.sleep(0.02)
    # Ended by the server, cleanly (a complete chunked body, not a cut connection).
    assert [s.error for s in streams] == [None] * len(streams)
    assert max(s.ended_at for s in streams) - sent < 2.0  # type: ignore[operator]
    api.popen.wait(GRACE_S + 5)
    assert time.monotonic() - sent < GRACE_S, "the replica outlived its grace period"
    assert '"streams_ended": 5' in api.log() or "streams_ended=5" in api.log(), api.log()[-2000:]

    # The client goes on at another replica from its Last-Event-ID: what happened
    # meanwhile arrives, what it already had does not.
    last = streams[3].ids[-1]
    httpx.post(f"{other_url}/v1/jobs/{job.id}/cancel", timeout=10).raise_for_status()
    with httpx.stream("GET", f"{other_url}/v1/jobs/{job.id}/events",
                      headers={"Last-Event-ID": last}, timeout=30) as resp:
        types = [line[6:].strip() for line in resp.iter_lines() if line.startswith("event:")]
    assert "submitted" not in types and types[-1] == "cancelled", types
    assert other.alive()
