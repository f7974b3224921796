from __future__ import annotations

import os
import socket
from typing import Annotated

import msgspec

from mochi_common.settings import ServiceSettings


def _default_scheduler_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class SchedulerSettings(ServiceSettings, kw_only=True, frozen=True):
    # nats_url, jetstream_replicas, log_level and health_* come from ServiceSettings.
    # The API keys file (the same as the API's): owners' weights, priorities
    # and running limits. Empty: every owner weighs 1, may use every priority.
    api_keys_file: str = ""
    # The most jobs one owner may have out (released and not final) across all
    # runners, unless its keys say max_running=N. 0: no limit.
    max_running_per_owner: Annotated[int, msgspec.Meta(ge=0)] = 0
    # The leader lease: a follower takes over at most this long after a leader
    # dies (plus lease_poll_s); a leader that stops cleanly hands over at once.
    lease_ttl_s: Annotated[float, msgspec.Meta(ge=0.5, le=300)] = 3.0
    # How often a follower tries to take the lease.
    lease_poll_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.25
    # How often the leader looks at the runners' free lanes.
    tick_s: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.1
    # How often the leader looks whether its planned order (queue positions) changed.
    queue_order_interval_s: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.5
    # How long releases are kept: more than a job's longest queue and run time.
    release_max_age_s: Annotated[float, msgspec.Meta(gt=0)] = 7 * 86400.0
    scheduler_id: str = msgspec.field(default_factory=_default_scheduler_id)
