"""One runtime for every durable pull consumer: the runners' work, the webhook
dispatcher's planner, sender and deadlines, and the dead letters.

A handler gets one message and returns what becomes of it: `ACK`, `Nak(delay)`
or `Term(reason)`; the runtime settles it, so a message has exactly one end.
A handler that raises is contained here: NATS being away naks with a delay and
counts nothing against the message; any other error naks with a doubling delay
and, after `max_failures` such failures of one message in this process, terms
it. So nothing is redelivered for ever, nothing undecodable stops a loop, and
what was skipped is counted (`mochi_consumer_messages_total{outcome="term"}`)
and logged.

Pulling is written here rather than with nats-py's callback subscriptions
because a pull subscription can fall silent after its server restarts
(nats-io/nats.py#504): the runtime binds afresh after every reconnect, after a
fetch error and after `idle_rebind_s` of nothing, which is cheap and harmless
when all was well."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from prometheus_client import Counter

from mochi_common.nats_conn import Reconnects, is_nats_down

log = structlog.get_logger()

SETTLED = Counter("mochi_consumer_messages_total",
                  "Messages a durable consumer settled, by how (ack, nak, term)", ["consumer", "outcome"])
HANDLER_ERRORS = Counter("mochi_consumer_handler_errors_total",
                         "Handler errors contained by the consumer runtime (nats: NATS was away)",
                         ["consumer", "kind"])
SETTLE_ERRORS = Counter("mochi_consumer_settle_errors_total",
                        "Acks, naks or terms that did not reach NATS (the server redelivers after the ack wait)",
                        ["consumer"])


@dataclass(frozen=True)
class Ack:
    pass


@dataclass(frozen=True)
class Nak:
    delay_s: float = 0.0


@dataclass(frozen=True)
class Term:
    reason: str


Outcome = Ack | Nak | Term
ACK = Ack()
Handler = Callable[[Msg], Awaitable[Outcome]]


def failure_delay_s(failures: int) -> float:
    return min(2.0 ** failures, 30.0)


class DurableConsumer:
    """Pulls from one durable consumer and hands each message to a handler.

    `concurrency` messages are handled at once (1: one after another, in
    order); a handler's code before its first await runs before the next
    fetch, so it can claim what it needs (the runner takes its GPU ticket
    there). `room()`, if given, is awaited before each fetch and must return
    within a second or so: the runner pulls only when a GPU lane is free."""

    def __init__(self, js: Any, stream: str, durable: str, *, label: str, reconnects: Reconnects | None = None,
                 concurrency: int = 1, batch: int = 1, max_failures: int = 5, fetch_timeout_s: float = 1.0,
                 idle_rebind_s: float = 30.0):
        self.js = js
        self.stream = stream
        self.durable = durable
        self.label = label
        self.reconnects = reconnects or Reconnects()
        self.concurrency = concurrency
        self.batch = batch
        self.max_failures = max_failures
        self.fetch_timeout_s = fetch_timeout_s
        self.idle_rebind_s = idle_rebind_s
        self._sub: Any = None
        self._bound_at = -1
        self._idle_s = 0.0
        # stream sequence -> failed handlings in this process (bounded, oldest out).
        self._failures: OrderedDict[int, int] = OrderedDict()
        self.running: set[asyncio.Task[None]] = set()

    async def run(self, handle: Handler, stop: asyncio.Event,
                  room: Callable[[], Awaitable[bool]] | None = None, drain_timeout_s: float | None = 15.0) -> None:
        """Until `stop` is set; then wait up to `drain_timeout_s` (None: for
        ever) for the messages in hand."""
        try:
            while not stop.is_set():
                if len(self.running) >= self.concurrency:
                    await asyncio.wait(self.running, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                    continue
                if room is not None and not await room():
                    continue
                msgs = await self._fetch(min(self.batch, self.concurrency - len(self.running)))
                for msg in msgs:
                    if self.concurrency == 1:
                        await self.handle_one(msg, handle)
                        continue
                    task = asyncio.create_task(self.handle_one(msg, handle), name=f"{self.label}-msg")
                    self.running.add(task)
                    task.add_done_callback(self.running.discard)
                    await asyncio.sleep(0)  # let it claim what it needs before the next fetch
            if self.running:
                await asyncio.wait(self.running, timeout=drain_timeout_s)
        finally:
            await self._unbind()

    async def handle_one(self, msg: Msg, handle: Handler) -> None:
        try:
            outcome = await handle(msg)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            outcome = self._after_error(msg, err)
        await self.settle(msg, outcome)

    def _after_error(self, msg: Msg, err: Exception) -> Outcome:
        if is_nats_down(err):
            # Not the message's fault: it comes back once NATS does.
            HANDLER_ERRORS.labels(self.label, "nats").inc()
            log.warning("consumer.nats_away", consumer=self.label, subject=msg.subject, error=repr(err))
            return Nak(2.0)
        HANDLER_ERRORS.labels(self.label, "error").inc()
        seq = msg.metadata.sequence.stream
        failures = self._failures.pop(seq, 0) + 1
        self._failures[seq] = failures
        while len(self._failures) > 10_000:
            self._failures.popitem(last=False)
        log.error("consumer.handler_failed", consumer=self.label, subject=msg.subject, seq=seq,
                  failures=failures, exc_info=err)
        if failures >= self.max_failures:
            return Term(f"gave up after {failures} failed handlings: {type(err).__name__}: {err}"[:500])
        return Nak(failure_delay_s(failures))

    async def settle(self, msg: Msg, outcome: Outcome) -> None:
        try:
            match outcome:
                case Ack():
                    await msg.ack()
                    kind = "ack"
                case Nak(delay_s=delay):
                    await msg.nak(delay=delay if delay > 0 else None)
                    kind = "nak"
                case Term(reason=reason):
                    await msg.term()
                    kind = "term"
                    log.warning("consumer.termed", consumer=self.label, subject=msg.subject,
                                seq=msg.metadata.sequence.stream, reason=reason)
        except Exception as err:
            SETTLE_ERRORS.labels(self.label).inc()
            log.warning("consumer.settle_failed", consumer=self.label, subject=msg.subject, error=repr(err))
            return
        SETTLED.labels(self.label, kind).inc()

    async def _fetch(self, n: int) -> list[Msg]:
        try:
            if self._sub is None or self._bound_at != self.reconnects.count or self._idle_s >= self.idle_rebind_s:
                await self._bind()
            msgs = await self._sub.fetch(n, timeout=self.fetch_timeout_s)
        except (NatsTimeout, TimeoutError):  # fetch(n > 1) may raise the builtin one
            self._idle_s += self.fetch_timeout_s
            return []
        except Exception as err:
            # A consumer without a leader (an election), a connection going
            # away, or a bind refused: wait a moment and bind afresh.
            log.warning("consumer.fetch_failed", consumer=self.label, error=repr(err))
            self._bound_at = -2
            await asyncio.sleep(1.0)
            return []
        self._idle_s = 0.0
        return list(msgs)

    async def _bind(self) -> None:
        await self._unbind()
        self._sub = await self.js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        self._bound_at = self.reconnects.count
        self._idle_s = 0.0

    async def _unbind(self) -> None:
        # nats-py's drain() waits 30 s on a pull subscription left open.
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except Exception as err:  # the old subscription may be gone with its connection
                log.info("consumer.unsubscribe_failed", consumer=self.label, error=repr(err))


class Heartbeat:
    """`in_progress` every `every_s` while a long handler works, so the ack
    wait does not run out; stopped by the handler (the runner's watchdog stops
    it when a render hangs, so JetStream can end the job)."""

    def __init__(self, msg: Msg, every_s: float):
        self._task = asyncio.create_task(self._beat(msg, every_s))

    @staticmethod
    async def _beat(msg: Msg, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await msg.in_progress()
            except Exception as err:  # NATS may be reconnecting; the next beat may land
                log.warning("consumer.heartbeat_failed", subject=msg.subject, error=repr(err))

    def stop(self) -> None:
        self._task.cancel()
