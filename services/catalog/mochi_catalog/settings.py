from __future__ import annotations

import msgspec


class CatalogSettings(msgspec.Struct, kw_only=True, frozen=True):
    nats_url: str = "nats://127.0.0.1:4222"
    db_path: str = "var/catalog.db"
    jetstream_replicas: int = 1
    # Throw the database away at start and project the whole stream again.
    rebuild: bool = False
    # Events applied per SQLite transaction while catching up.
    batch_size: int = 500
    # How often /metrics' stream, consumer and job-count gauges are sampled.
    metrics_interval_s: float = 5.0
    # /healthz, /readyz and /metrics; 0 turns the endpoint off.
    health_host: str = "0.0.0.0"
    health_port: int = 0
    log_level: str = "info"
