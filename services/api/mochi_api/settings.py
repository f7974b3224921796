from __future__ import annotations

import msgspec


class ApiSettings(msgspec.Struct, kw_only=True, frozen=True):
    nats_url: str = "nats://127.0.0.1:4222"
    host: str = "127.0.0.1"
    port: int = 8000
    store_url: str = "file://var/videos"
    jetstream_replicas: int = 1
    # How long to wait for the catalog before answering 503.
    catalog_timeout_s: float = 2.0
    # Largest accepted request body; a job request is well under 16 KiB.
    max_body_bytes: int = 64 * 1024
    public_url: str = ""  # base for absolute links; empty means relative links
    log_level: str = "info"
