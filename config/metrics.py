"""Prometheus metrics.

Two kinds:
- event counters and histograms updated by the code that does the work (webhook views, the processor,
  the outbox drain, consumers, the HTTP middleware). With several processes, set
  ``PROMETHEUS_MULTIPROC_DIR`` to a shared empty directory (cleared at deploy) and every process
  writes there; ``/metrics`` aggregates them (prometheus-client multiprocess mode).
- state read from the database at scrape time (outbox depth by status and channel, oldest queued age,
  channel status, webhook events by status): always right, whichever process answers the scrape.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

WEBHOOK_EVENTS = Counter(
    "wa_webhook_events_total",
    "Webhook requests by provider and outcome (received, rejected, invalid, too_large, unknown_channel)",
    ["provider", "outcome"],
)
WEBHOOK_PROCESSED = Counter(
    "wa_webhook_processed_total",
    "Normalized webhook events processed, by provider, event type and result (processed, failed, dead)",
    ["provider", "type", "result"],
)
WEBHOOK_LAG = Histogram(
    "wa_webhook_processing_lag_seconds",
    "From a webhook being received to its processing finishing",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
SEND_ATTEMPTS = Counter(
    "wa_outbox_send_attempts_total",
    "Provider send attempts by provider and result (sent, transient, rate_limited, pair_limited, permanent)",
    ["provider", "result"],
)
SEND_LATENCY = Histogram(
    "wa_outbox_send_seconds", "Duration of a provider send call", ["provider"], buckets=LATENCY_BUCKETS
)
RATE_LIMIT_PAUSES = Counter("wa_outbox_rate_limit_pauses_total", "Channels paused after a 429", ["provider"])
WEBSOCKETS_OPEN = Gauge(
    "wa_websocket_connections", "Open inbox websocket connections", multiprocess_mode="livesum"
)
HTTP_DURATION = Histogram(
    "wa_http_request_seconds",
    "HTTP request duration by route and method",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)


class DatabaseStateCollector(Collector):
    """Gauges computed from the database when scraped."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        from django.db.models import Count, Min
        from django.utils import timezone

        from channels_app.models import Channel
        from outbox.models import OutboxMessage
        from webhooks.models import WebhookEvent

        depth = GaugeMetricFamily(
            "wa_outbox_rows", "Outbox rows by status and channel", labels=["status", "channel"]
        )
        for row in OutboxMessage.objects.values("status", "channel_id").annotate(n=Count("id")):
            depth.add_metric([row["status"], str(row["channel_id"] or "")], row["n"])
        yield depth

        oldest = OutboxMessage.objects.filter(status=OutboxMessage.Status.QUEUED).aggregate(
            m=Min("created_at")
        )["m"]
        age = GaugeMetricFamily("wa_outbox_oldest_queued_seconds", "Age of the oldest queued outbox row")
        age.add_metric([], (timezone.now() - oldest).total_seconds() if oldest else 0.0)
        yield age

        status = GaugeMetricFamily(
            "wa_channel_status",
            "1 for each channel's current status",
            labels=["channel", "provider", "status"],
        )
        for channel in Channel.objects.only("id", "provider", "status"):
            status.add_metric([str(channel.pk), channel.provider, channel.status], 1)
        yield status

        events = GaugeMetricFamily(
            "wa_webhook_events_stored",
            "Stored webhook events by provider and status",
            labels=["provider", "status"],
        )
        for stored in WebhookEvent.objects.values("provider", "status").annotate(n=Count("id")):
            events.add_metric([stored["provider"], stored["status"]], stored["n"])
        yield events


def render_metrics() -> tuple[bytes, str]:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        for collector in list(REGISTRY._collector_to_names):
            registry.register(collector)
    registry.register(DatabaseStateCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


class HttpMetricsMiddleware:
    """Request duration by route pattern (never by raw path: ids would explode the label set)."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else "unmatched"
        HTTP_DURATION.labels(
            route=route or "/", method=request.method, status=str(response.status_code)
        ).observe(time.perf_counter() - started)
        return response
