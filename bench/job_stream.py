"""The whole job stream, read back the way the `nats` CLI reads it."""

from __future__ import annotations


async def job_events(nats_url: str) -> list[tuple[int, str, dict[str, str], bytes]]:
    """The whole job stream, as `nats stream view` reads it (an ordered consumer)."""
    import nats
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js.api import DeliverPolicy

    from mochi_contracts.streams import JOBS_STREAM
    from mochi_contracts.subjects import ALL_JOB_EVENTS

    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe(ALL_JOB_EVENTS, stream=JOBS_STREAM, ordered_consumer=True,
                                             deliver_policy=DeliverPolicy.ALL)
        out = []
        while True:
            try:
                msg = await sub.next_msg(timeout=2.0)
            except NatsTimeout:
                return out
            out.append((msg.metadata.sequence.stream, msg.subject, dict(msg.headers or {}), msg.data))
            if msg.metadata.num_pending == 0:
                return out
    finally:
        await nc.close()
