"""The scheduler process (`mochi scheduler`, for MOCHI_SCHEDULING=fair).

Every replica follows the job stream and the release stream into its own copy
of the queues (view.py) and handles release dead letters; the one holding the
leader lease (lease.py) also releases work as runner lanes free (release.py).
A replica that takes the lease releases nothing before it has caught up with
both streams as they stood at that moment, so it never decides on a stale copy."""

from __future__ import annotations

import asyncio
import signal

import structlog

from mochi_api.api_keys import OwnerPolicy, read_owner_policies
from mochi_common.consumer import DurableConsumer
from mochi_common.health_server import serve_health
from mochi_common.logs import configure_logging
from mochi_common.nats_conn import PatientJetStream, Reconnects, connect
from mochi_common.settings import load_settings
from mochi_common.supervise import Supervisor
from mochi_contracts.streams import RELEASE_DEAD_LETTER_CONSUMER, RELEASE_DEAD_LETTER_STREAM
from mochi_scheduler import metrics
from mochi_scheduler.dead_letters import ReleaseDeadLetters
from mochi_scheduler.fair_share import FairShare, Policy
from mochi_scheduler.lease import Lease, lease_bucket
from mochi_scheduler.queue_order import OrderPublisher, queue_bucket
from mochi_scheduler.release import Releaser
from mochi_scheduler.settings import SchedulerSettings
from mochi_scheduler.topology import ensure_scheduler_topology
from mochi_scheduler.view import StreamView

log = structlog.get_logger()


def policies(settings: SchedulerSettings) -> dict[str, Policy]:
    """Owner -> scheduling policy from the keys file; read once at start (a
    changed file takes effect when the replicas restart)."""
    read: dict[str, OwnerPolicy] = read_owner_policies(settings.api_keys_file)
    return {owner: Policy(weight=p.share_weight, max_running=p.max_running or settings.max_running_per_owner,
                          allowed=p.allowed_priorities)
            for owner, p in read.items()}


class Scheduler:
    def __init__(self, settings: SchedulerSettings, js: object, kv: object, queue_kv: object):
        self.settings = settings
        by_owner = policies(settings)
        # Without a keys file every owner may use every priority (the anonymous
        # stack); with one, an owner not in it gets the defaults of a plain key.
        fallback = Policy(max_running=settings.max_running_per_owner,
                          allowed=Policy().allowed if not settings.api_keys_file
                          else OwnerPolicy().allowed_priorities)
        self.model = FairShare(lambda owner: by_owner.get(owner, fallback))
        self.view = StreamView(js, self.model)
        self.lease = Lease(kv, settings.scheduler_id, settings.lease_ttl_s)
        self.owner_label = metrics.OwnerLabels(frozenset(by_owner) if settings.api_keys_file else None)
        self.releaser = Releaser(js, self.model, self.lease, settings.scheduler_id, self.owner_label)
        self.order = OrderPublisher(queue_kv, self.model, settings.scheduler_id, settings.queue_order_interval_s)
        self.stop = asyncio.Event()
        self.ready = False
        self._leading = False
        self._heads = (0, 0)  # the streams' last sequences when this replica took the lease

    async def keep_lease(self) -> None:
        """Take the lease when free, renew it every third of its TTL while held."""
        try:
            while not self.stop.is_set():
                try:
                    held = await self.lease.keep()
                except Exception as err:  # NATS away: held() runs out on its own
                    log.warning("lease.keep_failed", error=repr(err))
                    held = self.lease.held()
                if held and not self._leading:
                    await self._take_over()
                elif not held and self._leading:
                    self._leading = False
                    self.order.forget()
                    metrics.LEADER.set(0)
                    log.info("scheduler.follower", scheduler_id=self.settings.scheduler_id)
                wait = self.settings.lease_ttl_s / 3 if held else self.settings.lease_poll_s
                try:
                    await asyncio.wait_for(self.stop.wait(), wait)
                except TimeoutError:
                    pass
        finally:
            self._leading = False
            metrics.LEADER.set(0)
            await self.lease.give_up()

    async def _take_over(self) -> None:
        # Releasing waits until the view has caught up with the streams as they
        # stand now (release() checks); the lease goes on being renewed meanwhile.
        self._heads = await self.view.stream_heads()
        self._leading = True
        metrics.LEADER.set(1)
        log.info("scheduler.leader", scheduler_id=self.settings.scheduler_id, term=self.lease.terms,
                 jobs_seq=self._heads[0], release_seq=self._heads[1],
                 queued=sum(self.model.queued_by_owner().values()), out=len(self.model.out))

    def _caught_up(self) -> bool:
        return self.view.jobs_seq >= self._heads[0] and self.view.release_seq >= self._heads[1]

    async def release(self) -> None:
        while not self.stop.is_set():
            if self._leading and self.lease.held() and self._caught_up():
                await self.releaser.release_some()
                try:
                    await self.order.publish()
                except Exception as err:  # positions fall back until the next write; releasing goes on
                    log.warning("queue_order.publish_failed", error=repr(err))
            metrics.refresh(self.model, self.owner_label)
            self.view.changed.clear()
            try:
                # Woken early by a stream change (a final frees a running slot).
                await asyncio.wait_for(self.view.changed.wait(), self.settings.tick_s)
            except TimeoutError:
                pass


async def run(settings: SchedulerSettings) -> None:
    reconnects = Reconnects()
    nc = await connect(settings.nats_url, name=f"mochi-scheduler-{settings.scheduler_id}", reconnects=reconnects)
    js = nc.jetstream()
    cfg = settings.jetstream()
    await ensure_scheduler_topology(js, cfg, settings.release_max_age_s)
    kv = await lease_bucket(js, settings.lease_ttl_s, settings.jetstream_replicas)
    queue_kv = await queue_bucket(js, settings.jetstream_replicas)
    scheduler = Scheduler(settings, js, kv, queue_kv)
    supervisor = Supervisor()
    if settings.health_port:
        await serve_health(settings.health_host, settings.health_port,
                           lambda: nc.is_connected and supervisor.healthy(), not_ready=supervisor.unhealthy)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, scheduler.stop.set)
    dead = DurableConsumer(js, RELEASE_DEAD_LETTER_STREAM, RELEASE_DEAD_LETTER_CONSUMER,
                           label="release-dead-letters", reconnects=reconnects, fetch_timeout_s=2.0)
    supervisor.start("follow-jobs", scheduler.view.follow_jobs)
    supervisor.start("follow-releases", scheduler.view.follow_releases)
    supervisor.start("lease", scheduler.keep_lease)
    supervisor.start("release", scheduler.release)
    supervisor.start("dead-letters", lambda: dead.run(ReleaseDeadLetters(PatientJetStream(js, 60.0)).handle,
                                                      scheduler.stop))
    log.info("scheduler.started", scheduler_id=settings.scheduler_id, lease_ttl_s=settings.lease_ttl_s)
    await scheduler.stop.wait()
    await supervisor.stop(timeout_s=1.0)  # the lease is given up at once; the readers just end
    await nc.drain()
    log.info("scheduler.stopped", scheduler_id=settings.scheduler_id)


def main() -> None:
    settings = load_settings(SchedulerSettings)
    configure_logging("scheduler", settings.log_level)
    asyncio.run(run(settings))
