"""The scheduler's leader lease: one key in a KV bucket whose TTL is the lease.

The leader holds the key and renews it (`update` against the revision it last
wrote) every third of the TTL; followers try `create`, which only succeeds once
the key is gone: deleted by a leader that stops cleanly, or expired by the
server one TTL after the last renewal of a leader that died. No timer of our
own decides who leads: the server's expiry and its revision check do.

A leader counts itself leader only until one TTL after it *sent* its last
successful renewal, a moment no later than the server stored it, so by the time
the server lets a follower take the key the old leader has already stopped."""

from __future__ import annotations

import time
from typing import Any

import structlog
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    BucketNotFoundError, KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError)

from mochi_contracts.streams import SCHEDULER_LEASE_BUCKET, SCHEDULER_LEASE_KEY

log = structlog.get_logger()


async def lease_bucket(js: Any, ttl_s: float, replicas: int) -> Any:
    """The lease bucket, made if absent. Its TTL is the lease: every replica
    must be started with the same MOCHI_LEASE_TTL_S."""
    try:
        kv = await js.key_value(SCHEDULER_LEASE_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(KeyValueConfig(
            bucket=SCHEDULER_LEASE_BUCKET, description="Mochi scheduler leader lease (TTL = the lease)",
            history=1, ttl=ttl_s, storage=StorageType.FILE, replicas=replicas))
    status = await kv.status()
    if abs((status.ttl or 0) - ttl_s) > 1e-3:
        raise SystemExit(f"the lease bucket {SCHEDULER_LEASE_BUCKET} has a TTL of {status.ttl}s but "
                         f"MOCHI_LEASE_TTL_S is {ttl_s}s: every scheduler replica must use the bucket's "
                         "TTL (delete the bucket while no scheduler runs to change it)")
    return kv


class Lease:
    def __init__(self, kv: Any, holder: str, ttl_s: float):
        self.kv = kv
        self.holder = holder
        self.ttl_s = ttl_s
        self.revision: int | None = None
        self.valid_until = 0.0
        self.terms = 0  # times this replica became leader

    def held(self) -> bool:
        return self.revision is not None and time.monotonic() < self.valid_until

    async def keep(self) -> bool:
        """Renew the lease if held, else try to take it; True while held.
        Raises only what NATS raised (the caller retries; the lease then runs
        out on its own)."""
        sent = time.monotonic()
        if self.revision is not None and sent >= self.valid_until:
            self._lost("expired before it could be renewed")
        try:
            if self.revision is None:
                self.revision = await self.kv.create(SCHEDULER_LEASE_KEY, self.holder.encode())
                self.terms += 1
                log.info("lease.acquired", holder=self.holder, revision=self.revision, ttl_s=self.ttl_s)
            else:
                self.revision = await self.kv.update(SCHEDULER_LEASE_KEY, self.holder.encode(), last=self.revision)
        except (KeyWrongLastSequenceError, KeyNotFoundError, KeyDeletedError):
            if self.revision is not None:
                self._lost("another replica holds it")
            return False
        except Exception:
            if self.revision is not None and time.monotonic() >= self.valid_until:
                self._lost("NATS did not answer before it ran out")
            raise
        self.valid_until = sent + self.ttl_s
        return True

    async def give_up(self) -> None:
        """On a clean stop: delete the key so a follower takes over at once."""
        if self.revision is None:
            return
        revision, self.revision = self.revision, None
        try:
            await self.kv.delete(SCHEDULER_LEASE_KEY, last=revision)
            log.info("lease.given_up", holder=self.holder)
        except Exception as err:  # it runs out on its own within one TTL
            log.warning("lease.give_up_failed", holder=self.holder, error=repr(err))

    def _lost(self, why: str) -> None:
        log.warning("lease.lost", holder=self.holder, why=why)
        self.revision = None
        self.valid_until = 0.0


async def holder_of(kv: Any) -> str | None:
    """Who holds the lease now (for tests and operators), None if nobody."""
    try:
        entry = await kv.get(SCHEDULER_LEASE_KEY)
    except NotFoundError:  # never written, deleted or expired
        return None
    return entry.value.decode() if entry.value else None
