"""Fetching from a durable pull consumer, one message at a time, in a way that
survives NATS restarts.

nats-py's pull subscriptions can fall silent after the server they were on
restarts (nats-io/nats.py#504): fetches time out for ever while the consumer
has work. So the subscription is bound afresh after every reconnect."""

from __future__ import annotations

import asyncio

import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext

from mochi_common.nats_conn import TRANSIENT, Reconnects

log = structlog.get_logger()


class DurablePuller:
    def __init__(self, js: JetStreamContext, stream: str, durable: str, reconnects: Reconnects):
        self.js = js
        self.stream = stream
        self.durable = durable
        self.reconnects = reconnects
        self._sub = None
        self._bound_at = -1

    async def _bind(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as err:  # the old subscription may be gone with its connection
                log.warning("pull.unsubscribe_failed", durable=self.durable, error=repr(err))
            log.info("pull.rebinding", durable=self.durable, reconnects=self.reconnects.count)
        self._sub = await self.js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        self._bound_at = self.reconnects.count

    async def next(self, timeout: float) -> Msg | None:
        """The next message, or None if none came within `timeout`."""
        if self._sub is None or self._bound_at != self.reconnects.count:
            await self._bind()
        assert self._sub is not None
        try:
            msgs = await self._sub.fetch(1, timeout=timeout)
        except NatsTimeout:
            return None
        except TRANSIENT as err:
            # The consumer has no leader yet (an election after a restart):
            # wait a moment and bind afresh rather than give up the loop.
            log.warning("pull.unavailable", durable=self.durable, error=repr(err))
            self._bound_at = -2
            await asyncio.sleep(min(timeout, 1.0))
            return None
        return msgs[0] if msgs else None

    async def close(self) -> None:
        # nats-py's drain() waits 30 s on a pull subscription left open.
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
