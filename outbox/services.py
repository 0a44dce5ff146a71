"""The outbox state machine: enqueue, claim, record, retry, pause and resume.

Row life: ``queued → sending → sent | failed``; ``queued ⇄ paused`` while its number is rate-limited;
``cancelled`` by an admin. ``attempts`` counts provider calls (incremented when a row is claimed);
``max_attempts`` counts the retries after the first call, so the default 5 gives the schedule
at once, +1, +2, +4, +8, +16 minutes, then failed (``retry_delay``).

Guarantees, and what gives them:

- **Once.** A row is claimed by one drain at a time (``FOR UPDATE SKIP LOCKED`` in one statement on
  Postgres; SQLite's IMMEDIATE write transaction with a single in-process drainer in the embedded mode).
  Results are recorded only while the row is still ``sending`` with the attempt number the drain claimed
  (a fencing token), so a drain that lost its lease cannot overwrite a newer attempt. The one way to
  send twice is a worker that dies (or times out) after the provider accepted and before the result was
  recorded: its lease expires and the row goes again. Providers have no idempotency key to prevent that.
- **Order per chat.** A row is claimable only when no earlier row of its chat is queued, sending or
  paused (a retrying row is queued with a later ``next_attempt_at``, so it holds its chat back). A row
  that failed for good or was cancelled no longer holds anything.
- **Provider calls outside transactions.** Claiming commits before any HTTP; each result is recorded in
  a short transaction of its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from channels_app.models import Channel
from channels_app.providers.base import FailureKind, SendResult, TransportError
from channels_app.services import channel_status_set
from config.metrics import RATE_LIMIT_PAUSES
from inbox.models import Message
from outbox.models import OutboxMessage

logger = logging.getLogger(__name__)

Status = OutboxMessage.Status

RETRY_FIRST_DELAY = timedelta(minutes=1)
RETRY_MAX_DELAY = timedelta(minutes=16)
DEFAULT_RETRY_AFTER = 60.0
# Statuses of an earlier row that hold back the later rows of the same chat.
ORDER_BLOCKING = (Status.QUEUED, Status.SENDING, Status.PAUSED)
# Rows of these types spend their number's send rate (WhatsApp messages do; integrators' webhooks don't).
# CLAIM_SQL spells the same list out (a literal, so bench/outbox.py can run the statement as it stands).
RATE_LIMITED_TYPES = frozenset({"message"})


def lease_seconds() -> int:
    # Longer than a send can take (connect + read timeouts, plus a media upload), so a live worker never
    # loses its lease; a dead one's rows are back in the queue after this long.
    return int(getattr(settings, "OUTBOX_LEASE_SECONDS", 90))


def retry_delay(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed call: 1, 2, 4, 8, 16, 16… minutes (Sentry's doubling, capped)."""
    return min(RETRY_FIRST_DELAY * (2 ** max(0, attempts - 1)), RETRY_MAX_DELAY)


class OutboxError(Exception):
    """A refused outbox operation (retry/cancel of a row in the wrong state), fit to show an admin."""


# ---------------------------------------------------------------- enqueue


def outbox_enqueue(
    *,
    channel: Channel,
    message_type: str,
    payload: dict[str, Any],
    chat: Any = None,
    message: Any = None,
    priority: int = 0,
    now: datetime | None = None,
) -> OutboxMessage:
    """Queue one row in the caller's transaction and kick a drain once it commits."""
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):
        row = OutboxMessage.objects.create(
            channel=channel,
            chat=chat,
            message=message,
            message_type=message_type,
            payload=payload,
            priority=priority,
            next_attempt_at=now,
        )
    outbox_kick_on_commit()
    return row


def outbox_kick_on_commit() -> None:
    from outbox.tasks import outbox_kick  # tasks import this module

    transaction.on_commit(outbox_kick)


# ---------------------------------------------------------------- claim


