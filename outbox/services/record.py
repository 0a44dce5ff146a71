"""Recording what a call came back with: sent (fenced by the claimed attempt), retry, fail, give back."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from channels_app.models import Channel
from channels_app.providers.base import FailureKind, SendResult, TransportError
from channels_app.services import channel_status_set
from outbox.models import OutboxMessage
from outbox.services.pause import outbox_channel_pause
from outbox.services.policy import DEFAULT_RETRY_AFTER, Status, message_hooks, owned, retry_delay

logger = logging.getLogger(__name__)


def outbox_record_success(*, row: OutboxMessage, result: SendResult, now: datetime | None = None) -> bool:
    """Mark a row sent and give its message the provider's id. False if the row was no longer ours."""
    now = now or timezone.now()
    with transaction.atomic():
        return bool(_record_success_in_transaction(row, result, now))


def outbox_record_successes(
    *, results: list[tuple[OutboxMessage, SendResult]], now: datetime | None = None
) -> int:
    """Record a batch's accepted sends in one transaction: one fenced UPDATE for the rows, one bulk
    hand-over of the provider ids to the inbox (``sent_many``), one commit.

    If anything in it fails, nothing of it is kept and each result is recorded on its own instead, so one
    bad row cannot lose the others' provider ids. Returns how many rows were recorded as sent.
    """
    now = now or timezone.now()
    if connection.vendor != "postgresql" or len(results) == 1:
        return sum(outbox_record_success(row=row, result=result, now=now) for row, result in results)
    try:
        with transaction.atomic():
            owned = _mark_sent_bulk([row for row, _ in results], now)
            mine = [(row, result) for row, result in results if row.pk in owned]
            for row, result in results:
                if row.pk not in owned:
                    logger.warning(
                        "outbox %s: sent (provider id %s) after losing its lease; another attempt may send it again",
                        row.pk,
                        result.wa_message_id,
                    )
                else:
                    row.status, row.sent_at = Status.SENT, now
            with_message = [(row, result.wa_message_id) for row, result in mine if row.message_id]
            if with_message:
                message_hooks().sent_many(items=with_message, occurred_at=now)
        return len(mine)
    except Exception:
        logger.exception("outbox: recording a batch failed; recording its rows one by one")
    return sum(outbox_record_success(row=row, result=result, now=now) for row, result in results)


def _mark_sent_bulk(rows: list[OutboxMessage], now: datetime) -> set[int]:
    """sending → sent for the rows still ours (same attempt number we claimed); returns their ids.

    The (id, attempts) pairs travel as one JSON parameter: a VALUES list of placeholders made a new,
    long statement per batch size, which psycopg parsed again each time (uncached) in Python."""
    pairs = json.dumps([[row.pk, row.attempts] for row in rows])
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE outbox_outboxmessage o
            SET status = 'sent', sent_at = %s, lease_expires_at = NULL, last_error = '', last_error_code = '',
                updated_at = %s
            FROM jsonb_array_elements(%s::jsonb) AS v(pair)
            WHERE o.id = (v.pair->>0)::bigint AND o.attempts = (v.pair->>1)::int AND o.status = 'sending'
            RETURNING o.id
            """,
            [now, now, pairs],
        )
        return {row[0] for row in cursor.fetchall()}


def _record_success_in_transaction(row: OutboxMessage, result: SendResult, now: datetime) -> int:
    updated = owned(row).update(
        status=Status.SENT,
        sent_at=now,
        lease_expires_at=None,
        last_error="",
        last_error_code="",
        updated_at=now,
    )
    if not updated:
        logger.warning(
            "outbox %s: sent (provider id %s) after losing its lease; another attempt may send it again",
            row.pk,
            result.wa_message_id,
        )
        return 0
    row.status, row.sent_at = Status.SENT, now
    if row.message_id:
        message_hooks().sent(row=row, wa_message_id=result.wa_message_id, occurred_at=now)
    return 1


def outbox_record_failure(*, row: OutboxMessage, error: TransportError, now: datetime | None = None) -> str:
    """Record a failed call: retry later, pause the number, or fail for good. Returns the row's new status."""
    now = now or timezone.now()
    if error.kind == FailureKind.RATE_LIMITED:
        until = now + timedelta(
            seconds=error.retry_after if error.retry_after is not None else DEFAULT_RETRY_AFTER
        )
        outbox_channel_pause(channel=row.channel, until=until, reason=str(error), rows=[row], now=now)
        return Status.PAUSED
    with transaction.atomic():
        permanent = error.kind == FailureKind.PERMANENT
        exhausted = row.attempts > row.max_attempts
        if permanent or exhausted:
            reason = str(error) if permanent else f"gave up after {row.attempts} attempts: {error}"
            updated = owned(row).update(
                status=Status.FAILED,
                lease_expires_at=None,
                last_error=reason,
                last_error_code=error.code[:32],
                updated_at=now,
            )
            if updated:
                row.status = Status.FAILED
                if row.message_id:
                    message_hooks().failed(row=row, code=error.code, reason=reason, occurred_at=now)
            if error.disconnect:
                channel = Channel.objects.select_for_update(no_key=True).get(pk=row.channel_id)
                channel_status_set(channel=channel, status=Channel.Status.DISCONNECTED, detail=str(error))
            return Status.FAILED if updated else row.status
        next_attempt_at = now + retry_delay(row.attempts)
        updated = owned(row).update(
            status=Status.QUEUED,
            next_attempt_at=next_attempt_at,
            lease_expires_at=None,
            last_error=str(error),
            last_error_code=error.code[:32],
            updated_at=now,
        )
        if updated:
            row.status, row.next_attempt_at = Status.QUEUED, next_attempt_at
            if row.message_id:
                message_hooks().retry(
                    row=row,
                    code=error.code,
                    reason=str(error),
                    next_attempt_at=next_attempt_at,
                    occurred_at=now,
                )
        return Status.QUEUED if updated else row.status


