from __future__ import annotations

from mochi_common.settings import ServiceSettings


class CatalogSettings(ServiceSettings, kw_only=True, frozen=True):
    # nats_url, jetstream_replicas, log_level and health_* come from ServiceSettings.
    db_path: str = "var/catalog.db"
    # Throw the database away at start and project the whole stream again.
    rebuild: bool = False
    # Events applied per SQLite transaction while catching up.
    batch_size: int = 500
    # How often /metrics' stream, consumer and job-count gauges are sampled.
    metrics_interval_s: float = 5.0
