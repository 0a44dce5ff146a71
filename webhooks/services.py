"""Writes for raw webhook events: store (before the 200), replay. Processing lives in ``webhooks.processor``.

An event is stored exactly as received (raw bytes, so a Meta signature can be re-checked later) with
its headers minus anything secret, then processing is kicked after commit. Status machine:
``pending → processing → processed | failed (retried with backoff) | dead``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from channels_app.models import Channel
from config.bulk_sql import rows_insert
from config.request_context import current_request_id
from webhooks.models import WebhookEvent

logger = logging.getLogger(__name__)

# Header values worth keeping to debug a delivery. Every other header keeps its name only: providers
# let customers add arbitrary headers (Whapi's "Authorization: Bearer …"), so a deny-list would leak.
KEPT_HEADER_VALUES = {
    "content-type",
    "content-length",
    "user-agent",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-real-ip",
    "x-request-id",
    "x-whapi-event",
}
REDACTED = "[redacted]"


def webhook_headers_redacted(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers to store: values only for KEPT_HEADER_VALUES, never Authorization or any secret."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        kept[lowered] = str(value)[:500] if lowered in KEPT_HEADER_VALUES else REDACTED
    return kept


def _kick() -> None:
    from webhooks.tasks import webhook_events_kick  # tasks import the processor: import late

    transaction.on_commit(webhook_events_kick)


@dataclass(frozen=True)
class EventToStore:
    """One verified POST to store: one event per channel the body speaks for."""

    provider: str
    channels: list[Channel | None]
    raw_body: bytes
    headers: Mapping[str, str]
    signature_valid: bool
    event_type: str
    failed_reason: str = ""
    correlation_id: str = ""


def webhook_events_store(items: list[EventToStore]) -> list[list[WebhookEvent]]:
    """Store several POSTs' events in one statement (the lean front groups concurrent POSTs into one
    commit) and kick processing once after commit. Returns each item's events, in order.

    Called outside any transaction on Postgres, that one INSERT commits by itself before this returns.
    """
    now = timezone.now()
    per_item: list[list[WebhookEvent]] = []
    for item in items:
        # The request id of the POST that brought the event (X-Request-ID or generated), so one id follows
        # the event from the provider's request through its processing's logs.
        correlation_id = (item.correlation_id or current_request_id())[:64] or uuid.uuid4().hex
        stored_headers = webhook_headers_redacted(item.headers)
        per_item.append(
            [
                WebhookEvent(
                    provider=item.provider,
                    channel=channel,
                    headers=stored_headers,
                    raw_body=item.raw_body,
                    signature_valid=item.signature_valid,
                    event_type=item.event_type[:64],
                    status=WebhookEvent.Status.FAILED if item.failed_reason else WebhookEvent.Status.PENDING,
                    last_error=item.failed_reason,
                    # Pending rows carry their due time, so the sweep finds lost kicks through the partial index.
                    next_attempt_at=None if item.failed_reason else now,
                    correlation_id=correlation_id,
                )
                for channel in item.channels
            ]
        )
    events = [event for item_events in per_item for event in item_events]
    kick = any(not item.failed_reason for item in items)
    if connection.vendor == "postgresql" and connection.get_autocommit() and not connection.in_atomic_block:
        # Outside a transaction: one statement is its own transaction, committed when it returns (the ack
        # path saves its BEGIN and COMMIT round trips this way), and on_commit runs the kick at once.
        rows_insert(WebhookEvent, events)
        if kick:
            _kick()
        return per_item
    with transaction.atomic(savepoint=False):
        if connection.vendor == "postgresql":
            rows_insert(WebhookEvent, events)  # the ORM's bulk_create cost a tenth of a webhook's time
        else:
            WebhookEvent.objects.bulk_create(events)
        if kick:
            _kick()
    return per_item


def webhook_event_store(
    *,
    provider: str,
    channels: Iterable[Channel | None],
    raw_body: bytes,
    headers: Mapping[str, str],
    signature_valid: bool,
    event_type: str,
    failed_reason: str = "",
    correlation_id: str = "",
) -> list[WebhookEvent]:
    """Store one event per channel the body speaks for, and kick processing after commit.

    ``failed_reason`` stores the body as a failed event for inspection only (e.g. invalid JSON behind a
    valid signature): it is not kicked and the sweep never retries it (no next attempt time).
    """
    item = EventToStore(
        provider=provider,
        channels=list(channels),
        raw_body=raw_body,
        headers=headers,
        signature_valid=signature_valid,
        event_type=event_type,
        failed_reason=failed_reason,
        correlation_id=correlation_id,
    )
    return webhook_events_store([item])[0]


def webhook_events_replay(*, events: Iterable[WebhookEvent]) -> int:
    """Queue events for processing again (admin action, ``manage.py replay_webhooks``).

    Processing is idempotent, so replaying a processed event changes nothing in the inbox. An event
    being processed right now (lease not expired) is left alone. Returns how many were queued.
    """
    now = timezone.now()
    ids = [event.pk for event in events]
    if not ids:
        return 0
    with transaction.atomic(savepoint=False):
        replayable = list(
            WebhookEvent.objects.filter(pk__in=ids)
            .exclude(Q(status=WebhookEvent.Status.PROCESSING) & Q(lease_expires_at__gt=now))
            .values_list("pk", flat=True)
        )
        WebhookEvent.objects.filter(pk__in=replayable).update(
            status=WebhookEvent.Status.PENDING,
            attempts=0,
            next_attempt_at=now,
            lease_expires_at=None,
            last_error="",
        )
        if replayable:
            logger.info("replaying %d webhook events", len(replayable))
            _kick()
    return len(replayable)
