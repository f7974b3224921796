from __future__ import annotations

from typing import Annotated

import msgspec

from mochi_common.settings import ServiceSettings


class WebhooksSettings(ServiceSettings, kw_only=True, frozen=True):
    # nats_url, jetstream_replicas, log_level and health_* come from ServiceSettings.
    # Standard Webhooks secret, "whsec_<base64>": every delivery is signed with it.
    webhook_secret: str = ""
    # One try's limit, whole: connect, send, and the answer read up to
    # webhook_max_response_bytes; slower receivers (a trickled answer included)
    # are retried like unreachable ones.
    webhook_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    # At most this much of an answer's body is read; the rest is cut off with
    # its connection. Nothing in the body matters to the sender.
    webhook_max_response_bytes: Annotated[int, msgspec.Meta(ge=0, le=16 * 1024 * 1024)] = 64 * 1024
    # Retries (timeouts, connection errors, 408, 429, 5xx) go on this long after
    # the event, waiting first_delay_s, doubling up to max_delay_s, jittered.
    webhook_retry_window_s: Annotated[float, msgspec.Meta(gt=0)] = 4 * 3600.0
    webhook_retry_first_delay_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    webhook_retry_max_delay_s: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    # A delivery not acked this long after it was handed out is handed out again
    # (a dispatcher that died mid-try); keep it well above webhook_timeout_s.
    webhook_ack_wait_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    # Progress webhooks are sent at most this often per job.
    webhook_progress_interval_s: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    # Deliveries in flight at once.
    webhook_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 16
    # The same names and meaning as the API's: where webhooks may not go.
    webhook_allow_loopback: bool = False
    webhook_allow_private: bool = False
    # Base of the links in webhook bodies (the API's public URL; empty: relative links).
    public_url: str = ""
    # How long deliveries and deadline timers are kept; outlives the retry window.
    dispatch_max_age_s: Annotated[float, msgspec.Meta(gt=0)] = 7 * 86400.0
