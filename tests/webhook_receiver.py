"""A real HTTP webhook receiver on loopback: answers the first `fail_first`
requests with `fail_status`, then 200, and keeps every request it got."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    fail_first: int = 0
    fail_status: int = 503
    # Seconds to hold the first request before answering (a slow receiver).
    hold_first_s: float = 0.0
    requests: list[Received] = field(default_factory=list)
    first_arrived: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/mochi"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                n = len(receiver.requests)
                status = receiver.fail_status if n < receiver.fail_first else 200
                receiver.requests.append(Received(time.monotonic(), dict(self.headers), body, status))
                if n == 0:
                    receiver.first_arrived.set()
                    time.sleep(receiver.hold_first_s)
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender is gone

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def successes(self) -> list[Received]:
        return [r for r in self.requests if r.status == 200]
