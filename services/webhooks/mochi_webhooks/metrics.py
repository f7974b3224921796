"""The dispatcher's Prometheus series, served beside /healthz on MOCHI_HEALTH_PORT."""

from prometheus_client import Counter, Histogram

PLANNED = Counter("mochi_webhooks_deliveries_planned_total", "Webhook deliveries stored for sending",
                  ["event_type"])
ATTEMPTS = Counter("mochi_webhooks_attempts_total", "Webhook tries by outcome",
                   ["outcome"])  # delivered, retrying, failed
ATTEMPT_SECONDS = Histogram("mochi_webhooks_attempt_seconds", "One webhook try, request to answer",
                            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
EXPIRED = Counter("mochi_webhooks_jobs_expired_total", "Queued jobs expired at their deadline")
