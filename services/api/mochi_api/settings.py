from __future__ import annotations

from typing import Annotated

import msgspec

from mochi_common.storage import StoreSettings
from mochi_contracts.scheduling import Scheduling


class ApiSettings(StoreSettings, kw_only=True, frozen=True):
    # store_url and the s3_* fields come from StoreSettings, nats_url,
    # jetstream_replicas and log_level from ServiceSettings.
    host: str = "127.0.0.1"
    port: int = 8000
    # Lifetime of the presigned video URLs the API redirects to (S3 allows 7 days at most).
    video_url_expiry_s: Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 3600)] = 3600
    # `fair`: queue positions follow the fair-share scheduler's planned order
    # (docs/scheduling.md); `fifo`: the catalog's submit order. As the runners'.
    scheduling: Scheduling = "fifo"
    # How long to wait for the catalog before answering 503.
    catalog_timeout_s: float = 2.0
    # Largest accepted request body; a job request is well under 16 KiB.
    max_body_bytes: int = 64 * 1024
    # A comment on idle event streams, so proxies keep them open.
    sse_heartbeat_s: float = 15.0
    # Event streams one key (one owner) may hold open at once on this replica; 0: no cap.
    max_streams_per_owner: Annotated[int, msgspec.Meta(ge=0)] = 8
    # After SIGTERM: event streams end at once (clients resume elsewhere with
    # Last-Event-ID); other responses (a download) get this long before they are
    # cut, then the app shuts down. Below the pod's terminationGracePeriodSeconds (30).
    shutdown_grace_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 20.0
    # The most events a /v1/events replay (Last-Event-ID) sends: the newest ones.
    sse_replay_max_events: Annotated[int, msgspec.Meta(ge=1)] = 1000
    public_url: str = ""  # base for absolute links; empty means relative links
    # The web app served at /; empty means web/ of this checkout (see mochi_api/web.py).
    web_dir: str = ""
    # Lines of "<owner> <sha256 of the key> [admin]"; `mochi keys new` makes them.
    api_keys_file: str = ""
    # Serve without keys, everyone one admin owner: the embedded default only
    # (refused together with api_keys_file).
    allow_anonymous: bool = False
    # Without keys, the Host names served besides localhost, 127.0.0.1, [::1] and
    # `host` (comma-separated); any other Host is refused (DNS-rebinding guard).
    allowed_hosts: list[str] = msgspec.field(default_factory=list)
    # Per key (per client address without keys), per API replica.
    submits_per_minute: Annotated[int, msgspec.Meta(ge=1)] = 60
    # Queued jobs one owner may have at once (the catalog counts, so a burst may
    # overshoot by its lag); 0 turns the cap off (load benchmarks).
    max_queued_per_owner: Annotated[int, msgspec.Meta(ge=0, le=100)] = 50
    # How long an Idempotency-Key is remembered.
    idempotency_ttl_s: Annotated[float, msgspec.Meta(gt=0)] = 86400.0
    # Webhook URLs resolving to loopback / private or link-local addresses are
    # refused at submit unless allowed (the embedded default allows loopback).
    webhook_allow_loopback: bool = False
    webhook_allow_private: bool = False
    # How long a video is kept after its job completes (0: for ever); each
    # completed job shows expires_at, and after it the download answers 410.
    video_lifetime_s: Annotated[float, msgspec.Meta(ge=0)] = 7 * 86400.0
    # How often a file:// store is swept of expired videos (an s3:// store gets a lifecycle rule).
    retention_sweep_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0