CLAIM_SQL = """
WITH picked AS (
    SELECT o.id
    FROM outbox_outboxmessage o
    WHERE o.status = 'queued'
      AND o.next_attempt_at <= %(now)s
      AND NOT EXISTS (
            SELECT 1 FROM channels_app_channel ch
            WHERE ch.id = o.channel_id AND (
                ch.status = 'paused' OR ch.paused_until > %(now)s
                OR (ch.pacing_hold_until > %(now)s AND o.message_type = 'message')))
      AND (o.chat_id IS NULL OR NOT EXISTS (
            SELECT 1 FROM outbox_outboxmessage e
            WHERE e.chat_id = o.chat_id AND e.id < o.id AND e.status IN ('queued', 'sending', 'paused')))
    ORDER BY o.priority DESC, o.created_at, o.id
    LIMIT %(limit)s
    FOR UPDATE OF o SKIP LOCKED
)
UPDATE outbox_outboxmessage u
SET status = 'sending', attempts = u.attempts + 1, lease_expires_at = %(lease)s, updated_at = %(now)s
FROM picked
WHERE u.id = picked.id
RETURNING u.id
"""


def _claimable(now: datetime) -> Any:
    earlier_in_chat = OutboxMessage.objects.filter(
        chat_id=OuterRef("chat_id"), id__lt=OuterRef("id"), status__in=ORDER_BLOCKING
    )
    return (
        OutboxMessage.objects.filter(status=Status.QUEUED, next_attempt_at__lte=now)
        .exclude(channel__status=Channel.Status.PAUSED)
        .filter(Q(channel__paused_until__isnull=True) | Q(channel__paused_until__lte=now))
        .exclude(message_type__in=RATE_LIMITED_TYPES, channel__pacing_hold_until__gt=now)
        .filter(Q(chat_id__isnull=True) | ~Exists(earlier_in_chat))
        .order_by("-priority", "created_at", "id")
    )


def outbox_claim_batch(*, limit: int = 50, now: datetime | None = None) -> list[OutboxMessage]:
    """Claim up to ``limit`` due rows (``sending``, attempts + 1, leased) and return them, best first.

    Postgres: one ``UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)`` statement, so any number of
    drains can claim at once without waiting for each other or taking the same row. SQLite (embedded):
    the same filter in one write transaction; SQLite has one writer at a time, so it is just as exclusive.
    """
    now = now or timezone.now()
    lease = now + timedelta(seconds=lease_seconds())
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(CLAIM_SQL, {"now": now, "lease": lease, "limit": limit})
            ids = [row[0] for row in cursor.fetchall()]
    else:
        with transaction.atomic():
            ids = list(_claimable(now).values_list("id", flat=True)[:limit])
            OutboxMessage.objects.filter(id__in=ids, status=Status.QUEUED).update(
                status=Status.SENDING, attempts=F("attempts") + 1, lease_expires_at=lease, updated_at=now
            )
    if not ids:
        return []
    rows = _load_claimed(ids)
    _message_hooks().claimed(rows=rows, occurred_at=now)
    return rows


def _load_claimed(ids: list[int]) -> list[OutboxMessage]:
    """The claimed rows with what sending needs. A batch's rows share a few numbers: each Channel is loaded
    once, not joined into every row (building the same Channel a hundred times was a fifth of a drain's
    time); quoted messages are fetched only for the rows that quote one."""
    claimed: Any = ids
    if connection.vendor == "postgresql":
        # The ids as one JSON parameter: an IN list of a batch's ids was a new statement per batch size,
        # with every id quoted by psycopg in Python.
        claimed = RawSQL("SELECT (jsonb_array_elements_text(%s::jsonb))::bigint", [json.dumps(ids)])
    rows = list(
        OutboxMessage.objects.filter(id__in=claimed)
        .select_related("message")
        .order_by("-priority", "created_at", "id")
    )
    channels = Channel.objects.in_bulk({row.channel_id for row in rows})
    quoted_ids = {
        row.message.reply_to_id for row in rows if row.message is not None and row.message.reply_to_id
    }
    quoted = Message.objects.only("id", "chat_id", "wa_message_id").in_bulk(quoted_ids) if quoted_ids else {}
    # Each row and its message share their number's one Channel (filled into the relation caches directly:
    # the descriptors' checks per assignment showed in the profile). The chat is not loaded: the drain
    # needs only its id, and building a Chat per row was a sixth of a drain's CPU.
    row_channel = OutboxMessage._meta.get_field("channel")
    message_channel = Message._meta.get_field("channel")
    for row in rows:
        channel = channels[row.channel_id]
        row_channel.set_cached_value(row, channel)  # type: ignore[union-attr]
        message = row.message
        if message is not None:
            if message.channel_id == channel.pk:
                message_channel.set_cached_value(message, channel)  # type: ignore[union-attr]
            if message.reply_to_id:
                message.reply_to = quoted.get(message.reply_to_id)
    return rows


