"""Real HTTP webhook receivers on loopback. Receiver answers the first
`fail_first` requests with `fail_status`, then 200, and keeps every request it
got; RawReceiver is a hostile one that trickles or floods its answer."""

from __future__ import annotations

import asyncio
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


@dataclass
class Answer:
    """One connection to a RawReceiver: when it opened, when the sender went
    away (None while connected), and how many body bytes were sent."""
    opened_at: float
    closed_at: float | None = None
    body_bytes_sent: int = 0


@dataclass
class RawReceiver:
    """An asyncio HTTP server on loopback, in a thread of its own, that reads a
    request and answers 200 with a body it controls, whatever the sender does:
    "trickle" sends the head, then one byte a second of a long body; "flood"
    sends a `body_bytes` body as fast as the sender takes it. Every connection
    is kept, with the moment the sender hung up (seen as end of input)."""

    mode: str  # trickle | flood
    body_bytes: int = 1 << 31
    answers: list[Answer] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/raw"

    def start(self) -> RawReceiver:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            server = loop.run_until_complete(asyncio.start_server(self._answer, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            # Connections still being answered (a sender mid-try) end here, not at interpreter exit.
            answering = asyncio.all_tasks(loop)
            for task in answering:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*answering, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer = Answer(opened_at=time.monotonic())
        self.answers.append(answer)
        hung_up: asyncio.Future[bytes] | None = None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(time.monotonic(), headers, body, 200))
            writer.write(f"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {self.body_bytes}\r\n\r\n"
                         .encode())
            await writer.drain()
            hung_up = asyncio.ensure_future(reader.read(1))  # b"" once the sender closes
            chunk = b"x" if self.mode == "trickle" else b"x" * 65536
            while not hung_up.done() and answer.body_bytes_sent < self.body_bytes:
                writer.write(chunk)
                await writer.drain()
                answer.body_bytes_sent += len(chunk)
                if self.mode == "trickle":
                    await asyncio.wait([hung_up], timeout=1.0)
            await hung_up
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            answer.closed_at = time.monotonic()
            if hung_up is not None and hung_up.done() and not hung_up.cancelled():
                hung_up.exception()  # a reset is how a sender may hang up
            elif hung_up is not None:
                hung_up.cancel()
            writer.close()
