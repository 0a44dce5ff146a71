"""Processing stored webhook events: claim → parse → apply to the inbox → processed | failed | dead.

1. **Claim** with one conditional UPDATE (pending, or failed and due → processing, attempts + 1, a lease).
   Two workers given the same id: exactly one wins; the other does nothing.
2. **Parse** the raw body with the provider's parser (``channels_app.providers.<provider>.parse``).
   A body that cannot be parsed will never parse: the event goes straight to ``dead``.
3. **Apply** the normalized events through ``inbox.services.inbound_events_apply`` and mark the event
   processed in the same transaction, so "applied" and "processed" commit together. A deadlock between
   two workers (chats locked in different orders) is retried at once, a few times.
4. **Fail**: any other error schedules a retry after 1, 2, 4, 8, 16 minutes; after 5 attempts the
   event is ``dead`` (replay it from the admin or ``manage.py replay_webhooks``).
5. **Sweep** (Celery beat, every 30 s): an event whose worker died stays ``processing`` until its lease
   ends, then returns to ``pending``; due pending/failed events are queued again.

Workers take events in batches (``webhook_events_drain``): one claim statement takes up to a batch of due
events (``FOR UPDATE SKIP LOCKED``, so drains never wait for each other or take the same event). The
batch's deliveries that are only customers' messages (most of them) are applied together in one
transaction (``inbox.services.receive_batch``: a handful of statements for the whole batch instead of
about ten per delivery) and marked processed with it; the others, and all of them if that transaction
fails, are processed one by one as above, in claim order. Storing an event kicks a drain after commit,
coalesced per web process; a Celery task per event cost more in the broker than the processing itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from channels_app.models import Channel
from channels_app.providers.base import InboundEvent, InboundMessage, UnknownEvent, WebhookParseError
from channels_app.providers.meta.parse import parse_webhook as meta_parse_webhook
from channels_app.providers.whapi.parse import parse_webhook as whapi_parse_webhook
from config.metrics import WEBHOOK_LAG, WEBHOOK_PROCESSED
from config.request_context import correlation
from inbox.models import DeferredStatus
from inbox.realtime import subscription_lookups_shared
from inbox.services import inbound_events_apply
from inbox.services.receive_batch import (
    ReceivedMessage,
    inbound_messages_apply_batch,
    inbound_messages_batchable,
)
from webhooks.models import WebhookEvent

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
BACKOFF_MINUTES = (1, 2, 4, 8, 16)
LEASE = timedelta(minutes=5)
# A pending event not picked up this long after it was stored lost its kick (broker down, crash).
PENDING_GRACE = timedelta(seconds=15)
DEADLOCK_RETRIES = 3
SWEEP_BATCH = 1000
# Statuses for ids that never showed up (sent from elsewhere, or a provider quirk) are dropped eventually.
DEFERRED_STATUS_TTL = timedelta(days=7)


class PermanentProcessingError(Exception):
    """Retrying cannot help (the body is not what the provider sends)."""


@dataclass(frozen=True)
class ProcessOutcome:
    status: str  # processed | failed | dead | skipped
    detail: str = ""


def webhook_event_claim(*, event_id: int, now: datetime | None = None) -> WebhookEvent | None:
    now = now or timezone.now()
    claimed = (
        WebhookEvent.objects.filter(pk=event_id)
        .filter(
            Q(status=WebhookEvent.Status.PENDING)
            | Q(status=WebhookEvent.Status.FAILED, next_attempt_at__isnull=False, next_attempt_at__lte=now)
        )
        .update(
            status=WebhookEvent.Status.PROCESSING, attempts=F("attempts") + 1, lease_expires_at=now + LEASE
        )
    )
    if not claimed:
        return None
    return WebhookEvent.objects.select_related("channel").get(pk=event_id)


_EVENT_FIELDS = WebhookEvent._meta.concrete_fields
_CHANNEL_FIELDS = Channel._meta.concrete_fields
# The claimed rows come back with the claim (RETURNING), in the model's field order: one statement where a
# claim and then a query for the rows were two, and no ORM query compiled per batch.
CLAIM_BATCH_SQL = f"""
WITH picked AS (
    SELECT id FROM webhooks_webhookevent
    WHERE status IN ('pending', 'failed') AND next_attempt_at <= %(now)s
    ORDER BY next_attempt_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE webhooks_webhookevent e
SET status = 'processing', attempts = e.attempts + 1, lease_expires_at = %(lease)s
FROM picked
WHERE e.id = picked.id
RETURNING {", ".join(f"e.{field.column}" for field in _EVENT_FIELDS)}
"""  # noqa: S608 (column names from the model)
_CHANNELS_SQL = f"""
SELECT {", ".join(str(field.column) for field in _CHANNEL_FIELDS)} FROM channels_app_channel WHERE id = ANY(%s)
"""  # noqa: S608


def _models_from_rows(model: type[Any], fields: Any, rows: list[tuple[Any, ...]]) -> list[Any]:
    """Instances from rows holding every concrete field in order, as the ORM would load them."""
    converters = [
        (index, field.from_db_value) for index, field in enumerate(fields) if hasattr(field, "from_db_value")
    ]
    attnames = [field.attname for field in fields]
    instances = []
    for row in rows:
        values = list(row)
        for index, convert in converters:
            values[index] = convert(values[index], None, connection)
        instances.append(model.from_db(connection.alias, attnames, values))
    return instances


def webhook_events_claim_batch(*, limit: int = 50, now: datetime | None = None) -> list[WebhookEvent]:
    """Claim up to ``limit`` due events (pending, or failed and due for their retry), oldest due first.

    Postgres: one statement, so concurrent drains skip each other's rows. SQLite (embedded, one writer at a
    time): the same filter inside one write transaction.
    """
    now = now or timezone.now()
    if connection.vendor == "postgresql":
        # One statement, so autocommit commits it; the rows come back with it.
        with connection.cursor() as cursor:
            cursor.execute(CLAIM_BATCH_SQL, {"now": now, "lease": now + LEASE, "limit": limit})
            rows = cursor.fetchall()
        if not rows:
            return []
        claimed: list[WebhookEvent] = _models_from_rows(WebhookEvent, _EVENT_FIELDS, rows)
        claimed.sort(key=lambda event: (event.next_attempt_at, event.pk))
        channel_ids = list({event.channel_id for event in claimed if event.channel_id})
        channels: dict[Any, Channel] = {}
        if channel_ids:
            with connection.cursor() as cursor:
                cursor.execute(_CHANNELS_SQL, [channel_ids])
                channels = {c.pk: c for c in _models_from_rows(Channel, _CHANNEL_FIELDS, cursor.fetchall())}
        # One Channel per number in the batch, not one per event (select_related built one per row).
        for event in claimed:
            event.channel = channels.get(event.channel_id) if event.channel_id else None
        return claimed
    with transaction.atomic():
        ids = list(
            WebhookEvent.objects.filter(
                status__in=[WebhookEvent.Status.PENDING, WebhookEvent.Status.FAILED],
                next_attempt_at__lte=now,
            )
            .order_by("next_attempt_at", "id")
            .values_list("id", flat=True)[:limit]
        )
        WebhookEvent.objects.filter(id__in=ids).update(
            status=WebhookEvent.Status.PROCESSING,
            attempts=F("attempts") + 1,
            lease_expires_at=now + LEASE,
        )
    if not ids:
        return []
    events = list(WebhookEvent.objects.filter(id__in=ids).order_by("next_attempt_at", "id"))
    # One Channel per number in the batch, not one per event (select_related built one per row).
    channels = Channel.objects.in_bulk({event.channel_id for event in events if event.channel_id})
    for event in events:
        event.channel = channels.get(event.channel_id) if event.channel_id else None
    return events


@dataclass
class DrainReport:
    claimed: int = 0
    processed: int = 0
    failed: int = 0
    dead: int = 0
    finished: bool = False  # stopped because nothing was left (not the time budget nor the batch count)


def webhook_events_drain(
    *,
    batch_size: int | None = None,
    time_budget: float | None = None,
    max_batches: int | None = None,
    idle_wait: float = 0.0,
    claim_interval: float = 0.0,
    on_busy: Callable[[int], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
) -> DrainReport:
    """Process due events batch after batch until none is left (or the time budget / batch count runs out).

    ``batch_size`` defaults to ``settings.WEBHOOK_DRAIN_BATCH_SIZE``. With ``idle_wait``, a drain that
    finds nothing waits that long and looks once more before it stops. With ``claim_interval``, claims
    start at least that far apart unless the last one was full: a drain keeping up with a stream takes what
    arrived meanwhile in one claim, where it took a claim (and a transaction) per event or two.

    ``on_busy(claimed)`` is called after each batch (this drain will claim again); ``on_stopping()`` once
    the drain found nothing: it then claims one last time and goes on if that finds events. So whoever saw
    the drain busy before ``on_stopping`` can rely on a claim after that moment (``webhooks.tasks``).
    """
    import time

    batch_size = batch_size or settings.WEBHOOK_DRAIN_BATCH_SIZE
    started = time.monotonic()
    report = DrainReport()
    batches = 0
    waited = stopping = False
    last_claim, last_full = -float("inf"), False
    while True:
        pause = last_claim + claim_interval - time.monotonic()
        if pause > 0 and not last_full:
            time.sleep(pause)
        last_claim = time.monotonic()
        events = webhook_events_claim_batch(limit=batch_size)
        if not events:
            if idle_wait > 0 and not waited:
                waited = True
                time.sleep(idle_wait)
                continue
            if on_stopping is not None and not stopping:
                stopping = True
                on_stopping()
                continue  # the last look, after whoever relied on this drain can see it stopping
            report.finished = True
            break
        waited = stopping = False
        last_full = len(events) >= batch_size
        batches += 1
        report.claimed += len(events)
        # A batch takes milliseconds: its events share one subscriptions lookup per workspace.
        with subscription_lookups_shared():
            for outcome in _process_batch(events):
                if outcome.status == "processed":
                    report.processed += 1
                elif outcome.status == "dead":
                    report.dead += 1
                else:
                    report.failed += 1
        if max_batches is not None and batches >= max_batches:
            break
        if time_budget is not None and time.monotonic() - started >= time_budget:
            break
        if on_busy is not None:
            on_busy(len(events))
    return report


def _process_batch(events: list[WebhookEvent]) -> list[ProcessOutcome]:
    """Process a claimed batch: deliveries that are only customers' messages are applied together, in
    one transaction (``inbound_messages_apply_batch``); the rest, and all of them if that transaction
    fails (a deadlock, a bad row), one by one as ``webhook_event_process`` would, in claim order."""
    outcomes: dict[int, ProcessOutcome] = {}
    parsed: dict[int, list[InboundEvent]] = {}
    for event in events:
        try:
            parsed[event.pk] = webhook_event_parse(event)
        except PermanentProcessingError as exc:
            with correlation(event.correlation_id or None, _workspace_id(event)):
                _finish_failed(event, str(exc), permanent=True)
            outcomes[event.pk] = ProcessOutcome("dead", str(exc))
    together = [
        event
        for event in events
        if event.pk in parsed and event.channel is not None and inbound_messages_batchable(parsed[event.pk])
    ]
    if len(together) > 1 and connection.vendor == "postgresql":
        try:
            _apply_together(together, parsed)
        except Exception as exc:
            # Nothing was applied (one transaction): each delivery gets its own chance, and its own error.
            logger.info("a batch of %d webhook events is applied one by one: %s", len(together), exc)
        else:
            outcomes.update((event.pk, ProcessOutcome("processed")) for event in together)
    for event in events:
        if event.pk not in outcomes:
            outcomes[event.pk] = _process_with_correlation(event, parsed[event.pk])
    return [outcomes[event.pk] for event in events]


def _apply_together(events: list[WebhookEvent], parsed: dict[int, list[InboundEvent]]) -> None:
    by_channel: dict[Any, list[WebhookEvent]] = {}
    for event in events:
        by_channel.setdefault(event.channel_id, []).append(event)
    with transaction.atomic(durable=True):
        # Numbers in a fixed order, so two drains lock them in the same order.
        for channel_id in sorted(by_channel, key=str):
            channel_events = by_channel[channel_id]
            received = [
                ReceivedMessage(event=item, received_at=event.received_at, webhook_event_id=event.pk)
                for event in channel_events
                for item in parsed[event.pk]
                if isinstance(item, InboundMessage)
            ]
            channel = channel_events[0].channel
            assert channel is not None  # only events with a channel are applied together
            inbound_messages_apply_batch(channel=channel, received=received)
        _finish_processed_many(events)


def _without_nul(value: Any) -> Any:
    """``value`` with NUL characters dropped from every string: Postgres refuses them in text, so a
    message or name carrying one could never be stored (its event would go dead)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