# ---------------------------------------------------------------- record


def _owned(row: OutboxMessage) -> Any:
    """The row, still ours: sending with the attempt number we claimed."""
    return OutboxMessage.objects.filter(pk=row.pk, status=Status.SENDING, attempts=row.attempts)


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
                _message_hooks().sent_many(items=with_message, occurred_at=now)
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
    updated = _owned(row).update(
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
        _message_hooks().sent(row=row, wa_message_id=result.wa_message_id, occurred_at=now)
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
            updated = _owned(row).update(
                status=Status.FAILED,
                lease_expires_at=None,
                last_error=reason,
                last_error_code=error.code[:32],
                updated_at=now,
            )
            if updated:
                row.status = Status.FAILED
                if row.message_id:
                    _message_hooks().failed(row=row, code=error.code, reason=reason, occurred_at=now)
            if error.disconnect:
                channel = Channel.objects.select_for_update(no_key=True).get(pk=row.channel_id)
                channel_status_set(channel=channel, status=Channel.Status.DISCONNECTED, detail=str(error))
            return Status.FAILED if updated else row.status
        next_attempt_at = now + retry_delay(row.attempts)
        updated = _owned(row).update(
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
                _message_hooks().retry(
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
    fenced like ``_owned``; returns how many were still ours."""
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
                    _message_hooks().failed(row=row, code="lease", reason=reason, occurred_at=now)
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
                _message_hooks().retry(
                    row=row, code="lease", reason=reason, next_attempt_at=now, occurred_at=now
                )
    if expired:
        logger.warning("outbox: %d expired lease(s) released", len(expired))
    return len(expired)


# ---------------------------------------------------------------- pause and resume


def outbox_channel_pause(
    *,
    channel: Channel,
    until: datetime,
    reason: str,
    rows: list[OutboxMessage] | None = None,
    now: datetime | None = None,
) -> None:
    """The provider rate-limited this number: park its queued rows (and ``rows`` we hold) until ``until``.

    The number shows ``degraded`` meanwhile. Claimed rows given here go back unsent, without using up
    an attempt: a rate limit says nothing about the message.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = Channel.objects.select_for_update(no_key=True).get(pk=channel.pk)
        # Several drains can hit the limit at once; keep the latest end.
        until = max(until, locked.paused_until) if locked.paused_until else until
        for row in rows or []:
            _owned(row).update(
                status=Status.PAUSED,
                attempts=F("attempts") - 1,
                lease_expires_at=None,
                last_error=reason,
                last_error_code="rate_limited",
                updated_at=now,
            )
            if row.message_id:
                _message_hooks().retry(
                    row=row, code="rate_limited", reason=reason, next_attempt_at=until, occurred_at=now
                )
        OutboxMessage.objects.filter(channel=locked, status=Status.QUEUED).update(
            status=Status.PAUSED, updated_at=now
        )
        if locked.status != Channel.Status.PAUSED:  # an admin's pause outranks ours
            channel_status_set(
                channel=locked,
                status=Channel.Status.DEGRADED,
                detail=f"Rate limited by the provider until {until:%H:%M:%S} UTC",
                paused_until=until,
            )
        else:
            Channel.objects.filter(pk=locked.pk).update(paused_until=until)
    channel.paused_until = until
    RATE_LIMIT_PAUSES.labels(provider=channel.provider).inc()
    logger.info("channel %s rate limited until %s", channel.pk, until.isoformat())


def outbox_resume_due_channels(*, now: datetime | None = None) -> int:
    """Numbers whose rate-limit pause is over: rows back to the queue, number back to connected."""
    now = now or timezone.now()
    resumed = 0
    due = list(
        Channel.objects.filter(status=Channel.Status.DEGRADED, paused_until__lte=now).values_list(
            "pk", flat=True
        )
    )
    if not due and not OutboxMessage.objects.filter(status=Status.PAUSED).exists():
        return 0  # the usual case, checked by every drain a few times a second: two index lookups
    for channel_id in due:
        with transaction.atomic():
            channel = Channel.objects.select_for_update(no_key=True).get(pk=channel_id)
            if (
                channel.status != Channel.Status.DEGRADED
                or not channel.paused_until
                or channel.paused_until > now
            ):
                continue  # another drain got here first
            OutboxMessage.objects.filter(channel=channel, status=Status.PAUSED).update(
                status=Status.QUEUED, next_attempt_at=now, updated_at=now
            )
            channel_status_set(channel=channel, status=Channel.Status.CONNECTED, detail="", paused_until=None)
            resumed += 1
    # Rows parked for a number that is no longer held back at all (an admin resumed it, say).
    OutboxMessage.objects.filter(status=Status.PAUSED).exclude(
        channel__status__in=[Channel.Status.PAUSED, Channel.Status.DEGRADED]
    ).filter(Q(channel__paused_until__isnull=True) | Q(channel__paused_until__lte=now)).update(
        status=Status.QUEUED, next_attempt_at=now, updated_at=now
    )
    return resumed


# ---------------------------------------------------------------- admin actions


def outbox_retry_now(*, row: OutboxMessage, actor: Any = None, now: datetime | None = None) -> OutboxMessage:
    """Send a waiting or failed row at the next drain. A failed row gets its attempts back."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            OutboxMessage.objects.select_for_update(of=("self",)).select_related("message").get(pk=row.pk)
        )
        if locked.status in (Status.SENDING, Status.SENT):
            raise OutboxError(f"outbox row {locked.pk} is {locked.status}: nothing to retry")
        was_failed = locked.status in (Status.FAILED, Status.CANCELLED)
        locked.status = Status.QUEUED
        locked.next_attempt_at = now
        fields = ["status", "next_attempt_at", "updated_at"]
        if was_failed:
            locked.attempts = 0
            fields.append("attempts")
        locked.save(update_fields=fields)
        if locked.message_id:
            _message_hooks().requeued(row=locked, actor=actor, occurred_at=now)
        _audit(locked, "outbox.retry_now", actor)
    outbox_kick_on_commit()
    return locked


def outbox_cancel(*, row: OutboxMessage, actor: Any = None, now: datetime | None = None) -> OutboxMessage:
    """Stop a row that has not gone yet; its message shows failed ("cancelled")."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = (
            OutboxMessage.objects.select_for_update(of=("self",)).select_related("message").get(pk=row.pk)
        )
        if locked.status not in (Status.QUEUED, Status.PAUSED, Status.FAILED):
            raise OutboxError(f"outbox row {locked.pk} is {locked.status}: it can no longer be cancelled")
        locked.status = Status.CANCELLED
        locked.last_error = "cancelled by an admin"
        locked.save(update_fields=["status", "last_error", "updated_at"])
        if locked.message_id:
            _message_hooks().failed(
                row=locked, code="cancelled", reason="cancelled by an admin", occurred_at=now
            )
        _audit(locked, "outbox.cancelled", actor)
    return locked


def outbox_requeue_for_retry(*, row: OutboxMessage, now: datetime | None = None) -> OutboxMessage:
    """A failed message's retry button: the same row goes again from attempt one. Caller holds a transaction."""
    now = now or timezone.now()
    with transaction.atomic(savepoint=False):
        locked = OutboxMessage.objects.select_for_update().get(pk=row.pk)
        if locked.status in (Status.SENDING, Status.SENT, Status.QUEUED, Status.PAUSED):
            raise OutboxError("this message is already on its way")
        locked.status = Status.QUEUED
        locked.attempts = 0
        locked.next_attempt_at = now
        locked.lease_expires_at = None
        locked.last_error = ""
        locked.last_error_code = ""
        locked.save(
            update_fields=[
                "status",
                "attempts",
                "next_attempt_at",
                "lease_expires_at",
                "last_error",
                "last_error_code",
                "updated_at",
            ]
        )
    outbox_kick_on_commit()
    return locked


def _audit(row: OutboxMessage, action: str, actor: Any) -> None:
    from tenants.services import audit_record

    audit_record(
        action=action, workspace=row.channel.workspace, actor=actor, target=row.channel, data={"row": row.pk}
    )


# ---------------------------------------------------------------- drain


@dataclass
class DrainReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    paused: int = 0
    deferred: int = 0
    released_leases: int = 0
    resumed_channels: int = 0
    batches: int = 0
    errors: list[str] = field(default_factory=list)


RESUME_CHECK_SECONDS = 0.25
# With nothing to claim but calls still waiting for their send slots, look again this often: a number's
# put-back rows come due while half a pacing horizon of its slots is still reserved (outbox.dispatch).
IDLE_POLL_SECONDS = 0.1


def outbox_drain(
    *,
    batch_size: int = 50,
    max_batches: int | None = None,
    time_budget: float | None = None,
    now: datetime | None = None,
    clock: Callable[[], float] | None = None,
) -> DrainReport:
    """Send what is due until nothing is left (or ``max_batches``/``time_budget`` run out).

    1. Expired leases go back to the queue; numbers whose rate-limit pause ended resume (and again every
       ``RESUME_CHECK_SECONDS``).
    2. Record the calls that have finished (their successes in one short transaction).
    3. Claim a batch (committed before any HTTP) and hand it to the sender (``outbox.dispatch``): a row of
       a rate-limited number gets a send slot up to the pacing horizon ahead, and its call is made at that
       slot in the send pool, outside any transaction; a row past the horizon goes back for later. The
       drain does not wait for a batch's slots before claiming the next one, so one drain keeps many
       numbers busy; it only waits when more calls are due than the pool makes at once.
    4. Nothing (or less than a batch) to claim: wait up to ``IDLE_POLL_SECONDS`` for the calls in
       flight, then claim again; nothing claimed and nothing in flight: done. Repeat from 2.

    Whatever is still in flight when the drain stops is waited for and recorded.
    ``now`` freezes the clock for tests (retry schedule); otherwise each step reads the time afresh.
    """
    import time

    from outbox.dispatch import BatchSender

    clock = clock or time.monotonic
    started = clock()
    report = DrainReport()
    report.released_leases = outbox_release_expired_leases(now=now)
    report.resumed_channels = outbox_resume_due_channels(now=now)
    last_resume_check = clock()
    sender = BatchSender(now=now)

    def out_of_budget() -> bool:
        return time_budget is not None and clock() - started >= time_budget

    try:
        while True:
            if clock() - last_resume_check >= RESUME_CHECK_SECONDS:
                # A long drain must not hold a number paused past its Retry-After until the next drain,
                # nor send rows it holds for a number another drain saw paused meanwhile.
                report.resumed_channels += outbox_resume_due_channels(now=now)
                sender.stop_paused_numbers()
                last_resume_check = clock()
            sender.record_finished(report)
            if sender.backlogged():
                sender.wait_for_backlog()
                continue
            rows = outbox_claim_batch(limit=batch_size, now=now)
            if rows:
                report.batches += 1
                report.claimed += len(rows)
                sender.start(rows, report)
                if max_batches is not None and report.batches >= max_batches:
                    break
                if len(rows) < batch_size and sender.in_flight:
                    # A short claim took everything due: claiming again at once would walk the queue for
                    # the few rows that came due meanwhile (with many numbers' rows held, that walk is
                    # most of a drain's time). Let the calls in flight finish first, or a poll pass.
                    sender.wait(IDLE_POLL_SECONDS)
            elif not sender.in_flight:
                break
            else:
                sender.wait(IDLE_POLL_SECONDS)
            if out_of_budget():
                break
    finally:
        sender.finish(report)
    return report


def outbox_queue_depth() -> int:
    """Rows waiting to go (queued or paused): the outbox's health metric."""
    return OutboxMessage.objects.filter(status__in=[Status.QUEUED, Status.PAUSED]).count()


def _message_hooks() -> Any:
    # The inbox side of a message row's life (timeline, status, realtime). Imported late: inbox.services
    # imports this module to enqueue.
    from inbox.services import send

    return send.OUTBOX_HOOKS
