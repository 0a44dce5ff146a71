"""Counters for webhook ingest (Prometheus; exported wherever the project serves its metrics)."""

from __future__ import annotations

from prometheus_client import Counter

WEBHOOKS_ACCEPTED = Counter(
    "webhook_requests_accepted_total", "Webhook requests stored and answered 200", ["provider"]
)
WEBHOOKS_REJECTED = Counter(
    "webhook_requests_rejected_total",
    "Webhook requests refused (bad secret/signature, unknown channel, too large, invalid body)",
    ["provider", "reason"],
)
