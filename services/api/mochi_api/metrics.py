"""The API's Prometheus metrics at GET /metrics: Litestar's Prometheus plugin.

Requests are counted and timed per route template (`group_path`), so job ids
never become label values; /metrics itself is not counted. The series:
mochi_api_requests_total, mochi_api_request_duration_seconds,
mochi_api_requests_in_progress (open SSE streams included) and
mochi_api_requests_error_total (5xx), labelled method, path, status_code and
app_name.

The metric objects live in prometheus_client's default registry, created by
Litestar's middleware on first use and kept by it (the accepted exception to
"no process-wide mutable state": it is what /metrics exposes)."""

from __future__ import annotations

from litestar.config.app import AppConfig
from litestar.plugins import InitPluginProtocol
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

METRICS_PATH = "/metrics"


class MetricsController(PrometheusController):
    """GET /metrics, in Prometheus' text format. An operator's endpoint, kept out
    of the public OpenAPI document; it asks for no API key (scrapers carry
    none), so expose it only inside the cluster."""

    path = METRICS_PATH
    include_in_schema = False


def prometheus_config() -> PrometheusConfig:
    return PrometheusConfig(app_name="mochi-api", prefix="mochi_api", group_path=True,
                            exclude=[f"^{METRICS_PATH}$"])


class ApiMetricsPlugin(InitPluginProtocol):
    """Adds the request-metrics middleware (outermost, so rate-limited and
    refused requests are counted too) and the /metrics route."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.middleware.insert(0, prometheus_config().middleware)
        app_config.route_handlers.append(MetricsController)
        return app_config