def _workspace_id(event: WebhookEvent) -> Any:
    return event.channel.workspace_id if event.channel is not None else None


def webhook_event_parse(event: WebhookEvent) -> list[InboundEvent]:
    raw = bytes(event.raw_body)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise PermanentProcessingError(f"invalid JSON: {exc}") from None
    if b"\\u0000" in raw:  # JSON can only carry NUL escaped; the check keeps the usual body free of a walk
        body = _without_nul(body)
    channel = event.channel
    try:
        if event.provider == WebhookEvent.Provider.META:
            return meta_parse_webhook(
                body,
                phone_number_id=(channel.meta_phone_number_id or None) if channel else None,
                received_at=event.received_at,
            )
        if channel is None:
            raise PermanentProcessingError("the event has no channel")
        # The sandbox provider speaks Whapi's webhook format.
        return whapi_parse_webhook(body, received_at=event.received_at)
    except WebhookParseError as exc:
        raise PermanentProcessingError(str(exc)) from None


def _is_deadlock(exc: OperationalError) -> bool:
    code = getattr(getattr(exc, "__cause__", None), "sqlstate", None) or getattr(
        getattr(exc, "__cause__", None), "pgcode", None
    )
    return code in ("40P01", "40001")


def webhook_event_process(*, event_id: int) -> ProcessOutcome:
    """Process one stored event if it can be claimed (see the module docstring for the steps)."""
    event = webhook_event_claim(event_id=event_id)
    if event is None:
        return ProcessOutcome("skipped")
    return _process_with_correlation(event)