def outbox_release(*, rows: list[OutboxMessage], until: datetime, now: datetime | None = None) -> int:
    """Give claimed rows back unsent, due at ``until`` (no send slot for them yet, or their number was
    just rate limited): no attempt is used up. One UPDATE per attempt number among them (usually one),
    fenced like ``owned``; returns how many were still ours."""
    now = now or timezone.now()
    by_attempts: dict[int, list[Any]] = {}
    for row in rows:
        by_attempts.setdefault(row.attempts, []).append(row.pk)
    return sum(
        OutboxMessage.objects.filter(pk__in=ids, status=Status.SENDING, attempts=attempts).update(
            status=Status.QUEUED,
            attempts=F("attempts") - 1,
            next_attempt_at=until,
            lease_expires_at=None,
            updated_at=now,
        )
        for attempts, ids in by_attempts.items()
    )


def outbox_pacing_hold(*, channel_id: Any, until: datetime) -> None:
    """A number whose send slots are reserved far enough ahead: its rate-limited rows are not claimed
    before ``until`` (rows of other types are). One row updated, not the number's whole backlog; a later
    hold already set by another drain is kept."""
    Channel.objects.filter(pk=channel_id).update(
        pacing_hold_until=Greatest(Coalesce(F("pacing_hold_until"), Value(until)), Value(until))
    )


def outbox_release_expired_leases(*, now: datetime | None = None) -> int:
    """Rows whose drain died mid-send go back to the queue (or fail, if they used up their attempts)."""
    now = now or timezone.now()
    with transaction.atomic():
        expired = list(
            OutboxMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=Status.SENDING, lease_expires_at__lt=now)
            .select_related("message")
        )
        for row in expired:
            if row.attempts > row.max_attempts:
                reason = f"the sending worker stopped {row.attempts} times; giving up"
                OutboxMessage.objects.filter(pk=row.pk).update(
                    status=Status.FAILED,
                    lease_expires_at=None,
                    last_error=reason,
                    last_error_code="lease",
                    updated_at=now,
                )
                if row.message_id:
                    message_hooks().failed(row=row, code="lease", reason=reason, occurred_at=now)
                continue
            reason = "the sending worker stopped before recording the result; sending again"
            OutboxMessage.objects.filter(pk=row.pk).update(
                status=Status.QUEUED,
                lease_expires_at=None,
                next_attempt_at=now,
                last_error=reason,
                last_error_code="lease",
                updated_at=now,
            )
            if row.message_id:
                message_hooks().retry(
                    row=row, code="lease", reason=reason, next_attempt_at=now, occurred_at=now
                )
    if expired:
        logger.warning("outbox: %d expired lease(s) released", len(expired))
    return len(expired)
