"""The leader's planned release order, published for honest queue positions.

The API must not guess the scheduler's choice (it would need every owner's
pass, weight and running limit), so the leader writes what it will do:
FairShare.order() as one KV value, rewritten when it changes (at most every
`interval_s`) and at least every third of the bucket's TTL, so the plan of a
scheduler that stopped expires on the server and the API falls back."""

from __future__ import annotations

import time
from typing import Any

import structlog
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError

from mochi_contracts.scheduling import QueueOrder, encode_queue_order
from mochi_contracts.streams import SCHEDULER_QUEUE_BUCKET, SCHEDULER_QUEUE_KEY, SCHEDULER_QUEUE_TTL_S
from mochi_scheduler.fair_share import FairShare

log = structlog.get_logger()

# Positions past this are shown as the catalog counts them: a plan of 1000
# jobs is about 35 KB, well under NATS's 1 MB message limit.
PLANNED_JOBS = 1000


async def queue_bucket(js: Any, replicas: int) -> Any:
    try:
        return await js.key_value(SCHEDULER_QUEUE_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(KeyValueConfig(
            bucket=SCHEDULER_QUEUE_BUCKET, description="Mochi scheduler: the leader's planned release order",
            history=1, ttl=SCHEDULER_QUEUE_TTL_S, storage=StorageType.FILE, replicas=replicas))


def planned(model: FairShare, scheduler_id: str) -> QueueOrder:
    return QueueOrder(jobs=[job.job_id for job in model.order(PLANNED_JOBS)], out=len(model.out),
                      queued=len(model.queued), scheduler=scheduler_id)


class OrderPublisher:
    def __init__(self, kv: Any, model: FairShare, scheduler_id: str, interval_s: float = 0.5):
        self.kv = kv
        self.model = model
        self.scheduler_id = scheduler_id
        self.interval_s = interval_s
        self._last: tuple[list[str], int, int] | None = None
        self._looked_at = 0.0
        self._written_at = 0.0

    async def publish(self) -> bool:
        """Write the plan if it changed (or is getting old); True if written.
        Called by the leader only, after it has caught up with the streams."""
        now = time.monotonic()
        if now - self._looked_at < self.interval_s:
            return False
        self._looked_at = now
        order = planned(self.model, self.scheduler_id)
        fresh = now - self._written_at < SCHEDULER_QUEUE_TTL_S / 3
        if fresh and self._last == (order.jobs, order.out, order.queued):
            return False
        await self.kv.put(SCHEDULER_QUEUE_KEY, encode_queue_order(order))
        self._last, self._written_at = (order.jobs, order.out, order.queued), now
        return True

    def forget(self) -> None:
        """On losing the lease: a later term writes its plan at once."""
        self._last, self._looked_at, self._written_at = None, 0.0, 0.0