def _process_with_correlation(
    event: WebhookEvent, parsed: list[InboundEvent] | None = None
) -> ProcessOutcome:
    with correlation(event.correlation_id or None, _workspace_id(event)):
        return _process_claimed(event, parsed)


def _process_claimed(event: WebhookEvent, parsed: list[InboundEvent] | None = None) -> ProcessOutcome:
    if parsed is None:
        try:
            parsed = webhook_event_parse(event)
        except PermanentProcessingError as exc:
            _finish_failed(event, str(exc), permanent=True)
            return ProcessOutcome("dead", str(exc))
    event_type = event.event_type
    all_unknown = all(isinstance(item, UnknownEvent) for item in parsed)
    if parsed and all_unknown:
        # Stored and marked, never an error: the admin list shows what we do not understand (yet).
        event_type = f"unknown:{parsed[0].kind}"[:64]  # type: ignore[union-attr]
    if event.channel is None:
        # Meta account-level events reach the one-app endpoint without naming a number.
        if all_unknown:
            _finish_processed(event, event_type)
            return ProcessOutcome("processed")
        _finish_failed(event, "the event names no channel of ours", permanent=True)
        return ProcessOutcome("dead", "no channel")
    channel: Channel = event.channel
    for attempt in range(DEADLOCK_RETRIES + 1):
        try:
            with transaction.atomic(durable=True):
                result = inbound_events_apply(
                    channel=channel, events=parsed, received_at=event.received_at, webhook_event_id=event.pk
                )
                _finish_processed(event, event_type)
            logger.debug("webhook event %s processed: %s", event.pk, result)
            return ProcessOutcome("processed")
        except OperationalError as exc:
            if _is_deadlock(exc) and attempt < DEADLOCK_RETRIES:
                logger.info("webhook event %s hit a deadlock, retrying", event.pk)
                continue
            _finish_failed(event, _error_text(exc), permanent=False)
            return ProcessOutcome(_status_after_failure(event), _error_text(exc))
        except Exception as exc:
            logger.exception("webhook event %s failed (attempt %s)", event.pk, event.attempts)
            _finish_failed(event, _error_text(exc), permanent=False)
            return ProcessOutcome(_status_after_failure(event), _error_text(exc))
    return ProcessOutcome("failed")  # pragma: no cover - the loop always returns


