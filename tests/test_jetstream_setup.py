"""Streams and consumers are created on first start and left alone after."""

import asyncio

import nats

from mochi_contracts.streams import (
    JOBS_STREAM, RUNNERS_CONSUMER, JetStreamSettings)
from mochi_common.jetstream_setup import ensure_runner_topology


def test_second_start_changes_nothing(system):
    async def run():
        nc = await nats.connect(system.nats_url)
        js = nc.jetstream()
        cfg = JetStreamSettings()
        first = await ensure_runner_topology(js, cfg)
        before = await js.stream_info(JOBS_STREAM)
        consumer_before = await js.consumer_info(JOBS_STREAM, RUNNERS_CONSUMER)
        second = await ensure_runner_topology(js, cfg)
        after = await js.stream_info(JOBS_STREAM)
        consumer_after = await js.consumer_info(JOBS_STREAM, RUNNERS_CONSUMER)
        changed = await ensure_runner_topology(js, JetStreamSettings(ack_wait_s=17))
        await nc.close()
        return first, second, before, after, consumer_before, consumer_after, changed

    first, second, before, after, cb, ca, changed = asyncio.run(run())
    assert set(first.values()) == {"created"}
    assert set(second.values()) == {"unchanged"}
    assert before.config == after.config and before.created == after.created
    assert cb.config == ca.config and cb.created == ca.created
    assert changed[RUNNERS_CONSUMER] == "updated"