def _finish_processed(event: WebhookEvent, event_type: str) -> None:
    now = timezone.now()
    WEBHOOK_PROCESSED.labels(provider=event.provider, type=event_type or "unknown", result="processed").inc()
    WEBHOOK_LAG.labels(provider=event.provider).observe((now - event.received_at).total_seconds())
    # Plain SQL: once per event, and the ORM's UPDATE compilation cost as much as processing a status.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE webhooks_webhookevent SET status = %s, processed_at = %s, lease_expires_at = NULL, "
            "next_attempt_at = NULL, last_error = '', event_type = %s WHERE id = %s AND status = %s",
            [WebhookEvent.Status.PROCESSED, now, event_type, event.pk, WebhookEvent.Status.PROCESSING],
        )


def _finish_processed_many(events: list[WebhookEvent]) -> None:
    """``_finish_processed`` for deliveries applied together (their stored event types stay)."""
    now = timezone.now()
    for event in events:
        WEBHOOK_PROCESSED.labels(
            provider=event.provider, type=event.event_type or "unknown", result="processed"
        ).inc()
        WEBHOOK_LAG.labels(provider=event.provider).observe((now - event.received_at).total_seconds())
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE webhooks_webhookevent SET status = %s, processed_at = %s, lease_expires_at = NULL, "
            "next_attempt_at = NULL, last_error = '' WHERE id = ANY(%s) AND status = %s",
            [
                WebhookEvent.Status.PROCESSED,
                now,
                [event.pk for event in events],
                WebhookEvent.Status.PROCESSING,
            ],
        )


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def _status_after_failure(event: WebhookEvent) -> str:
    return WebhookEvent.Status.DEAD if event.attempts >= MAX_ATTEMPTS else WebhookEvent.Status.FAILED


def _finish_failed(event: WebhookEvent, error: str, *, permanent: bool) -> None:
    now = timezone.now()
    dead = permanent or event.attempts >= MAX_ATTEMPTS
    WEBHOOK_PROCESSED.labels(
        provider=event.provider, type=event.event_type or "unknown", result="dead" if dead else "failed"
    ).inc()
    if dead:
        status, next_attempt = WebhookEvent.Status.DEAD, None
    else:
        delay = BACKOFF_MINUTES[min(event.attempts, len(BACKOFF_MINUTES)) - 1]
        status, next_attempt = WebhookEvent.Status.FAILED, now + timedelta(minutes=delay)
    WebhookEvent.objects.filter(pk=event.pk, status=WebhookEvent.Status.PROCESSING).update(
        status=status, next_attempt_at=next_attempt, lease_expires_at=None, last_error=error
    )
    if status == WebhookEvent.Status.DEAD:
        logger.error("webhook event %s is dead after %s attempts: %s", event.pk, event.attempts, error)


def webhook_events_sweep(*, now: datetime | None = None) -> tuple[int, list[int]]:
    """Return expired ``processing`` events to ``pending`` (dead if out of attempts); list due ids.

    Returns (number of leases recovered, ids to queue).
    """
    now = now or timezone.now()
    expired = WebhookEvent.objects.filter(status=WebhookEvent.Status.PROCESSING, lease_expires_at__lt=now)
    recovered = expired.filter(attempts__lt=MAX_ATTEMPTS).update(
        status=WebhookEvent.Status.PENDING,
        lease_expires_at=None,
        next_attempt_at=now,
        last_error="the worker processing this event stopped (lease expired)",
    )
    killed = expired.update(
        status=WebhookEvent.Status.DEAD,
        lease_expires_at=None,
        next_attempt_at=None,
        last_error="the worker stopped on the last attempt (lease expired)",
    )
    if recovered or killed:
        logger.warning(
            "webhook sweep: %d events back to pending, %d dead after lease expiry", recovered, killed
        )
    due = list(
        WebhookEvent.objects.filter(
            Q(status=WebhookEvent.Status.PENDING, next_attempt_at__lte=now - PENDING_GRACE)
            | Q(
                status=WebhookEvent.Status.PENDING,
                next_attempt_at__lte=now,
                last_error__startswith="the worker",
            )
            | Q(status=WebhookEvent.Status.FAILED, next_attempt_at__lte=now)
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    DeferredStatus.objects.filter(created_at__lt=now - DEFERRED_STATUS_TTL).delete()
    return recovered, due
